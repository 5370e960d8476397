"""The audit heatmap: ordered pairs by Lemma 1's local M, fragile pairs marked."""

from __future__ import annotations

import numpy as np


def audit_heatmap(audit, ax=None, max_labels: int = 40):
    """Heatmap of an :class:`prefjax.Audit`: cell (i, j) coloured by log10 of the local M of
    the worst Lemma 1 path for p_ij (grey: no path), fragile pairs marked with a cross.

    Items are ordered by fitted score, strongest first (top row, left column).

    Args:
        audit: an :class:`prefjax.Audit`.
        ax: a matplotlib Axes to draw into; a new Figure is made if None.
        max_labels: label the axes with item names up to this many items.

    Returns:
        The matplotlib Figure.

    Examples:
        >>> import prefjax, prefjax.plot
        >>> a = prefjax.audit(prefjax.fit(prefjax.Comparisons.example("baseball")))
        >>> fig = prefjax.plot.audit_heatmap(a)
        >>> len(fig.axes)  # the heatmap and its colour bar
        2
    """
    from matplotlib import colormaps
    from matplotlib.figure import Figure

    n = len(audit.items)
    order = np.argsort(-np.asarray(audit.fit.scores), kind="stable")
    rank = np.empty(n, int)
    rank[order] = np.arange(n)
    grid = np.full((n, n), np.nan)
    grid[rank[audit.i], rank[audit.j]] = np.log10(audit.local_M)
    if ax is None:
        size = min(4.0 + 0.28 * n, 14.0)
        fig = Figure(figsize=(size + 1.5, size), layout="constrained")
        ax = fig.add_subplot()
    else:
        fig = ax.figure
    cmap = colormaps["magma_r"].with_extremes(bad="#dddddd")  # grey: no Lemma 1 path
    finite = grid[np.isfinite(grid)]
    top = max(float(finite.max()) if finite.size else 1.0, np.log10(audit.M), 0.1)
    image = ax.imshow(np.ma.masked_invalid(grid), cmap=cmap, vmin=0.0, vmax=top,
                      interpolation="nearest")  # fmt: skip
    cbar = fig.colorbar(image, ax=ax, shrink=0.8)
    cbar.set_label("log10 local M (worst Lemma 1 path)")
    frag = audit.fragile
    if np.any(frag):
        ax.scatter(rank[audit.j[frag]], rank[audit.i[frag]], marker="x", s=max(8, 400 / n),
                   color="#00a0ff", linewidths=1.5)  # fmt: skip
    if n <= max_labels:
        names = [audit.items[k] for k in order]
        ax.set_xticks(range(n), names, rotation=60, ha="right", fontsize=8)
        ax.set_yticks(range(n), names, fontsize=8)
    ax.set_xlabel("j")
    ax.set_ylabel("i")
    ax.set_title(
        f"p_ij under the {audit.fit.link.name} link: local M; "
        f"x = fragile at M = {audit.M:g} ({int(np.sum(frag))} pairs)",
        fontsize=10,
    )
    return fig
