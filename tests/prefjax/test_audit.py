"""prefjax.audit against independent references: finite differences of refits for the
implicit-function Jacobian, brute-force Lemma 1 in mpmath for the paths, and the bootstrap
against the fit's standard errors."""

import csv
import json
import math
from collections import defaultdict

import mpmath as mp
import numpy as np
import pytest

import prefjax
from prefjax import Comparisons

FD_STEP = 1e-5
FD_RTOL = 1e-5  # central differences of converged refits: O(h^2) plus solver noise
MP_RTOL = 1e-12
BOOT_SE_RTOL = 0.2  # 400 resamples: the standard error of an SD estimate is ~3.5%


@pytest.fixture(scope="module")
def baseball():
    return Comparisons.example("baseball")


@pytest.fixture(scope="module")
def base_audit(baseball):
    return prefjax.audit(prefjax.fit(baseball), M=10)


def _refit_p(data, f, i, j, pair, delta):
    """p_ij after moving pair (k, l)'s rate by delta: n_c * delta of l's wins become k's."""
    k, l_ = pair
    wf, ws = data.wins_first.copy(), data.wins_second.copy()
    n_c = wf + ws + (0 if f.ties == "drop" else data.ties)
    for c in range(data.first.size):
        a, b = data.first[c], data.second[c]
        if (a, b) == (k, l_):
            wf[c] += n_c[c] * delta
            ws[c] -= n_c[c] * delta
        elif (a, b) == (l_, k):
            ws[c] += n_c[c] * delta
            wf[c] -= n_c[c] * delta
    moved = data._with_counts(wf, ws, data.ties)
    g = prefjax.fit(moved, link=f.link, ties=f.ties, position=f.position is not None)
    return float(g.prob(i, j))


@pytest.mark.parametrize(
    "link, position", [(prefjax.logistic, False), (prefjax.probit, True)], ids=["logit", "probit"]
)
def test_jacobian_matches_finite_differences_of_refits(baseball, link, position):
    f = prefjax.fit(baseball, link=link, position=position)
    a = prefjax.audit(f)
    checks = [("Milwaukee", "Baltimore"), ("Toronto", "Cleveland")]
    for i, j in checks:
        jac = a.jacobian(i, j)
        for q in (0, 7, int(np.argmax(np.abs(jac)))):
            pair = tuple(int(x) for x in a.pairs[q])
            up = _refit_p(baseball, f, i, j, pair, FD_STEP)
            down = _refit_p(baseball, f, i, j, pair, -FD_STEP)
            fd = (up - down) / (2 * FD_STEP)
            assert abs(jac[q] - fd) <= FD_RTOL * max(abs(fd), 1e-3), (i, j, pair, jac[q], fd)


def test_jacobian_summary_matches_the_full_rows(base_audit):
    a = base_audit
    for q in range(0, a.i.size, 5):
        row = a.jacobian(int(a.i[q]), int(a.j[q]))
        assert abs(np.max(np.abs(row)) - a.sensitivity[q]) < 1e-14
        assert row[a.max_jacobian_pair[q]] == pytest.approx(a.max_jacobian[q], abs=1e-14)
    # p_ji = 1 - p_ij: the Jacobian rows are negatives of each other.
    np.testing.assert_allclose(
        a.jacobian("Boston", "Detroit"), -a.jacobian("Detroit", "Boston"), atol=1e-14
    )


def _mp_link(name):
    if name == "logistic":
        return (lambda x: 1 / (1 + mp.e ** (-x))), (lambda p: mp.log(p / (1 - p)))
    cdf = lambda x: mp.erfc(-x / mp.sqrt(2)) / 2  # noqa: E731
    return cdf, (lambda p: mp.findroot(lambda x: cdf(x) - p, mp.sqrt(2) * mp.erfinv(2 * p - 1)))


def _mp_rates(path):
    """Observed rates straight from the CSV: wins of i over j, both venues."""
    wins = defaultdict(int)
    with open(path) as fh:
        for row in csv.DictReader(fh):
            h, a = row["home.team"], row["away.team"]
            wins[h, a] += int(row["home.wins"])
            wins[a, h] += int(row["away.wins"])
    return wins


