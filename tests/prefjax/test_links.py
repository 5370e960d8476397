"""Links: accuracy against mpmath, the lemmas as properties, and the numeric inverse."""

import jax
import jax.numpy as jnp
import mpmath as mp
import numpy as np
import pytest
from hypothesis import given, settings
from scipy import special

import prefjax

from .checks import assert_probability_matches
from .conftest import LINKS
from .references import MP_LINKS, rel_err
from .strategies import probabilities, scores

RTOL_F64 = 1e-13  # a few ulps times the condition number of the functions tested here
RTOL_INVERSE = 1e-14  # "a few ulps" for g^-1 itself, relative to |g^-1(p)|
EXTREME_P = [1e-300, 1e-100, 1e-12, 1e-6, 0.1, 0.3, 0.5, 0.7, 0.9, 1 - 1e-6, 1 - 1e-12, 1 - 2**-53]
X_POINTS = [-700.0, -35.0, -8.0, -1.0, -1e-3, 0.0, 1e-3, 1.0, 8.0, 35.0]


@pytest.mark.parametrize("p", EXTREME_P)
def test_inverse_matches_mpmath(link_pair, p):
    g, ref = link_pair
    x = float(g.inverse(p))
    x_ref = ref.inv(p)
    # Relative to max(|x|, 1): near x = 0 an absolute few ulps is all g's rounding allows.
    assert abs(mp.mpf(x) - x_ref) <= RTOL_INVERSE * max(1, abs(x_ref)), (g.name, p, x, x_ref)


@pytest.mark.parametrize("x", X_POINTS)
def test_g_and_derivative_match_mpmath(link_pair, x):
    g, ref = link_pair
    gx, dgx = float(g(x)), float(g.derivative(x))
    # Compare the lower tail relatively; near 1 compare the complement (float64 holds 1 - g
    # only to absolute precision).
    if float(ref.g(x)) < 1e-300:  # below float64's normal range: only "tiny" is checkable
        assert 0 <= gx < 1e-300
    elif x <= 0:  # allowance: the condition number |x g'(x) / g(x)| (~x^2 for probit)
        cond = max(1.0, float(abs(x * ref.dg(x) / ref.g(x))))
        assert rel_err(gx, ref.g(x)) <= RTOL_F64 * cond
    else:
        assert abs(gx - float(ref.g(x))) <= 2**-52
    if float(ref.dg(x)) > 1e-300:
        assert rel_err(dgx, ref.dg(x)) <= RTOL_F64
    assert float(g.log_derivative(x)) == pytest.approx(
        float(mp.log(ref.dg(x))), rel=1e-13, abs=1e-13
    )


def test_probit_quantile_matches_scipy():
    p = np.concatenate(
        [np.logspace(-300, -1, 200), np.linspace(0.1, 0.9, 101), 1 - np.logspace(-16, -1, 100)]
    )
    x = np.asarray(prefjax.probit.inverse(p))
    np.testing.assert_allclose(x, special.ndtri(p), rtol=1e-13)
    np.testing.assert_allclose(np.asarray(prefjax.probit(x)), special.ndtr(x), rtol=1e-13)


@settings(max_examples=60, deadline=None)
@given(p=probabilities)
def test_lemma_3_and_round_trip(link_pair, p):
    """g(g^-1(p)) = p (relative to the nearer of 0 and 1), and g^-1 is increasing (Lemma 3)."""
    g, _ = link_pair
    # A step well above the inverse's few-ulp error (adjacent floats may tie or swap), taken
    # on the nearer of 0 and 1 so that it is representable next to 1.
    p2 = p * (1 + 1e-3) if p <= 0.5 else 1 - (1 - p) * (1 - 1e-3)
    x = g.inverse(jnp.array([p, p2]))
    assert float(x[1]) > float(x[0])
    back = float(g(x[0]))
    if p <= 0.5:
        assert rel_err(back, p) <= 1e-13
    else:  # g(x) near 1 carries absolute precision only: compare through the lower tail
        assert rel_err(float(g(-x[0])), 1 - mp.mpf(p)) <= 1e-13


@settings(max_examples=60, deadline=None)
@given(p=probabilities)
def test_lemma_4_inverse_antisymmetric(link_pair, p):
    """g^-1(x) + g^-1(1 - x) = 0 (Lemma 4). 1 - q is exact for q >= 1/2 (Sterbenz)."""
    g, _ = link_pair
    q = max(p, 1 - p)
    r = 1 - q  # exact
    x = g.inverse(jnp.array([q, r]))
    assert abs(float(x[0] + x[1])) <= 4e-16 * max(1.0, abs(float(x[0])))


@settings(max_examples=60, deadline=None)
@given(x=scores)
def test_assumption_4_symmetry(link_pair, x):
    g, _ = link_pair
    assert abs(float(g(x)) + float(g(-x)) - 1) <= 4 * 2**-52


