"""Quadrature, one copy for every area: rules, the adaptive driver, breakpoints, chunking.

* Rules: Gauss-Legendre nodes and weights and their integration matrices (the random-utility
  recursion), Gauss-Kronrod 7/15 (QUADPACK's qk15).
* :func:`adaptive_gk`: vectorized adaptive Gauss-Kronrod on the host (it decides which
  intervals to split; the integrand is one batched JAX call per round), with an absolute
  floor under the relative error budget, per-piece budget shares and an optional check by
  one more bisection.
* :func:`find_breaks`: where an integrand's shape changes (a count of boundary crossings
  changes), narrowed by sampling, so that the driver gets its kinks as breakpoints.
* :func:`in_chunks`: a batched JAX call in fixed-size, padded chunks (few compiled shapes).
* :func:`bracketed_root` and :func:`parabolic_max`: solvers that run under ``jax.jit`` /
  ``jax.vmap`` (the boundaries inside the integrands).

Used by the pairwise area (``_area_quad``), the paper's K-tuple view
(:func:`prefjax.plackett_luce.numeric_region_area`) and the score view
(:func:`prefjax.score_view.implied_area`).
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from numpy.polynomial import legendre as npleg


@functools.cache
def gauss_legendre(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Nodes and weights of the n-point Gauss-Legendre rule on [-1, 1] (float64, NumPy)."""
    return npleg.leggauss(n)


@functools.cache
def integration_matrix(n: int) -> np.ndarray:
    """Q with int_{-1}^{xi_m} f(t) dt ~= sum_k Q[m, k] f(xi_k) on the Gauss-Legendre nodes xi.

    Row m integrates the degree n - 1 interpolant of f through the nodes from -1 to xi_m, so a
    cumulative integral inside one cell is exact for polynomials of degree n - 1 and the
    recursion of the random-utility model keeps order n per cell (the last row, m = n, would be
    the weights). Built from Legendre series: interpolant coefficients V^-1 f, then ``legint``.
    """
    xi, _ = gauss_legendre(n)
    vander = npleg.legvander(xi, n - 1)  # (n, n): P_k(xi_m)
    coef = np.linalg.inv(vander)  # column k: Legendre coefficients of the k-th cardinal
    integrated = npleg.legint(coef, lbnd=-1.0)  # (n + 1, n): antiderivatives, 0 at -1
    return npleg.legval(xi, integrated).T  # (n, n)


# Gauss-Kronrod 7/15 (QUADPACK's qk15): Kronrod nodes on [-1, 1], their weights, and the
# weights of the embedded 7-point Gauss rule (zero on the Kronrod-only nodes).
_XGK = np.array(
    [
        0.991455371120812639206854697526329,
        0.949107912342758524526189684047851,
        0.864864423359769072789712788640926,
        0.741531185599394439863864773280788,
        0.586087235467691130294144845693013,
        0.405845151377397166906606412076961,
        0.207784955007898467600689403773245,
        0.000000000000000000000000000000000,
    ]
)
_WGK = np.array(
    [
        0.022935322010529224963732008058970,
        0.063092092629978553290700663189204,
        0.104790010322250183839876322541518,
        0.140653259715525918745189590510238,
        0.169004726639267902826583426598550,
        0.190350578064785409913256402421014,
        0.204432940075298892414161999234649,
        0.209482141084727828012999174891714,
    ]
)
_WG = np.array(
    [
        0.129484966168869693270611432679082,
        0.279705391489276667901467771423780,
        0.381830050505118944950369775488975,
        0.417959183673469387755102040816327,
    ]
)
GK_NODES = np.concatenate([-_XGK[:-1], _XGK[::-1]])  # 15 nodes, ascending
GK_WEIGHTS = np.concatenate([_WGK[:-1], _WGK[::-1]])
_G_FULL = np.zeros(8)
_G_FULL[1::2] = _WG  # the Gauss nodes are the odd-indexed Kronrod nodes
G_WEIGHTS = np.concatenate([_G_FULL[:-1], _G_FULL[::-1]])


def gk_rule(f: Callable, a: np.ndarray, b: np.ndarray, aux=()) -> tuple[np.ndarray, np.ndarray]:
    """K15 and |K15 - G7| on each interval [a_i, b_i], all in one call ``f(x, *aux)``.

    ``aux``: arrays with one entry per interval, handed to ``f`` repeated for each of its
    15 nodes (e.g. the piece an interval belongs to).
    """
    half, mid = 0.5 * (b - a), 0.5 * (b + a)
    x = (mid[:, None] + half[:, None] * GK_NODES[None, :]).ravel()
    fx = np.asarray(f(x, *(np.repeat(t, 15) for t in aux)), dtype=np.float64).reshape(-1, 15)
    k15 = half * (fx @ GK_WEIGHTS)
    return k15, np.abs(k15 - half * (fx @ G_WEIGHTS))