@pytest.mark.parametrize("name", ["logistic", "probit"])
def test_lemma1_paths_match_brute_force_mpmath(baseball, name):
    mp.mp.dps = 40
    link = prefjax.logistic if name == "logistic" else prefjax.probit
    a = prefjax.audit(prefjax.fit(baseball, link=link))
    g, ginv = _mp_link(name)
    wins = _mp_rates(prefjax.example_data("baseball"))
    teams = a.items

    def dg(x):
        return mp.diff(g, x)

    for q in range(0, a.i.size, 3):
        i, j = teams[a.i[q]], teams[a.j[q]]
        best, best_k, best_p = -1, None, None
        for k in teams:
            if k in (i, j):
                continue
            p_ik = mp.mpf(wins[i, k]) / (wins[i, k] + wins[k, i])
            p_kj = mp.mpf(wins[k, j]) / (wins[k, j] + wins[j, k])
            x_ik, x_kj = ginv(p_ik), ginv(p_kj)
            d_ik = dg(x_ik + x_kj) / dg(x_ik)
            d_kj = dg(x_ik + x_kj) / dg(x_kj)
            m = max(d_ik, d_kj)
            if m > best:
                best, best_k, best_p = m, k, g(x_ik + x_kj)
        assert teams[a.worst_k[q]] == best_k
        assert a.n_paths[q] == 5
        assert float(a.local_M[q]) == pytest.approx(float(best), rel=MP_RTOL)
        assert float(a.implied_p[q]) == pytest.approx(float(best_p), rel=MP_RTOL)


def test_a_rate_of_zero_uses_the_continuity_correction():
    # a beat b 3-0; b and c split; a and c split: the (a, b) leg has no finite score.
    data = Comparisons.from_counts(["a", "b", "a"], ["b", "c", "c"], [3, 2, 2], [0, 2, 2])
    f = prefjax.fit(data, prior=3.0)
    a = prefjax.audit(f)
    paths = a.paths("a", "c")
    assert [p["k"] for p in paths] == ["b"]
    p_ab = (3 + 0.5) / (3 + 1)
    assert paths[0]["p_ik"] == pytest.approx(p_ab, rel=1e-14)
    implied = float(prefjax.compose(prefjax.logistic, p_ab, 0.5))
    assert paths[0]["implied_p"] == pytest.approx(implied, rel=1e-13)
    q = a._q("a", "c")
    assert a.local_M[q] == pytest.approx(paths[0]["local_M"], rel=1e-12)


def test_rows_and_files(base_audit, tmp_path):
    a = base_audit
    rows = a.to_rows()
    assert len(rows) == 42
    need = {"i", "j", "p", "observed", "local_M", "fragile", "max_jacobian",
            "max_jacobian_k", "max_jacobian_l"}  # fmt: skip
    assert need <= set(rows[0])
    by = {(r["i"], r["j"]): r for r in rows}
    r = by["Milwaukee", "Baltimore"]
    assert r["observed"] == 13 and r["rate"] == pytest.approx(11 / 13)
    assert r["p"] == pytest.approx(float(a.fit.prob("Milwaukee", "Baltimore")))
    assert by["Baltimore", "Milwaukee"]["p"] == pytest.approx(1 - r["p"])
    assert all((x["sensitivity"] * 0.01 > a.threshold) == x["fragile"] for x in rows)
    assert a.threshold == pytest.approx(10 * 0.01)
    low = prefjax.audit(a.fit, threshold=0.002)  # a stricter verdict flags more pairs
    assert low.fragile.sum() > a.fragile.sum()
    js = json.loads(a.to_json(tmp_path / "a.json").read_text())
    assert js["summary"]["n_ordered_pairs"] == 42 and len(js["pairs"]) == 42
    with open(a.to_csv(tmp_path / "a.csv")) as fh:
        assert len(list(csv.DictReader(fh))) == 42
    assert "fragile" in repr(a)


def test_unobserved_pairs_have_no_rate():
    data = Comparisons.from_pairs([("a", "b"), ("b", "a"), ("b", "c"), ("c", "b"), ("a", "b")])
    a = prefjax.audit(prefjax.fit(data))
    rows = {(r["i"], r["j"]): r for r in a.to_rows()}
    assert rows["a", "c"]["observed"] == 0 and rows["a", "c"]["rate"] is None
    assert rows["a", "c"]["n_paths"] == 1 and rows["a", "c"]["worst_k"] == "b"
    assert rows["a", "b"]["n_paths"] == 0 and rows["a", "b"]["local_M"] is None


