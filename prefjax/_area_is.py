"""``method="is"``: A(Omega_M) by defensive importance sampling towards the corners.

A pilot finds where the region is; the main stage draws from a mixture of uniform, a U-shaped
density, boxes at the corners the pilot hit and a histogram over cells of those boxes, so that
regions far too small for uniform Monte Carlo (M = 10^4: area ~3e-9) are still resolved.
"""

from __future__ import annotations

import math
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from . import _validate as vd
from ._area_mc import wilson_half_width
from ._link import Link
from ._results import MC_SIGMAS, AreaEstimate

# Main-stage mixture: uniform and the pilot's U-shaped corner density (defensive: weights stay
# <= 20 everywhere), uniform boxes at the corners the pilot hit (reaching 1.5x the median and
# 1.25x and 8x the farthest of the pilot's hits from the ends), and a histogram over
# _IS_CELLS x _IS_CELLS cells of the middle box at each corner, each cell drawn in proportion
# to the region's area in it as the pilot estimates it. The histogram follows the region's
# shape (for Bradley-Terry at large M it fills 2/3 of its bounding box) where a box cannot.
_IS_WEIGHTS = (0.05, 0.05, 0.1, 0.1, 0.1, 0.6)
_IS_BOXES = ((50, 1.5), (100, 1.25), (100, 8.0))  # (percentile of hit distances, scale)
_IS_HIST_BOX = 1  # the histogram's cells divide _IS_BOXES[1]
_IS_CELLS = 8
_IS_CHUNK = 1 << 16  # draws per compiled call
_FEW_HITS = 30  # below this many hits the error bar also takes the Wilson interval


def _cell_of(near, corner, box):
    """Flat histogram cell (corner, i, j) of points at near-end distances ``near`` (2, size)
    and whether they lie inside ``box`` (2, 1) at all."""
    k = _IS_CELLS
    ij = jnp.clip(jnp.floor(near / box * k), 0, k - 1).astype(jnp.int32)
    inside = jnp.all(near < box, axis=0)
    return corner * k * k + ij[0] * k + ij[1], inside


def _corner_densities(near, upper, a, boxes, corner_p, cell_p):
    """Log densities at each point of the U-shaped corner proposal (corners equally likely),
    of each box proposal (corners with probabilities ``corner_p``) and of the histogram."""
    point_corner = 2 * upper[0].astype(jnp.int32) + upper[1].astype(jnp.int32)
    # d = V^(1/a) / 2 has density 2a (2d)^(a - 1) on (0, 1/2); the corner has probability 1/4.
    log_u = jnp.log(0.25) + jnp.sum(jnp.log(2.0 * a) + (a - 1.0) * jnp.log(2.0 * near), axis=0)
    log_boxes = [
        jnp.log(corner_p[point_corner])
        + jnp.sum(jnp.where(near < box, -jnp.log(box), -jnp.inf), axis=0)
        for box in boxes
    ]
    hist_box = boxes[_IS_HIST_BOX]
    cell, inside = _cell_of(near, point_corner, hist_box)
    cell_volume = jnp.prod(hist_box[:, 0]) / _IS_CELLS**2
    log_hist = jnp.where(inside, jnp.log(cell_p[cell]) - jnp.log(cell_volume), -jnp.inf)
    return point_corner, log_u, log_boxes, log_hist