MAX_INTERVALS = 4096  # open intervals per round of adaptive_gk (each costs 15 points)
MAX_EVALS = 200_000  # points evaluated by one adaptive_gk call (the verification included)
RTOL_FLOOR_F64 = 8 * 2.0**-52  # relative error a float64 sum of GK terms can be asked for


def floor_rtol(rtol: float, floor: float, what: str) -> float:
    """``rtol``, raised to ``floor`` (what the dtype and the method can reach) with a warning.

    Asking adaptive quadrature for less than its rounding floor cannot succeed: the error
    estimate stops shrinking at the noise of the integrand, and the loop would bisect noise.
    """
    if rtol < floor:
        warnings.warn(
            f"rtol = {rtol:g} is below what the {what} can reach in float64 ({floor:.2g}: "
            "the rounding floor of the integrand and its error bar); using rtol = "
            f"{floor:.2g}",
            RuntimeWarning,
            stacklevel=3,
        )
        return float(floor)
    return float(rtol)


def adaptive_gk(
    f: Callable,
    a,
    b,
    *,
    rtol: float,
    atol: float = 0.0,
    share=None,
    aux=(),
    max_rounds: int = 40,
    max_intervals: int = MAX_INTERVALS,
    max_evals: int = MAX_EVALS,
    verify: bool = False,
    what: str = "area",
) -> tuple[float, float, int]:
    """The sum of int f over the intervals [a_i, b_i] by vectorized adaptive Gauss-Kronrod 7/15.

    Every round evaluates all open intervals in one call of ``f`` (a NumPy array of points
    in, values out; ``f(x, *aux)`` with ``aux`` as in :func:`gk_rule`) and stops once the
    summed |K15 - G7| is within the budget max(rtol * |total|, atol): ``atol`` is the floor
    for integrals that may vanish. Otherwise it accepts the intervals whose error is within
    half their share of the budget, 0.5 * budget * share * (b - a), and bisects the rest
    (halves inherit ``aux`` and ``share``). ``share`` is each starting interval's share per
    unit length; the default, 1 / (total width), shares the budget in proportion to width.
    Callers pass their kinks as interval ends (see :func:`find_breaks`). The estimate
    |K15 - G7| is pessimistic for smooth integrands (K15 is far more accurate than G7) and
    still honest near square-root end point behaviour, where bisection converges
    geometrically. After ``max_rounds`` rounds, or once the next round would hold more than
    ``max_intervals`` open intervals or take the points evaluated past ``max_evals``, the open
    intervals are accepted as they are, with a warning: the value is the estimate so far and
    the error is the summed |K15 - G7| of all intervals (an honest estimate, not the target),
    so no integrand (noisy, or asked for a precision it cannot reach) makes the loop run on.

    ``verify=True`` checks the estimate: every final interval is bisected once more, the
    refined sum is the value, and its change is the error if that exceeds the Kronrod
    estimate (|K15 - G7| can understate the error of an integrand with a feature the nodes
    miss).

    Returns:
        (value, error, number of points evaluated).
    """
    open_a, open_b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    open_aux = [np.asarray(t) for t in aux]
    if share is None:
        share = 1.0 / float(np.sum(open_b - open_a))
    open_share = np.broadcast_to(np.asarray(share, dtype=np.float64), open_a.shape)
    value, error, n_evals, n_done = 0.0, 0.0, 0, 0
    done: list[list[np.ndarray]] = []  # the accepted intervals (a, b, *aux) of every round
    for round_ in range(max_rounds):
        if open_a.size == 0:
            break
        k15, err = gk_rule(f, open_a, open_b, open_aux)
        n_evals += 15 * open_a.size
        total = value + k15.sum()
        budget = max(rtol * abs(total), atol)
        accept = err <= 0.5 * budget * open_share * (open_b - open_a)
        converged = error + err.sum() <= budget
        n_next = 2 * int(np.count_nonzero(~accept))
        capped = (
            round_ == max_rounds - 1
            or n_next > max_intervals
            or n_evals + 15 * n_next + (30 * (n_done + n_next) if verify else 0) > max_evals
        )
        if not converged and capped:
            warnings.warn(
                f"adaptive quadrature of the {what} stopped after {round_ + 1} rounds "
                f"({n_evals} points; caps: {max_rounds} rounds, {max_intervals} open "
                f"intervals, {max_evals} points) short of rtol = {rtol:g}: the value is "
                f"returned with its estimated error {error + float(err.sum()):.3g} "
                f"(relative {(error + float(err.sum())) / max(abs(total), 1e-300):.3g})",
                RuntimeWarning,
                stacklevel=3,
            )
        if converged or capped:
            accept[:] = True
        value += k15[accept].sum()
        error += err[accept].sum()
        n_done += int(np.count_nonzero(accept))
        done.append([t[accept] for t in (open_a, open_b, *open_aux)])
        keep = ~accept
        rest_a, rest_b = open_a[keep], open_b[keep]
        mids = 0.5 * (rest_a + rest_b)
        open_a, open_b = np.concatenate([rest_a, mids]), np.concatenate([mids, rest_b])
        open_aux = [np.tile(t[keep], 2) for t in open_aux]
        open_share = np.tile(open_share[keep], 2)
    if verify and done:
        fa, fb, *faux = (np.concatenate(parts) for parts in zip(*done, strict=True))
        mids = 0.5 * (fa + fb)
        k15, err = gk_rule(
            f, np.concatenate([fa, mids]), np.concatenate([mids, fb]), [np.tile(t, 2) for t in faux]
        )
        n_evals += 30 * fa.size
        refined = k15.sum()
        error = max(err.sum(), abs(refined - value))
        value = refined
    return float(value), float(error), n_evals


