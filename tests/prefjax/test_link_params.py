"""Links with shape parameters: derivatives in the parameters against closed forms, scipy and
finite differences; jit and vmap over them; the check of a given inverse; fitting the shape
(a known Student-t link recovered, a pure scale refused) and comparing links (scipy fits of
the same likelihood on the design matrix)."""

import math
import warnings

import jax
import jax.numpy as jnp
import mpmath as mp
import numpy as np
import pytest
from scipy import optimize, special, stats

import prefjax
from prefjax import Comparisons

RTOL = 1e-10  # closed forms, float64
FD_RTOL = 1e-6  # central differences of scipy's t, step 1e-4 (truncation ~1e-8)
T_RTOL = 1e-11  # the t distribution function against mpmath (relative, lower tail)
OPT_TOL = 1e-7  # scipy's optimum of the same likelihood


def _eq3(a, b):
    return a * b / (a * b + (1 - a) * (1 - b))


def steep():
    return prefjax.link(
        lambda t, s: jax.nn.sigmoid(t * s), params={"s": 1.0}, positive="s", name="steep"
    )


def test_compose_is_differentiable_in_a_closed_over_parameter_made_explicit():
    # The example: sigmoid(t s) composes by Eq. (3) at every s (s cancels), so the
    # derivative in s is 0, through the numeric inverse's implicit-function JVP.
    g = prefjax.link(lambda t, s: jax.nn.sigmoid(t * s), params={"s": 1.0}, check=False)
    f = lambda s: prefjax.compose(g.with_params(s=s), 0.99, 0.02)  # noqa: E731
    for s in (0.5, 1.0, 3.0):
        assert float(f(s)) == pytest.approx(_eq3(0.99, 0.02), rel=RTOL)
        assert abs(float(jax.grad(f)(s))) < 1e-12
    assert abs(float(jax.jit(jax.grad(f))(2.0))) < 1e-12


def test_inverse_derivative_in_the_parameter_closed_form():
    # g^-1(p; s) = logit(p) / s: d/ds = -logit(p) / s^2 (numeric inverse, implicit function).
    g = steep()
    for p, s in ((0.9, 2.0), (0.3, 0.5), (1e-6, 1.5)):
        logit = math.log(p / (1 - p))
        d = float(jax.grad(lambda s, p=p: g.with_params(s=s).inverse(p))(s))
        assert d == pytest.approx(-logit / s**2, rel=1e-9)
        # and in p at the same time: d/dp = 1 / (s p (1 - p))
        dp = float(jax.grad(lambda p, s=s: g.with_params(s=s).inverse(p))(p))
        assert dp == pytest.approx(1 / (s * p * (1 - p)), rel=1e-9)


def test_scaled_logistic_closed_forms():
    g = prefjax.scaled_logistic
    x, scale = 1.3, 2.5
    assert float(g.with_params(scale=scale)(x)) == pytest.approx(special.expit(x / scale), RTOL)
    d = jax.grad(lambda s: g.with_params(scale=s)(x))(scale)
    sig = special.expit(x / scale)
    assert float(d) == pytest.approx(-sig * (1 - sig) * x / scale**2, rel=RTOL)
    di = jax.grad(lambda s: g.with_params(scale=s).inverse(0.8))(scale)
    assert float(di) == pytest.approx(math.log(4.0), rel=RTOL)
    # Lemma 1 is Eq. (3) at every scale: independent of it.
    c = lambda s: prefjax.compose(g.with_params(scale=s), 0.9, 0.3)  # noqa: E731
    assert float(c(0.2)) == pytest.approx(_eq3(0.9, 0.3), rel=RTOL)
    assert float(jax.grad(c)(0.2)) == 0.0
    assert float(g.with_params(scale=3.0).log_derivative(-800.0)) == pytest.approx(
        -800.0 / 3.0 - math.log(3.0), rel=1e-12
    )


def _t_compose(a, b, df):
    return stats.t.cdf(stats.t.ppf(a, df) + stats.t.ppf(b, df), df)


