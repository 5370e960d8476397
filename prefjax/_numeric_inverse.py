"""g^-1 for a link given only by g: bracketing plus safeguarded Newton, in the lower tail."""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

Array = jax.Array

_MAX_BRACKET_STEPS = 600  # 4**600 overflows float64: the bracket always closes before this
_MAX_NEWTON_STEPS = 100


def value_and_derivative(g: Callable, x):
    """(g(x), g'(x)) in one forward-mode pass, for an elementwise g."""
    return jax.jvp(g, (x,), (jnp.ones_like(x),))


def numeric_inverse(g: Callable, p) -> Array:
    """Solve g(x) = p elementwise by bracketing plus safeguarded Newton.

    By symmetry (Assumption 4) only the lower tail is solved: with q = min(p, 1 - p) we find
    y >= 0 with g(-y) = q, then return -y for p <= 1/2 and y otherwise. Working in the lower
    tail keeps relative precision at p = 1 - 1e-12, where g(x) itself rounds to 1. Newton runs
    on log g(-y) - log q, which is concave for log-concave tails and well scaled for q = 1e-300;
    a step that leaves the bracket is replaced by bisection, so it converges for any
    increasing g. Accurate to a few ulps in float64 (relative to max(|x|, 1): near p = 1/2,
    g's own rounding limits how well any inverse can resolve x). Values outside (0, 1) give NaN, except
    0 and 1, which give -inf and +inf (the limits of Assumption 3).
    """
    p = jnp.asarray(p)
    dtype = p.dtype
    eps = jnp.finfo(dtype).eps
    tiny = jnp.finfo(dtype).tiny
    q_raw = jnp.minimum(p, 1.0 - p)
    valid = (q_raw > 0) & (p < 1)  # NaN compares False
    q = jnp.where(valid, q_raw, 0.25)
    log_q = jnp.log(q)

    def lower(y):
        return g(-y)

    # 1. Bracket: g(-lo) >= q > g(-hi); grow hi geometrically.
    def bracket_cond(state):
        _, _, active, it = state
        return jnp.any(active) & (it < _MAX_BRACKET_STEPS)

    def bracket_body(state):
        lo, hi, active, it = state
        still = active & (lower(hi) > q) & jnp.isfinite(hi)
        lo = jnp.where(still, hi, lo)
        hi = jnp.where(still, hi * 4.0, hi)
        return lo, hi, still, it + 1

    zeros = jnp.zeros_like(q)
    lo, hi, _, _ = jax.lax.while_loop(
        bracket_cond, bracket_body, (zeros, jnp.ones_like(q), jnp.ones(q.shape, bool), 0)
    )

    # 2. Safeguarded Newton on f(y) = log g(-y) - log q, decreasing in y.
    def newton_cond(state):
        _, _, _, done, it = state
        return jnp.any(~done) & (it < _MAX_NEWTON_STEPS)

    def newton_body(state):
        lo, hi, y, done, it = state
        gv, dgv = value_and_derivative(g, -y)
        f = jnp.log(gv) - log_q
        lo = jnp.where(f > 0, y, lo)
        hi = jnp.where(f < 0, y, hi)
        # Newton: y - f / f'(y) with f'(y) = -g'(-y) / g(-y).
        y_newton = y + f * gv / dgv
        outside = ~jnp.isfinite(y_newton) | (y_newton <= lo) | (y_newton >= hi)
        y_next = jnp.where(outside, 0.5 * (lo + hi), y_newton)
        scale = jnp.maximum(jnp.abs(y), tiny)
        converged = (
            (f == 0) | (jnp.abs(y_next - y) <= 2 * eps * scale) | (hi - lo <= 2 * eps * scale)
        )
        y_next = jnp.where(done | (f == 0), y, y_next)
        return lo, hi, y_next, done | converged, it + 1

    _, _, y, _, _ = jax.lax.while_loop(newton_cond, newton_body, (lo, hi, hi, ~valid, 0))
    y = jnp.where(q == 0.5, 0.0, y)  # g(0) = 1/2 by symmetry: exact, not an iterate
    x = jnp.where(p <= 0.5, -y, y)
    x = jnp.where(valid, x, jnp.nan)
    x = jnp.where(p == 0, -jnp.inf, x)
    return jnp.where(p == 1, jnp.inf, x)
