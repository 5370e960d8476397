"""The score-based view of K-tuple sensitivity, and the random-utility family of K-tuple models.

The paper's view (:mod:`prefjax.plackett_luce`, Eq. (9)) varies p_omega_uv and p_omega_vu with
alpha and beta held fixed. Here two scores move and every other score stays: the map
F: (s_vary0, s_vary1) -> (p_a, p_b) is inverted by the inverse-function theorem, so that
dp_target/dp_a and dp_target/dp_b are derivatives along what a model can actually do, and the
M-sensitive region is a subset of F's image (:func:`implied_area`, :func:`score_view_area`).

The K-tuple models: Plackett-Luce (Eq. (6)) and the random-utility (Thurstone) family
U_i = s_i + eps_i with i.i.d. noise (:func:`random_utility_log_prob`): normal noise gives the
K-tuple probit model, whose pairwise margin is :data:`prefjax.probit`; Gumbel noise gives
Plackett-Luce again, by a numerical recursion. The model behind each built-in link is
``_kmodels.LINK_MODELS``.

Conventions as in :mod:`prefjax.plackett_luce`: options and positions are 0-based, ``omega``
a tuple of K distinct option indices into N scores.
"""

from __future__ import annotations

from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp

from . import _kmodels as km
from . import _score_area as sa
from . import _validate as vd
from ._results import AreaEstimate
from .plackett_luce import WRT

Array = jax.Array

__all__ = [
    "ScoreView",
    "implied_area",
    "implied_sensitivity",
    "random_utility_log_prob",
    "random_utility_prob",
    "score_view_area",
    "score_view_sensitivity",
]


# --- the random-utility family ------------------------------------------------------------


@vd.needs_x64("prefjax.score_view.random_utility_log_prob")
def random_utility_log_prob(
    scores, omega, noise: str = "normal", cells: int = km.DEFAULT_CELLS, nodes: int = 8
) -> Array:
    """log P(U_omega_1 > ... > U_omega_K) for U_i = s_i + eps_i, eps_i i.i.d. (Thurstone).

    noise="normal": eps ~ N(0, 1/2), the K-tuple probit model, whose pairwise margin is
    P(U_i > U_j) = Phi(s_i - s_j) (:data:`prefjax.probit`). noise="gumbel": standard Gumbel,
    which gives Plackett-Luce (Eq. (6)) exactly.

    Computed by the recursion h_K(t) = F(t - s_K), h_k(t) = int_{-inf}^t f(r - s_k) h_{k+1}(r) dr,
    p = h_1(inf), on ``cells`` grid cells with ``nodes`` Gauss-Legendre nodes each, the cumulative
    integrals by the nodes' integration matrix (order ``nodes`` per cell): cost O(K cells nodes^2).
    Accuracy (float64) is set by the cell width h = (max s - min s + tails) / cells, the tails
    being 45 score units for Gumbel noise and 18 for normal noise: h <= ~0.5 gives log p to
    ~1e-10 for probabilities down to ~1e-30 (the default 96 cells do so for score spreads up to
    ~3 (Gumbel) or ~30 (normal); raise ``cells`` for wider ones). Far in the tails (p ~ 1e-60)
    Gaussian factors vary faster than the grid resolves and log p loses digits; probabilities
    below ~1e-300 underflow to -inf. As in Eq. (6), the other N - K options play no part.

    Args:
        scores: (..., N) finite scores; omega: K >= 2 distinct option indices.
        noise: "normal" or "gumbel".
        cells, nodes: the grid (static ints).

    Examples:
        >>> import math
        >>> from prefjax import score_view as sv
        >>> p = sv.random_utility_prob([0.7, 0.0], (0, 1))   # Phi(0.7)
        >>> abs(float(p) - 0.5 * math.erfc(-0.7 / math.sqrt(2))) < 1e-14
        True
    """
    scores = vd.check_scores(scores)
    omega = vd.check_ranking("omega", omega, scores.shape[-1])
    vd.check_choice("noise", noise, tuple(km.NOISES))
    cells = vd.as_index("cells", cells)
    nodes = vd.as_index("nodes", nodes)
    if cells < 1 or nodes < 2:
        raise ValueError(f"cells must be >= 1 and nodes >= 2; got cells = {cells}, nodes = {nodes}")
    return _ru(scores, jnp.asarray(omega), km.NOISES[noise], cells, nodes)


