"""The K-tuple Plackett-Luce model in the paper's view (Section 2.4, Section 3.2).

References are independent of prefjax: brute-force sums over all K-permutations, choix, a
Gumbel-max sampler, mpmath at 50 digits, finite differences and grid scans.
"""

import itertools
import math

import choix
import jax
import jax.numpy as jnp
import mpmath as mp
import numpy as np
import pytest

import prefjax
from prefjax import bradley_terry as bt
from prefjax import plackett_luce as pl

from .checks import EPS

RTOL_F64 = 64 * EPS  # a handful of roundings in log space
RTOL_AREA = 1e-8  # the target for Proposition 2 against the numeric area
Z_SAMPLER = 5.0  # binomial confidence band of the Gumbel-max sampler (false alarm ~6e-7)

rng = np.random.default_rng(20240611)


def mp_log_prob(scores, omega):
    """Eq. (6), first form, at 50 digits."""
    s = [mp.mpf(float(scores[o])) for o in omega]
    total = mp.mpf(0)
    for l_ in range(len(s) - 1):
        total += s[l_] - mp.log(mp.fsum(mp.exp(t) for t in s[l_:]))
    return total


# --- Eq. (6) ---------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [2, 3, 4, 5, 6])
def test_rankings_of_each_k_subset_sum_to_one(n):
    """Eq. (6) ranks the K options shown, so the K! rankings of every K-subset sum to 1 and all
    K-permutations of the N options to C(N, K) (1 only for K = N; a top-K-of-N reading, with
    all remaining N options in each denominator, is not Eq. (6))."""
    scores = rng.normal(size=n) * 3
    scores[0] = 40.0  # one dominant option: probabilities from ~1 down to ~e^-40
    for k in range(2, n + 1):
        perms = np.array(list(itertools.permutations(range(n), k)))
        # One batched call: row i holds the scores of perms[i] in ranking order.
        probs = np.asarray(pl.prob(scores[perms], tuple(range(k))))
        subsets = [tuple(sorted(p)) for p in perms]
        totals: dict = {}
        for key, p in zip(subsets, probs, strict=True):
            totals.setdefault(key, []).append(p)
        assert len(totals) == math.comb(n, k)
        for key, ps in totals.items():
            assert len(ps) == math.factorial(k)
            assert math.fsum(ps) == pytest.approx(1.0, abs=RTOL_F64 * len(ps)), key
        for i in range(0, len(perms), max(1, len(perms) // 7)):  # the batch is Eq. (6) itself
            om = tuple(int(j) for j in perms[i])
            assert probs[i] == pytest.approx(math.exp(float(mp_log_prob(scores, om))), rel=RTOL_F64)


def test_each_factor_of_eq6_matches_choix():
    for k in [2, 3, 5, 7]:
        scores = rng.normal(size=9) * 2
        omega = tuple(int(i) for i in rng.permutation(9)[:k])
        product = 1.0
        for l_ in range(k - 1):
            want = choix.probabilities(list(omega[l_:]), scores)[0]  # softmax over the rest
            if l_ < k - 2:
                got = math.exp(
                    float(pl.log_prob(scores, omega[l_:]) - pl.log_prob(scores, omega[l_ + 1 :]))
                )
            else:
                got = float(pl.prob(scores, omega[l_:]))
            assert got == pytest.approx(want, rel=RTOL_F64)
            product *= want
        assert float(pl.prob(scores, omega)) == pytest.approx(product, rel=RTOL_F64 * k)


def test_matches_gumbel_max_sampler():
    """Rankings of s_i + Gumbel noise among the K options shown (the other N - K ignored)."""
    n_samples = 400_000
    scores = np.array([0.8, 0.1, -0.4, 0.5, -1.0])
    sampler = np.random.default_rng(7)
    shown = (3, 0, 2, 1)  # K = 4 of N = 5
    utilities = scores[list(shown)] + sampler.gumbel(size=(n_samples, 4))
    ranked = np.asarray(shown)[np.argsort(-utilities, axis=1)]
    for omega in [(0, 3, 1, 2), (3, 0, 2, 1), (2, 1, 0, 3)]:
        freq = np.mean(np.all(ranked == np.asarray(omega), axis=1))
        p = float(pl.prob(scores, omega))
        se = math.sqrt(p * (1 - p) / n_samples)
        assert abs(freq - p) <= Z_SAMPLER * se, (omega, freq, p)


def test_k2_is_bradley_terry():
    scores = rng.normal(size=4) * 5
    for i, j in itertools.permutations(range(4), 2):
        want = float(prefjax.logistic(scores[i] - scores[j]))
        assert float(pl.prob(scores, (i, j))) == pytest.approx(want, rel=RTOL_F64)


def test_log_prob_against_mpmath_at_extremes():
    cases = [
        ([50.0, 0.0, -50.0], (0, 1, 2)),  # p = 1 - 2e-22: log p needs relative precision
        ([700.0, -700.0, 0.0, 3.0], (1, 0, 3, 2)),  # p ~ e^-1400: log p, not p
        ([1e-9, 0.0, -1e-9], (2, 1, 0)),
        ([0.3, -0.2, 1.0, 0.0, 2.0, -3.0], (4, 2, 0, 3, 1, 5)),
    ]
    with mp.workdps(50):
        for scores, omega in cases:
            want = mp_log_prob(scores, omega)
            got = float(pl.log_prob(scores, omega))
            assert abs(got - float(want)) <= RTOL_F64 * abs(float(want)), (scores, got, want)


def test_batches_and_works_under_jit_and_vmap():
    scores = jnp.asarray(rng.normal(size=(3, 4, 6)))
    omega = (5, 0, 2)
    eager = pl.log_prob(scores, omega)
    assert eager.shape == (3, 4)
    jitted = jax.jit(lambda s: pl.log_prob(s, omega))(scores)
    mapped = jax.vmap(jax.vmap(lambda s: pl.log_prob(s, omega)))(scores)
    for i in range(3):
        for j in range(4):
            want = float(mp_log_prob(np.asarray(scores[i, j]), omega))
            assert float(eager[i, j]) == pytest.approx(want, rel=RTOL_F64)
    np.testing.assert_allclose(jitted, eager, rtol=RTOL_F64)
    np.testing.assert_allclose(mapped, eager, rtol=RTOL_F64)


# --- Lemma 5: Eqs. (7) and (8) ------------------------------------------------------------


def test_eq8_ratio_is_the_same_for_every_choice_of_omega_prime():
    """Lemma 5's omega'_uv may be any (K-2)-permutation of O minus {o_u, o_v}, options outside
    omega included: the ratio never changes, the two probabilities do (by a common factor)."""
    n, omega = 5, (3, 1, 4, 0)
    scores = rng.normal(size=n) * 2
    for u, v in itertools.combinations(range(4), 2):
        others = [o for o in range(n) if o not in (omega[u], omega[v])]
        want = float(pl.ratio(scores, omega, u, v))
        assert want == pytest.approx(math.exp(scores[omega[v]] - scores[omega[u]]), rel=RTOL_F64)
        p_uvs, products = [], []
        for rest in itertools.permutations(others, 2):
            om_uv, om_vu = pl.reorder(omega, u, v, rest)
            assert om_uv[-2:] == (omega[u], omega[v]) and om_vu[-2:] == (omega[v], omega[u])
            got = float(pl.prob(scores, om_vu) / pl.prob(scores, om_uv))
            assert got == pytest.approx(want, rel=RTOL_F64)
            s = pl.sensitivity(scores, omega, u, v, rest=rest)
            p_uvs.append(float(s.p_uv))
            products.append(float(s.d_uv * s.p_uv))  # Eq. (9) is homogeneous of degree -1
        assert max(p_uvs) / min(p_uvs) > 1.5  # the coordinates do depend on the choice
        assert np.allclose(products, products[0], rtol=RTOL_F64 * 4)


def test_eq7_rebuilds_the_probability_from_brute_force_ratios():
    for k in [2, 4, 6]:
        scores = rng.normal(size=7) * 2
        omega = tuple(int(i) for i in rng.permutation(7)[:k])
        r = np.ones((k, k))
        for l_, m in itertools.combinations(range(k), 2):
            om_lm, om_ml = pl.reorder(omega, l_, m)
            r[l_, m] = float(pl.prob(scores, om_ml) / pl.prob(scores, om_lm))
        np.testing.assert_allclose(
            np.triu(np.asarray(pl.ratios(scores, omega)), 1), np.triu(r, 1), rtol=RTOL_F64
        )
        assert float(pl.prob_from_ratios(r)) == pytest.approx(
            float(pl.prob(scores, omega)), rel=RTOL_F64 * k
        )


# --- Eqs. (9)-(10) ------------------------------------------------------------------------------


def mp_alpha_beta(scores, omega, u, v):
    """Eq. (10) literally, each ratio p_omega_ml / p_omega_lm from mpmath's Eq. (6)."""

    def r(l_, m):
        om_lm, om_ml = pl.reorder(omega, l_, m)
        return mp.exp(mp_log_prob(scores, om_ml) - mp_log_prob(scores, om_lm))

    k = len(omega)
    alpha = 1 + mp.fsum(r(u, t) for t in range(u + 1, k) if t != v)
    beta = mp.mpf(1)
    for l_ in range(k - 1):
        if l_ != u:
            beta /= 1 + mp.fsum(r(l_, m) for m in range(l_ + 1, k))
    return alpha, beta


def test_alpha_beta_against_eq10_in_mpmath():
    with mp.workdps(40):
        for k, pairs in [(2, [(0, 1)]), (4, [(0, 1), (0, 3), (1, 2), (2, 3)]), (6, [(1, 4)])]:
            scores = rng.normal(size=6) * 2
            omega = tuple(int(i) for i in rng.permutation(6)[:k])
            for u, v in pairs:
                ab = pl.alpha_beta(scores, omega, u, v)
                alpha, beta = mp_alpha_beta(scores, omega, u, v)
                assert float(ab.alpha) == pytest.approx(float(alpha), rel=RTOL_F64)
                assert float(ab.beta) == pytest.approx(float(beta), rel=RTOL_F64 * k)
                # Lemma 5: p_omega = beta / (alpha + p_vu / p_uv)
                p = beta / (alpha + mp.exp(scores[omega[v]] - scores[omega[u]]))
                assert float(pl.prob(scores, omega)) == pytest.approx(float(p), rel=RTOL_F64 * k)


def test_alpha_is_one_for_the_last_pair_and_beta_one_for_k2():
    """The paper says alpha > 1 and beta < 1; the boundary cases are equalities."""
    scores = rng.normal(size=5)
    for k in [3, 4, 5]:
        assert float(pl.alpha_beta(scores, tuple(range(k)), k - 2, k - 1).alpha) == 1.0
        assert float(pl.alpha_beta(scores, tuple(range(k)), 0, 1).alpha) > 1.0
    assert float(pl.alpha_beta(scores, (0, 1), 0, 1).beta) == 1.0


def test_eq9_closed_form_equals_autodiff_through_lemma5():
    for k, pairs in [(2, [(0, 1)]), (3, [(0, 1), (1, 2)]), (6, [(1, 4)])]:
        scores = rng.normal(size=(2, 6)) * 2
        omega = tuple(int(i) for i in rng.permutation(6)[:k])
        for u, v in pairs:
            a = pl.sensitivity(scores, omega, u, v)
            b = pl.sensitivity(scores, omega, u, v, method="autodiff")
            np.testing.assert_allclose(a.d_uv, b.d_uv, rtol=RTOL_F64 * k)
            np.testing.assert_allclose(a.d_vu, b.d_vu, rtol=RTOL_F64 * k)
            np.testing.assert_allclose(a.p, b.p, rtol=RTOL_F64)


def test_eq9_against_central_differences():
    h = 1e-6  # relative step; the error is O(h^2) ~ 1e-12 times the third derivative
    for alpha, beta, x, y in [
        (1.0, 1.0, 0.01, 0.02),
        (2.5, 0.3, 0.2, 0.05),
        (1.01, 0.99, 1e-4, 0.3),
    ]:

        def f(x_, y_, alpha=alpha, beta=beta):  # Eq. (7) with alpha and beta fixed
            return beta * x_ / (alpha * x_ + y_)

        dx = (f(x * (1 + h), y) - f(x * (1 - h), y)) / (2 * h * x)
        dy = (f(x, y * (1 + h)) - f(x, y * (1 - h))) / (2 * h * y)
        assert float(pl.d_uv(x, y, alpha, beta)) == pytest.approx(dx, rel=1e-8)
        assert float(pl.d_vu(x, y, alpha, beta)) == pytest.approx(dy, rel=1e-8)
        assert float(pl.compose(x, y, alpha, beta)) == pytest.approx(f(x, y), rel=RTOL_F64)


# --- Eqs. (11)-(12) and Proposition 2 --------------------------------------------------------


@pytest.mark.parametrize("wrt", ["uv", "vu"])
def test_eq11_eq12_against_a_grid_scan(wrt):
    alpha, beta, M = 1.7, 0.6, 3.0
    grid = np.linspace(0, 1, 1_000_001)[1:]
    step = grid[1] - grid[0]
    limit = beta / (4 * alpha * M)
    for at in [1e-6, 0.2 * limit, 0.7 * limit, 0.999 * limit]:
        x, y = (at, grid) if wrt == "uv" else (grid, at)
        d = np.abs(beta * (y if wrt == "uv" else x) / (alpha * x + y) ** 2)  # |Eq. (9)|
        inside = grid[d > M]
        b = pl.region_bounds(M, alpha, beta, wrt, at=at)
        assert float(b.limit) == pytest.approx(limit, rel=RTOL_F64)
        assert abs(float(b.low) - inside.min()) <= step
        assert abs(float(b.high) - inside.max()) <= step
    # Past the limit no slice is M-sensitive.
    x, y = (1.001 * limit, grid) if wrt == "uv" else (grid, 1.001 * limit)
    assert not np.any(np.abs(beta * (y if wrt == "uv" else x) / (alpha * x + y) ** 2) > M)
    assert np.isnan(pl.region_bounds(M, alpha, beta, wrt, at=1.001 * limit).low)


AREA_CASES = [
    (1.0, 1.0, 1.01),
    (1.01, 0.99, 2.0),
    (1.5, 0.5, 10.0),
    (7.0, 0.02, 3.0),
    (120.0, 1e-4, 1e4),
    (1.0, 0.3, 1.2),
]


@pytest.mark.parametrize("alpha, beta, M", AREA_CASES)
@pytest.mark.parametrize("wrt", ["uv", "vu"])
def test_proposition2_against_the_numeric_area(alpha, beta, M, wrt):
    est = pl.numeric_region_area(M, alpha, beta, wrt)
    want = float(pl.region_area(M, alpha, beta, wrt))
    assert est.value == pytest.approx(want, rel=RTOL_AREA)
    assert est.error <= RTOL_AREA * want


def test_proposition2_against_mpmath_integral_of_eq11():
    """int_0^{beta/(4 alpha M)} 2 gamma_2 dp: the integral Appendix B.2 sets up."""
    with mp.workdps(30):
        for alpha, beta, M in [(1.01, 0.99, 2.0), (3.0, 0.2, 7.0)]:
            a, b, m = mp.mpf(alpha), mp.mpf(beta), mp.mpf(M)
            two_gamma2 = lambda p, a=a, b=b, m=m: mp.sqrt(max(b * (b - 4 * a * m * p), 0)) / m  # noqa: E731
            area = mp.quad(two_gamma2, [0, b / (4 * a * m)])
            assert float(pl.region_area(M, alpha, beta)) == pytest.approx(float(area), rel=RTOL_F64)


def test_appendix_b6_drops_a_factor_of_M():
    """B6 ends with beta^2 / (6 alpha M); the area is M times smaller (Proposition 2 is right)."""
    for alpha, beta, M in [(1.01, 0.99, 2.0), (2.0, 0.5, 10.0)]:
        numeric = pl.numeric_region_area(M, alpha, beta).value
        b6 = beta**2 / (6 * alpha * M)
        assert numeric * M == pytest.approx(b6, rel=RTOL_AREA)


def test_numeric_area_clips_to_the_unit_square_for_small_M():
    """For M < beta the region of Eq. (11) pokes out of the square; brute force agrees."""
    alpha, beta, M = 1.0, 1.0, 0.6
    n = 2000
    c = (np.arange(n) + 0.5) / n
    x, y = np.meshgrid(c, c, indexing="ij")
    brute = np.mean(beta * y / (alpha * x + y) ** 2 > M)
    est = pl.numeric_region_area(M, alpha, beta)
    assert est.value < float(pl.region_area(M, alpha, beta))
    assert est.value == pytest.approx(brute, abs=4.0 / n)  # midpoint grid: O(perimeter / n)


# --- Section 3.2 --------------------------------------------------------------------------------


def test_robustness_vs_k_against_alpha_beta_of_each_prefix():
    scores = rng.normal(size=7)
    order = tuple(int(i) for i in rng.permutation(7))
    for M, u, v in [(2.0, 0, 1), (10.0, 1, 3)]:
        r = pl.robustness_vs_k(scores, M, u, v, order=order)
        assert r.K.tolist() == list(range(max(2, v + 1), 8))
        for i in [0, len(r.K) // 2, len(r.K) - 1]:
            k = int(r.K[i])
            ab = pl.alpha_beta(scores, order[:k], u, v)
            assert float(r.alpha[i]) == pytest.approx(float(ab.alpha), rel=RTOL_F64)
            assert float(r.beta[i]) == pytest.approx(float(ab.beta), rel=RTOL_F64)
            want = float(ab.beta) ** 2 / (6 * float(ab.alpha) * M * M)
            assert float(r.area[i]) == pytest.approx(want, rel=RTOL_F64)
        # Section 3.2: alpha never falls, beta and the area fall strictly as K grows.
        assert np.all(np.diff(np.asarray(r.alpha)) >= 0)
        assert np.all(np.diff(np.asarray(r.beta)) < 0)
        assert np.all(np.diff(np.asarray(r.area)) < 0)
        assert float(r.pairwise_area) == pytest.approx(float(bt.region_area(M)), rel=RTOL_F64)


def test_appending_an_option_shrinks_every_earlier_factor_of_beta():
    """Section 3.2 calls beta's factors constants; each one changes (and shrinks) with K."""
    scores = np.array([0.9, 0.4, 0.0, -0.3, -1.1])
    for k in [3, 4]:
        f_k = [choix.probabilities(list(range(l_, k)), scores)[0] for l_ in range(k - 1)]
        f_k1 = [choix.probabilities(list(range(l_, k + 1)), scores)[0] for l_ in range(k - 1)]
        assert all(b < a for a, b in zip(f_k, f_k1, strict=True))


def test_robustness_vs_k_default_order_batches_and_jits():
    scores = jnp.asarray(rng.normal(size=(2, 5)))
    r = pl.robustness_vs_k(scores, 5.0)
    jitted = jax.jit(lambda s: pl.robustness_vs_k(s, 5.0).area)(scores)
    np.testing.assert_allclose(jitted, r.area, rtol=RTOL_F64)
    for i in range(2):
        order = tuple(int(j) for j in np.argsort(-np.asarray(scores[i])))
        want = pl.robustness_vs_k(np.asarray(scores[i]), 5.0, order=order).area
        np.testing.assert_allclose(r.area[i], want, rtol=RTOL_F64)


def test_k2_paper_view_is_not_proposition1():
    """At K = 2 (alpha = beta = 1) Proposition 2 gives 1/(6 M^2); Proposition 1 ~ 1/(3 M^2):
    Theorem 2 compares regions in different coordinates (its inequality holds at K = 2 too)."""
    for M in [10.0, 100.0, 1e4]:
        ratio = float(pl.region_area(M, 1.0, 1.0)) / float(bt.region_area(M))
        assert ratio < 1.0
    assert ratio == pytest.approx(0.5, rel=1e-3)


# --- bad input ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "call, exc, match",
    [
        (lambda: pl.log_prob([0.0, 1.0, 2.0], (0, 0, 1)), ValueError, "omega repeats option 0"),
        (
            lambda: pl.log_prob([0.0, 1.0, 2.0], (0, 3)),
            ValueError,
            r"omega\[1\] = 3 is out of range",
        ),
        (lambda: pl.log_prob([0.0, 1.0, 2.0], (-1, 0)), ValueError, r"omega\[0\] = -1"),
        (lambda: pl.log_prob([0.0, 1.0, 2.0], (1,)), ValueError, "at least 2 options; got K = 1"),
        (lambda: pl.log_prob([0.0, 1.0, 2.0], (0, 1.5)), TypeError, r"omega\[1\] must be an int"),
        (
            lambda: pl.log_prob([0.0, np.nan, 2.0], (0, 1)),
            ValueError,
            r"scores\[1\] = nan is not finite",
        ),
        (lambda: pl.log_prob([0.0, np.inf], (0, 1)), ValueError, "scores"),
        (lambda: pl.log_prob(["a", "b"], (0, 1)), TypeError, "scores"),
        (
            lambda: pl.alpha_beta([0.0, 1.0, 2.0], (0, 1, 2), 1, 1),
            ValueError,
            "u < v; got u = 1, v = 1",
        ),
        (lambda: pl.alpha_beta([0.0, 1.0, 2.0], (0, 1, 2), 2, 1), ValueError, "u < v"),
        (lambda: pl.alpha_beta([0.0, 1.0, 2.0], (0, 1, 2), 0, 3), ValueError, "v < K = 3"),
        (
            lambda: pl.sensitivity([0.0, 1.0], (0, 1), 0, 1, method="x"),
            ValueError,
            "unknown method",
        ),
        (lambda: pl.region_area(0.0, 1.0, 1.0), ValueError, "M must be a finite number > 0"),
        (lambda: pl.region_area(-2.0, 1.0, 1.0), ValueError, "M must be"),
        (lambda: pl.region_area(2.0, 1.0, 1.0, wrt="ik"), ValueError, "unknown wrt"),
        (lambda: pl.region_area(2.0, -1.0, 1.0), ValueError, "alpha must be finite and > 0"),
        (
            lambda: pl.region_bounds(np.nan, 1.0, 1.0, at=0.1),
            ValueError,
            "M must be a positive number",
        ),
        (lambda: pl.numeric_region_area(2.0, 1.0, 0.0), ValueError, "beta must be"),
        (lambda: pl.reorder((0, 1, 2), 0, 1, rest=(0,)), ValueError, "rest must not contain"),
        (lambda: pl.reorder((0, 1, 2, 3), 0, 1, rest=(2,)), ValueError, "rest must list K - 2 = 2"),
        (
            lambda: pl.robustness_vs_k([0.0, 1.0, 2.0], order=(0, 1)),
            ValueError,
            "order must rank all",
        ),
    ],
)
def test_bad_input_names_the_argument(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


def test_omega_must_be_concrete_under_jit():
    with pytest.raises(TypeError, match="omega must be a concrete sequence"):
        jax.jit(lambda om: pl.log_prob(jnp.zeros(3), om))(jnp.asarray([0, 1]))
