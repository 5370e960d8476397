"""The closed forms of Section 2.3 against mpmath and brute force."""

import mpmath as mp
import numpy as np
import pytest

from prefjax import bradley_terry as bt

from .checks import EPS

M_VALUES = [1.01, 2.0, 3.0, 5.0, 7.99, 8.0, 10.0, 100.0, 1e4, 1e6]


def mp_prop1(M):
    M = mp.mpf(M)
    return mp.log((M - 1) / (M + 1)) / 2 + mp.log((mp.sqrt(M) + 1) / (mp.sqrt(M) - 1)) / (
        2 * mp.sqrt(M)
    )


@pytest.mark.parametrize("M", M_VALUES)
def test_prop1_matches_mpmath(M):
    with mp.workdps(60):
        want = mp_prop1(M)
    # The closed form's two terms cancel by up to ~10x near M = 1; 64 ulps covers that.
    assert abs(float(bt.region_area(M)) - float(want)) <= 64 * EPS * float(want)


def test_prop1_matches_direct_integration_of_eq5():
    """The area under Eq. (5)'s bounds, integrated by mpmath quadrature (independent of B.1)."""
    for M in [2.0, 10.0]:
        M_mp = mp.mpf(M)

        def length(b, M_mp=M_mp):
            r = mp.sqrt(b * (1 - b) / M_mp)
            return (1 - b - r) / (1 - 2 * b)  # case 2: p_ik in (0, gamma_0)

        area = 2 * mp.quad(length, [M_mp / (M_mp + 1), 1])
        assert float(bt.region_area(M)) == pytest.approx(float(area), rel=1e-12)


def test_prop1_rejects_M_at_most_1():
    with pytest.raises(ValueError, match="needs M > 1"):
        bt.region_area(1.0)
    with pytest.raises(ValueError, match="needs M > 1"):
        bt.region_area(np.array([2.0, 0.5]))


def test_eq5_against_brute_force_boundary():
    """Scan p_ik on a fine grid for |Eq. (4)| > M and compare the set's ends with Eq. (5)."""
    M = 5.0
    grid = np.linspace(0, 1, 2_000_001)[1:-1]
    for p_kj in [1e-4, 0.01, 0.1, 0.16, 0.5, 0.84, 0.9, 0.99, 1 - 1e-4]:
        d = p_kj * (1 - p_kj) / (grid + p_kj - 2 * grid * p_kj - 1) ** 2
        inside = grid[d > M]
        bounds = bt.region_bounds(p_kj, M)
        limit = float(bounds.limit)  # slices exist for p_kj in (0, limit) and (1 - limit, 1)
        assert limit == pytest.approx(1 / (1 + M), rel=1e-15)
        assert (inside.size > 0) == (p_kj < limit or p_kj > 1 - limit)
        if inside.size == 0:
            assert np.isnan(bounds.low) and np.isnan(bounds.high)
            continue
        assert abs(float(bounds.low) - max(inside.min(), 0.0)) <= 1e-6 or float(bounds.low) == 0.0
        assert abs(float(bounds.high) - inside.max()) <= 1e-6 or float(bounds.high) == 1.0


def test_eq5_gamma0_is_the_paper_formula():
    for p_kj in [1e-6, 0.01, 0.1, 0.95, 0.999]:
        for M in [2.0, 20.0]:
            b, M_mp = mp.mpf(p_kj), mp.mpf(M)
            paper = 1 - (mp.sqrt((1 / b - 1) / M_mp) - 1) / (1 / b - 2)
            assert float(bt.gamma0(p_kj, M)) == pytest.approx(float(paper), rel=1e-12)


def test_eq3_eq4_against_mpmath():
    for a in [1e-12, 0.02, 0.5, 0.99, 1 - 1e-12]:
        for b in [1e-12, 0.02, 0.5, 0.99, 1 - 1e-12]:
            A, B = mp.mpf(a), mp.mpf(b)
            p = 1 / (1 + (1 - A) * (1 - B) / A / B)
            d = B * (1 - B) / (A + B - 2 * A * B - 1) ** 2
            got_p = float(bt.compose(a, b))
            assert abs(got_p - float(p)) <= 4 * EPS * float(min(p, 1 - p)) + (EPS if p > 0.5 else 0)
            assert float(bt.d_ik(a, b)) == pytest.approx(float(d), rel=8 * EPS)
            assert float(bt.d_kj(b, a)) == pytest.approx(float(d), rel=8 * EPS)


def test_region_bounds_bad_M():
    with pytest.raises(ValueError, match="M > 1"):
        bt.region_bounds(0.1, 0.5)
    with pytest.raises(ValueError, match="M must be"):
        bt.region_bounds(0.1, float("nan"))