@partial(jax.jit, static_argnums=(2, 3, 4))
def _ru(scores, idx, noise, cells, nodes):
    return km.ru_log_prob(scores[..., idx], noise, cells, nodes)


@vd.needs_x64("prefjax.score_view.random_utility_prob")
def random_utility_prob(
    scores, omega, noise: str = "normal", cells: int = km.DEFAULT_CELLS, nodes: int = 8
) -> Array:
    """``exp`` of :func:`random_utility_log_prob`.

    Examples:
        >>> from prefjax import plackett_luce as pl, score_view as sv
        >>> s, om = [0.3, -0.2, 1.0], (2, 0, 1)
        >>> bool(abs(sv.random_utility_prob(s, om, "gumbel") - pl.prob(s, om)) < 1e-13)
        True
    """
    return jnp.exp(random_utility_log_prob(scores, omega, noise, cells, nodes))


# --- the score-based view: pointwise -----------------------------------------------------


class ScoreView(NamedTuple):
    """A preference and its derivatives w.r.t. two others, when two scores move (score view).

    Attributes:
        p: the target ranking's probability.
        p_a, p_b: the two coordinate rankings' probabilities (for the Plackett-Luce setting,
            a = omega_uv and b = omega_vu).
        d_a, d_b: dp / dp_a with p_b held fixed, and dp / dp_b with p_a held fixed, by the
            inverse-function theorem; NaN where the map is not invertible in float64.
        det_j: det d(p_a, p_b) / d(s_0, s_1), the area element of the change of variables.
    """

    p: Array
    p_a: Array
    p_b: Array
    d_a: Array
    d_b: Array
    det_j: Array


@partial(jax.jit, static_argnums=0)
def _implied_kernel(model, scores, target, coord_a, coord_b, vary):
    def one(s):
        val, jac = km.implied_parts(model, s, target, coord_a, coord_b, vary, s[vary])
        p, x, y, da, db, _, _, _ = km.implied_from_parts(val, jac)
        det = x * y * (jac[1, 0] * jac[2, 1] - jac[1, 1] * jac[2, 0])
        return ScoreView(p, x, y, da, db, det)

    flat = scores.reshape(-1, scores.shape[-1])
    out = jax.vmap(one)(flat)
    return ScoreView(*(o.reshape(scores.shape[:-1]) for o in out))


def _check_implied_args(target, coords, vary, n: int):
    """The rankings (target, coord_a, coord_b, vary) of :func:`implied_sensitivity`, checked
    against N = n options."""
    if len(coords) != 2:
        raise ValueError(f"coords must be two rankings; got {coords!r}")
    target = vd.check_ranking("target", target, n)
    coord_a = vd.check_ranking("coords[0]", coords[0], n)
    coord_b = vd.check_ranking("coords[1]", coords[1], n)
    vary = vd.check_ranking("vary", vary, n)
    if len(vary) != 2:
        raise ValueError(f"vary must name two options; got {vary}")
    return target, coord_a, coord_b, vary


def _pair_args(scores, omega, u, v, rest, min_k: int = 2):
    """Checked scores, and the rankings of the pair (u, v) of omega: target omega, coords
    (omega_uv, omega_vu) (Lemma 5, with ``rest``) and vary (omega[u], omega[v])."""
    scores = vd.check_scores(scores)
    n = scores.shape[-1]
    omega = vd.check_ranking("omega", omega, n, min_k)
    u, v = vd.check_positions(u, v, len(omega))
    if rest is not None:
        rest = vd.check_rest(rest, omega, u, v, n)
    om_uv, om_vu = km.lemma5(omega, u, v, rest)
    return scores, (omega, om_uv, om_vu, (omega[u], omega[v]))


def _indices(rankings):
    return [jnp.asarray(t) for t in rankings]


