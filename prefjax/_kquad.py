"""Quadrature rules and root finding for the K-tuple region areas.

Gauss-Legendre rules and their integration matrices (for the random-utility recursion), a
vectorized adaptive Gauss-Kronrod driver (host side: it decides which intervals to split, the
integrand is one batched JAX call per round) and a bracketed secant solver that runs under
``jax.jit`` / ``jax.vmap``.
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


def adaptive_gk(
    f: Callable[[np.ndarray], np.ndarray],
    breakpoints,
    *,
    rtol: float,
    atol: float = 0.0,
    max_rounds: int = 40,
    what: str = "area",
) -> tuple[float, float, int]:
    """int f over [breakpoints[0], breakpoints[-1]] by vectorized adaptive Gauss-Kronrod 7/15.

    Every round evaluates all open intervals in one call of ``f`` (a NumPy array of points in,
    values out) and splits those whose |K15 - G7| exceeds their share of the budget
    max(rtol * |total|, atol), shared in proportion to width. Interior breakpoints are where
    the caller knows the integrand has a kink. The error estimate |K15 - G7| is pessimistic for
    smooth integrands (K15 is far more accurate than G7) and still honest near square-root end
    point behaviour, where the interval bisection converges geometrically.

    Returns:
        (value, error, number of points evaluated).
    """
    edges = np.asarray(breakpoints, dtype=np.float64)
    open_a, open_b = edges[:-1], edges[1:]
    width = float(edges[-1] - edges[0])
    value, error, n_evals = 0.0, 0.0, 0
    for _ in range(max_rounds):
        half = 0.5 * (open_b - open_a)
        mid = 0.5 * (open_b + open_a)
        x = (mid[:, None] + half[:, None] * GK_NODES[None, :]).ravel()
        fx = np.asarray(f(x), dtype=np.float64).reshape(-1, 15)
        n_evals += x.size
        k15 = half * (fx @ GK_WEIGHTS)
        g7 = half * (fx @ G_WEIGHTS)
        err = np.abs(k15 - g7)
        total = value + k15.sum()
        budget = max(rtol * abs(total), atol)
        if error + err.sum() <= budget:
            return float(total), float(error + err.sum()), n_evals
        accept = err <= 0.5 * budget * (open_b - open_a) / width
        value += k15[accept].sum()
        error += err[accept].sum()
        a, b = open_a[~accept], open_b[~accept]
        m = 0.5 * (a + b)
        open_a, open_b = np.concatenate([a, m]), np.concatenate([m, b])
    warnings.warn(
        f"adaptive quadrature of the {what} stopped after {max_rounds} rounds; the error "
        "estimate is returned as computed",
        RuntimeWarning,
        stacklevel=3,
    )
    return float(total), float(error + err.sum()), n_evals


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


def log_clip(x):
    """log|x| clipped to [-700, 700]: finite, so secant steps never see inf - inf."""
    return jnp.clip(jnp.log(jnp.abs(x)), -700.0, 700.0)
