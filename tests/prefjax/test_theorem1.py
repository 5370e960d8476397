"""Theorem 1's witnesses: the claim holds along the proof's curve, for four links and M up
to 1e6, on both sides; the proof's x0 against mpmath."""

import math

import mpmath as mp
import numpy as np
import pytest

import prefjax

from .conftest import LINKS
from .references import MP_LINKS


@pytest.mark.parametrize("M", [2.0, 10.0, 1e3, 1e6])
@pytest.mark.parametrize("name", sorted(LINKS))
@pytest.mark.parametrize("side", ["upper", "lower"])
def test_witness_verifies(name, M, side):
    w = prefjax.theorem1_witness(LINKS[name], M, side=side)
    ratio = w.verify(500)
    assert ratio > 1.0
    assert ratio < 1.01  # the bound is tight at the start of the interval: x0 is not slack
    assert 0 < w.one_minus_p0 < 0.5 and w.x0 > 0


@pytest.mark.parametrize("name", sorted(LINKS))
def test_x0_is_where_g_prime_falls_below_eps(name):
    """By the proof, g'(x0) = g'(delta) / M at the boundary; checked with the mpmath g'."""
    ref = MP_LINKS[name]
    for M in [10.0, 1e6]:
        w = prefjax.theorem1_witness(LINKS[name], M)
        eps = ref.dg(mp.mpf(1.0)) / M
        assert float(ref.dg(mp.mpf(w.x0)) / eps) == pytest.approx(1.0, rel=1e-9)
        assert float(ref.dg(mp.mpf(w.x0) * 1.001)) < float(eps)


def test_logistic_curve_against_eq4_at_50_digits():
    """Points of the upper curve, checked with the paper's Eq. (4) directly."""
    M = 1e3
    w = prefjax.theorem1_witness(prefjax.logistic, M)
    p_ik = 1 - w.one_minus_p0 * np.array([0.9, 0.5, 0.1, 1e-3])
    p_kj = np.asarray(w.curve(p_ik))
    for a, b in zip(p_ik, p_kj, strict=True):
        A, B = mp.mpf(a), mp.mpf(b)
        d = B * (1 - B) / (A + B - 2 * A * B - 1) ** 2
        assert d > M


def test_score_space_is_used_where_probabilities_leave_float64():
    w = prefjax.theorem1_witness(prefjax.logistic, 1e20)
    assert w.one_minus_p0 < 1e-19 and w.p0 == 1.0  # p0 rounds to 1 in float64 ...
    assert w.verify(200) > 1  # ... and the claim is still checked, in score space
    assert math.isfinite(w.x0)


def test_bad_arguments():
    with pytest.raises(ValueError, match="M must be"):
        prefjax.theorem1_witness(prefjax.logistic, -1.0)
    with pytest.raises(ValueError, match="'upper', 'lower'"):
        prefjax.theorem1_witness(prefjax.logistic, 2.0, side="left")
    with pytest.raises(ValueError, match="n must be"):
        prefjax.theorem1_witness(prefjax.logistic, 2.0).verify(0)
