"""compose / sensitivity / score_sensitivity against mpmath, the paper's closed forms and
finite differences; jit, vmap and the error contract."""

import warnings

import jax
import jax.numpy as jnp
import mpmath as mp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import prefjax
from prefjax import _validate

from .checks import EPS, assert_matches_reference
from .conftest import LINKS
from .references import LOGISTIC, MP_LINKS, rel_err
from .strategies import probabilities

RTOL_FD = 1e-6  # central finite differences with a relative step of 1e-5
CORNERS = [1e-12, 1e-6, 0.02, 0.3, 0.5, 0.7, 0.99, 1 - 1e-6, 1 - 1e-12]
GRID = [(a, b) for a in CORNERS for b in CORNERS]


def paper_eq4(p_ik, p_kj):
    """Eq. (4) exactly as printed, at 50 digits (so its cancellation costs nothing)."""
    a, b = mp.mpf(p_ik), mp.mpf(p_kj)
    return b * (1 - b) / (a + b - 2 * a * b - 1) ** 2


def paper_eq3(p_ik, p_kj):
    a, b = mp.mpf(p_ik), mp.mpf(p_kj)
    return 1 / (1 + (1 - a) * (1 - b) / a / b)


def test_logistic_matches_eq3_and_eq4_on_corner_grid():
    """The closed forms take p directly (no scores), so the logistic path is held to a few
    ulps with no condition-number allowance at all."""
    a, b = np.array(GRID).T
    s = prefjax.sensitivity(prefjax.logistic, a, b)
    for k, (p_ik, p_kj) in enumerate(GRID):
        want = paper_eq3(p_ik, p_kj)
        assert abs(mp.mpf(float(s.p_ij[k])) - want) <= 4 * EPS * min(want, 1 - want) + (
            EPS if want > 0.5 else 0
        )
        assert rel_err(s.d_ik[k], paper_eq4(p_ik, p_kj)) <= 8 * EPS
        assert rel_err(s.d_kj[k], paper_eq4(p_kj, p_ik)) <= 8 * EPS


@pytest.mark.parametrize("name", ["probit", "cauchit", "mixture"])
def test_every_link_matches_eq2_on_corner_grid(name):
    """Eq. (2): d_ik = A1 * A2 = g'(g^-1(p_ik) + g^-1(p_kj)) / g'(g^-1(p_ik)), by mpmath."""
    g, ref = LINKS[name], MP_LINKS[name]
    a, b = np.array(GRID).T
    s = prefjax.sensitivity(g, a, b)
    for k, (p_ik, p_kj) in enumerate(GRID):
        assert_matches_reference(ref, p_ik, p_kj, prefjax.Sensitivity(*(f[k] for f in s)))


@settings(max_examples=25, deadline=None)
@given(p_ik=probabilities, p_kj=probabilities, name=st.sampled_from(sorted(LINKS)))
def test_sensitivity_matches_mpmath_property(p_ik, p_kj, name):
    g, ref = LINKS[name], MP_LINKS[name]
    assert_matches_reference(ref, p_ik, p_kj, prefjax.sensitivity(g, p_ik, p_kj))


@pytest.mark.parametrize("name", sorted(LINKS))
def test_sensitivity_matches_central_differences(name):
    g = LINKS[name]
    rng = np.random.default_rng(1)
    a, b = rng.uniform(0.01, 0.99, 20), rng.uniform(0.01, 0.99, 20)
    s = prefjax.sensitivity(g, a, b)
    h = 1e-5 * np.minimum(a, 1 - a)
    fd = (np.asarray(prefjax.compose(g, a + h, b)) - np.asarray(prefjax.compose(g, a - h, b))) / (
        2 * h
    )
    np.testing.assert_allclose(s.d_ik, fd, rtol=RTOL_FD)
    h = 1e-5 * np.minimum(b, 1 - b)
    fd = (np.asarray(prefjax.compose(g, a, b + h)) - np.asarray(prefjax.compose(g, a, b - h))) / (
        2 * h
    )
    np.testing.assert_allclose(s.d_kj, fd, rtol=RTOL_FD)


def test_logistic_closed_form_equals_generic_autodiff_path():
    """The logistic link's rational Lemma 1 agrees with autodiff through g(g^-1 + g^-1)."""
    generic = prefjax.link(
        prefjax.logistic.__call__, inverse=prefjax.logistic.inverse, name="generic"
    )
    a, b = np.array(GRID).T
    fast, slow = prefjax.sensitivity(prefjax.logistic, a, b), prefjax.sensitivity(generic, a, b)
    np.testing.assert_allclose(fast.p_ij, slow.p_ij, rtol=1e-13, atol=1e-300)
    np.testing.assert_allclose(fast.d_ik, slow.d_ik, rtol=1e-11)
    np.testing.assert_allclose(fast.d_kj, slow.d_kj, rtol=1e-11)


def test_grad_of_compose_equals_sensitivity():
    for g in LINKS.values():
        d_ik = jax.grad(lambda a, g=g: prefjax.compose(g, a, 0.3))(0.9)
        d_kj = jax.grad(lambda b, g=g: prefjax.compose(g, 0.9, b))(0.3)
        s = prefjax.sensitivity(g, 0.9, 0.3)
        assert float(d_ik) == pytest.approx(float(s.d_ik), rel=1e-12)
        assert float(d_kj) == pytest.approx(float(s.d_kj), rel=1e-12)


