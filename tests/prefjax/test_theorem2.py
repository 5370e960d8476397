"""Theorem 2 and its proof (Appendix B.3), and prefjax.theorem2_table.

References: mpmath (Proposition 1's closed form, the series of Eq. (B7)), Eq. (10) from
brute-force ratios, and Proposition 2's formula written out here.
"""

import math

import mpmath as mp
import numpy as np
import pytest

import prefjax
from prefjax import bradley_terry as bt
from prefjax import plackett_luce as pl
from prefjax import score_view as sv

from .checks import EPS

RTOL_F64 = 64 * EPS
M_VALUES = [1.01, 1.5, 2.0, 5.0, 10.0, 100.0, 1e4]


def mp_prop1(M):
    M = mp.mpf(M)
    return mp.log((M - 1) / (M + 1)) / 2 + mp.log((mp.sqrt(M) + 1) / (mp.sqrt(M) - 1)) / (
        2 * mp.sqrt(M)
    )


def mp_b7_term(n, M):
    """L_n = 1/(4n-1) M^-2n - 2n/((4n+1)(2n+1)) M^-(2n+1), Eq. (B7)."""
    M = mp.mpf(M)
    return M ** (-2 * n) / (4 * n - 1) - 2 * n * M ** (-(2 * n + 1)) / ((4 * n + 1) * (2 * n + 1))


@pytest.mark.parametrize("M", M_VALUES)
def test_b7_series_sums_to_proposition1_and_each_term_is_positive(M):
    with mp.workdps(50):
        terms = [mp_b7_term(n, M) for n in range(1, 4000 if M < 1.1 else 200)]
        assert all(t > 0 for t in terms)
        # M = 1.01: terms fall like 1.01^-2n; the tail after 4000 terms is below 1e-17.
        assert float(mp.fsum(terms)) == pytest.approx(float(mp_prop1(M)), rel=1e-12)


@pytest.mark.parametrize("M", M_VALUES)
def test_b3_chain_of_bounds(M):
    """L > L_1 = 1/(3M^2) - 2/(15 M^3) > 1/(5M^2) > 1/(6M^2) >= beta^2 / (6 alpha M^2)."""
    with mp.workdps(50):
        L = mp_prop1(M)
        L1 = mp_b7_term(1, M)
        M_ = mp.mpf(M)
        assert L > L1 > 1 / (5 * M_**2) > 1 / (6 * M_**2)
    assert float(bt.region_area(M)) > 1 / (6 * M * M)


def test_theorem2_holds_for_every_k_including_k2():
    """Proposition 2's area is at most 1/(6 M^2) (alpha >= 1, beta <= 1): Theorem 2's
    inequality needs no K > 2. Checked for K = 2..8 at random scores."""
    rng = np.random.default_rng(3)
    for _ in range(20):
        scores = rng.normal(size=8) * 3
        r = pl.robustness_vs_k(scores, 2.0)
        assert np.all(np.asarray(r.area) <= 1 / (6 * 4.0) * (1 + RTOL_F64))
        assert np.all(np.asarray(r.area) < float(bt.region_area(2.0)))


def test_table_rows_against_independent_formulas():
    scores = np.array([0.7, -0.2, 0.4, 1.1, -1.0])
    t = prefjax.theorem2_table(
        [prefjax.logistic, prefjax.probit],
        Ms=[2.0, 10.0],
        Ks=[3, 5],
        scores=scores,
        score_view=False,
    )
    assert len(t) == 2 * 2 * 2
    for row in t:
        M, k = row["M"], row["K"]
        s = scores[:k]
        # Eq. (10) for (u, v) = (0, 1) written out: alpha = 1 + sum_{t >= 2} e^(s_t - s_0),
        # beta = prod_{l = 1}^{K-2} 1 / (1 + sum_{m > l} e^(s_m - s_l)).
        alpha = 1 + sum(math.exp(s[t_] - s[0]) for t_ in range(2, k))
        beta = math.prod(
            1 / (1 + sum(math.exp(s[m] - s[l_]) for m in range(l_ + 1, k)))
            for l_ in range(1, k - 1)
        )
        assert row["alpha"] == pytest.approx(alpha, rel=RTOL_F64)
        assert row["beta"] == pytest.approx(beta, rel=RTOL_F64)
        assert row["paper_area"] == pytest.approx(beta**2 / (6 * alpha * M * M), rel=RTOL_F64)
        assert row["paper_area_numeric"] == pytest.approx(row["paper_area"], rel=1e-8)
        if row["link"] == "logistic":
            assert row["pairwise_area"] == pytest.approx(float(mp_prop1(M)), rel=RTOL_F64)
        assert row["holds_paper"] == (row["pairwise_area"] > row["paper_area"])
        assert row["score_area"] is None and row["holds_score"] is None
    text = str(t)
    assert "pairwise_area" in text.splitlines()[0] and "probit" in text


def test_table_score_view_column_for_plackett_luce():
    t = prefjax.theorem2_table([prefjax.logistic], Ms=[2.0], Ks=[3])
    (row,) = t
    assert row["score_model"] == "plackett_luce"
    want = sv.score_view_area(np.zeros(3), (0, 1, 2), 0, 1, 2.0).value
    assert row["score_area"] == pytest.approx(want, rel=1e-12)
    assert row["holds_score"] == (row["pairwise_area"] > row["score_area"])


def test_table_bad_input():
    with pytest.raises(ValueError, match="Ks must be tuple lengths >= 2"):
        prefjax.theorem2_table(Ks=[1, 3], score_view=False)
    with pytest.raises(ValueError, match="M must be"):
        prefjax.theorem2_table(Ms=[0.0], score_view=False)
    with pytest.raises(ValueError, match="at least max"):
        prefjax.theorem2_table(Ks=[3, 6], scores=np.zeros(4), score_view=False)
    with pytest.raises(TypeError, match="links"):
        prefjax.theorem2_table(links=["logistic"], score_view=False)
    with pytest.raises(ValueError, match="unknown score_view 'cauchit'"):
        prefjax.theorem2_table(Ks=[3], score_view=("cauchit",))
