"""``method="grid"``: A(Omega_M) by the midpoint rule, with an error bar from two resolutions."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from . import _validate as vd
from ._link import Link
from ._results import AreaEstimate
from ._sensitivity import m_sensitive_kernel

_MAX_N = 16384  # 2.7e8 cells, about a minute on one core
_CELLS_PER_CALL = 1 << 20  # grid rows are sent in blocks of about this many cells


def _grid_mask(g, M, wrt, n):
    centers = jnp.asarray((np.arange(n) + 0.5) / n)
    rows = max(1, _CELLS_PER_CALL // n)
    parts = [
        m_sensitive_kernel(g, centers[start : start + rows, None], centers[None, :], wrt == "ik", M)
        for start in range(0, n, rows)
    ]
    return np.asarray(jnp.concatenate(parts, axis=0))


def grid_area(g: Link, M: float, wrt: str, *, n=None, seed=0, rtol=None) -> AreaEstimate:
    """``method="grid"``: the midpoint rule on an n x n grid (default n = 1000, 8 <= n <= 16384).

    The error bar is twice the change from the n/2 grid, plus the area of every cell the grid
    cannot classify: cells on the region's boundary (their in/out status differs from a
    neighbour's) and cells along the square's edges whose centre disagrees with a probe at the
    edge itself (1e-15 from 0 or 1), where regions thinner than a cell hide, and the two corner
    cells (0, 1) and (1, 0), which the region always reaches into (at M beyond ~n^2 / 3 it lies
    inside them: the value is then 0 and the error bar 2 / n^2).
    """
    n = 1000 if n is None else vd.check_n(n, "grid", minimum=8, maximum=_MAX_N)
    fine = _grid_mask(g, M, wrt, n)
    coarse = _grid_mask(g, M, wrt, n // 2).mean()
    edge = np.zeros_like(fine)
    edge[:-1] |= fine[:-1] != fine[1:]
    edge[1:] |= fine[:-1] != fine[1:]
    edge[:, :-1] |= fine[:, :-1] != fine[:, 1:]
    edge[:, 1:] |= fine[:, :-1] != fine[:, 1:]
    centers = jnp.asarray((np.arange(n) + 0.5) / n)
    eps = 1e-15
    ik = wrt == "ik"
    for row, p in ((0, eps), (n - 1, 1 - eps)):  # rows index p_ik
        edge[row] |= np.asarray(m_sensitive_kernel(g, jnp.full(n, p), centers, ik, M)) != fine[row]
        edge[:, row] |= (
            np.asarray(m_sensitive_kernel(g, centers, jnp.full(n, p), ik, M)) != fine[:, row]
        )
    # The corner cells at (0, 1) and (1, 0) always hold part of the region (there
    # g'(g^-1(p_ik) + g^-1(p_kj)) / g'(g^-1(p_ik)) -> g'(0) / g'(-inf) = inf), at large M all
    # of it: a grid cannot classify them.
    edge[0, -1] = edge[-1, 0] = True
    value = float(fine.mean())
    error = 2.0 * abs(value - coarse) + edge.sum() / n**2
    return AreaEstimate(value, float(error), "grid", n * n + (n // 2) ** 2 + 4 * n)
