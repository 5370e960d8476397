"""``method="quad"``: A(Omega_M) from root-found slice boundaries and adaptive Gauss-Kronrod.

The area is int_0^1 l(p_kj) dp_kj, l(p_kj) the length of {p_ik : |dp_ij/dp_ik| > M}. Each
slice's end points are roots of log g'(u + c) - log g'(u) = log M in score space (u = g^-1(p_ik),
c = g^-1(p_kj)), found on a grid with its extrema refined (:func:`_slice_lengths`); the outer
integral is :func:`prefjax._quadrature.adaptive_gk` between the breakpoints where the slices
change shape. The contract (accuracy, error bar) is documented in :func:`prefjax.region_area`.
"""

from __future__ import annotations

import math
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from . import _numerics as nx
from . import _quadrature as qd
from . import _validate as vd
from ._link import Link
from ._results import AreaEstimate

_T_MAX = 45.0  # grid spans p_ik = sigma(t) for t in [-45, 45]: (2.9e-20, 1 - 2.9e-20)
_N_GRID = 512
_MAX_ROOTS = 4  # sign changes handled per slice (links seen so far have 1 to 4); more raises
_MAX_EXTREMA = 4  # local extrema of the sensitivity refined per slice
_BISECT = 64  # closes a grid cell to ~1e-19 of its width
_GOLDEN = 60
_SLICE_CHUNK = 256  # slices per compiled call (two shapes compiled per link)
_SMALL_CHUNK = 64
_F_ROUNDING = 16 * 2.0**-52  # rounding allowance of log g'(u + c) - log g'(u), relative
_QUAD_ROUNDING = 256 * 2.0**-52  # rounding floor of the area's error bar, relative
_EPS = 2.0**-52
_RTOL_FLOOR = 4 * _QUAD_ROUNDING  # the smallest rtol asked of the quadrature (2.3e-13)
_N_FAR = 64  # extra grid points per side beyond p_ik = 2.9e-20, for large M
_T_FLOOR = 690.0  # the far grid stops at p_ik = sigma(-690) = 2.6e-300 (normal floats)
_HEAVY = 48  # most extra (log-spaced) breaks where the area lives at small s
_MAX_SLICES = 100_000  # slices one area may evaluate in its quadrature (~5 s on one core)


def _interval_length(g: Link, a, b):
    """g(b) - g(a) without cancellation: through the lower tail when both are above 0."""
    upper = a >= 0
    return jnp.where(upper, g(-a) - g(-b), g(b) - g(a))


