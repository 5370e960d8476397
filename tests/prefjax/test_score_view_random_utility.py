"""The random-utility K-tuple models (U_i = s_i + eps_i) computed by the grid recursion.

References: Eq. (6) (Gumbel noise is Plackett-Luce exactly), the probit link, a one-dimensional
mpmath integral, Monte Carlo within its standard error, and finite differences.
"""

import itertools
import math

import jax
import jax.numpy as jnp
import mpmath as mp
import numpy as np
import pytest

import prefjax
from prefjax import plackett_luce as pl
from prefjax import score_view as sv

from .checks import EPS

RTOL_RECURSION = 1e-10  # log p on the default grid (96 cells x 8 nodes, cells <= ~0.5 wide)
Z_MC = 5.0  # Monte Carlo band in standard errors (false alarm ~6e-7 per comparison)
SIGMA = 1 / math.sqrt(2)  # the probit model's noise scale: U_i - U_j ~ N(s_i - s_j, 1)

rng = np.random.default_rng(31)


@pytest.mark.parametrize("k", [2, 3, 4, 6])
def test_gumbel_noise_is_plackett_luce(k):
    scores = rng.normal(size=(4, 7)) * 2
    omega = tuple(int(i) for i in rng.permutation(7)[:k])
    got = sv.random_utility_log_prob(scores, omega, noise="gumbel")
    want = pl.log_prob(scores, omega)
    np.testing.assert_allclose(got, want, rtol=RTOL_RECURSION, atol=RTOL_RECURSION)


def test_gumbel_noise_is_plackett_luce_for_spread_scores_on_a_finer_grid():
    """Scores spread over 30 (p down to e^-75): twice the default cells keep cells ~0.4 wide."""
    scores = np.linspace(15, -15, 7)
    for omega in [(6, 5, 4, 3, 2, 1), (0, 6, 1, 5, 2, 4), (3, 4)]:
        got = float(sv.random_utility_log_prob(scores, omega, "gumbel", cells=192))
        assert got == pytest.approx(float(pl.log_prob(scores, omega)), rel=RTOL_RECURSION)


def test_probit_pairwise_margin_is_the_probit_link():
    """sigma = 1/sqrt(2) makes P(U_i > U_j) = Phi(s_i - s_j), the probit link."""
    diffs = np.array([-30.0, -8.0, -1.0, -1e-3, 0.0, 0.4, 3.0, 9.0])
    scores = np.stack([diffs, np.zeros_like(diffs)], -1)
    got = np.asarray(sv.random_utility_log_prob(scores, (0, 1), noise="normal"))
    want = np.log(np.asarray(prefjax.probit(jnp.asarray(diffs))))
    np.testing.assert_allclose(got, want, rtol=RTOL_RECURSION, atol=4 * EPS)  # log p ~ 0


def test_probit_k3_against_a_one_dimensional_mpmath_integral():
    """P(U_1 > U_2 > U_3) = int f_2(r) F_3(r) (1 - F_1(r)) dr (condition on U_2 = r)."""
    with mp.workdps(30):
        for s in [(0.0, 0.0, 0.0), (1.2, -0.3, 0.4), (-2.0, 1.0, 3.0)]:
            s1, s2, s3 = (mp.mpf(t) for t in s)
            sd = mp.mpf(1) / mp.sqrt(2)

            def integrand(r, s1=s1, s2=s2, s3=s3, sd=sd):
                return mp.npdf(r, s2, sd) * mp.ncdf(r, s3, sd) * (1 - mp.ncdf(r, s1, sd))

            want = mp.quad(integrand, [-mp.inf, s2, mp.inf])
            got = float(sv.random_utility_prob(np.array(s), (0, 1, 2)))
            assert got == pytest.approx(float(want), rel=RTOL_RECURSION)


def test_probit_against_monte_carlo():
    scores = np.array([0.5, -0.2, 1.0, 0.0, -1.3])
    shown = (2, 0, 3, 1)  # K = 4 of N = 5
    n = 400_000
    u = scores[list(shown)] + SIGMA * np.random.default_rng(5).normal(size=(n, 4))
    ranked = np.asarray(shown)[np.argsort(-u, axis=1)]
    for omega in [(2, 0, 3, 1), (0, 2, 1, 3), (1, 3, 0, 2)]:
        freq = np.mean(np.all(ranked == np.asarray(omega), axis=1))
        p = float(sv.random_utility_prob(scores, omega))
        assert abs(freq - p) <= Z_MC * math.sqrt(p * (1 - p) / n), (omega, freq, p)


def test_probit_rankings_of_a_subset_sum_to_one():
    scores = np.array([0.3, -1.0, 2.0, 0.1])
    perms = np.array(list(itertools.permutations(range(4))))
    probs = sv.random_utility_prob(scores[perms], (0, 1, 2, 3))  # batched: row i in order
    assert float(jnp.sum(probs)) == pytest.approx(1.0, abs=24 * RTOL_RECURSION)


def test_recursion_gradient_against_central_differences():
    scores = jnp.asarray([0.4, -0.7, 1.1, 0.0])
    omega = (2, 0, 3, 1)
    grad = jax.grad(lambda s: sv.random_utility_log_prob(s, omega))(scores)
    h = 1e-5
    for i in range(4):
        e = jnp.zeros(4).at[i].set(h)
        fd = (
            sv.random_utility_log_prob(scores + e, omega)
            - sv.random_utility_log_prob(scores - e, omega)
        ) / (2 * h)
        assert float(grad[i]) == pytest.approx(float(fd), rel=1e-7, abs=1e-9)


def test_recursion_batches_under_jit_and_vmap():
    scores = jnp.asarray(rng.normal(size=(3, 5)))
    omega = (4, 1, 2)
    eager = sv.random_utility_log_prob(scores, omega)
    jitted = jax.jit(lambda s: sv.random_utility_log_prob(s, omega))(scores)
    mapped = jax.vmap(lambda s: sv.random_utility_log_prob(s, omega))(scores)
    np.testing.assert_allclose(jitted, eager, rtol=1e-13)
    np.testing.assert_allclose(mapped, eager, rtol=1e-13)
    assert eager.shape == (3,)