def test_student_t_compose_derivative_in_df_against_scipy():
    g, df = prefjax.student_t, 4.0  # other df: test_jit_and_vmap_over_params
    a, b = 0.9, 0.8
    f = lambda d: prefjax.compose(g.with_params(df=d), a, b)  # noqa: E731
    assert float(f(df)) == pytest.approx(_t_compose(a, b, df), rel=1e-9)
    h = 1e-4 * df
    fd = (_t_compose(a, b, df + h) - _t_compose(a, b, df - h)) / (2 * h)
    assert float(jax.grad(f)(df)) == pytest.approx(fd, rel=FD_RTOL)
    # the sensitivities (Eq. (2)) differentiate in df too: d(d_ik)/d df by differences
    d_ik = lambda d: prefjax.sensitivity(g.with_params(df=d), a, b).d_ik  # noqa: E731
    fd2 = (float(d_ik(df + h)) - float(d_ik(df - h))) / (2 * h)
    assert float(jax.grad(d_ik)(df)) == pytest.approx(fd2, rel=1e-5)


def _mp_t_cdf(x, nu):
    x, nu = mp.mpf(x), mp.mpf(nu)
    low = mp.betainc(nu / 2, mp.mpf(1) / 2, 0, nu / (nu + x * x), regularized=True) / 2
    return low if x <= 0 else 1 - low


def test_student_t_cdf_and_df_derivative_against_mpmath():
    mp.mp.dps = 30
    g = prefjax.student_t
    for nu in (0.3, 1.0, 2.0, 7.5, 30.0, 1000.0):
        for x in (-1e4, -40.0, -2.2, -0.4, -1e-3, 0.0, 3.0):
            ref = _mp_t_cdf(x, nu)
            got = float(g.with_params(df=nu)(x))
            assert abs(got - float(ref)) <= T_RTOL * float(min(ref, 1 - ref)), (nu, x)
            d = float(jax.grad(lambda n, x=x: g.with_params(df=n)(x))(nu))
            dref = float(mp.diff(lambda n, x=x: _mp_t_cdf(x, n), nu))
            assert d == pytest.approx(dref, rel=1e-8, abs=1e-300), (nu, x)
    # df = 1 is the Cauchy distribution: 1/2 + atan(x) / pi
    x = np.array([-30.0, -1.0, 0.2, 5.0])
    np.testing.assert_allclose(g.with_params(df=1.0)(x), 0.5 + np.arctan(x) / np.pi, rtol=1e-12)
    assert prefjax.check_assumptions(g.with_params(df=2.0)).ok


def test_jit_and_vmap_over_params():
    g = steep()
    ss = jnp.array([0.5, 1.0, 2.0, 4.0])
    inv = jax.vmap(lambda s: g.with_params(s=s).inverse(0.9))(ss)
    np.testing.assert_allclose(inv, math.log(9.0) / np.asarray(ss), rtol=1e-12)
    grads = jax.jit(jax.vmap(jax.grad(lambda s: g.with_params(s=s).inverse(0.9))))(ss)
    np.testing.assert_allclose(grads, -math.log(9.0) / np.asarray(ss) ** 2, rtol=1e-9)
    # a Link is a pytree of its parameters: it passes through jit, and grad w.r.t. a link
    # gives a link of derivatives
    t = prefjax.student_t.with_params(df=3.0)
    assert jax.tree.leaves(t) == [3.0]
    out = jax.jit(lambda lk: lk(jnp.asarray(-2.0)))(t)
    assert float(out) == pytest.approx(stats.t.cdf(-2.0, 3.0), rel=1e-12)
    dlink = jax.grad(lambda lk: lk(-2.0))(t)
    h = 1e-4
    fd = (stats.t.cdf(-2.0, 3.0 + h) - stats.t.cdf(-2.0, 3.0 - h)) / (2 * h)
    assert float(dlink.params["df"]) == pytest.approx(fd, rel=FD_RTOL)
    dfs = np.array([1.5, 9.0, 25.0])
    vt = jax.vmap(jax.value_and_grad(lambda d: prefjax.compose(t.with_params(df=d), 0.9, 0.8)))
    val, grad = vt(jnp.asarray(dfs))
    h = 1e-4 * dfs
    fd = (_t_compose(0.9, 0.8, dfs + h) - _t_compose(0.9, 0.8, dfs - h)) / (2 * h)
    np.testing.assert_allclose(val, _t_compose(0.9, 0.8, dfs), rtol=1e-9)
    np.testing.assert_allclose(grad, fd, rtol=FD_RTOL)


