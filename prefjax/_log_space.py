"""Lemma 1 and log g' computed in log space, finite where g' under- or overflows.

The default compose of a link without parameters (:func:`log_space_compose`: Eq. (2)'s
partials as exp of sums of logs, exact at b = 1/2, finite for heavy tails down to 1e-300) and
log g' for a link given by g and g' (:func:`log_derivative_from`: a central difference of
log g where g' underflows).
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp


def _dlog(log_derivative: Callable, x):
    """(log g')'(x) by forward-mode autodiff, elementwise."""
    return jax.jvp(log_derivative, (x,), (jnp.ones_like(x),))[1]


def _signed_exp(sign, log_abs):
    """sign * exp(log_abs), 0 where sign is 0 (even where log_abs is +-inf or NaN)."""
    return jnp.where(sign == 0, 0.0, sign * jnp.exp(jnp.where(sign == 0, 0.0, log_abs)))


_LOG_FD_STEP = 2.0**-14  # relative step of the log-space central difference below


def log_derivative_from(fn: Callable, derivative: Callable) -> Callable:
    """log g'(x) for a link given by g and g': log(g'(x)), and where g'(x) underflows (a heavy
    tail far out: a Student-t(3) g' at x = -1e100 is 1e-400) a central difference of log g,
    log g'(x) = log g(x) + log((log g)'(x)), in the lower tail (g' is even, Assumption 4).

    The difference has step h = 2^-14 |x|: its truncation is ~1e-8 relative in g' for power
    tails and its rounding ~eps |log g| / (h (log g)') ~ 1e-9: finite and close where
    log(g') is -inf.
    """

    @jax.custom_jvp
    def fallback(x):
        y = -jnp.abs(x)
        h = _LOG_FD_STEP * jnp.maximum(jnp.abs(y), 1.0)
        # One-sided towards 0 where g(y - h) underflows; -inf where g(y) itself does.
        lo = jnp.where(fn(y - h) > 0, y - h, y)
        slope = (jnp.log(fn(y + h)) - jnp.log(fn(lo))) / (y + h - lo)
        gy = fn(y)
        out = jnp.where(gy > 0, jnp.log(jnp.where(gy > 0, gy, 1.0)) + jnp.log(slope), -jnp.inf)
        return jnp.where(jnp.isnan(out), -jnp.inf, out)

    @fallback.defjvp
    def _fallback_jvp(primals, tangents):
        # Its derivative (L', for the Hessian) by the same central difference: autodiff would
        # go through g' (underflowed: 0) and lose (log g)' from the slope.
        (x,), (t,) = primals, tangents
        h = _LOG_FD_STEP * jnp.maximum(jnp.abs(x), 1.0)
        slope = (fallback(x + h) - fallback(x - h)) / (2.0 * h)
        return fallback(x), t * jnp.where(jnp.isfinite(slope), slope, 0.0)

    def log_derivative(x):
        direct = jnp.log(derivative(x))
        ok = jnp.isfinite(direct) & (direct > -700.0)
        # The difference costs three more g evaluations: only when some entry needs it.
        return jax.lax.cond(jnp.all(ok), lambda: direct, lambda: jnp.where(ok, direct, fallback(x)))

    return log_derivative


def log_space_compose(
    fn: Callable, inverse: Callable, log_derivative: Callable, derivative: Callable
) -> Callable:
    """Lemma 1, g(g^-1(a) + g^-1(b)), with its first and second derivatives in log space.

    The chain rule multiplies g'(x_ij) by (g^-1)'(a) = 1 / g'(x_a): for a heavy tail both
    factors leave float64 (cauchit at a = 1e-160: g'(x_a) = 3e-321 and 1/g'(x_a) = inf), and
    their product, Eq. (2), is NaN where it is ~1. Here the partials are
    exp(log g'(x_ij) - log g'(x_a)) and their own derivatives (the Hessian)
    d/da = r (L'(x_ij) - L'(x_a)) / g'(x_a), d/db = r L'(x_ij) / g'(x_b) (L = log g'),
    each one exp of a sum of logs, exact where L'(x_ij) - L'(x_a) = 0 (b = 1/2). Where both
    g' are normal floats the partial itself is their plain quotient (2 ulps; the exp of a
    difference of logs ~700 would cost eps * 700).
    """
    normal = 2.0**-1000  # g' above this: the quotient neither under- nor overflows

    def parts(a, b):
        xa, xb = inverse(a), inverse(b)
        x = xa + xb
        return xa, xb, x, log_derivative(x) - log_derivative(xa)

    @jax.custom_jvp
    def ratio(a, b):
        """dp_ij / da = g'(x_a + x_b) / g'(x_a)."""
        xa, xb, x, log_r = parts(a, b)
        da, dx = derivative(xa), derivative(x)
        plain = (da > normal) & (dx > normal)
        quotient = dx / jnp.where(plain, da, 1.0)
        # x_b = 0: exactly 1, even where both g' underflow. A log g'(x_ij) of -inf (a custom
        # g that itself underflows there) says nothing of the partial's size: NaN, never a
        # silent 0 (prefjax.sensitivity turns it into an error naming the input).
        lost = ~jnp.isfinite(log_derivative(x)) & jnp.isfinite(log_derivative(xa))
        logs = jnp.where(lost, jnp.nan, jnp.exp(log_r))
        return jnp.where(xb == 0, 1.0, jnp.where(plain, quotient, logs))

    @ratio.defjvp
    def _ratio_jvp(primals, tangents):
        (a, b), (ta, tb) = primals, tangents
        xa, xb, x, log_r = parts(a, b)
        r = ratio(a, b)
        log_r = jnp.where(xb == 0, 0.0, log_r)
        dl_x, dl_a = _dlog(log_derivative, x), _dlog(log_derivative, xa)
        diff = jnp.where(xb == 0, 0.0, dl_x - dl_a)
        d_a = _signed_exp(jnp.sign(diff), log_r + jnp.log(jnp.abs(diff)) - log_derivative(xa))
        d_b = _signed_exp(jnp.sign(dl_x), log_r + jnp.log(jnp.abs(dl_x)) - log_derivative(xb))
        return r, ta * d_a + tb * d_b

    @jax.custom_jvp
    def compose(a, b):
        return fn(inverse(a) + inverse(b))

    @compose.defjvp
    def _compose_jvp(primals, tangents):
        (a, b), (ta, tb) = primals, tangents
        return compose(a, b), ta * ratio(a, b) + tb * ratio(b, a)

    return compose
