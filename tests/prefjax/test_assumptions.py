"""check_assumptions refuses what the paper excludes and accepts the built-ins."""

import jax
import jax.numpy as jnp
import pytest

import prefjax

from .conftest import LINKS


@pytest.mark.parametrize("name", sorted(LINKS))
def test_accepts_builtins_and_mixture(name):
    report = prefjax.check_assumptions(LINKS[name])
    assert report.ok, str(report)
    assert [c.number for c in report.checks] == [2, 3, 4, 5]
    assert all(c.evidence for c in report.checks)


def test_accepts_a_sloppy_but_valid_link():
    """0.5 + 0.5 tanh(x/2) is the logistic written with cancellation in the tails."""
    assert prefjax.check_assumptions(lambda x: 0.5 + 0.5 * jnp.tanh(x / 2)).ok


@pytest.mark.parametrize(
    "g, number",
    [
        (lambda x: 1 - jnp.exp(-jnp.exp(x)), 4),  # complementary log-log: not symmetric
        (
            lambda x: jax.nn.sigmoid(x) + 0.2 * jnp.sin(3 * x) * jnp.exp(-(x**2) / 4),
            2,
        ),  # not monotone
        (lambda x: 0.25 + 0.5 * jax.nn.sigmoid(x), 3),  # limits 1/4 and 3/4
        (lambda x: jax.nn.sigmoid(x + 0.3 * jnp.clip(x, -1, 1)), 5),  # g' jumps at x = +-1
    ],
    ids=["cloglog", "non-monotone", "wrong-limits", "kink"],
)
def test_refuses(g, number):
    report = prefjax.check_assumptions(g)
    assert not report.ok
    assert number in [c.number for c in report.failed]
    with pytest.raises(prefjax.AssumptionError, match=f"Assumption {number}") as info:
        prefjax.link(g)
    assert info.value.report.failed
    assert prefjax.link(g, check=False).name == "custom"  # opting out is allowed


def test_failure_evidence_says_where_and_how_much():
    report = prefjax.check_assumptions(lambda x: 1 - jnp.exp(-jnp.exp(x)))
    symmetry = next(c for c in report.checks if c.number == 4)
    assert "at x =" in symmetry.evidence and "tolerance" in symmetry.evidence
    assert "FAIL" in str(report)


def test_refuses_non_callables_and_untraceable_functions():
    with pytest.raises(TypeError, match="callable"):
        prefjax.check_assumptions(0.5)
    import math

    with pytest.raises(TypeError, match="jax.numpy"):
        prefjax.check_assumptions(lambda x: 1 / (1 + math.exp(-x)))