@vd.needs_x64("prefjax.score_view.implied_sensitivity")
def implied_sensitivity(scores, target, coords, vary, *, model="plackett_luce") -> ScoreView:
    """The score-based view for any three rankings: dp_target/dp_a and dp_target/dp_b.

    Hold every score but s_vary0 and s_vary1 fixed; the map F: (s_vary0, s_vary1) ->
    (p_a, p_b) has Jacobian J (``jax.jacfwd``), and by the inverse-function theorem
    (dp/dp_a, dp/dp_b) = J^-T grad_s p. Computed from log-probabilities, so that tiny
    probabilities neither over- nor underflow.

    With Lemma 1's coordinates (target (i, j), coords ((i, k), (k, j)), vary (i, k)) and
    K = 2, this is Bradley-Terry's Eq. (4) (or Eq. (2) for model="probit").

    Args:
        scores: (..., N) finite scores.
        target: a ranking (K >= 2 options); coords: two rankings (a, b).
        vary: two distinct option indices whose scores move.
        model: "plackett_luce" (Eq. (6)), "probit" (K-tuple probit) or "gumbel" (the
            random-utility recursion with Gumbel noise); or :data:`prefjax.logistic` /
            :data:`prefjax.probit`.

    Returns:
        :class:`ScoreView`.

    Examples:
        >>> from prefjax import bradley_terry as bt, score_view as sv
        >>> view = sv.implied_sensitivity([1.3, 0.0, -0.4], (0, 1), ((0, 2), (2, 1)), (0, 2))
        >>> bool(abs(view.d_a - bt.d_ik(view.p_a, view.p_b)) < 1e-12)
        True
    """
    scores = vd.check_scores(scores)
    rankings = _check_implied_args(target, coords, vary, scores.shape[-1])
    return _implied_kernel(km.make_model(model), scores, *_indices(rankings))


@vd.needs_x64("prefjax.score_view.score_view_sensitivity")
def score_view_sensitivity(scores, omega, u, v, *, model="plackett_luce", rest=None) -> ScoreView:
    """The score-based view of Eq. (9): move s_omega_u and s_omega_v, hold the others fixed.

    The paper varies p_omega_uv and p_omega_vu with alpha and beta fixed; here they move
    because the two scores do, and the other ratios of Eq. (7) move with them. Returns
    :func:`implied_sensitivity` for target omega, coords (omega_uv, omega_vu) (Lemma 5, with
    ``rest``, :func:`prefjax.plackett_luce.reorder`) and vary (omega[u], omega[v]): ``d_a`` = dp_omega/dp_omega_uv,
    ``d_b`` = dp_omega/dp_omega_vu. Needs K >= 3: for K = 2, p_uv + p_vu = 1 and the map is
    singular (NaN).

    Examples:
        >>> from prefjax import score_view as sv
        >>> view = sv.score_view_sensitivity([0.0, 0.0, 0.0], (0, 1, 2), 0, 1)
        >>> round(float(view.p), 12), round(float(view.d_a), 12)  # p = 1/6; the tests' K = 3 form
        (0.166666666667, -0.375)
    """
    scores, rankings = _pair_args(scores, omega, u, v, rest)
    return _implied_kernel(km.make_model(model), scores, *_indices(rankings))


# --- the score-based view: areas -----------------------------------------------------------


def _area(scores, rankings, M, wrt: str, names: tuple[str, str], model, rtol) -> AreaEstimate:
    """The checks and the call shared by :func:`implied_area` and :func:`score_view_area`;
    ``names`` are the two values ``wrt`` may take (coordinate a, coordinate b)."""
    if scores.ndim != 1:
        raise ValueError(f"scores must be one score vector (N,); got shape {scores.shape}")
    M = vd.check_positive_number("M", M)
    vd.check_choice("wrt", wrt, names)
    kmodel = km.make_model(model, km.SCORE_VIEW_CELLS)
    if kmodel.name == "gumbel":
        raise ValueError(
            "model='gumbel' (Plackett-Luce by the recursion, for pointwise checks) is not offered "
            "for areas: its grid cannot resolve the +-40 score box; use 'plackett_luce'"
        )
    if rtol is None:
        rtol = 1e-8 if kmodel.cells == 0 else 1e-5
    rtol = vd.check_positive_number("rtol", rtol)
    value, error, n_evals = sa.implied_region_area(
        kmodel, scores, *_indices(rankings), M, names.index(wrt), rtol
    )
    return AreaEstimate(value, error, "score-view", n_evals)


