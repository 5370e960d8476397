"""Student's t distribution function, differentiable in both x and the degrees of freedom.

``jax.scipy.special.betainc`` has no derivative in its shape parameters, which the fitted
link family :data:`prefjax.student_t` needs (d/d nu of the likelihood). Here the regularised
incomplete beta function is the continued fraction of Numerical Recipes (Section 6.4,
modified Lentz) run for a fixed number of terms: plain ``jax.numpy`` arithmetic, so forward
and reverse autodiff go through it in x and in nu alike.

For x <= 0, F(x; nu) = I_z(nu / 2, 1 / 2) / 2 with z = nu / (nu + x^2); the fraction
converges fast for z < (a + 1) / (a + b + 2), and otherwise the complement
F = 1/2 - I_{1 - z}(1 / 2, nu / 2) / 2 is used (then F is near 1/2, no tail precision is at
stake). The lower tail is computed directly, so F keeps relative precision far from 0, and
F(x) = 1 - F(-x) above 0 (Assumption 4).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.scipy import special as jsp_special

#: Terms of the continued fraction: converges to ~1e-15 for nu <= 1000 (tests compare
#: scipy.stats.t at nu from 0.3 to 1000), O(sqrt(nu)) terms being needed near the switch.
CF_TERMS = 96


def _betacf(a, b, x):
    """The continued fraction of I_x(a, b) (Numerical Recipes' betacf), CF_TERMS terms."""
    x = jnp.asarray(x)
    tiny = jnp.finfo(x.dtype).tiny * 1e10

    def fix(v):
        return jnp.where(jnp.abs(v) < tiny, tiny, v)

    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c = jnp.ones_like(x)
    d = 1.0 / fix(1.0 - qab * x / qap)
    h = d

    def body(m, state):
        c, d, h = state
        m = m.astype(x.dtype) + 1.0
        m2 = 2.0 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 / fix(1.0 + aa * d)
        c = fix(1.0 + aa / c)
        h = h * d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 / fix(1.0 + aa * d)
        c = fix(1.0 + aa / c)
        return c, d, h * d * c

    return jax.lax.fori_loop(0, CF_TERMS, body, (c, d, h))[2]


def _betainc_cf(a, b, x, log_x, log_1mx):
    """I_x(a, b) by the continued fraction (accurate for x < (a + 1) / (a + b + 2))."""
    # log B(a, b) from gammaln: jax.scipy.special.betaln errs by 5e-8 near a = 15, b = 1/2.
    log_beta = jsp_special.gammaln(a) + jsp_special.gammaln(b) - jsp_special.gammaln(a + b)
    log_front = a * log_x + b * log_1mx - jnp.log(a) - log_beta
    return jnp.exp(log_front) * _betacf(a, b, x)


def lower_cdf(y, df):
    """F(-y; df) for y >= 0: the lower tail, with relative precision."""
    y = jnp.abs(y)
    df = jnp.asarray(df, y.dtype)
    big = y > 1e100  # y^2 overflows: log(nu + y^2) = 2 log y to working precision
    y_s = jnp.where(big, 1.0, y)
    log_den = jnp.where(big, 2.0 * jnp.log(jnp.where(big, y, 1.0)), jnp.log(df + y_s * y_s))
    log_z = jnp.log(df) - log_den  # z = nu / (nu + y^2)
    log_1mz = 2.0 * jnp.log(jnp.maximum(y, jnp.finfo(y.dtype).tiny)) - log_den
    z = jnp.exp(log_z)
    a, b = 0.5 * df, 0.5
    direct = z < (a + 1.0) / (a + b + 2.0)
    # One fraction per point, on the branch's arguments: I_z(a, b) directly, or
    # I_w(b, a) for the complement with w = 1 - z = y^2 / (nu + y^2) (log w and
    # log(1 - w) = log z known without cancellation).
    aa = jnp.where(direct, a, b)
    bb = jnp.where(direct, b, a)
    xx = jnp.where(direct, z, jnp.exp(log_1mz))
    lx = jnp.where(direct, log_z, log_1mz)
    l1x = jnp.where(direct, log_1mz, log_z)
    inc = _betainc_cf(aa, bb, xx, lx, l1x)
    out = jnp.where(direct, 0.5 * inc, 0.5 - 0.5 * inc)
    return jnp.where(y == 0, 0.5, out)


def _raw_cdf(x, df):
    low = lower_cdf(x, df)
    return jnp.where(x <= 0, low, 1.0 - low)


def _raw_cdf_dnu(x, df):
    return jax.jvp(lambda d: _raw_cdf(x, d), (df,), (jnp.ones_like(df),))[1]


def pdf(x, df):
    return jnp.exp(log_pdf(x, df))


def _pdf_dnu(x, df):
    return jax.jvp(lambda d: pdf(x, d), (df,), (jnp.ones_like(df),))[1]


@jax.custom_jvp
def cdf(x, df):
    """Student's t distribution function F(x; df) (unit scale), elementwise.

    Derivatives in closed form where the fraction's are singular: dF/dx = f(x; df), and
    d^2 F / dx d df = df(x; df) / d df (the fraction in w = x^2 / (df + x^2) has a square
    root at x = 0, where autodiff of it gives 0 * inf); d/d df by autodiff of the fraction.
    """
    return _raw_cdf(x, df)


@cdf.defjvp
def _cdf_jvp(primals, tangents):
    (x, df), (tx, tdf) = primals, tangents
    return cdf(x, df), tx * pdf(x, df) + tdf * cdf_dnu(x, df)


@jax.custom_jvp
def cdf_dnu(x, df):
    """dF(x; df) / d df."""
    return _raw_cdf_dnu(x, df)


@cdf_dnu.defjvp
def _cdf_dnu_jvp(primals, tangents):
    (x, df), (tx, tdf) = primals, tangents
    d2 = jax.jvp(lambda d: _raw_cdf_dnu(x, d), (df,), (jnp.ones_like(df),))[1]
    return cdf_dnu(x, df), tx * _pdf_dnu(x, df) + tdf * d2


def log_pdf(x, df):
    """log f(x; df), finite far in the tails."""
    df = jnp.asarray(df, jnp.result_type(x, float))
    ax = jnp.abs(x)
    big = ax > 1e100
    ax_s = jnp.where(big, 1.0, ax)
    log1p_term = jnp.where(
        big, 2.0 * jnp.log(jnp.where(big, ax, 1.0)) - jnp.log(df), jnp.log1p(ax_s * ax_s / df)
    )
    const = (
        jsp_special.gammaln(0.5 * (df + 1.0))
        - jsp_special.gammaln(0.5 * df)
        - 0.5 * jnp.log(df * jnp.pi)
    )
    return const - 0.5 * (df + 1.0) * log1p_term
