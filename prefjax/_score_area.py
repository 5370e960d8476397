"""The score view's areas: |dp_target/dp_A| > M integrated over the plane of two varied scores.

A = int int 1[|d_wrt| > M] |det J(s)| ds over (s_vary0, s_vary1), in rotated coordinates
(a, d) = ((s_0 + s_1)/2, s_0 - s_1): the inner integral over a by root-found crossings on a
cell grid (:func:`_slices`, one batched JAX call per set of d), the outer one over d by
:func:`prefjax._quadrature.adaptive_gk` between the folds of the region's boundary. The public
entry points are :func:`prefjax.score_view.implied_area` and
:func:`prefjax.score_view.score_view_area`.
"""

from __future__ import annotations

import math
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from . import _kmodels as km
from . import _numerics as nx
from . import _quadrature as qd


def _ad_to_scores(a, d):
    """(a, d) -> (s_0, s_1) = (a + d/2, a - d/2): a rotation with Jacobian 1."""
    return jnp.stack([a + 0.5 * d, a - 0.5 * d])


MAX_CROSSINGS = 4  # per level (+M and -M) and slice
_MAX_BUMPS = 3
_INNER_NODES = 4
_CELL = 0.5
_CHUNK = 120
_SCAN = 241  # points of the scan for folds along d
_SCAN_RU = 61  # the same for the (costly) random-utility models
_SCAN_ROUNDS = 12
_LEVEL = math.asinh(1.0)
_LOG2 = math.log(2.0)


def _squash(log_abs, sign):
    """sign * asinh(exp(log_abs)): the signed sensitivity over M, compressed like a log.

    Crossings of +-asinh(1) are crossings of d = +-M. Unlike log|d| it is smooth through
    d = 0, where the region has a gap (|d| < M) that can be far narrower than a grid cell.
    Not computable (NaN) counts as 0, i.e. outside.
    """
    t = jnp.minimum(log_abs, 30.0)
    mag = jnp.where(log_abs > 30.0, log_abs + _LOG2, jnp.arcsinh(jnp.exp(t)))
    ok = jnp.isfinite(log_abs) & ~jnp.isnan(sign)
    return jnp.where(ok, jnp.where(sign < 0, -mag, mag), 0.0)


