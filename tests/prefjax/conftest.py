"""Shared fixtures for the prefjax tests: the links under test and their mpmath twins."""

import jax
import pytest

import prefjax

from .references import MP_LINKS


def mixture_g(x):
    """A symmetric mixture of logistics with different scales: no closed-form inverse."""
    return 0.5 * jax.nn.sigmoid(x) + 0.5 * jax.nn.sigmoid(x / 3.0)


MIXTURE = prefjax.link(mixture_g, name="mixture")  # numerically inverted

LINKS = {
    "logistic": prefjax.logistic,
    "probit": prefjax.probit,
    "cauchit": prefjax.cauchit,
    "mixture": MIXTURE,
}


@pytest.fixture(params=sorted(LINKS), scope="session")
def link_pair(request):
    """(prefjax link, mpmath reference) for each of the four links."""
    return LINKS[request.param], MP_LINKS[request.param]