def test_bootstrap_is_seeded_and_matches_the_standard_errors(baseball):
    f = prefjax.fit(baseball)
    a1 = prefjax.audit(f, bootstrap=400, seed=3)
    a2 = prefjax.audit(f, bootstrap=400, seed=3)
    b = a1.bootstrap
    np.testing.assert_array_equal(b.scores, a2.bootstrap.scores)
    assert b.n_resamples == 400 and b.n_unconverged == 0
    np.testing.assert_allclose(b.scores.std(0), np.asarray(f.se), rtol=BOOT_SE_RTOL)
    assert np.all(b.p_low <= a1.p) and np.all(a1.p <= b.p_high)
    assert np.all(b.sensitivity_low <= b.sensitivity_high)
    assert b.fragile_share is not None and b.local_M_low is not None
    row = a1.to_rows()[0]
    assert {"p_boot_low", "sensitivity_high", "local_M_low", "fragile_share"} <= set(row)


@pytest.mark.parametrize("margin", [3.0, 0.0])
def test_multinomial_draws_follow_the_exact_multinomial_pmf(monkeypatch, margin):
    """The bootstrap's resampler against scipy's multinomial pmf, by a chi-square test over
    every outcome of 6 trials in 3 cells; margin 0 makes the Poisson stage overshoot about
    half the time, so the fallback path is tested too."""
    from scipy import stats

    from prefjax import _audit_bootstrap as boot

    monkeypatch.setattr(boot, "_POISSON_MARGIN", margin)
    n, probs, size = 6, np.array([0.5, 0.3, 0.2]), 40_000
    draws = boot.multinomial_draws(np.random.default_rng(7), n, probs, size)
    assert np.all(draws.sum(1) == n) and np.all(draws >= 0)
    outcomes = [(i, j, n - i - j) for i in range(n + 1) for j in range(n + 1 - i)]
    index = {o: m for m, o in enumerate(outcomes)}
    observed = np.bincount([index[tuple(int(v) for v in d)] for d in draws], minlength=len(index))
    expected = size * np.array([stats.multinomial.pmf(o, n, probs) for o in outcomes])
    _, pvalue = stats.chisquare(observed, expected)
    assert pvalue > 1e-4  # seeded: a fixed draw; a wrong distribution gives p ~ 0


def test_multinomial_draws_moments_at_arena_scale():
    """Two million trials over 1,000 cells: totals exact, per-cell means and variances those
    of the multinomial, n p and n p (1 - p), within their Monte-Carlo error."""
    from prefjax._audit_bootstrap import multinomial_draws

    rng = np.random.default_rng(11)
    probs = rng.dirichlet(np.ones(1000))
    n, size = 2_000_000, 400
    draws = multinomial_draws(rng, n, probs, size)
    assert np.all(draws.sum(1) == n)
    var = n * probs * (1 - probs)
    z = (draws.mean(0) - n * probs) / np.sqrt(var / size)
    assert np.max(np.abs(z)) < 5  # 1,000 cells: |z| > 5 has chance ~6e-4 under the truth
    # the variance estimate of 400 draws has relative SD ~sqrt(2 / 400) = 7%
    np.testing.assert_allclose(np.mean(draws.var(0, ddof=1) / var), 1.0, atol=0.02)


def test_bad_arguments(base_audit):
    with pytest.raises(TypeError, match="fit must be a prefjax.Fit"):
        prefjax.audit("fit")
    with pytest.raises(ValueError, match="M must be"):
        prefjax.audit(base_audit.fit, M=0)
    with pytest.raises(ValueError, match="level must be in"):
        prefjax.audit(base_audit.fit, level=1.5)
    with pytest.raises(ValueError, match="bootstrap must be"):
        prefjax.audit(base_audit.fit, bootstrap=-1)
    with pytest.raises(ValueError, match="unknown cov"):
        prefjax.audit(base_audit.fit, cov="robust")
    assert math.isfinite(base_audit.local_M.max())
