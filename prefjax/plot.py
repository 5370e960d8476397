"""Figures (matplotlib, imported lazily): the paper's Figures 1 and 2 for any link, and the
M-sensitive area against the tuple length K (Section 3.2).

Every function builds a :class:`matplotlib.figure.Figure` directly (no pyplot state), so it
works under any backend, Agg included, returns it and never calls ``plt.show``; save it with
``fig.savefig(path)``.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax.numpy as jnp
import numpy as np

from . import _validate as vd
from . import bradley_terry as bt
from . import plackett_luce as pl
from . import score_view as sv
from ._audit_plot import audit_heatmap as audit_heatmap
from ._links import as_link
from ._sensitivity import sensitivity_kernel

__all__ = ["area_vs_k", "audit_heatmap", "pl_regions", "sensitive_regions"]

FIG2_MS = (1.01, 2.0, 3.0, 5.0, 10.0)  # the thresholds of Figure 1, reused by Figure 2


def _figure(width: float, height: float):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


@vd.needs_x64("prefjax.plot.sensitive_regions")
def sensitive_regions(g, Ms: Sequence[float] = (1.01, 2, 3, 5, 10), n: int = 400):
    """Figure 1 for any link: Omega_M(p_ij, p_ik) and Omega_M(p_ij, p_kj) for several M.

    Each panel shades, over (p_ik, p_kj) in (0, 1)^2, the set where |dp_ij/dp_ik| (left) or
    |dp_ij/dp_kj| (right) exceeds each M, nested from the smallest M (lightest) to the largest
    (darkest). Pass a sequence of links to get one row per link, side by side for comparison.

    Args:
        g: a link (:class:`prefjax.Link` or callable), or a sequence of links.
        Ms: the thresholds, each > 0.
        n: grid points per axis (midpoints of an n x n grid).

    Returns:
        A matplotlib Figure.

    Examples:
        >>> import prefjax, prefjax.plot
        >>> fig = prefjax.plot.sensitive_regions([prefjax.logistic, prefjax.probit], n=50)
        >>> len(fig.axes)  # two panels per link
        4
    """
    from matplotlib import colormaps
    from matplotlib.patches import Patch

    links = [as_link(x) for x in (g if isinstance(g, list | tuple) else [g])]
    Ms = sorted(float(m) for m in Ms)
    if not Ms or Ms[0] <= 0:
        raise ValueError(f"Ms must be a non-empty sequence of numbers > 0; got {Ms!r}")
    if n < 4:
        raise ValueError(f"n must be at least 4; got {n}")
    fig = _figure(9.5, 4.2 * len(links))
    axes = fig.subplots(len(links), 2, squeeze=False)
    centers = (np.arange(n) + 0.5) / n
    p_ik, p_kj = np.meshgrid(centers, centers, indexing="xy")  # x: p_ik, y: p_kj
    cmap = colormaps["viridis"]
    colors = [cmap(0.15 + 0.8 * k / max(len(Ms) - 1, 1)) for k in range(len(Ms))]
    for row, link in zip(axes, links, strict=True):
        s, _ = sensitivity_kernel(link, jnp.asarray(p_ik), jnp.asarray(p_kj))
        for ax, d, wrt in ((row[0], s.d_ik, "p_{ik}"), (row[1], s.d_kj, "p_{kj}")):
            d = np.abs(np.asarray(d))
            top = max(float(np.nanmax(d)), Ms[-1]) * 2.0  # contourf needs finite levels
            ax.contourf(p_ik, p_kj, d, levels=[*Ms, top], colors=colors)
            ax.set(xlim=(0, 1), ylim=(0, 1), aspect="equal", xlabel="$p_{ik}$", ylabel="$p_{kj}$")
            ax.set_title(f"{link.name}: $|\\partial p_{{ij}} / \\partial {wrt}| > M$")
        handles = [Patch(color=c, label=f"M = {m:g}") for c, m in zip(colors, Ms, strict=True)]
        row[1].legend(handles=handles, loc="center left", bbox_to_anchor=(1.02, 0.5))
    return fig


@vd.needs_x64("prefjax.plot.pl_regions")
def pl_regions(alpha=1.01, beta=0.99, Ms: Sequence[float] = FIG2_MS, n: int = 400):
    """Figure 2: Omega_M(p_omega, p_omega_uv) and Omega_M(p_omega, p_omega_vu) (Eqs. (11)-(12)).

    Left: the set of (p_omega_uv, p_omega_vu) where |dp_omega/dp_omega_uv| > M; right: where
    |dp_omega/dp_omega_vu| > M; one shade per M (larger M drawn on top), with the area of
    Proposition 2 in the legend. The paper's figure uses alpha = 1.01, beta = 0.99.

    Args:
        alpha, beta: Eq. (10), alpha > 0, beta > 0.
        Ms: thresholds, > 0.
        n: points per boundary curve.

    Returns:
        A matplotlib Figure with two axes.

    Examples:
        >>> from prefjax.plot import pl_regions
        >>> fig = pl_regions()
        >>> len(fig.axes)
        2
    """
    from matplotlib import colormaps

    alpha = vd.check_positive_number("alpha", alpha)
    beta = vd.check_positive_number("beta", beta)
    Ms = sorted(vd.check_positive_number("M", M) for M in Ms)
    if not Ms:
        raise ValueError("Ms must list at least one threshold")
    fig = _figure(9.0, 4.2)
    ax_uv, ax_vu = fig.subplots(1, 2)
    cmap = colormaps["viridis"]
    for i, M in enumerate(Ms):
        color = cmap(0.15 + 0.7 * i / max(len(Ms) - 1, 1))
        limit = beta / (4.0 * alpha * M)
        # cos-spaced points resolve the square-root ends of the slices at p = limit.
        t = limit * 0.5 * (1.0 - np.cos(np.linspace(0.0, np.pi, n)))
        for ax, wrt in ((ax_uv, "uv"), (ax_vu, "vu")):
            # Interior points from Eqs. (11)-(12); the ends of the open intervals by hand:
            # at p = 0 the slice is (0, beta/M) (over alpha^2 for "vu"), at p = limit a point.
            scale = 1.0 if wrt == "uv" else alpha * alpha
            b = pl.region_bounds(M, alpha, beta, wrt, at=t[1:-1])
            end = beta / (4.0 * M * scale)
            low = np.concatenate([[0.0], np.asarray(b.low), [end]])
            high = np.concatenate([[beta / (M * scale)], np.asarray(b.high), [end]])
            area = float(pl.region_area(M, alpha, beta, wrt))
            label = f"M = {M:g} (A = {area:.3g})"
            if wrt == "uv":
                ax.fill_between(t, low, high, color=color, label=label, linewidth=0)
            else:
                ax.fill_betweenx(t, low, high, color=color, label=label, linewidth=0)
    for ax, wrt in ((ax_uv, "uv"), (ax_vu, "vu")):
        ax.set_xlim(0.0, 1.0)
        ax.set_ylim(0.0, 1.0)
        ax.set_aspect("equal")
        ax.set_xlabel(r"$p_{\omega_{uv}}$")
        ax.set_ylabel(r"$p_{\omega_{vu}}$")
        which = r"p_{\omega_{uv}}" if wrt == "uv" else r"p_{\omega_{vu}}"
        ax.set_title(rf"$\Omega_M(p_\omega, {which})$, $\alpha$={alpha:g}, $\beta$={beta:g}")
        ax.legend(fontsize="small", loc="upper right")
    return fig


@vd.needs_x64("prefjax.plot.area_vs_k")
def area_vs_k(
    scores=None,
    Ms: Sequence[float] = (2.0, 5.0, 10.0),
    u: int = 0,
    v: int = 1,
    order=None,
    wrt: str = "uv",
    score_view: bool = False,
):
    """Section 3.2: the M-sensitive area against the tuple length K, for given scores.

    Left: Proposition 2's area for omega = order[:K] (default: by decreasing score), one line
    per M, on a log scale, with Proposition 1's pairwise (Bradley-Terry) area as a dashed line
    of the same colour; with ``score_view=True`` also the score-based area (dotted, K >= 3; a
    2-D integral per point, seconds each). Right: alpha and beta of Eq. (10) against K.

    Args:
        scores: (N,) scores; default ``numpy.linspace(1, -1, 8)``.
        Ms: thresholds, > 0.
        u, v: positions of the pair, 0 <= u < v < N.
        order: a full ranking of the N options; default by decreasing score.
        wrt: "uv" or "vu".
        score_view: add the score-based view's area.

    Returns:
        A matplotlib Figure with two axes.

    Examples:
        >>> from prefjax.plot import area_vs_k
        >>> fig = area_vs_k([1.0, 0.3, 0.0, -0.4, -1.0], Ms=[2.0, 10.0])
        >>> [ax.get_xlabel() for ax in fig.axes]
        ['K', 'K']
    """
    from matplotlib import colormaps

    scores = np.linspace(1.0, -1.0, 8) if scores is None else scores
    scores = vd.check_scores(scores)
    if scores.ndim != 1:
        raise ValueError(f"scores must be one score vector (N,); got shape {scores.shape}")
    Ms = [vd.check_positive_number("M", M) for M in Ms]
    fig = _figure(9.0, 3.8)
    ax_area, ax_ab = fig.subplots(1, 2)
    cmap = colormaps["plasma"]
    r = None
    for i, M in enumerate(Ms):
        color = cmap(0.1 + 0.7 * i / max(len(Ms) - 1, 1))
        r = pl.robustness_vs_k(scores, M, u, v, order=order, wrt=wrt)
        ax_area.plot(r.K, np.asarray(r.area), "o-", color=color, label=f"M = {M:g}, Prop. 2")
        if M > 1:
            ax_area.axhline(float(bt.region_area(M)), color=color, linestyle="--", linewidth=1)
        if score_view:
            sv_order = order
            if sv_order is None:
                sv_order = tuple(int(i) for i in np.argsort(-np.asarray(scores), kind="stable"))
            ks = [int(k) for k in r.K if k >= 3]
            areas = [
                sv.score_view_area(scores, tuple(sv_order[:k]), u, v, M, wrt).value for k in ks
            ]
            ax_area.plot(ks, areas, "s:", color=color, label=f"M = {M:g}, score view")
    ax_area.set_yscale("log")
    ax_area.set_xlabel("K")
    ax_area.set_ylabel(r"$A(\Omega_M)$")
    ax_area.set_title("M-sensitive area (dashed: pairwise, Prop. 1)")
    ax_area.legend(fontsize="small")
    ax_ab.plot(r.K, np.asarray(r.alpha), "o-", label=r"$\alpha$")
    ax_ab.plot(r.K, np.asarray(r.beta), "s-", label=r"$\beta$")
    ax_ab.set_yscale("log")
    ax_ab.set_xlabel("K")
    ax_ab.set_title(r"Eq. (10): $\alpha$ grows, $\beta$ falls")
    ax_ab.legend(fontsize="small")
    return fig