@partial(jax.jit, static_argnums=0)
def _slice_lengths(g: Link, s, log_m, u_grid):
    """For each p_kj = 1 - s^2, with score c = g^-1(p_kj) = -g^-1(s^2) (exact complement),
    the probability length of {u : D(u, c) > M}.

    D(u, c) = g'(u + c) / g'(u) = |dp_ij/dp_ik| at p_ik = g(u) (Eq. (2)). Returns the
    lengths, whether more sign changes were seen than are handled, and how many intervals
    make up each slice's set.
    """

    def F_and_noise(u, c):
        # log D - log M, and its rounding error: where |log g'| is ~45 in the tails, F is
        # known to ~1e-14 only (used below to tell noise from a real crossing).
        a, b = g.log_derivative(u + c), g.log_derivative(u)
        return a - b - log_m, _F_ROUNDING * (1.0 + jnp.abs(a) + jnp.abs(b))

    def F(u, c):
        return F_and_noise(u, c)[0]

    c = -g.inverse(s * s)
    m, n = c.shape[0], u_grid.shape[0]
    U = jnp.broadcast_to(u_grid, (m, n))
    Fg, noise = F_and_noise(U, c[:, None])  # (m, N)
    Fg = jnp.where(jnp.isnan(Fg), -jnp.inf, Fg)

    # Refine the grid's local extrema (up to _MAX_EXTREMA per slice) by golden-section search
    # and add them as nodes: a bump or dip narrower than the grid spacing is then seen even
    # when no grid point lies inside it.
    rise = Fg[:, 1:] > Fg[:, :-1]  # (m, N - 1)
    turn = rise[:, :-1] != rise[:, 1:]  # interior node k + 1 is a local extremum
    # Those that matter could cross 0 between the nodes: the ones nearest 0 first. Wiggles
    # of rounding size (flat tails) are not extrema worth refining.
    step = jnp.abs(jnp.diff(Fg, axis=1))
    prominent = (step[:, :-1] > 64 * noise[:, 1:-1]) & (step[:, 1:] > 64 * noise[:, 1:-1])
    score = jnp.where(turn & prominent, jnp.abs(Fg[:, 1:-1]), jnp.inf)
    order = nx.smallest(score, _MAX_EXTREMA)
    has = jnp.isfinite(jnp.take_along_axis(score, order, axis=1))
    k = order + 1  # (m, E) node indices
    is_max = jnp.take_along_axis(rise, order, axis=1)  # rising into k: a maximum
    lo, hi = u_grid[k - 1], u_grid[jnp.minimum(k + 1, n - 1)]
    sign = jnp.where(is_max, 1.0, -1.0)  # search the max of sign * F
    phi = 0.6180339887498949

    def golden(_, state):
        lo, hi = state
        x1, x2 = hi - phi * (hi - lo), lo + phi * (hi - lo)
        left = sign * F(x1, c[:, None]) > sign * F(x2, c[:, None])
        return jnp.where(left, lo, x1), jnp.where(left, x2, hi)

    lo, hi = jax.lax.fori_loop(0, _GOLDEN, golden, (lo, hi))
    u_ext = jnp.where(has, 0.5 * (lo + hi), u_grid[0])  # unused slots sit on the first node
    F_ext = jnp.where(has, F(u_ext, c[:, None]), Fg[:, :1])

    # Each refined extremum splits the grid cell it falls in (the first one per cell): every
    # cell becomes two sub-cells (left, mid) and (mid, right), mid = right where unsplit.
    rows = jnp.arange(m)[:, None]
    cell = jnp.where(u_ext < u_grid[k], k - 1, k)  # (m, E)
    cell = jnp.where(has, cell, n - 1)  # unused slots go to a dropped extra column
    mid_u = jnp.concatenate([U[:, 1:], U[:, -1:]], axis=1).at[rows, cell].set(u_ext)[:, :-1]
    mid_F = jnp.concatenate([Fg[:, 1:], Fg[:, -1:]], axis=1).at[rows, cell].set(F_ext)[:, :-1]
    left_u = jnp.stack([U[:, :-1], mid_u], axis=2).reshape(m, -1)
    right_u = jnp.stack([mid_u, U[:, 1:]], axis=2).reshape(m, -1)
    left_F = jnp.stack([Fg[:, :-1], mid_F], axis=2).reshape(m, -1)
    right_F = jnp.stack([mid_F, Fg[:, 1:]], axis=2).reshape(m, -1)
    noise = jnp.repeat(noise, 2, axis=1)[:, 1:-1]  # one per sub-cell end, near enough

    # A sign change between two values of rounding size is noise on a flat stretch of F (the
    # far tails, where g'(u + c)/g'(u) tends to a constant that may equal M): not a crossing.
    noisy = (jnp.abs(left_F) <= 64 * noise) & (jnp.abs(right_F) <= 64 * noise)
    change = ((left_F > 0) != (right_F > 0)) & ~noisy
    overflow = jnp.sum(change, axis=1) > _MAX_ROOTS  # a link this method does not handle
    col = jnp.arange(change.shape[1], dtype=Fg.dtype)
    order = nx.smallest(jnp.where(change, col, jnp.inf), _MAX_ROOTS)  # the first ones, in order
    take = lambda a: jnp.take_along_axis(a, order, axis=1)  # noqa: E731
    valid = take(change)
    a, b, Fa = take(left_u), take(right_u), take(left_F)
    entering = Fa <= 0  # F goes from <= 0 to > 0: the root opens an interval of the set

    def bisect(_, state):
        a, b = state
        mid = 0.5 * (a + b)
        pos = F(mid, c[:, None]) > 0
        go_left = pos == entering  # the root lies in [a, mid]
        return jnp.where(go_left, a, mid), jnp.where(go_left, mid, b)

    a, b = jax.lax.fori_loop(0, _BISECT, bisect, (a, b))
    roots = jnp.where(valid, 0.5 * (a + b), jnp.nan)

    start_inside = Fg[:, 0] > 64 * noise[:, 0]
    end_inside = Fg[:, -1] > 64 * noise[:, -1]
    bounds = jnp.concatenate(
        [
            jnp.where(start_inside, -jnp.inf, jnp.nan)[:, None],
            roots,
            jnp.where(end_inside, jnp.inf, jnp.nan)[:, None],
        ],
        axis=1,
    )
    bounds = jnp.sort(bounds, axis=1)  # -inf, roots ascending, +inf, NaN padding last
    pairs = bounds.reshape(m, -1, 2)
    lengths = _interval_length(g, pairs[..., 0], pairs[..., 1])
    total = jnp.sum(jnp.where(jnp.isnan(lengths), 0.0, lengths), axis=1)
    pieces = jnp.sum(~jnp.isnan(pairs[..., 0]), axis=1)  # intervals in the slice's set
    # What rounding leaves of each slice's length: a root r is known to about the rounding
    # of F over its slope (taken as 1) plus the spacing of floats at r and at r + c (u + c
    # cancels when u ~ -c, as for the heavy tails at large M); g'(r) carries that into p_ik.
    # Summed over the roots, plus the rounding of the g values themselves.
    r_ok = valid & jnp.isfinite(roots)
    r = jnp.where(r_ok, roots, 0.0)
    la, lb = g.log_derivative(r + c[:, None]), g.log_derivative(r)
    shift = _F_ROUNDING * (2.0 + jnp.abs(r) + jnp.abs(c)[:, None] + jnp.abs(la) + jnp.abs(lb))
    dl = jnp.where(r_ok, g.derivative(r) * shift, 0.0)
    small = jnp.where(r_ok, jnp.minimum(g(r), g(-r)), 0.0)
    rounding = jnp.sum(dl + 4.0 * _EPS * small, axis=1)
    return total, overflow, pieces, rounding


