"""Figures for the K-tuple Plackett-Luce model: Figure 2 and Section 3.2 (matplotlib, lazily).

Both functions build a :class:`matplotlib.figure.Figure` directly (no pyplot state), so they
work under any backend, Agg included, and return it for the caller to save or show.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from . import _validate as vd
from . import plackett_luce as pl
from . import score_view as sv

FIG2_MS = (1.01, 2.0, 3.0, 5.0, 10.0)  # the thresholds of Figure 1, reused by Figure 2


def _figure(width: float, height: float):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


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

    from . import bradley_terry as bt

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
