"""Figures (matplotlib, imported lazily): the paper's Figures 1 and 2 for any link.

Every function returns a :class:`matplotlib.figure.Figure` and never calls ``plt.show``;
save it with ``fig.savefig(path)``.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax.numpy as jnp
import numpy as np

from ._audit_plot import audit_heatmap as audit_heatmap
from ._links import as_link
from ._pl_plot import area_vs_k as area_vs_k
from ._pl_plot import pl_regions as pl_regions
from ._sensitivity import _sensitivity_kernel

__all__ = ["area_vs_k", "audit_heatmap", "pl_regions", "sensitive_regions"]


def _figure(nrows, ncols, size):
    from matplotlib.figure import Figure

    return Figure(figsize=size, layout="constrained"), (nrows, ncols)


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
    fig, (rows, cols) = _figure(len(links), 2, (9.5, 4.2 * len(links)))
    axes = fig.subplots(rows, cols, squeeze=False)
    centers = (np.arange(n) + 0.5) / n
    p_ik, p_kj = np.meshgrid(centers, centers, indexing="xy")  # x: p_ik, y: p_kj
    cmap = colormaps["viridis"]
    colors = [cmap(0.15 + 0.8 * k / max(len(Ms) - 1, 1)) for k in range(len(Ms))]
    for row, link in zip(axes, links, strict=True):
        s, _ = _sensitivity_kernel(link, jnp.asarray(p_ik), jnp.asarray(p_kj))
        for ax, d, wrt in ((row[0], s.d_ik, "p_{ik}"), (row[1], s.d_kj, "p_{kj}")):
            d = np.abs(np.asarray(d))
            top = max(float(np.nanmax(d)), Ms[-1]) * 2.0  # contourf needs finite levels
            ax.contourf(p_ik, p_kj, d, levels=[*Ms, top], colors=colors)
            ax.set(xlim=(0, 1), ylim=(0, 1), aspect="equal", xlabel="$p_{ik}$", ylabel="$p_{kj}$")
            ax.set_title(f"{link.name}: $|\\partial p_{{ij}} / \\partial {wrt}| > M$")
        handles = [Patch(color=c, label=f"M = {m:g}") for c, m in zip(colors, Ms, strict=True)]
        row[1].legend(handles=handles, loc="center left", bbox_to_anchor=(1.02, 0.5))
    return fig
