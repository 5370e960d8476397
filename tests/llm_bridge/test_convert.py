"""llm_bridge.convert against the paper's formulas evaluated independently with mpmath."""

import math

import jax
import mpmath as mp
import numpy as np
import pytest

from llm_bridge.convert import (
    Estimate,
    LearnedPreferences,
    analyze,
    implied_p13,
    m_sensitive_mask,
)

from .references import eq3, eq4

RTOL_F64 = 1e-10  # prefjax in float64 against 50-digit mpmath
mp.mp.dps = 50
HALF = mp.mpf(1) / 2

# g and g^-1 of each link, written from their definitions
MP_LINKS = {
    "logistic": (lambda x: 1 / (1 + mp.exp(-x)), lambda p: mp.log(p / (1 - p))),
    "probit": (mp.ncdf, lambda p: mp.sqrt(2) * mp.erfinv(2 * p - 1)),
    "cauchit": (lambda x: HALF + mp.atan(x) / mp.pi, lambda p: mp.tan(mp.pi * (p - HALF))),
}


def mp_compose(link, p, q):
    """Lemma 1, Eq. (1): g(g^-1(p) + g^-1(q))."""
    g, ginv = MP_LINKS[link]
    return g(ginv(mp.mpf(p)) + ginv(mp.mpf(q)))


def eq5_gamma0(q, M):
    """Eq. (5) as printed: gamma_0 = 1 - (sqrt((1/p_kj - 1)/M) - 1) / (1/p_kj - 2)."""
    q, M = mp.mpf(q), mp.mpf(M)
    return 1 - (mp.sqrt((1 / q - 1) / M) - 1) / (1 / q - 2)


POINTS = [(0.99, 0.02), (0.9801, 0.02), (0.9999, 0.02), (0.6, 0.3), (0.3, 0.85), (0.999999, 1e-3)]


@pytest.mark.parametrize("link", sorted(MP_LINKS))
@pytest.mark.parametrize("p12, p23", POINTS)
def test_implied_p13_and_local_M_match_mpmath(link, p12, p23):
    a = analyze(LearnedPreferences(p12=p12, p23=p23, p13=0.5), link=link, M=10)
    want = mp_compose(link, p12, p23)
    d12 = mp.diff(lambda x: mp_compose(link, x, p23), mp.mpf(p12))
    d23 = mp.diff(lambda y: mp_compose(link, p12, y), mp.mpf(p23))
    assert a.p13_implied == pytest.approx(float(want), rel=RTOL_F64)
    assert implied_p13(p12, p23, link) == pytest.approx(float(want), rel=RTOL_F64)
    assert a.d13_d12 == pytest.approx(float(d12), rel=1e-8)
    assert a.d13_d23 == pytest.approx(float(d23), rel=1e-8)
    assert a.local_M == pytest.approx(abs(float(d12)), rel=1e-8)
    assert a.in_omega_M == (float(d12) > 10)
    assert a.link == link


@pytest.mark.parametrize("p12, p23", POINTS)
def test_bradley_terry_closed_forms(p12, p23):
    a = analyze(LearnedPreferences(p12=p12, p23=p23, p13=0.5))
    assert a.p13_implied == pytest.approx(float(eq3(p12, p23)), rel=RTOL_F64)
    assert a.local_M == pytest.approx(float(eq4(p12, p23)), rel=1e-9)


def test_example_1_of_the_paper():
    # (0.9801, 0.02) -> ~0.50 and (0.99, 0.02) is in Omega_20, as stated. (The paper's other
    # number, (0.9999, 0.02) -> ~0.96, is not what Eq. (3) gives: 0.995; the reproduction report
    # records that claim.)
    assert round(implied_p13(0.9801, 0.02), 2) == 0.50
    assert round(implied_p13(0.9999, 0.02), 3) == 0.995
    a = analyze(LearnedPreferences(p12=0.99, p23=0.02, p13=0.5), M=20)
    assert a.in_omega_M and a.local_M > 20