def test_with_params_errors_and_identity():
    t = prefjax.student_t
    with pytest.raises(ValueError, match="no parameter 'nu'.*'df'"):
        t.with_params(nu=3.0)
    with pytest.raises(ValueError, match="'df' .* must be > 0"):
        t.with_params(df=-1.0)
    with pytest.raises(ValueError, match="finite"):
        t.with_params(df=float("nan"))
    assert t.with_params(df=3.0) == t.with_params(df=3.0)
    assert hash(t.with_params(df=3.0)) == hash(t.with_params(df=3.0))
    assert t.with_params(df=3.0) != t.with_params(df=4.0)
    assert prefjax.get_link("student_t") is t and prefjax.LINK_FAMILIES["student_t"] is t
    with pytest.raises(ValueError, match="positive names"):
        prefjax.link(jax.nn.sigmoid, positive="s")


def test_a_given_inverse_is_checked():
    with pytest.raises(prefjax.AssumptionError, match=r"inverse\(0\.999999\)|inverse\(1e-06\)"):
        prefjax.link(jax.nn.sigmoid, inverse=jnp.log)
    try:
        prefjax.link(jax.nn.sigmoid, inverse=jnp.log)
    except prefjax.AssumptionError as exc:
        assert "does not invert g" in str(exc) and not exc.report.ok
    good = prefjax.link(jax.nn.sigmoid, inverse=lambda p: jnp.log(p) - jnp.log1p(-p))
    assert float(prefjax.compose(good, 0.3, 0.4)) == pytest.approx(_eq3(0.3, 0.4), rel=1e-12)
    # with parameters, checked at the given values
    with pytest.raises(prefjax.AssumptionError, match="does not invert"):
        prefjax.link(lambda t, s: jax.nn.sigmoid(t * s), params={"s": 2.0},
                     inverse=lambda p, s: jnp.log(p / (1 - p)))  # fmt: skip
    prefjax.link(jax.nn.sigmoid, inverse=jnp.log, check=False)  # the user's responsibility


# --- fitting the shape ---------------------------------------------------------------------


def _t_data(df, seed=0, n=12, m=400):
    rng = np.random.default_rng(seed)
    s = np.linspace(-3.0, 3.0, n)
    i, j = np.triu_indices(n, 1)
    wins = rng.binomial(m, stats.t.cdf(s[i] - s[j], df))
    return Comparisons.from_counts(
        i, j, wins, m - wins, np.zeros_like(wins), items=[str(k) for k in range(n)]
    )


def _design(data):
    """The cells' design matrix, item 0 the reference: +1 for the first item, -1 the second."""
    x = np.zeros((data.first.size, data.n_items - 1))
    for c, (a, b) in enumerate(zip(data.first, data.second, strict=True)):
        if a:
            x[c, a - 1] += 1
        if b:
            x[c, b - 1] -= 1
    return x


def _scipy_loglik(data, log_cdf):
    """The maximised log-likelihood of the cells on the design matrix (BFGS), ties none."""
    n = data.n_items
    x = _design(data)

    def nll(beta):
        eta = x @ beta
        return -np.sum(data.wins_first * log_cdf(eta) + data.wins_second * log_cdf(-eta))

    res = optimize.minimize(nll, np.zeros(n - 1), method="BFGS", options={"gtol": 1e-9})
    return -res.fun


