"""K-tuple preference models: Plackett-Luce (Eq. (6)) and the random-utility family.

A *K-tuple model* gives the probability of a ranking omega = (omega_1, ..., omega_K) of K of the
N options. As in Eq. (6), the probability is that of the ranking *among the K options shown*:
options outside omega play no part (a K-subset comparison, not a top-K of all N).

Random-utility (Thurstone) models: U_i = s_i + eps_i with eps_i i.i.d., and

    p_omega = P(U_omega_1 > U_omega_2 > ... > U_omega_K)
            = int f(t - s_1) h_2(t) dt,   h_k(t) = int_{-inf}^t f(r - s_k) h_{k+1}(r) dr,
            h_K(t) = F(t - s_K),

(f, F: the noise density and distribution function; s_k short for s_omega_k), evaluated as a
one-dimensional recursion of cumulative integrals on a grid of ``cells`` cells with ``nodes``
Gauss-Legendre nodes each: cost O(K x cells x nodes^2), order ``nodes`` per cell. Gumbel noise
gives Plackett-Luce exactly (McFadden); normal noise with scale 1/sqrt(2) gives the K-tuple
probit model, whose pairwise margin P(U_i > U_j) = Phi(s_i - s_j) is the probit link
(U_i - U_j ~ N(s_i - s_j, 2 sigma^2) = N(s_i - s_j, 1)).

Also here, shared by the paper's view (:mod:`prefjax.plackett_luce`) and the score view
(:mod:`prefjax.score_view`): Lemma 5's rankings (:func:`lemma5`) and the inverse-function
theorem through a model (:func:`implied_parts`, :func:`implied_from_parts`).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from . import _numerics as nx
from . import _quadrature as qd
from ._link import Link

Array = jax.Array


def pl_log_factors(s_omega) -> Array:
    """The logs of the K - 1 factors of Eq. (6), for scores in ranking order: (..., K) -> (..., K-1).

    log factor_l = -log(1 + sum_{m>l} exp(s_m - s_l)) = -softplus(lse_{m>l} s_m - s_l): the
    second form of Eq. (6), so a factor near 1 keeps its relative precision (log(softmax)
    would compute s_l - lse_{m>=l} s_m and cancel) and no exp overflows. The K - 1 tail sums
    come from one masked logsumexp over a (K - 1, K) array: O(K^2) work, but a small program
    under autodiff, which the score-view integrals differentiate many times over.
    """
    k = s_omega.shape[-1]
    later = np.arange(k)[None, :] > np.arange(k - 1)[:, None]  # (K - 1, K): m > l
    lse = jax.nn.logsumexp(jnp.where(later, s_omega[..., None, :], -jnp.inf), axis=-1)
    return -jax.nn.softplus(lse - s_omega[..., :-1])


def pl_log_prob(s_omega) -> Array:
    """Eq. (6) in log space for scores already in ranking order: s_omega (..., K) -> (...).

    log p = sum_{l<K} log factor_l (:func:`pl_log_factors`).
    """
    return jnp.sum(pl_log_factors(s_omega), axis=-1)


def lemma5(omega: tuple[int, ...], u: int, v: int, rest=None):
    """Lemma 5's rankings (omega'_uv; o_u, o_v) and (omega'_uv; o_v, o_u), from checked input.

    ``rest`` is omega'_uv (default: omega's other options in their order). The checked public
    form is :func:`prefjax.plackett_luce.reorder`.
    """
    a, b = omega[u], omega[v]
    if rest is None:
        rest = tuple(o for i, o in enumerate(omega) if i not in (u, v))
    return rest + (a, b), rest + (b, a)


# --- noise distributions of the random-utility family ----------------------------------

_SQRT_HALF = 0.7071067811865476


def _gumbel_log_pdf(z):
    return -z - jnp.exp(-z)


def _gumbel_cdf(z):
    return jnp.exp(-jnp.exp(-z))


def _normal_log_pdf(z):
    # eps ~ N(0, 1/2): log pdf = log phi(z / sigma) - log sigma, sigma = 1/sqrt(2).
    return nx.normal_log_pdf(z / _SQRT_HALF) - math.log(_SQRT_HALF)


def _normal_cdf(z):
    return nx.normal_cdf(z / _SQRT_HALF)


@dataclasses.dataclass(frozen=True)
class Noise:
    """i.i.d. utility noise: log density, distribution function and how far the grid reaches.

    ``left`` / ``right``: the grid spans [min(s) - left, max(s) + right]; beyond it the noise
    has probability below 1e-17 (Gumbel: F(-5) = e^-148, 1 - F(40) = 4e-18; normal with
    sigma = 1/sqrt(2): Phi(-9 / sigma) = 3e-37). ``tail``: how far the score-view integration
    reaches past the fixed scores. Beyond it the coordinate probabilities are below ~1e-12
    (Gumbel, tail 40: e^-40; normal, tail 7: Phi(-7) = 1e-12), so the part of the image left
    out has an area below ~1e-12; the normal box is kept small because the recursion loses
    relative precision for probabilities below ~1e-30 (Gaussian tails are unresolved by the
    grid there).
    """

    name: str
    log_pdf: Callable
    cdf: Callable
    left: float
    right: float
    tail: float


GUMBEL = Noise("gumbel", _gumbel_log_pdf, _gumbel_cdf, left=5.0, right=40.0, tail=40.0)
NORMAL = Noise("normal", _normal_log_pdf, _normal_cdf, left=9.0, right=9.0, tail=7.0)
NOISES = {"gumbel": GUMBEL, "normal": NORMAL}


def ru_log_prob(s_omega, noise: Noise, cells: int, nodes: int) -> Array:
    """log P(U_1 > ... > U_K) for scores in ranking order, s_omega (..., K) -> (...).

    The grid's end points depend on the scores but carry no gradient (they only decide where
    the negligible tails are cut); derivatives flow through the integrands.
    """
    k = s_omega.shape[-1]
    flat = s_omega.reshape(-1, k)
    out = jax.vmap(partial(_ru_one, noise, cells, nodes))(flat)
    return out.reshape(s_omega.shape[:-1])


def _ru_one(noise: Noise, cells: int, nodes: int, s):
    xi, w = qd.gauss_legendre(nodes)
    q = qd.integration_matrix(nodes)
    xi, w, q = (jnp.asarray(a, dtype=s.dtype) for a in (xi, w, q))
    lo = jax.lax.stop_gradient(jnp.min(s) - noise.left)
    hi = jax.lax.stop_gradient(jnp.max(s) + noise.right)
    half = 0.5 * (hi - lo) / cells
    r = lo + half * (2.0 * jnp.arange(cells, dtype=s.dtype)[:, None] + 1.0 + xi)  # (cells, n)
    h = noise.cdf(r - s[-1])  # h_K at every node
    for j in range(s.shape[0] - 2, 0, -1):
        g = jnp.exp(noise.log_pdf(r - s[j])) * h
        total = half * (g @ w)  # (cells,)
        # Exclusive prefix sum, not cumsum - total: keeps relative precision in the left tail.
        before = jnp.concatenate([jnp.zeros((1,), s.dtype), jnp.cumsum(total)[:-1]])
        # A cumulative integral of a positive function is >= 0; the interpolating rule can
        # undershoot by rounding-sized amounts where the integrand is unresolved: clamp.
        h = jnp.maximum(before[:, None] + half * (g @ q.T), 0.0)
    g = jnp.exp(noise.log_pdf(r - s[0])) * h
    return jnp.log(half * jnp.sum(g @ w))


# --- models ------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class KModel:
    """A K-tuple model: ``log_prob(s_omega)`` for scores in ranking order, and its noise."""

    name: str
    noise: Noise
    cells: int = 0
    nodes: int = 0

    def log_prob(self, s_omega) -> Array:
        if self.cells == 0:
            return pl_log_prob(s_omega)
        return ru_log_prob(s_omega, self.noise, self.cells, self.nodes)


PLACKETT_LUCE = KModel("plackett_luce", GUMBEL)
MODEL_NAMES = ("plackett_luce", "probit", "gumbel")
DEFAULT_CELLS = 96
SCORE_VIEW_CELLS = 40  # the recursion's grid in score-view integrals (cells ~1 wide)
DEFAULT_NODES = 8


LINK_MODELS = {"logistic": "plackett_luce", "probit": "probit"}
"""The K-tuple random-utility model whose pairwise margin is a built-in link, by the link's name
in :data:`prefjax.LINKS`; links with no such model here (cauchit) are absent."""


def make_model(model, cells: int = DEFAULT_CELLS, nodes: int = DEFAULT_NODES) -> KModel:
    """``"plackett_luce"`` (Eq. (6)), ``"probit"`` (normal noise) or ``"gumbel"`` (the
    recursion with Gumbel noise, i.e. Plackett-Luce computed numerically); the links
    :data:`prefjax.logistic` and :data:`prefjax.probit` name the first two."""
    if isinstance(model, KModel):
        return model
    if isinstance(model, Link):
        if model.name not in LINK_MODELS:
            known = " or ".join(f"{m!r} ({name})" for name, m in LINK_MODELS.items())
            raise ValueError(
                f"model: no K-tuple random-utility model is known for link {model.name!r}; "
                f"use {known}"
            )
        model = LINK_MODELS[model.name]
    if model not in MODEL_NAMES:
        valid = ", ".join(repr(m) for m in MODEL_NAMES)
        raise ValueError(f"unknown model {model!r}; valid values are {valid}")
    if model == "plackett_luce":
        return PLACKETT_LUCE
    noise = NORMAL if model == "probit" else GUMBEL
    return KModel(model, noise, cells, nodes)


# --- the score-based view: inverse-function theorem through (s_a, s_b) -> (p_A, p_B) ------
# (pointwise; the areas are in _score_area.py)


def with_scores(scores, vary, s12):
    """``scores`` with the entries ``vary`` replaced by ``s12``."""
    return scores.at[vary[0]].set(s12[0]).at[vary[1]].set(s12[1])


def implied_parts(model: KModel, scores, target, coord_a, coord_b, vary, s12):
    """log p_target, log p_A, log p_B and their gradients w.r.t. (s_vary0, s_vary1).

    Returns (logs (3,), jac (3, 2)). ``target``, ``coord_a``, ``coord_b`` are integer index
    arrays (rankings), ``vary`` a pair of option indices.
    """

    def logs(s12):
        s = with_scores(scores, vary, s12)
        out = jnp.stack(
            [model.log_prob(s[target]), model.log_prob(s[coord_a]), model.log_prob(s[coord_b])]
        )
        return out, out

    jac, val = jax.jacfwd(logs, has_aux=True)(s12)
    return val, jac


def implied_from_parts(val, jac):
    """(p, p_A, p_B, d_A, d_B, log|d_A|, log|d_B|, log|det J|) from :func:`implied_parts`.

    With x = p_A, y = p_B and L the 2x2 matrix of gradients of (log x, log y), J = diag(x, y) L,
    and the inverse-function theorem gives grad_(x,y) p = J^-T grad_s p
    = (p/x, p/y) * (L^-T grad_s log p): every factor is a ratio of probabilities or a log
    derivative, so nothing over- or underflows where the probabilities are tiny.
    """
    lp, lx, ly = val[0], val[1], val[2]
    g0, g1 = jac[0, 0], jac[0, 1]
    a, b, c, d = jac[1, 0], jac[1, 1], jac[2, 0], jac[2, 1]
    det_l = a * d - b * c
    # Where the two gradients are parallel to within rounding (e.g. both varied options far
    # below the others: p_A and p_B then depend on s_0 - s_1 alone, up to terms below eps), the
    # map is not invertible in float64 and the sensitivity is not computable: NaN.
    eps = jnp.finfo(det_l.dtype).eps
    ok = jnp.abs(det_l) > 64 * eps * (jnp.abs(a * d) + jnp.abs(b * c))
    det_safe = jnp.where(ok, det_l, 1.0)
    z0 = jnp.where(ok, (d * g0 - c * g1) / det_safe, jnp.nan)
    z1 = jnp.where(ok, (a * g1 - b * g0) / det_safe, jnp.nan)
    log_da = jnp.where(ok, lp - lx + nx.log_clip(z0), -jnp.inf)
    log_db = jnp.where(ok, lp - ly + nx.log_clip(z1), -jnp.inf)
    d_a = jnp.exp(lp - lx) * z0
    d_b = jnp.exp(lp - ly) * z1
    log_det = lx + ly + jnp.log(jnp.abs(det_l))
    return jnp.exp(lp), jnp.exp(lx), jnp.exp(ly), d_a, d_b, log_da, log_db, log_det