@partial(jax.jit, static_argnums=(0, 7, 8))
def _slices(model, scores, target, coord_a, coord_b, vary, d, wrt: int, n_cells: int, a_range):
    """For each d: int over {a : |d_wrt(a, d)| > M} of |det J| da, the number of crossings of
    |d_wrt| = M, and the most sign changes of one level (more than MAX_CROSSINGS: overflow).

    chi = sign(d_wrt) asinh(|d_wrt| / M) is sampled at the edges of ``n_cells`` cells along a;
    the region is |chi| > asinh(1). Each cell edge pair where chi - L changes sign
    (L = +-asinh(1)) holds a crossing, refined by :func:`prefjax._quadrature.bracketed_root`.
    |det J| is integrated by 4-point Gauss-Legendre over every cell, or over the inside pieces
    of a cell with crossings. A region (or gap) narrower than a cell, near a fold of its
    boundary, leaves no sign change at the edges: every sampled local extremum of chi short of
    a level is refined by parabolic interpolation over its two cells, and where the extremum
    crosses the level, the interval between the two roots around it is added (or removed).
    """
    a_lo, a_hi, log_m = a_range[0], a_range[1], a_range[2]
    edges = jnp.linspace(a_lo, a_hi, n_cells + 1)
    xi, wi = (jnp.asarray(t) for t in qd.gauss_legendre(_INNER_NODES))
    big = jnp.inf

    def chi(a, dd):
        val, jac = km.implied_parts(
            model, scores, target, coord_a, coord_b, vary, _ad_to_scores(a, dd)
        )
        out = km.implied_from_parts(val, jac)
        return _squash(out[5 + wrt] - log_m, jnp.sign(out[3 + wrt]))

    def density(a, dd):
        """|det J| = p_A p_B |det L| (only the two coordinates' log-probabilities needed)."""

        def logs(s12):
            s = km.with_scores(scores, vary, s12)
            out = jnp.stack([model.log_prob(s[coord_a]), model.log_prob(s[coord_b])])
            return out, out

        jac, val = jax.jacfwd(logs, has_aux=True)(_ad_to_scores(a, dd))
        det_l = jac[0, 0] * jac[1, 1] - jac[0, 1] * jac[1, 0]
        return jnp.exp(val[0] + val[1]) * jnp.abs(det_l)

    def gl(lo, hi, weight, dd):
        """sum_i weight_i int_{lo_i}^{hi_i} |det J| da (4-point Gauss-Legendre; weight 0 skips)."""
        half = jnp.where(weight != 0, 0.5 * (hi - lo), 0.0)
        pts = 0.5 * (hi + lo)[..., None] + half[..., None] * xi
        dens = jax.vmap(density, (0, None))(pts.reshape(-1), dd).reshape(pts.shape)
        return weight * half * (jnp.where(weight[..., None] != 0, dens, 0.0) @ wi)

    def one(dd):
        chi_d = jax.vmap(chi, (0, None))
        x = chi_d(edges, dd)
        levels = (_LEVEL, -_LEVEL)

        # 1. Level crossings between sampled edges, per level.
        br_lo, br_hi, br_flo, br_fhi, br_lev, br_used, cell_of = [], [], [], [], [], [], []
        over, n_cross = 0, 0
        for lev in levels:
            above = x > lev
            change = above[:-1] != above[1:]
            over = jnp.maximum(over, jnp.sum(change))
            n_cross = n_cross + jnp.sum(change)
            (idx,) = jnp.nonzero(change, size=MAX_CROSSINGS, fill_value=n_cells)
            safe = jnp.minimum(idx, n_cells - 1)
            br_lo.append(edges[safe])
            br_hi.append(edges[safe + 1])
            br_flo.append(x[safe] - lev)
            br_fhi.append(x[safe + 1] - lev)
            br_lev.append(jnp.full((MAX_CROSSINGS,), lev))
            br_used.append(idx < n_cells)
            cell_of.append(idx)

        # 2. Narrow bumps and gaps: sampled extrema short of the nearest level beyond them.
        mid, left, right = x[1:-1], x[:-2], x[2:]
        is_max = (mid >= left) & (mid >= right)
        is_min = (mid <= left) & (mid <= right) & ~is_max
        lev_max = jnp.where(mid < -_LEVEL, -_LEVEL, jnp.where(mid < _LEVEL, _LEVEL, jnp.nan))
        lev_min = jnp.where(mid > _LEVEL, _LEVEL, jnp.where(mid > -_LEVEL, -_LEVEL, jnp.nan))
        lev_c = jnp.where(is_max, lev_max, lev_min)
        short = jnp.where(is_max, lev_max - mid, mid - lev_min)
        short = jnp.where((is_max | is_min) & jnp.isfinite(short), short, big)
        cand = nx.smallest(short[None, :], _MAX_BUMPS)[0]  # the extrema nearest to a level
        lev_b = jnp.where(jnp.isfinite(short[cand]), lev_c[cand], 0.0)
        sgn = jnp.where(is_max[cand], 1.0, -1.0)  # maximise sgn * (chi - level)
        b_lo, b_mid, b_hi = edges[cand], edges[cand + 1], edges[cand + 2]
        x_star, g_star = qd.parabolic_max(
            lambda a: sgn * (chi_d(a, dd) - lev_b),
            b_lo,
            b_mid,
            b_hi,
            sgn * (x[cand] - lev_b),
            sgn * (x[cand + 1] - lev_b),
            sgn * (x[cand + 2] - lev_b),
        )
        crosses = jnp.isfinite(short[cand]) & (g_star > 0)
        g_star = jnp.where(crosses, g_star, 1.0)
        # A bump of chi above +L or below -L is region (add); the other kinds are gaps.
        bump_weight = jnp.where(crosses, jnp.where(sgn * lev_b > 0, 1.0, -1.0), 0.0)
        br_lo += [b_lo, x_star]
        br_hi += [x_star, b_hi]
        br_flo += [x[cand] - lev_b, sgn * g_star]
        br_fhi += [sgn * g_star, x[cand + 2] - lev_b]
        br_lev += [lev_b, lev_b]
        br_used += [crosses, crosses]

        # 3. All roots in one solve; an unused bracket is empty (lo = hi) and skipped.
        lo, hi = jnp.concatenate(br_lo), jnp.concatenate(br_hi)
        lev_all, used = jnp.concatenate(br_lev), jnp.concatenate(br_used)
        hi = jnp.where(used, hi, lo)
        roots = qd.bracketed_root(
            lambda a: chi_d(a, dd) - lev_all,
            lo,
            hi,
            jnp.concatenate(br_flo),
            jnp.concatenate(br_fhi),
        )
        n_c = MAX_CROSSINGS
        t_plus = jnp.full((n_cells,), jnp.nan).at[cell_of[0]].set(roots[:n_c], mode="drop")
        t_minus = (
            jnp.full((n_cells,), jnp.nan).at[cell_of[1]].set(roots[n_c : 2 * n_c], mode="drop")
        )
        r1 = roots[2 * n_c : 2 * n_c + _MAX_BUMPS]
        r2 = roots[2 * n_c + _MAX_BUMPS :]

        # 4. Whole cells without crossings, by the state at their left edge.
        plain = jnp.isnan(t_plus) & jnp.isnan(t_minus)
        inside_left = jnp.abs(x[:-1]) > _LEVEL
        whole_w = (plain & inside_left).astype(x.dtype)

        # 5. Cells with crossings: up to three pieces, the state toggled at each crossing.
        (cc,) = jnp.nonzero(~plain, size=2 * n_c, fill_value=n_cells)
        ok = cc < n_cells
        cs = jnp.minimum(cc, n_cells - 1)
        c_lo, c_hi = edges[cs], edges[cs + 1]
        has_p, has_m = ~jnp.isnan(t_plus[cs]), ~jnp.isnan(t_minus[cs])
        tp = jnp.where(has_p, t_plus[cs], c_hi)
        tm = jnp.where(has_m, t_minus[cs], c_hi)
        up0, down0 = x[cs] > _LEVEL, x[cs] < -_LEVEL  # in {chi > L}, in {chi < -L}
        first_plus = tp <= tm
        p1, p2 = jnp.minimum(tp, tm), jnp.maximum(tp, tm)
        up1 = jnp.where(first_plus & has_p, ~up0, up0)
        down1 = jnp.where(~first_plus & has_m, ~down0, down0)
        up2 = jnp.where(has_p, ~up0, up0)
        down2 = jnp.where(has_m, ~down0, down0)
        piece_in = jnp.stack([up0 | down0, up1 | down1, up2 | down2], -1) & ok[:, None]

        # 6. One Gauss-Legendre pass over every interval: whole cells, pieces, and the narrow
        # bumps (+) and gaps (-) of step 2.
        lo = jnp.concatenate([edges[:-1], c_lo, p1, p2, r1])
        hi = jnp.concatenate([edges[1:], p1, p2, c_hi, r2])
        weight = jnp.concatenate([whole_w, piece_in.T.reshape(-1).astype(x.dtype), bump_weight])
        total = jnp.sum(gl(lo, hi, weight, dd))
        n_cross = n_cross + 2 * jnp.sum(crosses)
        return total, n_cross, jnp.maximum(over, (jnp.sum(~plain) + 1) // 2)

    return jax.vmap(one)(d)


def implied_region_area(
    model: km.KModel, scores, target, coord_a, coord_b, vary, M: float, wrt: int, rtol: float
):
    """Area of {(p_A, p_B) in the image : |dp_target/dp_wrt| > M} (host-side driver).

    A = int int 1[|d_wrt| > M] |det J(s)| ds over the plane of the two varied scores, written in
    the rotated coordinates (a, d) = ((s_0 + s_1)/2, s_0 - s_1) (Jacobian 1): the inner integral
    over a by :func:`_slices`, the outer one over d by adaptive Gauss-Kronrod. The integration
    box reaches ``model.noise.tail`` past the fixed scores, where the probabilities (and so the
    area left out) are below e^-40. Returns (value, error, n_evals); raises RuntimeError where
    a slice has more crossings than are handled.
    """
    fixed = np.delete(np.asarray(scores), np.asarray(vary))
    tail = model.noise.tail
    if fixed.size:
        a_lo, a_hi = float(fixed.min()) - tail, float(fixed.max()) + tail
    else:
        a_lo, a_hi = -tail, tail
    # Cells of at most _CELL in a; their number rounded up to a multiple of 16, and the d
    # points sent in chunks of _CHUNK, so that few shapes (and compilations) occur.
    n_cells = 16 * int(math.ceil((a_hi - a_lo) / _CELL / 16))
    a_range = jnp.asarray([a_lo, a_hi, math.log(M)])
    max_over = 0
    n_slices = 0

    def slices(d):
        """(integrals, crossing counts) at the points d."""
        nonlocal max_over, n_slices
        vals, counts, over = qd.in_chunks(
            lambda chunk: _slices(
                model, scores, target, coord_a, coord_b, vary, chunk, wrt, n_cells, a_range
            ),
            d,
            (_CHUNK,),
            fill=0.0,
        )
        max_over = max(max_over, int(np.max(over, initial=0)))
        n_slices += -(-d.size // _CHUNK) * _CHUNK
        return vals, counts

    # Breakpoints where the number of crossings changes: folds of the region's boundary, where
    # a slice's interval is born with a square-root profile. A scan of _SCAN points brackets
    # each change, and _SCAN_ROUNDS rounds of sampling inside all brackets at once (one chunk
    # per round) shrink them to ~1e-10 of the range (a kink that close to a breakpoint changes
    # the area by ~(1e-10)^1.5).
    grid = np.linspace(-tail, tail, _SCAN if model.cells == 0 else _SCAN_RU)
    found = qd.find_breaks(
        lambda d: slices(d)[1], grid, rounds=_SCAN_ROUNDS, chunk=_CHUNK, tol=1e-10 * tail
    )
    breaks = np.unique(np.concatenate([np.linspace(-tail, tail, 9), found]))

    value, error, _ = qd.adaptive_gk(
        lambda d: slices(d)[0],
        breaks[:-1],
        breaks[1:],
        rtol=rtol,
        atol=1e-300,
        what="score-view area",
    )
    if max_over > MAX_CROSSINGS:
        raise RuntimeError(
            f"d_{'ab'[wrt]} crosses M = {M} (or -M) {max_over} times along one slice (at most "
            f"{MAX_CROSSINGS} per level are handled); the area would be wrong"
        )
    per_slice = (n_cells + 1) * (1 + _INNER_NODES) + (2 * MAX_CROSSINGS + 2 * _MAX_BUMPS) * 12
    return value, error, n_slices * per_slice
