"""prefjax.fit against independent references: published baseball values, scipy on the design
matrix, choix, closed-form Davidson, a per-game sandwich, and a seeded coverage study."""

import math
import warnings

import choix
import jax
import mpmath as mp
import numpy as np
import pytest
from scipy import optimize, special

import prefjax
from prefjax import Comparisons
from prefjax._solver import outcome_log_probs

# Published values for the baseball data (Agresti 2002, Table 10.11; BradleyTerry2).
PUBLISHED_SCORES = [0.68, 1.11, 1.25, 1.29, 1.44, 1.58]  # 2 decimals: half a unit tolerance
PUBLISHED_ROUNDING = 0.005 + 1e-9
PUBLISHED_HOME = 0.302
PUBLISHED_ABILITIES = [0.044, 0.088, 0.137, 0.157, 0.164, 0.190, 0.220]
PUBLISHED_3DP = 0.0005 + 1e-9
SE_ABOUT = 0.3
SE_SPREAD = 0.05
OPT_RTOL = 1e-6  # an independent scipy optimisation, converged to gtol 1e-10
CHOIX_ATOL = 1e-5  # choix's own stopping tolerance


@pytest.fixture(scope="module")
def baseball():
    return Comparisons.example("baseball")


def test_baseball_published_scores(baseball):
    f = prefjax.fit(baseball, reference="Baltimore")
    assert f.converged and f.reference == "Baltimore"
    s = np.asarray(f.scores)
    assert s[f.items.index("Baltimore")] == 0.0
    others = np.sort(np.delete(s, f.items.index("Baltimore")))
    np.testing.assert_allclose(others, PUBLISHED_SCORES, atol=PUBLISHED_ROUNDING)
    se = np.delete(np.asarray(f.se), f.items.index("Baltimore"))
    np.testing.assert_allclose(se, SE_ABOUT, atol=SE_SPREAD)


def test_baseball_published_home_advantage(baseball):
    f = prefjax.fit(baseball, reference="Baltimore", position=True)
    assert abs(f.position - PUBLISHED_HOME) < PUBLISHED_3DP
    e = np.exp(np.asarray(f.scores))
    np.testing.assert_allclose(np.sort(e / e.sum()), PUBLISHED_ABILITIES, atol=PUBLISHED_3DP)


def _design(data, ref, position):
    """Design matrix over (scores without the reference[, h]) and (y, n) per cell."""
    n = data.n_items
    cols = [k for k in range(n) if k != ref]
    x = np.zeros((data.first.size, len(cols) + position))
    for c, (a, b) in enumerate(zip(data.first, data.second, strict=True)):
        if a != ref:
            x[c, cols.index(a)] += 1
        if b != ref:
            x[c, cols.index(b)] -= 1
        if position:
            x[c, -1] = 1
    return x, cols


def _scipy_fit(data, log_cdf, ref, position=False):
    """Independent ML fit: BFGS on the cells' binomial log-likelihood (ties as half wins)."""
    x, cols = _design(data, ref, position)
    wf = data.wins_first + data.ties / 2
    ws = data.wins_second + data.ties / 2

    def nll(beta):
        eta = x @ beta
        return -np.sum(wf * log_cdf(eta) + ws * log_cdf(-eta))

    res = optimize.minimize(nll, np.zeros(x.shape[1]), method="BFGS", options={"gtol": 1e-10})
    scores = np.zeros(data.n_items)
    scores[cols] = res.x[: len(cols)]
    return scores, res.x, nll


def _numeric_hessian(f, x, h=1e-4):
    k = x.size
    out = np.zeros((k, k))
    for i in range(k):
        for j in range(k):
            e_i, e_j = np.eye(k)[i] * h, np.eye(k)[j] * h
            out[i, j] = (f(x + e_i + e_j) - f(x + e_i - e_j) - f(x - e_i + e_j)
                         + f(x - e_i - e_j)) / (4 * h * h)  # fmt: skip
    return out


