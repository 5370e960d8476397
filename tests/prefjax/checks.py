"""Assertions shared by the prefjax tests: comparisons against mpmath that allow exactly the
error a backward-stable float64 algorithm makes (condition number times a few ulps)."""

import mpmath as mp

from .references import rel_err

EPS = 2.0**-52
ULPS = 64  # allowance in units of eps, on top of each problem's condition number
TINY = 2.2250738585072014e-308  # the smallest normal float64


def assert_probability_matches(ref, p_ik, p_kj, got):
    """p_ij = g(g^-1(p_ik) + g^-1(p_kj)) against mpmath, condition-aware (see below)."""
    x_ik, x_kj = ref.inv(p_ik), ref.inv(p_kj)
    x_ij = x_ik + x_kj
    p_ij = ref.g(x_ij)
    tol = ULPS * EPS * (min(p_ij, 1 - p_ij) + ref.dg(x_ij) * (abs(x_ik) + abs(x_kj)))
    if p_ij > 0.5:  # float64 holds p_ij near 1 to half an ulp of 1 at best
        tol += EPS
    tol += TINY  # below the normal range (subnormals) no relative precision is promised
    assert abs(mp.mpf(float(got)) - p_ij) <= tol, (p_ik, p_kj, got, p_ij)


def assert_matches_reference(ref, p_ik, p_kj, s):
    """Compare with mpmath, allowing the error a backward-stable algorithm makes.

    Any float64 algorithm that goes through scores carries x = g^-1(p) with an error of a few
    ulps of |x|. That moves p_ij by g'(x_ij) (|x_ik| + |x_kj|) eps, and log d_ik by
    |L'(x_ij)| (|x_ik| + |x_kj|) eps + |L'(x_ik)| |x_ik| eps with L = log g'. The tolerances
    below are those condition numbers (from mpmath) times ULPS, never a fitted constant.
    Probabilities are compared through the nearer of 0 and 1, where float64 keeps precision.
    """
    assert_probability_matches(ref, p_ik, p_kj, s.p_ij)
    x_ik, x_kj = ref.inv(p_ik), ref.inv(p_kj)
    x_ij = x_ik + x_kj
    spread = abs(x_ik) + abs(x_kj)
    dlog = lambda x: abs(mp.diff(lambda t: mp.log(ref.dg(t)), x))  # noqa: E731
    for got, x_own in ((s.d_ik, x_ik), (s.d_kj, x_kj)):
        want = ref.dg(x_ij) / ref.dg(x_own)
        kappa = dlog(x_ij) * spread + dlog(x_own) * abs(x_own)
        if ref.dg(x_ij) < TINY or ref.dg(x_own) < TINY:
            # A g' below the normal range exists only as its log: exp(L(x_ij) - L(x_own))
            # carries eps |L| from each log (cauchit at p = 1e-167: |L| ~ 770).
            kappa += abs(mp.log(ref.dg(x_ij))) + abs(mp.log(ref.dg(x_own)))
        # An underflowing partial (cauchit's d_kj = (pi p_ik)^2 at p_ik = 1e-160), or one whose
        # numerator g'(x_ij) passes through the subnormal range (XLA's CPU flushes it to 0, a
        # custom link's g' with it), is held to 64 TINY / g'(x_own) absolutely, at most 1e3 times
        # 64 TINY (a numerator lost altogether is an error: prefjax.sensitivity raises).
        floor = ULPS * TINY * max(1, min(1 / ref.dg(x_own), 1e3))
        ok = rel_err(got, want) <= ULPS * EPS * (1 + kappa)
        ok = ok or abs(mp.mpf(float(got)) - want) <= floor
        assert ok, (p_ik, p_kj, got, want)
