"""The score-based view: two scores move, the others stay; derivatives by the inverse-function
theorem and areas inside the image of the map.

References: Bradley-Terry's Eq. (4) and Proposition 1 (K = 2, Lemma 1's coordinates), Eq. (2)
for the probit link, and for K = 3 the hand-inverted Plackett-Luce map
p_omega = x y (1 - q)^2 / (q (y (1 - q) + q^2)), q = x + y, x = p_omega_uv, y = p_omega_vu,
differentiated by the complex step and integrated along rays of the (x, y) plane with SciPy.
"""

import math

import numpy as np
import pytest
from scipy import integrate, optimize

import prefjax
from prefjax import bradley_terry as bt
from prefjax import plackett_luce as pl
from prefjax import score_view as sv

RTOL_POINT = 1e-9  # pointwise derivatives: float64 through log-probabilities and a 2x2 solve
RTOL_AREA_PL = 1e-7  # score-view areas, Plackett-Luce (outer rtol 1e-8; see implied_area)
COMPLEX_STEP = 1e-30

rng = np.random.default_rng(47)


def k3_closed_form(x, y):
    """p_omega for omega = (u, v, r) as a function of (p_omega_uv, p_omega_vu), any s_r.

    With U = e^(s_u), V = e^(s_v), R = e^(s_r): p_omega = U/(U+V+R) * V/(V+R),
    x = R/(U+V+R) * U/(U+V), y = R/(U+V+R) * V/(U+V); so q = x + y = R/(U+V+R), U/(U+V) = x/q,
    and substituting U + V = R (1 - q)/q eliminates R.
    """
    q = x + y
    return x * y * (1 - q) ** 2 / (q * (y * (1 - q) + q * q))


def k3_derivatives(x, y):
    dx = np.imag(k3_closed_form(x + 1j * COMPLEX_STEP, y)) / COMPLEX_STEP
    dy = np.imag(k3_closed_form(x, y + 1j * COMPLEX_STEP)) / COMPLEX_STEP
    return dx, dy


# --- pointwise ---------------------------------------------------------------------------------


def test_k3_against_the_hand_inverted_map():
    scores = rng.normal(size=(6, 3)) * 2
    scores[0] = [4.0, 3.0, -2.0]  # near the origin of the (x, y) plane
    view = sv.score_view_sensitivity(scores, (0, 1, 2), 0, 1)
    x, y = np.asarray(view.p_a), np.asarray(view.p_b)
    np.testing.assert_allclose(x, np.asarray(pl.prob(scores, (2, 0, 1))), rtol=RTOL_POINT)
    np.testing.assert_allclose(view.p, k3_closed_form(x, y), rtol=RTOL_POINT)
    dx, dy = k3_derivatives(x, y)
    np.testing.assert_allclose(view.d_a, dx, rtol=RTOL_POINT)
    np.testing.assert_allclose(view.d_b, dy, rtol=RTOL_POINT)


def test_lemma1_coordinates_give_bradley_terry_eq4():
    """K = 2 with target (i, j), coords ((i, k), (k, j)), vary (i, k): Lemma 1 and Eq. (4)."""
    scores = rng.normal(size=(5, 3)) * 3
    view = sv.implied_sensitivity(scores, (0, 1), ((0, 2), (2, 1)), (0, 2))
    np.testing.assert_allclose(view.p, bt.compose(view.p_a, view.p_b), rtol=RTOL_POINT)
    np.testing.assert_allclose(view.d_a, bt.d_ik(view.p_a, view.p_b), rtol=RTOL_POINT)
    np.testing.assert_allclose(view.d_b, bt.d_kj(view.p_a, view.p_b), rtol=RTOL_POINT)


def test_lemma1_coordinates_give_eq2_for_the_probit_model():
    scores = rng.normal(size=(4, 3))
    view = sv.implied_sensitivity(scores, (0, 1), ((0, 2), (2, 1)), (0, 2), model="probit")
    ref = prefjax.sensitivity(prefjax.probit, view.p_a, view.p_b)
    np.testing.assert_allclose(view.p, ref.p_ij, rtol=1e-10)
    np.testing.assert_allclose(view.d_a, ref.d_ik, rtol=1e-8)
    np.testing.assert_allclose(view.d_b, ref.d_kj, rtol=1e-8)


def test_gumbel_recursion_agrees_with_plackett_luce_pointwise():
    scores = rng.normal(size=(3, 4))
    a = sv.score_view_sensitivity(scores, (3, 0, 1, 2), 1, 2)
    b = sv.score_view_sensitivity(scores, (3, 0, 1, 2), 1, 2, model="gumbel")
    for f in ("p", "p_a", "p_b", "d_a", "d_b", "det_j"):
        np.testing.assert_allclose(getattr(b, f), getattr(a, f), rtol=1e-8, err_msg=f)


def test_k2_plackett_luce_coordinates_are_singular():
    """For K = 2, p_omega_uv + p_omega_vu = 1: the map is not invertible (NaN, not garbage)."""
    view = sv.implied_sensitivity([0.3, -0.1], (0, 1), ((0, 1), (1, 0)), (0, 1))
    assert np.isnan(view.d_a) and np.isnan(view.d_b)


# --- areas ---------------------------------------------------------------------------------------


def test_lemma1_area_is_proposition1():
    for M in [3.0]:
        est = sv.implied_area([0.0, 0.0, 0.0], (0, 1), ((0, 2), (2, 1)), (0, 2), M)
        assert est.value == pytest.approx(float(bt.region_area(M)), rel=RTOL_AREA_PL)