def test_probit_matches_scipy_on_the_design_matrix(baseball):
    ref = baseball.index("Baltimore")
    f = prefjax.fit(baseball, link=prefjax.probit, reference="Baltimore", position=True)
    scores, beta, nll = _scipy_fit(baseball, special.log_ndtr, ref, position=True)
    np.testing.assert_allclose(np.asarray(f.scores), scores, rtol=OPT_RTOL, atol=OPT_RTOL)
    assert abs(f.position - beta[-1]) < OPT_RTOL
    assert abs(f.loglik + nll(beta)) < 1e-8
    # Covariance: inverse of a finite-difference Hessian of scipy's objective.
    cov = np.linalg.inv(_numeric_hessian(nll, beta))
    keep = [k for k in range(7) if k != ref]
    np.testing.assert_allclose(np.asarray(f.cov)[np.ix_(keep, keep)], cov[:6, :6], rtol=1e-5)
    assert abs(f.position_se - math.sqrt(cov[-1, -1])) < 1e-6


def test_custom_link_matches_scipy(baseball):
    def mix(x):
        return 0.5 * jax.nn.sigmoid(x) + 0.5 * jax.nn.sigmoid(x / 3.0)

    g = prefjax.link(mix, name="mixture")
    f = prefjax.fit(baseball, link=g, reference=0)

    def log_cdf(x):
        return np.log(0.5 * special.expit(x) + 0.5 * special.expit(x / 3.0))

    scores, _, _ = _scipy_fit(baseball.subset(baseball.items), log_cdf, 0)
    data = baseball  # non-positional fit: cells merged, same likelihood
    del data
    np.testing.assert_allclose(np.asarray(f.scores), scores, rtol=OPT_RTOL, atol=OPT_RTOL)


def test_logistic_matches_choix_with_and_without_prior(baseball):
    w = baseball.wins_matrix().astype(int)
    pairs = [(i, j) for i in range(7) for j in range(7) for _ in range(w[i, j])]
    mle = choix.opt_pairwise(7, pairs, alpha=0.0, tol=1e-12)
    f = prefjax.fit(baseball)  # scores sum to 0, as choix's are centred
    np.testing.assert_allclose(np.asarray(f.scores), mle - mle.mean(), atol=CHOIX_ATOL)
    alpha = 0.5  # choix penalises alpha * sum(params**2): a prior of variance 1 / (2 alpha)
    map_ = choix.opt_pairwise(7, pairs, alpha=alpha, tol=1e-12)
    fp = prefjax.fit(baseball, prior=1 / math.sqrt(2 * alpha))
    np.testing.assert_allclose(np.asarray(fp.scores), map_, atol=CHOIX_ATOL)


def test_sum_to_zero_and_reference_describe_the_same_fit(baseball):
    f0 = prefjax.fit(baseball)
    f1 = prefjax.fit(baseball, reference="Boston")
    s0, s1 = np.asarray(f0.scores), np.asarray(f1.scores)
    assert abs(s0.sum()) < 1e-12
    np.testing.assert_allclose(s0 - s0[1], s1, atol=1e-12)
    # Same variance of any contrast under either identification.
    c = np.zeros(7)
    c[2], c[5] = 1, -1
    assert abs(c @ np.asarray(f0.cov) @ c - c @ np.asarray(f1.cov) @ c) < 1e-12
    assert abs(float(f0.prob("Milwaukee", "Baltimore")) - float(f1.prob(4, 0))) < 1e-12