@vd.needs_x64("prefjax.score_view.implied_area")
def implied_area(
    scores, target, coords, vary, M, wrt: str = "a", *, model="plackett_luce", rtol=None
) -> AreaEstimate:
    """A({(p_a, p_b) in the image of F : |dp_target/dp_wrt| > M}) in the score-based view.

    By the change of variables (p_a, p_b) = F(s_vary0, s_vary1), the area is
    int int 1[|d_wrt| > M] |det J| ds over the score plane (F is one-to-one for these models).
    It is computed in rotated coordinates a = (s_0 + s_1)/2, d = s_0 - s_1 (Jacobian 1). For
    each d, chi = sign(d_wrt) asinh(|d_wrt|/M) is sampled on half-unit cells in a; its crossings
    of +-asinh(1) are refined by root finding (the signed form keeps the narrow gap around a
    zero of d_wrt), regions narrower than a cell are found from the sampled extrema, and |det J|
    is integrated over the inside by Gauss-Legendre. Over d: a scan locates where the number of
    crossings changes (folds of the boundary, with square-root kinks), and adaptive
    Gauss-Kronrod integrates between those breakpoints. The box reaches 40 (Plackett-Luce) or 7
    (probit) past the fixed scores; the image left out has probabilities below ~1e-12.

    Accuracy: with Lemma 1's coordinates Plackett-Luce reproduces Proposition 1 to ~5e-10
    (default rtol 1e-8), and K = 3 matches an independent ray integral of the hand-inverted map
    to ~3e-9. The probit model defaults to rtol = 1e-5 (every point costs three recursions).
    ``error`` is the Gauss-Kronrod estimate. Runs on the host (not traceable); one
    compilation per shape (several seconds).

    Args:
        scores: (N,) finite scores; target, coords, vary: as in :func:`implied_sensitivity`.
        M: the threshold, > 0.
        wrt: "a" or "b".
        model: "plackett_luce" or "probit" (or the links :data:`prefjax.logistic`,
            :data:`prefjax.probit`).
        rtol: the outer quadrature's relative error target.

    Returns:
        ``AreaEstimate(value, error, "score-view", n_evals)``.

    Examples:
        >>> from prefjax import bradley_terry as bt, score_view as sv
        >>> est = sv.implied_area([0.0, 0.0, 0.0], (0, 1), ((0, 2), (2, 1)), (0, 2), 10.0)
        >>> abs(est.value - float(bt.region_area(10.0))) < 1e-8 * est.value   # Proposition 1
        True
    """
    scores = vd.check_scores(scores)
    rankings = _check_implied_args(target, coords, vary, scores.shape[-1])
    return _area(scores, rankings, M, wrt, ("a", "b"), model, rtol)


@vd.needs_x64("prefjax.score_view.score_view_area")
def score_view_area(
    scores, omega, u, v, M, wrt: str = "uv", *, model="plackett_luce", rest=None, rtol=None
) -> AreaEstimate:
    """A(Omega_M(p_omega, p_omega_uv)) in the score-based view (K >= 3).

    :func:`implied_area` for target omega, coords (omega_uv, omega_vu), vary (omega[u],
    omega[v]). The image of the map is the triangle {p_uv, p_vu > 0, p_uv + p_vu < P'}, where P'
    is the probability of the ranking omega'_uv among its own K - 2 options, so the area is at
    most P'/2.

    Examples:
        >>> from prefjax import score_view as sv
        >>> est = sv.score_view_area([0.0, 0.0, 0.0], (0, 1, 2), 0, 1, M=1e-300)  # all
        >>> round(est.value, 6)      # the whole triangle, 1/2 (less what float64 cannot resolve)
        0.5
    """
    scores, rankings = _pair_args(scores, omega, u, v, rest, min_k=3)
    return _area(scores, rankings, M, wrt, WRT, model, rtol)