def _far_t(M: float) -> float:
    """How far (in t = logit p_ik) the grid reaches: to p_ik ~ 1e-20 / M^2, at most to
    p_ik = 2.6e-300. Slices ending below that carry a share of the area below ~1e-20: the
    area is at most ~1/M^2 times a constant (logistic: 1/(3 M^2); the slices of the light
    tails end near p_ik ~ 1/M where most of the area is, but those of probit's at p_kj
    nearer 1/2 end much lower, at p_ik ~ M^-1.3 for M = 1e100, and still count)."""
    return min(_T_MAX + 2.05 * math.log(max(M, 1.0)) + 5.0, _T_FLOOR)


def _score_grid(g: Link, M: float = 1.0):
    """Scores u = g^-1(p_ik) at p_ik = sigma(t): N points with t evenly spaced in [-45, 45]
    and _N_FAR more per side evenly spaced out to |t| = :func:`_far_t` (large M).

    The upper half is the mirror image of the lower (Lemma 4), so only p_ik <= 1/2 is
    inverted and no value near 1 is rounded.
    """
    far = np.linspace(-_far_t(M), -_T_MAX, _N_FAR, endpoint=False)
    t = np.concatenate([far, np.linspace(-_T_MAX, 0.0, _N_GRID // 2, endpoint=False)])
    u_lower = np.asarray(g.inverse(jnp.asarray(1.0 / (1.0 + np.exp(-t)))))
    return jnp.asarray(np.concatenate([u_lower, -u_lower[::-1]]))


def _s_low(M: float) -> float:
    """The smallest s (p_kj = 1 - s^2) the breakpoint scan looks at: 1e-8 up to M = 1e8 (below
    it float64 sees no area at moderate M), 1e-4 / sqrt(M) beyond (the region of a light tail
    ends near s ~ M^-1/2, that of a Cauchy tail near M^-1/4), never below 1e-150 (s^2 stays a
    normal float)."""
    return max(min(1e-8, 1e-4 / math.sqrt(M)), 1e-150)


def quad_area(g: Link, M: float, wrt: str, *, n=None, seed=0, rtol: float = 1e-10) -> AreaEstimate:
    """``method="quad"``: the slices' lengths l(p_kj), integrated by adaptive Gauss-Kronrod.

    By the symmetry of Lemma 1 both ``wrt`` have the same area; ``n`` and ``seed`` are unused.
    An rtol below the method's rounding floor (_RTOL_FLOOR) is raised to it with a warning.

    Large M: the region shrinks into the corners (p_ik -> 0, p_kj -> 1 and its mirror), to
    slices at s ~ M^-1/2 (logistic) of length ~1/M. The score grid then reaches out to
    p_ik ~ 1e-20/M (:func:`_score_grid`), the scan starts at s ~ 1e-4 M^-1/2 (:func:`_s_low`),
    and the integrand is scaled by 1 / s_max^2 (s_max the largest break) so that it stays a
    normal float where the area itself, ~1/(3 M^2), underflows (M > 1e154): the area is
    then the correctly rounded subnormal or 0, with an error bar of at least the spacing of
    subnormals.
    """
    rtol = qd.floor_rtol(
        vd.check_positive_number("rtol", rtol), _RTOL_FLOOR, "quadrature of method='quad'"
    )
    u_grid = _score_grid(g, M)
    log_m = jnp.asarray(math.log(M))
    n_evals = 0

    def slices(s):
        """Slice lengths l(p_kj), interval counts and rounding of the lengths at p_kj = 1 - s^2."""
        nonlocal n_evals
        lengths, overflow, count, rounding = qd.in_chunks(
            lambda chunk: _slice_lengths(g, chunk, log_m, u_grid),
            s,
            (_SMALL_CHUNK, _SLICE_CHUNK),
            fill=0.5,
        )
        if overflow.any():
            raise RuntimeError(
                f"the sensitivity of link {g.name!r} crosses M = {M} more than {_MAX_ROOTS} "
                "times along one slice; method='quad' does not handle such links, use 'grid'"
            )
        n_evals += int(s.size) * (
            u_grid.shape[0] + 2 * _GOLDEN * _MAX_EXTREMA + _BISECT * _MAX_ROOTS
        )
        return lengths, count, rounding

    # Breakpoints: wherever the slices' sets change shape (an interval appears, vanishes or
    # splits, e.g. the region's edge at p_kj = M/(M+1) for logistic), l has a kink or a
    # square-root singularity. Find them on a scan (geometric below, for the corners, and
    # linear) and narrow each bracket by 65^6 = 7.5e10 (6 rounds of 64 points).
    s_top = math.sqrt(0.5)
    geo = np.geomspace(_s_low(M), s_top, 256)
    scan = np.unique(np.concatenate([geo, np.linspace(0, s_top, 385)[1:]]))
    found, half = qd.find_breaks(
        lambda s: slices(s)[1], scan, rounds=6, points=64, return_half_widths=True
    )
    # Where the area lives: at large M it may sit in a few geometric scan cells (probit at
    # M = 1e100: slices of 1e-102 at s ~ 1e-50, nothing a GK node at s ~ 1e-3 would see).
    # The scan points where l(s) s^2 (the mass per unit of log s) is within 1e-18 of its
    # largest become breaks too, so the quadrature starts on a log-spaced partition there.
    # Only below s = 0.01, where a piece may be many decades wide, and at most _HEAVY of them.
    low = geo[geo < 0.01]
    mass = slices(low)[0] * low * low
    heavy = low[mass >= 1e-18 * mass.max()] if mass.size and mass.max() > 0 else low[:0]
    heavy = heavy[:: -(-heavy.size // _HEAVY)] if heavy.size else heavy
    breaks = np.unique(np.concatenate([[0.0, s_top], found, heavy]))
    p, q = breaks[:-1], breaks[1:]
    _, mid_count, _ = slices(0.5 * (p + q))
    p, q = p[mid_count > 0], q[mid_count > 0]  # pieces where the region has slices
    if p.size == 0:
        # No slice of the scan meets the region: what may hide is below the scan's first point
        # (the strip p_kj > 1 - s_low^2 and its mirror) or between two scan points.
        return AreaEstimate(0.0, 2.0 * _s_low(M) ** 2 + 2.0**-1074, "quad", n_evals)
    scale = float(q.max())  # the integrand is divided by scale^2 (see the docstring)

    # On each piece [p, q], s = p + (q - p)(3 tau^2 - 2 tau^3): ds/dtau vanishes at both ends,
    # which turns a square-root onset there into a smooth function of tau.
    def integrand(tau, p, q, which=0):
        s = p + (q - p) * tau * tau * (3 - 2 * tau)
        out = slices(s)
        return out[which] * (2 * s / scale) * 6 * tau * (1 - tau) * ((q - p) / scale)

    # Each piece starts as four intervals of tau and gets its share of the domain's budget.
    start = np.linspace(0.0, 1.0, 5)
    a0, b0 = np.tile(start[:-1], p.size), np.tile(start[1:], p.size)
    aux = (np.repeat(p, 4), np.repeat(q, 4))
    # What rounding leaves of the area (scaled): no quadrature can resolve below it, so it is
    # the absolute floor of the budget and part of the error bar.
    floor = float(qd.gk_rule(lambda t, p, q: integrand(t, p, q, which=2), a0, b0, aux)[0].sum())
    # Every final interval is bisected once more to check the estimate.
    value, error, _ = qd.adaptive_gk(
        integrand,
        a0,
        b0,
        rtol=rtol,
        atol=max(floor, 1e-300),
        share=np.repeat(q - p, 4) / max(float((q - p).sum()), 1e-300),
        aux=aux,
        max_rounds=60,
        max_evals=_MAX_SLICES,
        verify=True,
        what="area (method='quad')",
    )
    # A break known to within its bracket: the integrand over the bracket is at most its
    # width times the larger of the ends' values (the slices are monotone there).
    ends = np.concatenate([found - half, found + half])
    if ends.size:
        ends = np.clip(ends, 0.0, s_top)
        l_ends = slices(ends)[0]
        f_ends = l_ends * 2 * ends / scale / scale
        error += float(np.sum(2 * half * np.maximum(*np.split(f_ends, 2))))
    # Rounding floor: slice ends are roots of F, which is known to 16 ulps of |log g'| ~ 50.
    error += _QUAD_ROUNDING * abs(value) + floor
    # Point symmetry: the half p_kj < 1/2 has the same area. The area's own rounding to
    # float64 (subnormal when the area is below 2.2e-308) is the last part of the error.
    value, error = 2.0 * value * scale * scale, 2.0 * error * scale * scale
    error += 4 * _EPS * value + 2.0**-1074
    return AreaEstimate(float(value), float(error), "quad", n_evals)