def test_sandwich_matches_a_per_game_computation(baseball):
    f = prefjax.fit(baseball, position=True, reference="Baltimore")
    ref = baseball.index("Baltimore")
    x, cols = _design(baseball, ref, True)
    beta = np.concatenate([np.asarray(f.scores)[cols], [f.position]])
    p = special.expit(x @ beta)
    # Each game's score vector: (y - p) x_c; bread: sum n p (1 - p) x x^T.
    n_c = baseball.wins_first + baseball.wins_second
    bread = (x * (n_c * p * (1 - p))[:, None]).T @ x
    meat = (x * (baseball.wins_first * (1 - p) ** 2 + baseball.wins_second * p**2)[:, None]).T @ x
    inv = np.linalg.inv(bread)
    sandwich = inv @ meat @ inv
    keep = [k for k in range(7) if k != ref]
    np.testing.assert_allclose(np.asarray(f.cov)[np.ix_(keep, keep)], inv[:6, :6], rtol=1e-9)
    np.testing.assert_allclose(
        np.asarray(f.cov_sandwich)[np.ix_(keep, keep)], sandwich[:6, :6], rtol=1e-9
    )


@pytest.mark.parametrize("x", [-30.0, -2.5, 0.0, 0.7, 12.0])
def test_davidson_is_davidsons_model_for_the_logistic_link(x):
    log_nu = math.log(0.8)
    lp = [float(t) for t in outcome_log_probs(prefjax.logistic, x, log_nu, "davidson")]
    mp.mp.dps = 40
    pa, pb = mp.e ** mp.mpf(x), mp.mpf(1)  # pi_a / pi_b = exp(x)
    den = pa + pb + mp.mpf(0.8) * mp.sqrt(pa * pb)
    ref = [mp.log(pa / den), mp.log(pb / den), mp.log(mp.mpf(0.8) * mp.sqrt(pa * pb) / den)]
    np.testing.assert_allclose(lp, [float(r) for r in ref], rtol=1e-13, atol=1e-13)


def _tie_data():
    rng = np.random.default_rng(3)
    rows = []
    s = np.array([0.0, 0.5, -0.4, 1.0, 0.2])
    for _ in range(600):
        a, b = rng.choice(5, 2, replace=False)
        x = s[a] - s[b]
        pa, pb = math.exp(x / 2), math.exp(-x / 2)
        den = pa + pb + 0.6
        u = rng.random()
        winner = "model_a" if u < pa / den else ("model_b" if u < (pa + pb) / den else "tie")
        rows.append({"model_a": f"m{a}", "model_b": f"m{b}", "winner": winner})
    return Comparisons.from_battles(rows)


def test_davidson_matches_scipy_and_half_and_drop():
    data = _tie_data()
    assert data.n_ties > 0
    x, cols = _design(data, 0, False)

    def nll(par):
        eta, nu = x @ par[:-1], math.exp(par[-1])
        la, lb = -np.logaddexp(0, -eta), -np.logaddexp(0, eta)
        d = np.logaddexp(0, math.log(nu) + 0.5 * (la + lb))
        lt = math.log(nu) + 0.5 * (la + lb) - d
        return -np.sum(data.wins_first * (la - d) + data.wins_second * (lb - d) + data.ties * lt)

    res = optimize.minimize(nll, np.zeros(x.shape[1] + 1), method="BFGS", options={"gtol": 1e-10})
    f = prefjax.fit(data, ties="davidson", reference=0)
    np.testing.assert_allclose(np.asarray(f.scores)[cols], res.x[:-1], rtol=OPT_RTOL, atol=1e-6)
    assert abs(math.log(f.nu) - res.x[-1]) < 1e-6 and f.ties == "davidson"
    # "half": ties as half a win each; "drop": the fit of the data without its ties.
    half, _, _ = _scipy_fit(data, lambda t: -np.logaddexp(0, -t), 0)
    np.testing.assert_allclose(np.asarray(prefjax.fit(data, reference=0).scores), half, atol=1e-6)
    no_ties = data._with_counts(data.wins_first, data.wins_second, 0 * data.ties)
    drop = prefjax.fit(data, ties="drop", reference=0)
    np.testing.assert_allclose(
        np.asarray(drop.scores), np.asarray(prefjax.fit(no_ties, reference=0).scores), atol=1e-12
    )
    assert drop.n_ties == data.n_ties


