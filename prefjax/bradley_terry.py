"""Closed forms for the Bradley-Terry model (Section 2.3): Eqs. (3)-(5) and Proposition 1.

These are written directly from the paper's formulas (in numerically stable arrangements),
independently of the autodiff machinery, and serve as its references.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from . import _validate as v
from ._links import logistic_odds_compose
from ._results import RegionBounds

__all__ = [
    "compose",
    "d_ik",
    "d_kj",
    "gamma0",
    "region_area",
    "region_bounds",
]


def compose(p_ik, p_kj):
    """Eq. (3): p_ij = 1 / (1 + (1 - p_ik)(1 - p_kj) / (p_ik p_kj)).

    Evaluated as 1 / (1 + odds product) so that neither tail loses precision and no factor
    passes through the subnormal range.

    Examples:
        >>> from prefjax import bradley_terry as bt
        >>> round(float(bt.compose(0.9801, 0.02)), 4)
        0.5013
    """
    v.check_float_dtype("p_ik", p_ik), v.check_float_dtype("p_kj", p_kj)
    a, b = jnp.asarray(p_ik), jnp.asarray(p_kj)
    return logistic_odds_compose(a, b)


def d_ik(p_ik, p_kj):
    """Eq. (4): dp_ij/dp_ik = p_kj (1 - p_kj) / (p_ik + p_kj - 2 p_ik p_kj - 1)^2.

    The denominator is written as ((1 - p_ik)(1 - p_kj) + p_ik p_kj)^2, the same polynomial
    without the cancellation of the expanded form near the corners.
    """
    v.check_float_dtype("p_ik", p_ik), v.check_float_dtype("p_kj", p_kj)
    a, b = jnp.asarray(p_ik), jnp.asarray(p_kj)
    den = (1.0 - a) * (1.0 - b) + a * b
    return b * (1.0 - b) / (den * den)


def d_kj(p_ik, p_kj):
    """dp_ij/dp_kj: Eq. (4) with the roles of p_ik and p_kj exchanged (Eq. (3) is symmetric)."""
    return d_ik(p_kj, p_ik)


def gamma0(p_kj, M):
    """gamma_0 of Eq. (5): 1 - (sqrt((1/p_kj - 1)/M) - 1) / (1/p_kj - 2).

    Evaluated as (1 - p_kj - r) / (1 - 2 p_kj) with r = sqrt(p_kj (1 - p_kj) / M), which is the
    same number (multiply the paper's fraction by p_kj) without dividing by 1/p_kj - 2.
    """
    v.check_float_dtype("p_kj", p_kj)
    v.refuse_bool_or_str("M", M)
    b = jnp.asarray(p_kj)
    r = jnp.sqrt(b * (1.0 - b) / M)
    return (1.0 - b - r) / (1.0 - 2.0 * b)


def region_bounds(p_kj, M) -> RegionBounds:
    """Eq. (5): Omega_M(p_ij^BT, p_ik^BT) sliced at p_kj, for M > 1.

    Case 1: 0 < p_kj < 1/(1+M): gamma_0 < p_ik < 1.
    Case 2: M/(1+M) < p_kj < 1: 0 < p_ik < gamma_0.

    Returns:
        :class:`prefjax.RegionBounds` ``(low, high, limit)``: the interval of p_ik (NaN where
        1/(1+M) <= p_kj <= M/(1+M), where the slice is empty) and limit = 1/(1+M).
        gamma_0 itself is :func:`gamma0`.

    Examples:
        >>> from prefjax import bradley_terry as bt
        >>> b = bt.region_bounds(0.02, 20.0)
        >>> round(float(b.low), 4), float(b.high)
        (0.9882, 1.0)
    """
    M = _check_M(M)
    v.check_float_dtype("p_kj", p_kj)
    b = jnp.asarray(p_kj)
    g0 = gamma0(b, M)
    limit = 1.0 / (1.0 + M)
    case1 = (b > 0) & (b < limit)
    case2 = (b < 1) & (b > M / (1.0 + M))
    nan = jnp.nan
    low = jnp.where(case1, g0, jnp.where(case2, 0.0, nan))
    high = jnp.where(case1, 1.0, jnp.where(case2, g0, nan))
    return RegionBounds(low, high, jnp.asarray(limit, g0.dtype))


# Coefficients of L(M) = sum_m c_m M^-m (Appendix B.3, Eq. (B7) regrouped by powers):
# c_m = 1/(2m - 1) - [m odd] / m; c_1 = 0.
_SERIES_TERMS = 60
_SERIES_FROM_M = 2.0  # t = 1/M <= 1/2: 60 terms leave an error below 1e-18


def region_area(M):
    """Proposition 1: A(Omega_M(p_ij^BT, p_ik^BT)) for M > 1.

    A = 1/2 ln((M - 1)/(M + 1)) + 1/(2 sqrt(M)) ln((sqrt(M) + 1)/(sqrt(M) - 1))
      = -atanh(1/M) + atanh(1/sqrt(M)) / sqrt(M).

    The two terms cancel to A ~ 1/(3 M^2); for M >= 2 the power series of Eq. (B7) is summed
    instead (60 terms), which keeps full relative precision at M = 1e6. Below 2 the closed
    form is evaluated with M - 1 exact and (sqrt(M) + 1)/(sqrt(M) - 1) = (sqrt(M) + 1)^2/(M - 1).

    Args:
        M: a number or array, > 1.

    Examples:
        >>> from prefjax import bradley_terry as bt
        >>> round(float(bt.region_area(2.0)), 6)
        0.073919
    """
    v.check_float_dtype("M", M)
    v.refuse_bool_or_str("M", M)
    M = jnp.asarray(M, dtype=jnp.result_type(float))
    if not v.is_traced(M):
        host = np.asarray(M)
        if np.any(~(host > 1)):
            raise ValueError(
                "Proposition 1 needs M > 1; got M = "
                f"{host.ravel()[int(np.argmax(~(host > 1).ravel()))]!r}. "
                "prefjax.region_area(g, M) computes the area numerically for any M > 0."
            )
    s = jnp.sqrt(M)
    m1 = jnp.where(M > 1, M - 1.0, 1.0)  # exact for M in (1, 2] (Sterbenz)
    direct = 0.5 * jnp.log(m1 / (M + 1.0)) + jnp.log((s + 1.0) ** 2 / m1) / (2.0 * s)
    t = 1.0 / jnp.maximum(M, _SERIES_FROM_M)
    series = jnp.zeros_like(M)
    for m in range(_SERIES_TERMS, 1, -1):  # Horner: after the loop, sum_m c_m t^(m-1)
        c = 1.0 / (2 * m - 1) - (1.0 / m if m % 2 else 0.0)
        series = (series + c) * t
    series = series * t  # now sum_{m>=2} c_m t^m
    return jnp.where(M >= _SERIES_FROM_M, series, direct)


def _check_M(M) -> float:
    M = v.check_positive_number("M", M)
    if M <= 1:
        raise ValueError(f"Eq. (5) describes Omega_M for M > 1; got M = {M!r}")
    return M
