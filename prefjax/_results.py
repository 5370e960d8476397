"""Small result types shared across modules: area estimates and slices of M-sensitive regions."""

from __future__ import annotations

from typing import NamedTuple

import jax

# Monte Carlo error bars are this many standard errors: they cover the true area in 99.7% of
# seeded runs (for a normal sampling distribution), the contract the tests check.
MC_SIGMAS = 3.0


class AreaEstimate(NamedTuple):
    """An estimate of the area of an M-sensitive region (Definition 4).

    Attributes:
        value: the estimated area, in [0, 1].
        error: an error bar: |value - truth| <= error with high confidence (quadrature: the
            Gauss-Kronrod estimate plus a rounding floor; grid: twice the change between two
            resolutions plus the boundary cells; Monte Carlo and importance sampling: three
            standard errors).
        method: which estimator made it. For A(Omega_M(p_ij, p_ik)) of a link
            (:func:`prefjax.region_area`, one per entry of its table of methods): "quad"
            (root-found boundaries, adaptive Gauss-Kronrod), "grid" (midpoint rule), "mc"
            (uniform Monte Carlo) or "is" (importance sampling). For the K-tuple regions:
            "rays" (the paper's view, :func:`prefjax.plackett_luce.numeric_region_area`:
            root finding along rays from the origin) and "score-view" (the score-based view,
            :func:`prefjax.score_view.implied_area`: a 2-D integral over the score plane).
        n_evals: how many times the sensitivity was evaluated.
    """

    value: float
    error: float
    method: str
    n_evals: int


class RegionBounds(NamedTuple):
    """An M-sensitive region sliced at one value of its outer variable.

    :func:`prefjax.bradley_terry.region_bounds` (Eq. (5)) slices Omega_M(p_ij, p_ik) at p_kj;
    :func:`prefjax.plackett_luce.region_bounds` (Eqs. (11)-(12)) slices the paper's K-tuple
    region at p_omega_uv (or p_omega_vu).

    Attributes:
        low, high: the inner variable's open interval (low, high); both NaN where the slice
            is empty.
        limit: where the outer variable's range of non-empty slices ends: 1/(1+M) for Eq. (5)
            (slices for p_kj in (0, limit) and in (1 - limit, 1)), beta / (4 alpha M) for
            Eqs. (11)-(12) (slices for the outer variable in (0, limit)).
    """

    low: jax.Array
    high: jax.Array
    limit: jax.Array