@pytest.mark.parametrize("p23, M", [(0.02, 20), (0.01, 5), (0.05, 2), (0.97, 10), (0.9, 3)])
def test_omega_slice_is_eq5(p23, M):
    a = analyze(LearnedPreferences(p12=0.5, p23=p23, p13=0.5), M=M)
    g0 = float(eq5_gamma0(p23, M))
    if p23 < 1 / (1 + M):  # case 1: gamma_0 < p_ik < 1
        assert a.omega_p12 == pytest.approx((g0, 1.0), rel=1e-9)
    else:  # case 2: 0 < p_ik < gamma_0
        assert a.omega_p12 == pytest.approx((0.0, g0), rel=1e-9)
    lo, hi = a.omega_p12
    # just inside and just outside the slice, by Eq. (4)
    inside = (lo + hi) / 2
    edge = g0
    for p12, expect in ((inside, True), (edge + (1e-6 if lo == 0.0 else -1e-6), False)):
        b = analyze(LearnedPreferences(p12=p12, p23=p23, p13=0.5), M=M)
        assert b.in_omega_M is expect
        assert (float(eq4(p12, p23)) > M) is expect
    # between 1/(1+M) and M/(1+M) no p12 is M-sensitive
    mid = analyze(LearnedPreferences(p12=0.5, p23=0.5, p13=0.5), M=M)
    assert mid.omega_p12 is None and not mid.in_omega_M


def test_implied_interval_is_the_image_of_the_box():
    lp = LearnedPreferences(
        p12=Estimate(0.99, 0.98, 0.995),
        p23=Estimate(0.05, 0.03, 0.08),
        p13=Estimate(0.7, 0.6, 0.75),
    )
    a = analyze(lp)
    assert a.p13_implied_low == pytest.approx(float(eq3(0.98, 0.03)), rel=RTOL_F64)
    assert a.p13_implied_high == pytest.approx(float(eq3(0.995, 0.08)), rel=RTOL_F64)
    assert a.p13_implied == pytest.approx(float(eq3(0.99, 0.05)), rel=RTOL_F64)
    # learned [0.6, 0.75] vs implied [0.60, 0.96]: they overlap
    assert a.consistent
    far = LearnedPreferences(p12=lp.p12, p23=lp.p23, p13=Estimate(0.3, 0.25, 0.35))
    assert not analyze(far).consistent


def test_edges_of_the_unit_interval():
    # a sampled 200/200 is analysed at 1 - 0.5/200; an exact 1.0 at the float below 1
    sampled = LearnedPreferences(
        p12=Estimate(1.0, 0.98, 1.0, count=200),
        p23=Estimate(0.0, 0.0, 0.02, count=200),
        p13=Estimate(0.5, 0.4, 0.6, count=200),
        method="sample",
    )
    a = analyze(sampled)
    assert a.p12 == 1 - 0.5 / 200 and a.p23 == 0.5 / 200
    assert len(a.notes) == 2 and "200 of 200" in a.notes[0]
    assert a.p13_implied == pytest.approx(float(eq3(a.p12, a.p23)), rel=RTOL_F64)
    # box ends: (0.98, 0) -> 0; (1, 0.02) -> 1
    assert (a.p13_implied_low, a.p13_implied_high) == (0.0, 1.0)
    exact = analyze(LearnedPreferences(p12=1.0, p23=0.3, p13=0.9))
    assert exact.p12 == float(np.nextafter(1.0, 0.0)) and exact.notes
    assert exact.local_M == pytest.approx(float(eq4(exact.p12, 0.3)), rel=1e-9)
    assert exact.p13_implied == pytest.approx(1.0, abs=1e-15)
    # an exact 0 (or a subnormal) at 2^-53, the mirror image of 1 - 2^-53: finite numbers
    for zero in (0.0, 5e-324):
        low = analyze(LearnedPreferences(p12=0.9, p23=zero, p13=0.1))
        assert low.p23 == 2.0**-53 and low.notes
        assert low.local_M == pytest.approx(float(eq4(0.9, 2.0**-53)), rel=1e-9)
        assert low.p13_implied == pytest.approx(float(eq3(0.9, 2.0**-53)), rel=RTOL_F64)
        assert math.isfinite(low.d13_d23)
    # Lemma 1 has no limit at (1, 0): NaN from implied_p13
    assert math.isnan(implied_p13(1.0, 0.0))
    assert implied_p13(np.array([0.0, 1.0, 0.5]), np.array([0.5, 0.5, 1.0])).tolist() == [
        0.0,
        1.0,
        1.0,
    ]