def test_disconnected_graph_names_the_parts():
    data = Comparisons.from_pairs([("a", "b"), ("b", "a"), ("c", "d"), ("d", "c")])
    with pytest.raises(ValueError, match=r"2 disconnected parts.*\{a, b\}; \{c, d\}"):
        prefjax.fit(data)


def test_never_lost_or_never_won_points_to_prior():
    data = Comparisons.from_pairs([("a", "b"), ("b", "c"), ("c", "b"), ("a", "c")])
    with pytest.raises(ValueError, match=r"never lost: a.*prior=") as err:
        prefjax.fit(data)
    assert "never won" not in str(err.value)
    f = prefjax.fit(data, prior=2.0)
    assert f.converged and np.all(np.isfinite(np.asarray(f.scores)))
    assert np.argmax(np.asarray(f.scores)) == 0
    group = Comparisons.from_pairs(
        [("a", "b"), ("b", "a"), ("a", "c"), ("b", "d"), ("c", "d"), ("d", "c")]
    )
    with pytest.raises(ValueError, match=r"items \{a, b\} never lost to any item outside"):
        prefjax.fit(group)


def test_bad_arguments_are_named(baseball):
    pairs = Comparisons.from_pairs([("a", "b"), ("b", "a")])
    with pytest.raises(ValueError, match="position=True needs data that records"):
        prefjax.fit(pairs, position=True)
    with pytest.raises(ValueError, match="no ties"):
        prefjax.fit(pairs, ties="davidson")
    with pytest.raises(ValueError, match=r"unknown ties 'tied'"):
        prefjax.fit(pairs, ties="tied")
    with pytest.raises(TypeError, match="link must be"):
        prefjax.fit(pairs, link=3)
    with pytest.raises(ValueError, match="unknown link 'probt'"):
        prefjax.fit(pairs, link="probt")
    with pytest.raises(ValueError, match="unknown item 'Z'"):
        prefjax.fit(pairs, reference="Z")
    with pytest.raises(ValueError, match="prior must be"):
        prefjax.fit(pairs, prior=-1.0)


def test_float32_is_refused(baseball):
    with jax.enable_x64(False):
        with pytest.raises(RuntimeError, match=r'jax.config.update\("jax_enable_x64", True\)'):
            prefjax.fit(baseball)


def test_non_convergence_is_reported_not_raised(baseball):
    with pytest.warns(prefjax.ConvergenceWarning, match="did not converge"):
        f = prefjax.fit(baseball, max_iter=1)
    assert not f.converged and f.iterations == 1
    assert np.all(np.isfinite(np.asarray(f.scores)))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert prefjax.fit(baseball).converged


COVERAGE_REPLICATES = 300
COVERAGE_LEVEL = 0.95
COVERAGE_TOLERANCE = 0.02  # about 2.5 binomial standard errors at 300 x 8 intervals


def test_intervals_cover_known_scores_at_the_nominal_rate():
    """Seeded: 300 synthetic tournaments with known scores; 95% Wald intervals."""
    rng = np.random.default_rng(12)
    n, games = 8, 12
    truth = np.linspace(-1.2, 1.2, n)
    truth -= truth.mean()
    z = special.ndtri(0.5 + COVERAGE_LEVEL / 2)
    ii, jj = np.triu_indices(n, 1)
    covered = []
    for _ in range(COVERAGE_REPLICATES):
        wins = rng.binomial(games, special.expit(truth[ii] - truth[jj]))
        data = Comparisons.from_counts(ii, jj, wins, games - wins)
        try:
            f = prefjax.fit(data)
        except ValueError:  # a replicate where some item never lost: no finite MLE
            continue
        s, se = np.asarray(f.scores), np.asarray(f.se)
        covered.append(np.abs(s - truth) <= z * se)
    rate = float(np.mean(covered))
    assert len(covered) > 0.95 * COVERAGE_REPLICATES
    print(f"coverage of nominal {COVERAGE_LEVEL} Wald intervals: {rate:.4f} ({len(covered)} fits)")
    assert abs(rate - COVERAGE_LEVEL) < COVERAGE_TOLERANCE, rate
