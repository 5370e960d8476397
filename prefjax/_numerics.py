"""Numerically stable helpers, each with the reason it exists.

Everything here is elementwise, jit/vmap-safe and gradient-safe (no NaN leaks from the
branch that ``jnp.where`` does not select).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

LOG_SQRT_2PI = 0.9189385332046727  # log(sqrt(2 pi))


def safe_where_denominator(cond, x, fill=1.0):
    """``x`` where ``cond`` holds, ``fill`` elsewhere.

    Use it on a denominator that is only meaningful inside ``cond``: ``jnp.where`` evaluates
    both branches, and a 0 in the unused one turns gradients into NaN.
    """
    return jnp.where(cond, x, fill)


@jax.custom_jvp
def logistic(x):
    """sigma(x) = 1 / (1 + exp(-x)) with one ``exp`` and full relative precision in both tails.

    ``exp(-|x|)`` never overflows; for x < 0 the result is ``e / (1 + e)``, which keeps
    relative precision down to the smallest subnormal instead of cancelling to 0.
    """
    e = jnp.exp(-jnp.abs(x))
    return jnp.where(x >= 0, 1.0, e) / (1.0 + e)


@logistic.defjvp
def _logistic_jvp(primals, tangents):
    (x,), (t,) = primals, tangents
    e = jnp.exp(-jnp.abs(x))
    one_plus = 1.0 + e
    y = jnp.where(x >= 0, 1.0, e) / one_plus
    # sigma'(x) = e / (1 + e)^2 with e = exp(-|x|): no 1 - sigma(x) cancellation near 1.
    return y, t * (e / (one_plus * one_plus))


def logistic_log_derivative(x):
    """log sigma'(x) = -|x| - 2 log1p(exp(-|x|)); finite for every finite x."""
    a = jnp.abs(x)
    return -a - 2.0 * jnp.log1p(jnp.exp(-a))


@jax.custom_jvp
def logit(p):
    """log(q) - log1p(-q) with q = min(p, 1 - p), negated for p > 1/2.

    1 - p is exact in float64 for p >= 1/2 (Sterbenz), so the result is accurate at
    p = 1e-12 and at p = 1 - 1e-12, and logit(1 - p) = -logit(p) holds exactly (Lemma 4).
    """
    q = jnp.minimum(p, 1.0 - p)
    x = jnp.log(q) - jnp.log1p(-q)
    return jnp.where(p > 0.5, -x, x)


@logit.defjvp
def _logit_jvp(primals, tangents):
    (p,), (t,) = primals, tangents
    # d logit / dp = 1 / (p (1 - p)): a rational function, no transcendental needed.
    return logit(p), t / (p * (1.0 - p))


def normal_log_pdf(x):
    """log phi(x) = -x^2/2 - log sqrt(2 pi)."""
    return -0.5 * x * x - LOG_SQRT_2PI


def normal_cdf(x):
    """Phi(x) = erfc(-x / sqrt 2) / 2: relative precision in the lower tail (erfc is accurate
    for large arguments) and one erfc, cheaper than ``jax.scipy.special.ndtr``'s two branches."""
    return 0.5 * jax.lax.erfc(-x * 0.7071067811865476)


def normal_pdf(x):
    """phi(x); underflows to 0 only for |x| > 38.6, where phi < 1e-323."""
    return jnp.exp(normal_log_pdf(x))


def cauchy_cdf(x):
    """1/2 + arctan(x)/pi, evaluated so that the lower tail keeps relative precision.

    For x < -1 the textbook form cancels (1/2 - 0.4999...); there we use the identity
    1/2 + arctan(x)/pi = arctan(-1/x)/pi, exact in exact arithmetic and free of cancellation.
    """
    big = jnp.abs(x) > 1.0
    inv = 1.0 / safe_where_denominator(big, x)
    tail = jnp.arctan(-inv) / jnp.pi  # lower tail for x < -1 (positive, small)
    lower = tail
    upper = 1.0 + tail  # x > 1: 1 - arctan(1/x)/pi; 1 - tiny is as good as float64 allows
    core = 0.5 + jnp.arctan(x) / jnp.pi
    return jnp.where(big, jnp.where(x < 0, lower, upper), core)


def cauchy_quantile(p):
    """tan(pi (p - 1/2)), evaluated from min(p, 1 - p) so that both tails are accurate.

    tan(pi (p - 1/2)) for p = 1 - 1e-12 loses four digits (pi (p - 1/2) is rounded next to
    pi/2); with q = 1 - p (exact) the same value is 1 / tan(pi q), which is accurate.
    """
    q = jnp.minimum(p, 1.0 - p)
    tail = q < 0.25
    t = jnp.tan(jnp.pi * q)
    tail_value = 1.0 / safe_where_denominator(tail, t)
    tail_value = jnp.where(p < 0.5, -tail_value, tail_value)
    core = jnp.tan(jnp.pi * (p - 0.5))  # p - 1/2 is exact for p in [1/4, 3/4]
    return jnp.where(tail, tail_value, core)


def cauchy_log_pdf(x):
    """log(1 / (pi (1 + x^2))), without overflow of x^2 for |x| > 1e154."""
    a = jnp.abs(x)
    big = a > 1.0
    inv = 1.0 / safe_where_denominator(big, a)
    large = -jnp.log(jnp.pi) - 2.0 * jnp.log(jnp.where(big, a, 1.0)) - jnp.log1p(inv * inv)
    small = -jnp.log(jnp.pi) - jnp.log1p(x * x)
    return jnp.where(big, large, small)


def log_clip(x):
    """log|x| clipped to [-700, 700]: finite, so secant steps never see inf - inf."""
    return jnp.clip(jnp.log(jnp.abs(x)), -700.0, 700.0)


def smallest(x, k: int):
    """Column indices of the k smallest entries of each row of x (m, n), smallest first.

    k passes of argmin (ties: the lower index first, as ``lax.top_k``): on the CPU,
    ``lax.top_k`` and ``argsort`` sort whole rows and cost ~50x more. Once a row has fewer
    than k finite entries, the remaining picks are indices of +inf entries (possibly
    repeated); callers mask them by the value they index.
    """
    rows = jnp.arange(x.shape[0])
    picks = []
    for _ in range(k):
        j = jnp.argmin(x, axis=1)
        picks.append(j)
        x = x.at[rows, j].set(jnp.inf)
    return jnp.stack(picks, axis=1)