@partial(jax.jit, static_argnums=(0, 3))
def _is_draw(g: Link, key, log_m, size: int, a, boxes, corner_p, cell_p, weights):
    """Draws from a mixture of corner proposals and their weighted indicators.

    Components (with probabilities ``weights``): uniform on the square; a U-shaped corner
    density (a corner at random, then each coordinate's distance d to its end with density
    a (2 d)^(a - 1) on (0, 1/2)); for each entry of ``boxes`` (shape (2, 1) each), a corner
    drawn with probabilities ``corner_p`` and each distance uniform on (0, box); and a
    histogram: cell (corner, i, j) of box ``boxes[_IS_HIST_BOX]`` split into _IS_CELLS^2 cells
    per corner, drawn with probabilities ``cell_p``, then uniform in the cell.
    Drawing the distance d = min(x, 1 - x) keeps x and 1 - x exact, so the scores
    u = g^-1(x) keep precision next to 1 as well as next to 0. Returns the weights 1/q (q the
    mixture density), the near-end distances, the corners and the indicators of
    |dp_ij/dp_ik| > M and |dp_ij/dp_kj| > M.
    """
    k_comp, k_u, k_v, k_c1, k_c2, k_c3 = jax.random.split(key, 6)
    tiny = jnp.finfo(jnp.result_type(float)).tiny
    n_box, k = len(boxes), _IS_CELLS
    comp = jax.random.categorical(k_comp, jnp.log(weights), shape=(size,))
    unif = jax.random.uniform(k_u, (2, size))
    v = jax.random.uniform(k_v, (2, size), minval=tiny)
    c_even = jax.random.randint(k_c1, (size,), 0, 4)
    c_box = jax.random.categorical(k_c2, jnp.log(corner_p), shape=(size,))
    # inverse CDF: categorical() would draw a Gumbel per (point, cell)
    cdf = jnp.cumsum(cell_p)
    cell = jnp.searchsorted(cdf, jax.random.uniform(k_c3, (size,)) * cdf[-1], side="right")
    cell = jnp.minimum(cell, cell_p.shape[0] - 1)
    d_u = 0.5 * jnp.exp(jnp.log(v) / a)
    d = jnp.where(comp == 1, d_u, 0.0)
    for j, box in enumerate(boxes):
        d = jnp.where(comp == 2 + j, v * box, d)
    ij = jnp.stack([(cell // k) % k, cell % k])
    d = jnp.where(comp == 2 + n_box, (ij + v) * boxes[_IS_HIST_BOX] / k, d)
    corner = jnp.where(comp == 1, c_even, jnp.where(comp == 2 + n_box, cell // (k * k), c_box))
    upper = jnp.where(comp == 0, unif > 0.5, jnp.stack([corner // 2, corner % 2]).astype(bool))
    near = jnp.maximum(jnp.where(comp == 0, jnp.minimum(unif, 1.0 - unif), d), tiny)
    # Scores from the nearer end (Lemma 4: g^-1(1 - q) = -g^-1(q)).
    u_near = g.inverse(near)
    u = jnp.where(upper, -u_near, u_near)
    log_d = g.log_derivative(u[0] + u[1]) - g.log_derivative(u)  # (2, size): wrt ik, kj
    point_corner, log_u, log_boxes, log_hist = _corner_densities(
        near, upper, a, boxes, corner_p, cell_p
    )
    q = weights[0] + weights[1] * jnp.exp(log_u)
    for j, lb in enumerate(log_boxes):
        q = q + weights[2 + j] * jnp.exp(lb)
    q = q + weights[2 + n_box] * jnp.exp(log_hist)
    return 1.0 / q, near, point_corner, log_d > log_m


def is_area(g: Link, M: float, wrt: str, *, n=None, seed=0, rtol=None) -> AreaEstimate:
    """``method="is"``: n draws (default 10^6, at least 100) in two stages.

    A pilot (n/10 draws: half uniform, half U-shaped towards the four corners)
    finds which corners the region touches, how far from the ends it reaches in each
    coordinate, and how its area spreads over the cells of a box at each corner; the main
    stage mixes uniform draws, the U-shaped density, uniform boxes at those corners sized from
    the pilot's hit distances (see _IS_BOXES), and the histogram of those cells (the weights
    vary little over the region, and a reach the pilot underestimated is still covered). The
    estimate and its error come from the main stage alone."""
    n = 1_000_000 if n is None else vd.check_n(n, "is", minimum=100, maximum=10**9)
    row = 0 if wrt == "ik" else 1
    key_pilot, key = jax.random.split(jax.random.key(int(seed)))
    log_m = jnp.asarray(math.log(M))
    a = jnp.asarray(1.0 / (1.0 + max(math.log10(M), 0.0)))
    n_pilot = min(max(n // 10, 100), n // 2)
    placeholder = (jnp.full((2, 1), 0.5), jnp.full((2, 1), 0.5), jnp.full((2, 1), 0.5))

    def draws(key, count, boxes, corner_p, cell_p, weights):
        """``count`` draws in fixed-size chunks (one compiled shape per link), tail masked."""
        for start in range(0, count, _IS_CHUNK):
            key, sub = jax.random.split(key)
            w, near, corner, hit = _is_draw(
                g, sub, log_m, _IS_CHUNK, a, boxes, corner_p, cell_p, weights
            )
            keep = min(_IS_CHUNK, count - start)
            yield w[:keep], near[:, :keep], corner[:keep], hit[:, :keep]

    cells = 4 * _IS_CELLS**2
    pilot_weights = jnp.asarray([0.5, 0.5, 0.0, 0.0, 0.0, 0.0])  # half uniform, half U-shaped
    pilot_cells = jnp.full(cells, 1.0 / cells)
    parts = list(
        draws(key_pilot, n_pilot, placeholder, jnp.full(4, 0.25), pilot_cells, pilot_weights)
    )
    w = np.concatenate([np.asarray(p[0]) for p in parts])
    near = np.concatenate([np.asarray(p[1]) for p in parts], axis=1)
    corner = np.concatenate([np.asarray(p[2]) for p in parts])
    hits = np.concatenate([np.asarray(p[3][row]) for p in parts])
    if hits.any():
        reach = [np.percentile(near[:, hits], pct, axis=1) * k for pct, k in _IS_BOXES]
        counts = np.bincount(corner[hits], minlength=4) + 0.5  # a floor for unseen corners
    else:
        reach, counts = [np.full(2, 0.1 * k) for _, k in _IS_BOXES], np.ones(4)
    boxes = tuple(jnp.asarray(np.clip(r, 1e-300, 0.5)[:, None]) for r in reach)
    corner_p = jnp.asarray(counts / counts.sum())
    # The histogram: the region's area in each cell of the middle box, as the pilot's weighted
    # hits estimate it (cells it saw nothing in get none; the boxes cover them).
    cell, inside = _cell_of(jnp.asarray(near), jnp.asarray(corner), boxes[_IS_HIST_BOX])
    keep = hits & np.asarray(inside)
    mass = np.bincount(np.asarray(cell)[keep], weights=w[keep], minlength=cells)
    cell_p = jnp.asarray(mass / mass.sum() if mass.sum() > 0 else np.full(cells, 1.0 / cells))
    n_main = n - n_pilot
    counts_main = []  # per chunk: draws in the region
    sums = []  # per chunk (sum of weights in the region, sum of their squares), on device
    main_weights = jnp.asarray(_IS_WEIGHTS)
    for w, _, _, hit in draws(key, n_main, boxes, corner_p, cell_p, main_weights):
        contrib = jnp.where(hit[row], w, 0.0)
        sums.append(jnp.stack([jnp.sum(contrib), jnp.sum(contrib * contrib)]))
        counts_main.append(jnp.sum(hit[row]))
    total, total_sq = np.sum(np.asarray(jnp.stack(sums)), axis=0)  # one transfer
    total, total_sq = float(total), float(total_sq)
    mean = total / n_main
    var = max(total_sq / n_main - mean * mean, 0.0)
    error = MC_SIGMAS * math.sqrt(var / n_main) + 1.0 / n_main**2
    # Few hits: the sample variance is itself unreliable. Each draw's weight is at most
    # 1 / weights[0] (the uniform component), so the mean is within that times the Wilson
    # interval of the hit fraction.
    hit_count = sum(int(c) for c in counts_main)
    if hit_count < _FEW_HITS:
        error = max(error, wilson_half_width(hit_count, n_main) / _IS_WEIGHTS[0])
    return AreaEstimate(mean, error, "is", n)