def k3_reference_area(M):
    """int_0^1 dw sum_intervals (q_hi^2 - q_lo^2)/2 along the rays (x, y) = q (w, 1 - w).

    The crossings of dp/dx = +M and = -M are found separately (so the narrow gap around a zero
    of dp/dx is never missed) on a logit-spaced q grid and refined by brentq. The integrand has
    a square-root kink at the fold w* where the region dp/dx < -M is born; w* is located by
    bisection on the number of crossings and quad integrates each side (across the kink, quad
    alone misses ~1e-5 of the area and reports 1e-11).
    """
    t = np.linspace(-25.0, 28.0, 4001)
    q_grid = 1 / (1 + np.exp(-t))

    def signed(q, w):
        return k3_derivatives(q * w, q * (1 - w))[0]

    def crossings(w):
        s = signed(q_grid, w)
        found = []
        for level in (M, -M):
            f = s - level
            for i in np.nonzero(np.sign(f[:-1]) != np.sign(f[1:]))[0]:
                found.append((level, q_grid[i], q_grid[i + 1]))
        return found

    def length(w):
        cuts = [
            optimize.brentq(lambda q, lv=lv: signed(q, w) - lv, a, b, xtol=1e-15)
            for lv, a, b in crossings(w)
        ]
        cuts = np.sort(np.concatenate([[0.0], cuts, [1.0]]))
        mids = 0.5 * (cuts[:-1] + cuts[1:])
        inside = np.abs(signed(mids, w)) > M
        return 0.5 * np.sum(inside * (cuts[1:] ** 2 - cuts[:-1] ** 2))

    lo, hi = 0.5, 0.99
    assert len(crossings(lo)) != len(crossings(hi))
    for _ in range(50):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if len(crossings(mid)) == len(crossings(lo)) else (lo, mid)
    total, error = 0.0, 0.0
    for a, b in [(0.0, lo), (hi, 1.0)]:
        value, err = integrate.quad(length, a, b, limit=200, epsabs=1e-15, epsrel=1e-11)
        total, error = total + value, error + err
    return total, error


@pytest.mark.parametrize("M, wrt", [(2.0, "uv")])
def test_k3_area_against_rays_of_the_hand_inverted_map(M, wrt):
    want, err = k3_reference_area(M)
    assert err < 1e-10 * want
    est = sv.score_view_area([0.0, 0.0, 0.0], (0, 1, 2), 0, 1, M, wrt)
    assert est.value == pytest.approx(want, rel=RTOL_AREA_PL)
    assert est.error < RTOL_AREA_PL * want


@pytest.mark.slow
def test_lemma1_area_for_the_probit_model_matches_the_region_machinery():
    """K = 2 probit (the recursion, score view) against prefjax.region_area (Eq. (2) slices)."""
    M = 3.0
    want = prefjax.region_area(prefjax.probit, M).value
    est = sv.implied_area([0.0, 0.0, 0.0], (0, 1), ((0, 2), (2, 1)), (0, 2), M, model="probit")
    assert est.value == pytest.approx(want, rel=1e-5)


@pytest.mark.slow
def test_score_view_area_shrinks_with_k_for_equal_scores():
    """Section 3.2 in the score view: the area falls from K = 3 to K = 4 (equal scores)."""
    a3 = sv.score_view_area(np.zeros(3), (0, 1, 2), 0, 1, 5.0).value
    a4 = sv.score_view_area(np.zeros(4), (0, 1, 2, 3), 0, 1, 5.0).value
    assert a4 < a3
    assert math.isfinite(a4) and a4 > 0


def test_link_models_are_keyed_by_built_in_link_names():
    """The K-tuple model of a link is the one whose pairwise margin is that link."""
    from prefjax import _kmodels

    assert set(_kmodels.LINK_MODELS) <= set(prefjax.LINKS)
    scores = np.array([0.8, -0.4, 0.3])
    for name in _kmodels.LINK_MODELS:
        g = prefjax.LINKS[name]
        view = sv.implied_sensitivity(scores, (0, 1), ((0, 2), (2, 1)), (0, 2), model=g)
        want = prefjax.sensitivity(g, view.p_a, view.p_b)
        np.testing.assert_allclose(view.p, want.p_ij, rtol=1e-9)
    with pytest.raises(ValueError, match="no K-tuple random-utility model"):
        sv.implied_sensitivity(scores, (0, 1), ((0, 2), (2, 1)), (0, 2), model=prefjax.cauchit)


# --- bad input ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "call, exc, match",
    [
        (
            lambda: sv.random_utility_log_prob([0.0, 1.0], (0, 1), noise="cauchy"),
            ValueError,
            "unknown noise",
        ),
        (
            lambda: sv.score_view_area([0.0, 1.0, 2.0], (0, 1), 0, 1, 2.0),
            ValueError,
            "at least 3 options",
        ),
        (
            lambda: sv.implied_sensitivity([0.0, 1.0, 2.0], (0, 1), ((0, 2),), (0, 2)),
            ValueError,
            "coords",
        ),
        (
            lambda: sv.implied_sensitivity([0.0, 1.0, 2.0], (0, 1), ((0, 2), (2, 1)), (0, 0)),
            ValueError,
            "vary repeats",
        ),
        (
            lambda: sv.score_view_sensitivity([0.0, 1.0, 2.0], (0, 1, 2), 0, 1, rest=(5,)),
            ValueError,
            r"rest\[0\] = 5 is out of range",
        ),
    ],
)
def test_bad_input_names_the_argument(call, exc, match):
    with pytest.raises(exc, match=match):
        call()