def test_broadcasting_jit_and_vmap():
    a = jnp.linspace(0.05, 0.95, 4)[:, None]
    b = jnp.linspace(0.1, 0.9, 3)[None, :]
    s = prefjax.sensitivity(prefjax.probit, a, b)
    assert s.p_ij.shape == s.d_ik.shape == s.d_kj.shape == (4, 3)
    jitted = jax.jit(lambda a, b: prefjax.sensitivity(prefjax.probit, a, b))(a, b)
    vmapped = jax.vmap(lambda a: prefjax.sensitivity(prefjax.probit, a, b[0]))(a[:, 0])
    for x, y, z in zip(s, jitted, vmapped, strict=True):
        np.testing.assert_allclose(x, y, rtol=1e-14)
        np.testing.assert_allclose(x, z, rtol=1e-14)


def test_bare_callable_is_wrapped_once_and_checked():
    def my_link(x):
        return jax.nn.sigmoid(2.0 * x)

    s1 = prefjax.sensitivity(my_link, 0.9, 0.3)
    s2 = prefjax.sensitivity(my_link, 0.9, 0.3)
    assert float(s1.d_ik) == float(s2.d_ik)
    # Scaling the score leaves Lemma 1 unchanged: logit-type links with any scale agree.
    ref = prefjax.sensitivity(prefjax.logistic, 0.9, 0.3)
    assert float(s1.d_ik) == pytest.approx(float(ref.d_ik), rel=1e-12)
    with pytest.raises(prefjax.AssumptionError, match="Assumption 4"):
        prefjax.sensitivity(lambda x: 1 - jnp.exp(-jnp.exp(x)), 0.9, 0.3)


@pytest.mark.parametrize(
    "bad, match",
    [
        (1.5, r"p_ik = 1.5 is outside the open interval \(0, 1\)"),
        (0.0, r"p_ik = 0.0 is outside"),
        (float("nan"), r"p_ik is NaN"),
    ],
)
def test_bad_probability_scalar(bad, match):
    with pytest.raises(ValueError, match=match):
        prefjax.sensitivity(prefjax.logistic, bad, 0.5)


def test_bad_probability_names_index():
    p = np.full((2, 3), 0.5)
    p[1, 2] = -0.25
    with pytest.raises(ValueError, match=r"p_kj\[1, 2\] = -0.25"):
        prefjax.compose(prefjax.logistic, 0.5, p)


def test_bad_shapes_and_types():
    with pytest.raises(ValueError, match=r"p_ik with shape \(3,\) and p_kj with shape \(4,\)"):
        prefjax.sensitivity(prefjax.logistic, np.full(3, 0.5), np.full(4, 0.5))
    with pytest.raises(TypeError, match="p_ik must be a number"):
        prefjax.sensitivity(prefjax.logistic, "0.5", 0.5)


def test_invalid_values_under_jit_give_nan_not_numbers():
    f = jax.jit(lambda a, b: prefjax.sensitivity(prefjax.logistic, a, b))
    out = f(jnp.array([0.5, 1.5, 0.0, jnp.nan]), jnp.array([0.3, 0.3, 0.3, 0.3]))
    for field in out:
        assert np.isfinite(field[0])
        assert np.all(np.isnan(field[1:]))


def test_float32_warns_once_when_inputs_round(monkeypatch):
    monkeypatch.setattr(_validate, "_warned_float32", False)
    with jax.enable_x64(False):
        with pytest.warns(prefjax.PrecisionWarning, match="cannot be resolved in float32"):
            with pytest.raises(ValueError, match="float32"):
                prefjax.sensitivity(prefjax.logistic, np.array([0.5, 1 - 1e-9]), 0.3)
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # a second time: no warning
            with pytest.raises(ValueError):
                prefjax.sensitivity(prefjax.logistic, np.array([0.5, 1 - 1e-9]), 0.3)
        s = prefjax.sensitivity(prefjax.logistic, 0.9, 0.3)  # resolvable inputs: fine
        assert s.p_ij.dtype == jnp.float32


@pytest.mark.parametrize("x_ik, x_kj", [(800.0, -790.0), (-750.0, 20.0), (40.0, -40.0), (0.3, 1.2)])
def test_score_sensitivity_beyond_float64_probabilities(x_ik, x_kj):
    """Logistic: log d_ik = log sigma'(x_ik + x_kj) - log sigma'(x_ik), at 50 digits."""
    s = prefjax.score_sensitivity(prefjax.logistic, x_ik, x_kj)
    x_ij = mp.mpf(x_ik) + mp.mpf(x_kj)
    want_ik = mp.log(LOGISTIC.dg(x_ij)) - mp.log(LOGISTIC.dg(mp.mpf(x_ik)))
    want_kj = mp.log(LOGISTIC.dg(x_ij)) - mp.log(LOGISTIC.dg(mp.mpf(x_kj)))
    assert float(s.x_ij) == float(x_ij)
    assert float(s.log_d_ik) == pytest.approx(float(want_ik), rel=1e-14, abs=1e-12)
    assert float(s.log_d_kj) == pytest.approx(float(want_kj), rel=1e-14, abs=1e-12)


def test_score_sensitivity_agrees_with_probability_space():
    for name, g in LINKS.items():
        p_ik, p_kj = 0.97, 0.04
        s = prefjax.sensitivity(g, p_ik, p_kj)
        z = prefjax.score_sensitivity(g, g.inverse(p_ik), g.inverse(p_kj))
        assert float(jnp.exp(z.log_d_ik)) == pytest.approx(float(s.d_ik), rel=1e-10), name
        assert float(jnp.exp(z.log_d_kj)) == pytest.approx(float(s.d_kj), rel=1e-10), name
        assert float(z.p_ij) == pytest.approx(float(s.p_ij), rel=1e-12), name
    with pytest.raises(ValueError, match="x_ik = inf is not finite"):
        prefjax.score_sensitivity(prefjax.logistic, np.inf, 0.0)