def test_fit_link_recovers_a_student_t_shape():
    data = _t_data(2.0)
    f = prefjax.fit(data, link=prefjax.student_t, fit_link=True)
    assert f.converged and set(f.link_params) == {"df"}
    df, se = f.link_params["df"], f.link_params_se["df"]
    assert abs(df - 2.0) < 2.58 * se and 0 < se < 1.0  # the 99% interval covers the truth
    assert f.link.params["df"] == pytest.approx(df)
    assert f.n_params == 12 - 1 + 1 and f.aic == pytest.approx(2 * 12 - 2 * f.loglik)
    # the profile: at the fitted df the scipy maximum over the scores is the same loglik,
    # and no df nearby does better
    ll = lambda d: _scipy_loglik(data, lambda e: stats.t.logcdf(e, d))  # noqa: E731
    assert f.loglik == pytest.approx(ll(df), abs=OPT_TOL * 1e3)
    assert ll(df * 1.05) < f.loglik and ll(df / 1.05) < f.loglik


def test_fit_link_refuses_a_pure_scale_and_a_link_without_params():
    data = Comparisons.example("baseball")
    with pytest.raises(ValueError, match="'scale' .* not identifiable"):
        prefjax.fit(data, link=prefjax.scaled_logistic, fit_link=True)
    with pytest.raises(ValueError, match="has none"):
        prefjax.fit(data, link=prefjax.probit, fit_link=True)


def test_compare_links_against_scipy_fits():
    data = Comparisons.example("baseball")
    table = prefjax.compare_links(data, ["logistic", "probit", "cauchit", prefjax.scaled_logistic])
    refs = {
        "logistic": _scipy_loglik(data, special.log_expit),
        "probit": _scipy_loglik(data, special.log_ndtr),
        "cauchit": _scipy_loglik(data, lambda e: stats.cauchy.logcdf(e)),
        "scaled_logistic": _scipy_loglik(data, special.log_expit),
    }
    for row in table.rows:
        assert row["loglik"] == pytest.approx(refs[row["link"]], abs=OPT_TOL)
        assert row["n_params"] == 6 and row["aic"] == pytest.approx(12 - 2 * row["loglik"])
    assert table.rows[3]["fitted_params"] is False  # a pure scale stays fixed
    assert table.best == max(refs, key=refs.get)
    assert "probit" in str(table)


def test_fit_link_at_the_edge_warns():
    # baseball's likelihood grows with df towards the probit limit (probit's loglik is the
    # higher of the two): the fit says so instead of reporting a finite df as a maximum.
    data = Comparisons.example("baseball")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        f = prefjax.fit(data, link=prefjax.student_t, fit_link=True)
    assert any("edge of its range" in str(w.message) for w in caught)
    assert not f.converged and math.isnan(f.link_params_se["df"])
    assert f.loglik == pytest.approx(_scipy_loglik(data, special.log_ndtr), abs=1e-4)


def test_probit_loglik_against_statsmodels():
    sm = pytest.importorskip("statsmodels.api")
    data = Comparisons.example("baseball")
    x = _design(data)
    y = np.stack([data.wins_first, data.wins_second], 1)
    probit = sm.families.Binomial(link=sm.families.links.Probit())
    res = sm.GLM(y, x, family=probit).fit(tol=1e-12)
    f = prefjax.fit(data, link="probit", reference=0)
    # statsmodels' binomial loglik includes log C(n, k); prefjax's is that of the
    # comparisons themselves
    log_binom = np.sum(
        special.gammaln(y.sum(1) + 1) - special.gammaln(y[:, 0] + 1) - special.gammaln(y[:, 1] + 1)
    )
    assert f.loglik == pytest.approx(res.llf - log_binom, abs=1e-8)
    np.testing.assert_allclose(np.asarray(f.scores)[1:], res.params, atol=1e-6)
    # (standard errors differ by ~1%: statsmodels' IRLS uses the expected information for a
    # non-canonical link, prefjax the observed; test_fit checks the latter against scipy)