def test_lemma_2_derivative_vanishes_at_infinity(link_pair):
    g, _ = link_pair
    d0 = float(g.derivative(0.0))
    far = np.asarray(g.derivative(jnp.array([-1e6, 1e6])))
    assert np.all(far < 1e-9 * d0)
    assert np.all(far >= 0)


@settings(max_examples=40, deadline=None)
@given(s_i=scores, s_j=scores, s_k=scores)
def test_lemma_1_transitivity(link_pair, s_i, s_j, s_k):
    """p_ij = g(g^-1(p_ik) + g^-1(p_kj)) when all three come from one set of scores."""
    g, ref = link_pair
    p_ik, p_kj = float(ref.g(s_i - s_k)), float(ref.g(s_k - s_j))
    if not (0 < p_ik < 1 and 0 < p_kj < 1):
        return
    assert_probability_matches(ref, p_ik, p_kj, prefjax.compose(g, p_ik, p_kj))


def test_numeric_inverse_derivative_uses_inverse_function_theorem():
    """(g^-1)'(p) = 1 / g'(g^-1(p)) to rounding, and jax.grad sees no iterations."""
    g = LINKS["mixture"]
    ref = MP_LINKS["mixture"]
    for p in [1e-12, 0.2, 0.5, 0.9, 1 - 1e-12]:
        got = float(jax.grad(g.inverse)(p))
        want = 1 / ref.dg(ref.inv(p))
        assert rel_err(got, want) <= 1e-12
    jaxpr = str(jax.make_jaxpr(jax.grad(g.inverse))(0.3))
    assert (
        jaxpr.count("while") == 2
    )  # the primal solve only (bracket + Newton); none in the tangent


def test_numeric_inverse_on_heavy_tails_and_edges():
    cauchy_numeric = prefjax.link(lambda x: 0.5 + jnp.arctan(x) / jnp.pi, name="cauchy-numeric")
    p = jnp.array([1e-300, 1e-3, 0.5, 1 - 1e-3])
    ref = MP_LINKS["cauchit"]
    x = np.asarray(cauchy_numeric.inverse(p))
    # The textbook cdf 0.5 + arctan(x)/pi cancels in the lower tail (it is 0 below -1e16), so
    # the inverse can only be as good as g: compare where g keeps 13 digits.
    assert rel_err(x[1], ref.inv(1e-3)) <= 1e-10
    assert rel_err(x[3], ref.inv(1 - 1e-3)) <= 1e-10
    assert x[2] == 0.0
    assert np.isfinite(x[0]) and x[0] < -1e15  # the bracket grows to 4^27 and closes
    edge = np.asarray(
        prefjax.link(prefjax.logistic, check=False).inverse(jnp.array([0.0, 1.0, np.nan, 1.5]))
    )
    assert edge[0] == -np.inf and edge[1] == np.inf and np.isnan(edge[2]) and np.isnan(edge[3])
    edge = np.asarray(LINKS["mixture"].inverse(jnp.array([0.0, 1.0, np.nan, -0.5])))
    assert edge[0] == -np.inf and edge[1] == np.inf and np.isnan(edge[2]) and np.isnan(edge[3])


def test_user_inverse_is_used_and_differentiated_by_ift():
    calls = []

    def inverse(p):
        calls.append(1)
        return jnp.log(p) - jnp.log1p(-p)

    g = prefjax.link(jax.nn.sigmoid, inverse=inverse, name="sigmoid")
    assert g.name == "sigmoid"
    assert float(g.inverse(0.25)) == pytest.approx(np.log(1 / 3), rel=1e-15)
    assert float(jax.grad(g.inverse)(0.25)) == pytest.approx(1 / (0.25 * 0.75), rel=1e-13)
    assert calls


def test_link_works_under_jit_and_vmap(link_pair):
    g, _ = link_pair
    p = jnp.linspace(0.01, 0.99, 7)
    eager = g.inverse(p)
    np.testing.assert_allclose(jax.jit(g.inverse)(p), eager, rtol=1e-15)
    np.testing.assert_allclose(jax.vmap(g.inverse)(p), eager, rtol=1e-15)


def test_bad_link_arguments():
    with pytest.raises(TypeError, match="callable"):
        prefjax.link(3.0)
    with pytest.raises(TypeError, match="inverse"):
        prefjax.link(jax.nn.sigmoid, inverse="logit")
    with pytest.raises(TypeError, match="g must be"):
        prefjax.sensitivity("logistic", 0.5, 0.5)


@pytest.mark.parametrize("name", sorted(LINKS))
def test_repr_and_name(name):
    assert LINKS[name].name == name
    assert name in repr(LINKS[name])


def test_link_of_a_link_is_itself():
    assert prefjax.link(prefjax.logistic) is prefjax.logistic