@pytest.mark.parametrize("link", sorted(MP_LINKS))
def test_log_odds_beyond_float64_are_analysed_as_such(link):
    # p12 = 1 - 1e-20 rounds to 1 in float64; its log-odds 46.05 do not, and the analysis must
    # be that of the true point, not of 1 - 2^-53 (log-odds 36.7).
    q = mp.mpf("1e-20")
    logit12 = float(mp.log((1 - q) / q))
    lp = LearnedPreferences(
        p12=Estimate(1.0, 1.0, 1.0, logit=logit12),
        p23=Estimate(0.3, 0.3, 0.3, logit=math.log(0.3 / 0.7)),
        p13=Estimate(1.0, 1.0, 1.0, logit=40.0),
    )
    a = analyze(lp, link=link)
    assert not a.notes and a.logit12 == logit12 and a.logit13 == 40.0
    g, ginv = MP_LINKS[link]
    x12, x23 = ginv(1 - q), ginv(mp.mpf("0.3"))
    dg = lambda x: mp.diff(g, x)  # noqa: E731
    want_M = dg(x12 + x23) / dg(x12)  # Eq. (2) at the true point
    assert a.local_M == pytest.approx(float(want_M), rel=1e-8)
    p13 = g(x12 + x23)
    assert a.p13_implied_logit == pytest.approx(float(mp.log(p13 / (1 - p13))), rel=1e-10)
    at_rounded = analyze(LearnedPreferences(p12=1.0, p23=0.3, p13=1.0), link=link)
    assert at_rounded.notes and at_rounded.logit12 < 37


def test_m_sensitive_mask_matches_eq4():
    grid = np.linspace(0, 1, 201)
    got = m_sensitive_mask(0.99, grid, 10)
    want = [0 < q < 1 and float(eq4(0.99, q)) > 10 for q in grid]
    assert got.tolist() == want
    assert got.any() and not got.all()


def test_x64_mode_is_left_as_it_was():
    before = jax.config.jax_enable_x64
    analyze(LearnedPreferences(p12=0.9, p23=0.2, p13=0.5), link="probit")
    implied_p13(0.9, 0.2)
    assert jax.config.jax_enable_x64 == before


def test_bad_inputs():
    with pytest.raises(ValueError, match="low <= p <= high"):
        LearnedPreferences(p12=Estimate(0.5, 0.6, 0.7), p23=0.5, p13=0.5)
    with pytest.raises(ValueError, match=r"p23\.p must be a probability"):
        LearnedPreferences(p12=0.5, p23=1.5, p13=0.5)
    with pytest.raises(ValueError, match="M must be"):
        analyze(LearnedPreferences(p12=0.5, p23=0.5, p13=0.5), M=1.0)
    with pytest.raises(ValueError, match="link must be"):
        analyze(LearnedPreferences(p12=0.5, p23=0.5, p13=0.5), link="gumbel")


def _probe_json(p, low, high, method="likelihood", read=None):
    count = None if read is None else read[0] + read[1]
    logit = math.inf if p == 1 else -math.inf if p == 0 else math.log(p / (1 - p))
    return {
        "p": p,
        "logit": logit,
        "ci_low": low,
        "ci_high": high,
        "method": method,
        "n": 120,
        "count": count,
        "details": {},
    }


def test_from_probes_reads_sweep_rows():
    probes = {
        "p12": _probe_json(1.0, 0.98, 1.0, "sample", read=(190, 0)),
        "p23": _probe_json(0.2, 0.15, 0.26, "sample", read=(38, 152)),
        "p13": _probe_json(0.9, 0.85, 0.94, "sample", read=(171, 19)),
    }
    lp = LearnedPreferences.from_probes(probes, order=("dog", "bird", "cat"), p23_data=0.2)
    assert lp.method == "sample" and lp.p12.count == 190 and lp.p23[:4] == (0.2, 0.15, 0.26, 190)
    assert lp.p23.logit == pytest.approx(math.log(0.2 / 0.8), rel=1e-15)
    assert analyze(lp).p12 == 1 - 0.5 / 190