def find_breaks(
    count: Callable,
    scan,
    *,
    rounds: int,
    points: int = 64,
    chunk: int | None = None,
    tol: float | None = None,
    return_half_widths: bool = False,
):
    """Where the integer-valued ``count(x)`` changes along the sorted points ``scan``.

    An integrand whose slices change shape (an interval of a region is born, vanishes or
    splits: a fold of the region's boundary) has a kink or a square-root point there, which
    Gauss-Kronrod's error estimate can miss inside an interval but the adaptive bisection
    resolves at an interval's end. Every pair of neighbours of ``scan`` whose counts differ
    brackets a change; each round samples ``points`` interior points of every bracket (or,
    with ``chunk``, chunk // brackets, at least 2: one call of at most ``chunk`` points per
    round) and keeps the first sub-interval where the count leaves the bracket's left-end
    value. Stops after ``rounds`` rounds, or once every bracket is narrower than ``tol``.

    Returns:
        The brackets' midpoints, in scan order (and, with ``return_half_widths``, their
        half-widths: each change lies within midpoint +- half-width).
    """
    scan = np.asarray(scan)
    counts = count(scan)
    changes = np.nonzero(counts[:-1] != counts[1:])[0]
    lo, hi = scan[changes], scan[changes + 1]
    c_lo = counts[changes]
    if lo.size:
        per = points if chunk is None else max(2, chunk // lo.size)
        t = np.linspace(0.0, 1.0, per + 2)[1:-1]
        rows = np.arange(lo.size)
        for _ in range(rounds):
            pts = lo[:, None] + (hi - lo)[:, None] * t[None, :]
            c = count(pts.ravel()).reshape(pts.shape)
            # The first sample whose count differs from the left end's: the new bracket.
            differs = c != c_lo[:, None]
            first = np.where(differs.any(axis=1), differs.argmax(axis=1), per)
            new_hi = np.where(first < per, pts[rows, np.minimum(first, per - 1)], hi)
            new_lo = np.where(first > 0, pts[rows, np.maximum(first - 1, 0)], lo)
            lo, hi = new_lo, new_hi
            if tol is not None and np.all(hi - lo <= tol):
                break
    if return_half_widths:
        return 0.5 * (lo + hi), 0.5 * (hi - lo)
    return 0.5 * (lo + hi)


def in_chunks(f: Callable, x, sizes: tuple[int, ...], fill: float):
    """``f`` over the points ``x`` in fixed-size chunks, padded with ``fill``, as NumPy arrays.

    jit compiles one program per shape: sending a round's points in chunks of one of a few
    ``sizes`` (the smallest that holds all of ``x``, else the largest) keeps the number of
    compilations small whatever the round's size. ``f`` returns an array or a tuple of
    arrays with one entry per point; the padding is cut off again. All chunks are dispatched
    before the first is read back.
    """
    x = np.asarray(x)
    size = next((s for s in sorted(sizes) if x.size <= s), max(sizes))
    parts = []
    for start in range(0, max(x.size, 1), size):
        part = x[start : start + size]
        parts.append(f(jnp.asarray(np.pad(part, (0, size - part.size), constant_values=fill))))
    single = not isinstance(parts[0], tuple | list)
    columns = zip(*([p] if single else p for p in parts), strict=True)
    out = tuple(np.concatenate([np.asarray(c) for c in col])[: x.size] for col in columns)
    return out[0] if single else out


_SECANT_STEPS = 80


def bracketed_root(phi: Callable, lo, hi, phi_lo, phi_hi):
    """A root of phi in [lo, hi] where phi(lo) and phi(hi) differ in sign (elementwise).

    Illinois-modified regula falsi with a bisection fallback whenever the secant step leaves the
    middle 98% of the bracket: superlinear on smooth functions, never leaves the bracket, and
    needs no derivative (phi is itself a derivative here; a Newton step would need a second
    one). Stops when every bracket is within 16 ulps (of max(|lo|, |hi|, 1)).
    """
    eps = jnp.finfo(jnp.result_type(lo)).eps

    def cond(state):
        lo, hi, _, _, _, it = state
        scale = jnp.maximum(jnp.abs(lo), jnp.abs(hi)) + 1.0
        return jnp.any(hi - lo > 16 * eps * scale) & (it < _SECANT_STEPS)

    def body(state):
        lo, hi, f_lo, f_hi, side, it = state
        t = f_lo / (f_lo - f_hi)
        t = jnp.where(jnp.isfinite(t) & (t > 0) & (t < 1), t, 0.5)
        x = lo + t * (hi - lo)
        fx = phi(x)
        same_lo = jnp.sign(fx) == jnp.sign(f_lo)
        # Illinois: halve the value kept at the end point that stays put twice in a row.
        new_lo = jnp.where(same_lo, x, lo)
        new_hi = jnp.where(same_lo, hi, x)
        new_f_lo = jnp.where(same_lo, fx, jnp.where(side == -1, 0.5 * f_lo, f_lo))
        new_f_hi = jnp.where(same_lo, jnp.where(side == 1, 0.5 * f_hi, f_hi), fx)
        new_side = jnp.where(same_lo, 1, -1).astype(side.dtype)
        hit = fx == 0
        new_lo = jnp.where(hit, x, new_lo)
        new_hi = jnp.where(hit, x, new_hi)
        return new_lo, new_hi, new_f_lo, new_f_hi, new_side, it + 1

    side = jnp.zeros(jnp.shape(lo), jnp.int32)
    lo, hi, f_lo, f_hi, _, _ = jax.lax.while_loop(cond, body, (lo, hi, phi_lo, phi_hi, side, 0))
    # The end point with the smaller |phi| (both are within a few ulps of the root).
    return jnp.where(jnp.abs(f_lo) <= jnp.abs(f_hi), lo, hi)


_PARABOLA_STEPS = 4


def parabolic_max(f: Callable, x0, x1, x2, f0, f1, f2):
    """(argmax, max) of f near x1, given f1 >= f0, f2 at x0 < x1 < x2 (elementwise).

    Successive parabolic interpolation: the vertex of the parabola through the three points
    replaces one of them so that the middle point stays the best. Near a smooth maximum it
    converges superlinearly, so 4 steps pin the maximum's value to far below what decides
    whether it crosses 0 (a region missed by less than the error has an area of order its
    cube). One evaluation of f per step.
    """

    def body(_, state):
        x0, x1, x2, f0, f1, f2 = state
        a, b = (x1 - x0) * (f1 - f2), (x1 - x2) * (f1 - f0)
        den = a - b
        step = 0.5 * ((x1 - x0) * a - (x1 - x2) * b) / jnp.where(den != 0, den, 1.0)
        xv = jnp.where(den != 0, x1 - step, 0.5 * (x0 + x1))
        # Keep the vertex strictly inside and away from x1 (else the parabola degenerates).
        tiny = 1e-3 * (x2 - x0)
        xv = jnp.clip(xv, x0 + tiny, x2 - tiny)
        xv = jnp.where(jnp.abs(xv - x1) < tiny, x1 + jnp.where(x1 - x0 > x2 - x1, -tiny, tiny), xv)
        fv = f(xv)
        left = xv < x1
        better = fv >= f1
        # left & better: (x0, xv, x1); left & worse: (xv, x1, x2);
        # right & better: (x1, xv, x2); right & worse: (x0, x1, xv).
        n0 = jnp.where(left, jnp.where(better, x0, xv), jnp.where(better, x1, x0))
        n1 = jnp.where(better, xv, x1)
        n2 = jnp.where(left, jnp.where(better, x1, x2), jnp.where(better, x2, xv))
        g0 = jnp.where(left, jnp.where(better, f0, fv), jnp.where(better, f1, f0))
        g1 = jnp.where(better, fv, f1)
        g2 = jnp.where(left, jnp.where(better, f1, f2), jnp.where(better, f2, fv))
        return n0, n1, n2, g0, g1, g2

    state = jax.lax.fori_loop(0, _PARABOLA_STEPS, body, (x0, x1, x2, f0, f1, f2))
    return state[1], state[4]
