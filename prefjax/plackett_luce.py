"""The K-tuple Plackett-Luce model in the paper's view (Section 2.4): Eqs. (6)-(12),
Proposition 2, Section 3.2.

The paper varies p_omega_uv and p_omega_vu with alpha and beta of Eq. (10) held fixed. When
the scores themselves move, and for the random-utility family of K-tuple models (K-tuple
probit, any noise), see :mod:`prefjax.score_view`.

Conventions: options and positions are 0-based. ``omega`` is a tuple of K distinct option
indices into a score vector of N options (2 <= K <= N); positions ``u < v`` index ``omega``
(the paper's u and v are ``u + 1`` and ``v + 1``). A ranking's probability is that of the
ranking *among the K options shown*, as in Eq. (6): options outside ``omega`` play no part.

Notes on the paper (each checked by a test in ``tests/prefjax/test_plackett_luce*.py`` or
``tests/prefjax/test_score_view.py``):

* Eq. (6) ranks only the K options in omega, so for K < N the K! rankings of each K-subset
  sum to 1 and all K-permutations of the N options to C(N, K); a total of 1 would need the
  top-K-of-N model (every remaining option in each denominator), which is not Eq. (6).

* Lemma 5 lets omega'_uv be *any* (K-2)-permutation of O \\ {o_u, o_v}. The ratio
  p_omega_vu / p_omega_uv (Eq. (8)) does not depend on that choice, but p_omega_uv and
  p_omega_vu themselves do: another choice multiplies both by a common factor c, and the
  paper's sensitivity Eq. (9), homogeneous of degree -1, by 1/c. Which M-sensitive region a
  given score vector lies in therefore depends on the choice; the areas (Proposition 2) do
  not. We use omega's other options in their order by default (``rest=`` picks another).
* Eq. (10) gives alpha = 1 exactly (an empty sum), not alpha > 1, for the last pair
  (u, v) = (K-2, K-1); and beta = 1 for K = 2 (an empty product).
* Appendix B.2, Eq. (B6), ends with beta^2 / (6 alpha M): the antiderivative lost the M in
  (beta - 4 alpha M p) and a factor 1/M. The integral of 2 gamma_2 is beta^2 / (6 alpha M^2),
  as Proposition 2 states (the numeric area agrees to 1e-12; B6's value is M times too big).
* Section 3.2 calls beta "a product of K constants"; it has K - 2 factors (l != u, l < K-1),
  and appending an option changes every earlier factor, not only the count. Every factor
  shrinks, so beta still decreases and alpha increases with K: the conclusion holds for fixed
  scores (see :func:`robustness_vs_k`).
* At K = 2 the paper's view (alpha = beta = 1) gives 1 / (6 M^2), about half of
  Proposition 1's area (~ 1 / (3 M^2)): Theorem 2 compares regions in different coordinates,
  and its inequality holds for K = 2 as well. In the score-based view with Lemma 1's
  coordinates, K = 2 reproduces Eq. (4) and Proposition 1 (see
  :func:`prefjax.score_view.implied_area`).
"""

from __future__ import annotations

import math
from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from . import _kmodels as km
from . import _quadrature as qd
from . import _validate as vd
from . import bradley_terry as bt
from ._results import AreaEstimate, RegionBounds

Array = jax.Array

__all__ = [
    "AlphaBeta",
    "KSensitivity",
    "RobustnessVsK",
    "alpha_beta",
    "compose",
    "d_uv",
    "d_vu",
    "log_prob",
    "numeric_region_area",
    "prob",
    "prob_from_ratios",
    "ratio",
    "ratios",
    "region_area",
    "region_bounds",
    "reorder",
    "robustness_vs_k",
    "sensitivity",
]

WRT = ("uv", "vu")


def _prepare(scores, omega, min_k: int = 2):
    scores = vd.check_scores(scores)
    omega = vd.check_ranking("omega", omega, scores.shape[-1], min_k)
    return scores, omega


# --- Eq. (6): probabilities -------------------------------------------------------------


@jax.jit
def _lp(scores, idx):
    """Eq. (6) for the ranking idx (an int array): one compiled program per shape, not one per
    ranking and primitive, as eager dispatch would compile."""
    return km.pl_log_prob(scores[..., idx])


@vd.needs_x64("prefjax.plackett_luce.log_prob")
def log_prob(scores, omega) -> Array:
    """log p_omega of the K-tuple Plackett-Luce model (Eq. (6)), stable in log space.

    p_omega = prod_{l=1}^{K-1} exp(s_omega_l) / sum_{m=l}^{K} exp(s_omega_m)
            = prod_l 1 / (1 + sum_{m>l} exp(-(s_omega_l - s_omega_m))).

    Computed as -sum_l softplus(logsumexp_{m>l} s_omega_m - s_omega_l): no exp overflows, and
    a factor near 1 keeps its relative precision. K = 2 is Bradley-Terry, g(s_i - s_j).

    Args:
        scores: (..., N) finite scores; leading axes batch (works under ``jax.vmap``/``jit``).
        omega: K distinct option indices (0-based), 2 <= K <= N, a concrete tuple.

    Returns:
        log p_omega with shape ``scores.shape[:-1]``.

    Raises:
        ValueError: omega with a repeated or out-of-range index, K < 2; scores not finite.

    Examples:
        >>> import math
        >>> from prefjax import plackett_luce as pl
        >>> lp = pl.log_prob([1.0, 0.0, -1.0], (0, 1, 2))
        >>> want = math.log(math.e / (math.e + 1 + math.exp(-1)) * 1 / (1 + math.exp(-1)))
        >>> abs(float(lp) - want) < 1e-15
        True
    """
    scores, omega = _prepare(scores, omega)
    return _lp(scores, jnp.asarray(omega))


@vd.needs_x64("prefjax.plackett_luce.prob")
def prob(scores, omega) -> Array:
    """p_omega of the K-tuple Plackett-Luce model (Eq. (6)); ``exp`` of :func:`log_prob`.

    Examples:
        >>> from prefjax import plackett_luce as pl
        >>> round(float(pl.prob([0.0, 0.0, 0.0], (2, 0, 1))), 12)   # 1/3 * 1/2
        0.166666666667
    """
    return jnp.exp(log_prob(scores, omega))


# --- Lemma 5: reorderings, ratios, Eq. (7) ----------------------------------------------


def reorder(omega, u, v, rest=None) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Lemma 5's K-permutations omega_uv = (omega'_uv; o_u, o_v) and omega_vu = (omega'_uv; o_v, o_u).

    Args:
        omega: the ranking, K >= 2 distinct option indices.
        u, v: positions in omega, 0 <= u < v < K.
        rest: omega'_uv, any K - 2 distinct options other than omega[u], omega[v] (they may lie
            outside omega when N > K). Default: omega's other options in their order.

    Returns:
        (omega_uv, omega_vu), tuples of option indices.

    Examples:
        >>> from prefjax import plackett_luce as pl
        >>> pl.reorder((4, 2, 7, 1), 1, 3)
        ((4, 7, 2, 1), (4, 7, 1, 2))
    """
    omega = vd.check_ranking("omega", omega)
    u, v_ = vd.check_positions(u, v, len(omega))
    if rest is not None:
        rest = vd.check_rest(rest, omega, u, v_)
    return km.lemma5(omega, u, v_, rest)


@vd.needs_x64("prefjax.plackett_luce.ratio")
def ratio(scores, omega, u, v) -> Array:
    """p_omega_vu / p_omega_uv = exp(-(s_omega_u - s_omega_v)) (Lemma 5, Eq. (8)).

    The same for every choice of omega'_uv: the two rankings share their first K - 2 factors.

    Examples:
        >>> import math
        >>> from prefjax import plackett_luce as pl
        >>> abs(float(pl.ratio([2.0, 0.5, 1.0], (0, 1, 2), 0, 2)) - math.exp(-1.0)) < 1e-15
        True
    """
    scores, omega = _prepare(scores, omega)
    u, v_ = vd.check_positions(u, v, len(omega))
    return jnp.exp(scores[..., omega[v_]] - scores[..., omega[u]])


@vd.needs_x64("prefjax.plackett_luce.ratios")
def ratios(scores, omega) -> Array:
    """All ratios of Eq. (7): r[..., l, m] = p_omega_ml / p_omega_lm = exp(s_omega_m - s_omega_l).

    Returns:
        (..., K, K); Eq. (7) uses the entries above the diagonal.

    Examples:
        >>> from prefjax import plackett_luce as pl
        >>> pl.ratios([0.0, 0.0], (0, 1)).tolist()
        [[1.0, 1.0], [1.0, 1.0]]
    """
    scores, omega = _prepare(scores, omega)
    return _ratios(scores, jnp.asarray(omega))


@jax.jit
def _ratios(scores, idx):
    s = scores[..., idx]
    return jnp.exp(s[..., None, :] - s[..., :, None])


@vd.needs_x64("prefjax.plackett_luce.prob_from_ratios")
def prob_from_ratios(r) -> Array:
    """Eq. (7): p_omega = prod_{l<K} 1 / (1 + sum_{m>l} r[l, m]), r[l, m] = p_omega_ml / p_omega_lm.

    Args:
        r: (..., K, K) positive ratios (entries on and below the diagonal are ignored).

    Returns:
        p_omega, shape ``r.shape[:-2]``.

    Examples:
        >>> from prefjax import plackett_luce as pl
        >>> round(float(pl.prob_from_ratios(pl.ratios([0.3, -1.0, 2.0], (2, 0, 1)))), 12) == round(
        ...     float(pl.prob([0.3, -1.0, 2.0], (2, 0, 1))), 12)
        True
    """
    r = vd.as_float_array("r", r)
    if r.ndim < 2 or r.shape[-1] != r.shape[-2] or r.shape[-1] < 2:
        raise ValueError(f"r must have shape (..., K, K) with K >= 2; got {r.shape}")
    return _prob_from_ratios(r)


@jax.jit
def _prob_from_ratios(r):
    k = r.shape[-1]
    upper = np.triu(np.ones((k, k), bool), 1)
    sums = jnp.sum(jnp.where(upper, r, 0.0), axis=-1)[..., :-1]
    return jnp.exp(-jnp.sum(jnp.log1p(sums), axis=-1))  # log1p: sums may be tiny


# --- Eqs. (9)-(10): alpha, beta and the sensitivities -------------------------------------


class AlphaBeta(NamedTuple):
    """Eq. (10) for a pair of positions u < v of omega.

    Attributes:
        alpha: 1 + sum_{t>u, t!=v} p_omega_tu / p_omega_ut (>= 1; = 1 for (u, v) = (K-2, K-1)).
        beta: prod_{l!=u, l<K-1} 1 / (1 + sum_{m>l} p_omega_ml / p_omega_lm) (in (0, 1]).
    """

    alpha: Array
    beta: Array


@partial(jax.jit, static_argnums=(1, 2))
def _alpha_beta(s, u: int, v_: int) -> AlphaBeta:
    """Eq. (10) from scores in ranking order s (..., K), in log space for beta."""
    k = s.shape[-1]
    others = [t for t in range(u + 1, k) if t != v_]
    if others:
        alpha = 1.0 + jnp.sum(jnp.exp(s[..., others] - s[..., u : u + 1]), axis=-1)
    else:
        alpha = jnp.ones(s.shape[:-1], s.dtype)
    log_factors = km.pl_log_factors(s)  # log of each factor of Eq. (6)
    keep = np.arange(k - 1) != u
    return AlphaBeta(alpha, jnp.exp(jnp.sum(jnp.where(keep, log_factors, 0.0), axis=-1)))


@vd.needs_x64("prefjax.plackett_luce.alpha_beta")
def alpha_beta(scores, omega, u, v) -> AlphaBeta:
    """alpha and beta of Eq. (10), such that p_omega = beta / (alpha + p_omega_vu / p_omega_uv).

    Args:
        scores: (..., N) finite scores.
        omega: the ranking (K >= 2 option indices).
        u, v: positions, 0 <= u < v < K.

    Returns:
        ``AlphaBeta(alpha, beta)``, each with shape ``scores.shape[:-1]``.

    Examples:
        >>> from prefjax import plackett_luce as pl
        >>> ab = pl.alpha_beta([0.0, 0.0, 0.0, 0.0], (0, 1, 2, 3), 0, 1)  # equal scores
        >>> float(ab.alpha), round(float(ab.beta), 12)                  # 1 + 2, 1/3 * 1/2
        (3.0, 0.166666666667)
    """
    scores, omega = _prepare(scores, omega)
    u, v_ = vd.check_positions(u, v, len(omega))
    return _alpha_beta(scores[..., jnp.asarray(omega)], u, v_)


@vd.needs_x64("prefjax.plackett_luce.compose")
def compose(p_uv, p_vu, alpha, beta) -> Array:
    """Eq. (7) with the other ratios folded into alpha and beta: p_omega = beta p_uv / (alpha p_uv + p_vu).

    The paper's view: p_omega as a function of (p_omega_uv, p_omega_vu) with alpha and beta
    held fixed. Elementwise; arrays broadcast.

    Examples:
        >>> from prefjax import plackett_luce as pl
        >>> float(pl.compose(0.25, 0.25, 1.0, 1.0))   # K = 2: p_uv / (p_uv + p_vu)
        0.5
    """
    vd.check_float_dtype("p_uv", p_uv), vd.check_float_dtype("p_vu", p_vu)
    x, y = jnp.asarray(p_uv), jnp.asarray(p_vu)
    return beta * x / (alpha * x + y)


@vd.needs_x64("prefjax.plackett_luce.d_uv")
def d_uv(p_uv, p_vu, alpha, beta) -> Array:
    """Eq. (9): dp_omega / dp_omega_uv = beta p_vu / (alpha p_uv + p_vu)^2 (> 0).

    Examples:
        >>> from prefjax import plackett_luce as pl
        >>> round(float(pl.d_uv(0.01, 0.02, 1.0, 1.0)), 10)   # 0.02 / 0.03^2
        22.2222222222
    """
    vd.check_float_dtype("p_uv", p_uv), vd.check_float_dtype("p_vu", p_vu)
    x, y = jnp.asarray(p_uv), jnp.asarray(p_vu)
    den = alpha * x + y
    return beta * y / den / den  # den^2 underflows at p ~ 1e-160, the quotient need not


@vd.needs_x64("prefjax.plackett_luce.d_vu")
def d_vu(p_uv, p_vu, alpha, beta) -> Array:
    """Eq. (9): dp_omega / dp_omega_vu = -beta p_uv / (alpha p_uv + p_vu)^2 (< 0).

    Examples:
        >>> from prefjax import plackett_luce as pl
        >>> round(float(pl.d_vu(0.01, 0.02, 1.0, 1.0)), 10)   # -0.01 / 0.03^2
        -11.1111111111
    """
    vd.check_float_dtype("p_uv", p_uv), vd.check_float_dtype("p_vu", p_vu)
    x, y = jnp.asarray(p_uv), jnp.asarray(p_vu)
    den = alpha * x + y
    return -beta * x / den / den


class KSensitivity(NamedTuple):
    """p_omega and its partial derivatives in the paper's view (Eq. (9)).

    Attributes:
        p: p_omega.
        p_uv, p_vu: p_omega_uv and p_omega_vu (Lemma 5's rankings, for the chosen omega'_uv).
        d_uv: dp_omega / dp_omega_uv with p_omega_vu and the other ratios held fixed.
        d_vu: dp_omega / dp_omega_vu likewise.
    """

    p: Array
    p_uv: Array
    p_vu: Array
    d_uv: Array
    d_vu: Array


METHODS = ("closed_form", "autodiff")


@vd.needs_x64("prefjax.plackett_luce.sensitivity")
def sensitivity(scores, omega, u, v, method: str = "closed_form", rest=None) -> KSensitivity:
    """dp_omega/dp_omega_uv and dp_omega/dp_omega_vu at given scores (Eq. (9), Lemma 5).

    ``method="closed_form"``: Eq. (9) with alpha and beta from Eq. (10).
    ``method="autodiff"``: Eq. (7) as a function of the probabilities p_omega_lm, p_omega_ml of
    every pair l < m (each from Eq. (6) for Lemma 5's reorderings), differentiated by
    ``jax.grad`` with respect to p_omega_uv and p_omega_vu. The two agree to rounding.

    Args:
        scores: (..., N) finite scores.
        omega: the ranking, K >= 2 options; u, v: positions 0 <= u < v < K.
        method: "closed_form" or "autodiff".
        rest: omega'_uv for the pair (u, v) (see :func:`reorder`); scales p_uv, p_vu by a common
            factor and d_uv, d_vu by its inverse.

    Returns:
        ``KSensitivity(p, p_uv, p_vu, d_uv, d_vu)``.

    Examples:
        >>> from prefjax import plackett_luce as pl
        >>> s = [1.0, 0.2, -0.5, 0.3]
        >>> a = pl.sensitivity(s, (0, 1, 2, 3), 1, 2)
        >>> b = pl.sensitivity(s, (0, 1, 2, 3), 1, 2, method="autodiff")
        >>> bool(abs(a.d_uv - b.d_uv) < 1e-12 * abs(a.d_uv))
        True
    """
    scores, omega = _prepare(scores, omega)
    u, v_ = vd.check_positions(u, v, len(omega))
    vd.check_choice("method", method, METHODS)
    if rest is not None:
        rest = vd.check_rest(rest, omega, u, v_, scores.shape[-1])
    om_uv, om_vu = km.lemma5(omega, u, v_, rest)
    lx = _lp(scores, jnp.asarray(om_uv))
    ly = _lp(scores, jnp.asarray(om_vu))
    p = jnp.exp(_lp(scores, jnp.asarray(omega)))
    x, y = jnp.exp(lx), jnp.exp(ly)
    if method == "closed_form":
        ab = _alpha_beta(scores[..., jnp.asarray(omega)], u, v_)
        out = KSensitivity(p, x, y, d_uv(x, y, ab.alpha, ab.beta), d_vu(x, y, ab.alpha, ab.beta))
        _raise_if_unrepresentable(out, scores)
        return out
    k = len(omega)
    pair_probs = {}
    for l_ in range(k):
        for m in range(l_ + 1, k):
            if (l_, m) != (u, v_):
                a, b = km.lemma5(omega, l_, m)
                pair_probs[l_, m] = (
                    jnp.exp(_lp(scores, jnp.asarray(a))).reshape(-1),
                    jnp.exp(_lp(scores, jnp.asarray(b))).reshape(-1),
                )

    def eq7(xy, probs):
        # Eq. (7), each ratio p_omega_ml / p_omega_lm formed from the two probabilities, with
        # the pair (u, v) replaced by the free variables (x, y) = (p_omega_uv, p_omega_vu).
        out = 1.0
        for l_ in range(k - 1):
            row = 1.0
            for m in range(l_ + 1, k):
                p_lm, p_ml = (xy[0], xy[1]) if (l_, m) == (u, v_) else probs[l_, m]
                row = row + p_ml / p_lm
            out = out / row
        return out

    xy = jnp.stack([x.reshape(-1), y.reshape(-1)], -1)
    grad = jax.vmap(jax.grad(eq7))(xy, pair_probs)
    out = KSensitivity(p, x, y, grad[:, 0].reshape(x.shape), grad[:, 1].reshape(x.shape))
    _raise_if_unrepresentable(out, scores)
    return out


def _raise_if_unrepresentable(out: KSensitivity, scores) -> None:
    """The paper's view works with the probabilities themselves: where scores spread so far
    that p_omega_uv or p_omega_vu leaves float64 (underflows to 0), Eq. (9) is 0/0. Say so
    (concrete inputs) instead of returning NaN; the score view works in log space."""
    if vd.is_traced(out.d_uv):
        return
    bad = ~(np.isfinite(np.asarray(out.d_uv)) & np.isfinite(np.asarray(out.d_vu)))
    if np.any(bad):
        i = np.unravel_index(int(np.argmax(bad.ravel())), bad.shape) if bad.ndim else ()
        raise ValueError(
            f"scores{list(i) if i else ''} give p_omega_uv = {float(np.asarray(out.p_uv)[i])!r} "
            f"and p_omega_vu = {float(np.asarray(out.p_vu)[i])!r}: beyond float64, Eq. (9) "
            "has no finite value; use prefjax.score_view.score_view_sensitivity (log space)"
        )


# --- Eqs. (11)-(12) and Proposition 2 -------------------------------------------------------


def _check_m(M) -> float:
    return vd.check_positive_number("M", M)


def _check_ab(alpha, beta):
    alpha = vd.as_float_array("alpha", alpha)
    beta = vd.as_float_array("beta", beta)
    for name, val in (("alpha", alpha), ("beta", beta)):
        if not vd.is_traced(val):
            host = np.asarray(val)
            bad = ~(host > 0) | ~np.isfinite(host)
            if np.any(bad):
                raise ValueError(f"{name} must be finite and > 0; got {host[bad].ravel()[0]!r}")
    return alpha, beta


@vd.needs_x64("prefjax.plackett_luce.region_bounds")
def region_bounds(M, alpha, beta, wrt: str = "uv", *, at) -> RegionBounds:
    """Eq. (11) (wrt="uv") or Eq. (12) (wrt="vu"): where |Eq. (9)| > M.

    wrt="uv": 0 < p_uv < beta / (4 alpha M) and gamma_1 - gamma_2 < p_vu < gamma_1 + gamma_2,
        gamma_1 = (beta - 2 alpha M p_uv) / (2M), gamma_2 = sqrt(beta (beta - 4 alpha M p_uv)) / (2M).
    wrt="vu": 0 < p_vu < beta / (4 alpha M) and eta_1 - eta_2 < p_uv < eta_1 + eta_2, with
        eta_i = gamma_i / alpha^2 evaluated at p_vu.

    The lower end is computed as gamma_1^2 - gamma_2^2 = alpha^2 p^2 over gamma_1 + gamma_2
    (eta: (p / alpha)^2 over eta_1 + eta_2), the same number without the cancellation of the
    difference. The region lies inside the unit square when M >= beta (so for all M > 1).

    Args:
        M: the threshold, > 0.
        alpha, beta: Eq. (10) (arrays broadcast).
        wrt: "uv" or "vu".
        at: the outer variable (p_uv for wrt="uv", p_vu for wrt="vu").

    Returns:
        :class:`prefjax.RegionBounds` ``(low, high, limit)``: the inner variable's open
        interval at ``at`` (NaN outside the slice range) and limit = beta / (4 alpha M), the end
        of the outer variable's range.

    Examples:
        >>> from prefjax import plackett_luce as pl
        >>> b = pl.region_bounds(2.0, 1.0, 1.0, at=0.0625)   # K = 2 values, p_uv = limit / 2
        >>> round(float(b.low), 6), round(float(b.high), 6), float(b.limit)  # 3/16 -+ sqrt(2)/8
        (0.010723, 0.364277, 0.125)
    """
    M = _check_m(M)
    alpha, beta = _check_ab(alpha, beta)
    vd.check_choice("wrt", wrt, WRT)
    p = vd.as_float_array("at", at)
    limit = beta / (4.0 * alpha * M)
    inside = (p > 0) & (p < limit)
    disc = jnp.sqrt(jnp.maximum(beta * (beta - 4.0 * alpha * M * p), 0.0))
    scale = 2.0 * M if wrt == "uv" else 2.0 * alpha * alpha * M
    c1 = (beta - 2.0 * alpha * M * p) / scale
    c2 = disc / scale
    sq = (alpha * p) ** 2 if wrt == "uv" else (p / alpha) ** 2
    low = sq / jnp.where(inside, c1 + c2, 1.0)
    high = c1 + c2
    return RegionBounds(jnp.where(inside, low, jnp.nan), jnp.where(inside, high, jnp.nan), limit)


@vd.needs_x64("prefjax.plackett_luce.region_area")
def region_area(M, alpha, beta, wrt: str = "uv") -> Array:
    """Proposition 2: A(Omega_M(p_omega, p_omega_uv)) = beta^2 / (6 alpha M^2); wrt="vu":
    beta^2 / (6 alpha^3 M^2).

    The area of the region of Eqs. (11)-(12) (int_0^{beta/(4 alpha M)} 2 gamma_2 dp_uv);
    Appendix B.2's last line, beta^2 / (6 alpha M), drops a factor 1/M (see the module notes).
    It is the area inside the unit square when M >= beta; :func:`numeric_region_area` clips.

    Examples:
        >>> from prefjax import plackett_luce as pl
        >>> float(pl.region_area(2.0, 1.0, 1.0))   # 1 / 24
        0.041666666666666664
    """
    M = _check_m(M)
    alpha, beta = _check_ab(alpha, beta)
    vd.check_choice("wrt", wrt, WRT)
    power = 1 if wrt == "uv" else 3
    return beta * beta / (6.0 * alpha**power * M * M)


_RAYS_ROUNDING = 256 * 2.0**-52  # the ray integral's rounding floor, relative
_RAYS_RTOL_FLOOR = 4 * _RAYS_ROUNDING
_RAY_CHUNK = 60  # the first adaptive round: 4 intervals x 15 Kronrod nodes


@partial(jax.jit, static_argnums=3)
def _ray_radius(w, M, ab, wrt_uv: bool):
    """Where the ray (x, y) = q (w, 1 - w) leaves {|d p_omega / d p_wrt| > M} (or the square).

    The derivative is autodiff of :func:`compose` (Eq. (7)), not Eq. (9). Along a ray Eq. (7)
    is constant (it depends on y/x only), so |dp/dx| = C(w)/q decreases: the set on the ray is
    (0, q*). q* is bracketed from the square's edge q_max = 1/max(w, 1-w) down by factors of 4
    and refined by :func:`prefjax._quadrature.bracketed_root` on log|dp/dx| - log M in log q.
    """
    alpha, beta = ab[0], ab[1]
    log_m = jnp.log(M)

    def phi(log_q, w_):
        q = jnp.exp(log_q)
        grad = jax.grad(lambda xy: compose(xy[0], xy[1], alpha, beta))(
            jnp.stack([q * w_, q * (1.0 - w_)])
        )
        return jnp.log(jnp.abs(grad[0] if wrt_uv else grad[1])) - log_m

    def phi_v(log_q):
        return jax.vmap(phi)(log_q, w)

    log_qmax = -jnp.log(jnp.maximum(w, 1.0 - w))
    f_max = phi_v(log_qmax)

    def cond(state):
        _, f_lo, it = state
        return jnp.any(f_lo <= 0) & (it < 400)

    def body(state):
        lo, f_lo, it = state
        step = f_lo <= 0
        lo = jnp.where(step, lo - math.log(4.0), lo)
        return lo, jnp.where(step, phi_v(lo), f_lo), it + 1

    lo, f_lo, _ = jax.lax.while_loop(cond, body, (log_qmax, f_max, 0))
    hi = jnp.minimum(lo + math.log(4.0), log_qmax)
    f_hi = phi_v(hi)
    hi = jnp.where(f_max > 0, lo, hi)  # the whole ray up to the square's edge is inside
    root = qd.bracketed_root(phi_v, lo, hi, f_lo, jnp.where(f_max > 0, f_lo, f_hi))
    return jnp.exp(jnp.where(f_max > 0, log_qmax, root))


@vd.needs_x64("prefjax.plackett_luce.numeric_region_area")
def numeric_region_area(M, alpha, beta, wrt: str = "uv", rtol: float = 1e-12) -> AreaEstimate:
    """A(Omega_M) of the paper's view inside the unit square, computed numerically.

    In polar form around the origin, (x, y) = q (w, 1 - w) with dx dy = q dq dw, the region is
    {q < q*(w)} on every ray, so A = int_0^1 q*(w)^2 / 2 dw. q*(w) comes from root finding on
    the autodiff derivative of Eq. (7) (:func:`_ray_radius`), the outer integral from adaptive
    Gauss-Kronrod split at w = 1/2 (the square's corner). Nothing of Eqs. (9), (11), (12) or
    Proposition 2 is used, so this checks them independently; it also clips to the unit square,
    which matters only for M < beta.

    Args:
        M: the threshold, > 0; alpha, beta: Eq. (10), positive numbers.
        wrt: "uv" or "vu".
        rtol: relative error target.

    Returns:
        ``AreaEstimate(value, error, "rays", n_evals)``.

    Examples:
        >>> from prefjax import plackett_luce as pl
        >>> est = pl.numeric_region_area(2.0, 1.5, 0.5)
        >>> abs(est.value - float(pl.region_area(2.0, 1.5, 0.5))) < 1e-12 * est.value
        True
    """
    M = _check_m(M)
    alpha = vd.check_positive_number("alpha", alpha)
    beta = vd.check_positive_number("beta", beta)
    vd.check_choice("wrt", wrt, WRT)
    rtol = qd.floor_rtol(vd.check_positive_number("rtol", rtol), _RAYS_RTOL_FLOOR, "ray integral")
    ab = jnp.asarray([alpha, beta], dtype=jnp.float64 if vd.x64_enabled() else jnp.float32)

    def integrand(w):
        q = qd.in_chunks(
            lambda chunk: _ray_radius(chunk.astype(ab.dtype), M, ab, wrt == "uv"),
            w,
            (_RAY_CHUNK,),
            fill=0.5,
        )
        return 0.5 * q * q

    breaks = np.asarray([0.0, 0.25, 0.5, 0.75, 1.0])
    value, error, n = qd.adaptive_gk(
        integrand, breaks[:-1], breaks[1:], rtol=rtol, what="paper-view area"
    )
    # The radii are roots known to a few ulps: a rounding floor under the Kronrod estimate.
    return AreaEstimate(value, error + _RAYS_ROUNDING * abs(value), "rays", n)


# --- Section 3.2 ------------------------------------------------------------------------------


class RobustnessVsK(NamedTuple):
    """alpha, beta and Proposition 2's area for the top-K prefixes of one ranking (Section 3.2).

    Attributes:
        K: the tuple lengths, a NumPy int array (n_K,).
        alpha, beta, area: (..., n_K) for omega = order[:K] and the positions (u, v).
        pairwise_area: Proposition 1's area for M (Bradley-Terry; NaN for M <= 1).
    """

    K: np.ndarray
    alpha: Array
    beta: Array
    area: Array
    pairwise_area: Array


@partial(jax.jit, static_argnums=(2, 3, 4))
def _robustness_kernel(s, M, u: int, v_: int, power: int):
    n = s.shape[-1]
    parts = [_alpha_beta(s[..., :k], u, v_) for k in range(max(2, v_ + 1), n + 1)]
    alpha = jnp.stack([p.alpha for p in parts], -1)
    beta = jnp.stack([p.beta for p in parts], -1)
    return alpha, beta, beta * beta / (6.0 * alpha**power * M * M)


@vd.needs_x64("prefjax.plackett_luce.robustness_vs_k")
def robustness_vs_k(scores, M=2.0, u=0, v=1, order=None, wrt: str = "uv") -> RobustnessVsK:
    """Section 3.2: how alpha, beta and A(Omega_M) change as the tuple grows, for given scores.

    For K = max(2, v + 1), ..., N the ranking is the prefix omega = order[:K] of one full
    ranking (default: options by decreasing score, per batch element); (u, v) are positions.
    Appending an option adds a term to alpha (if it comes after u) and shrinks every factor of
    beta while adding one more (each in (0, 1)), so alpha grows, beta falls and the area falls.

    Args:
        scores: (..., N) finite scores; batches; works under ``jax.jit`` when ``order`` is None.
        M: the threshold, > 0.
        u, v: positions in the ranking, 0 <= u < v < N.
        order: a full ranking (all N option indices); default: by decreasing score.
        wrt: "uv" or "vu" (Proposition 2's two areas).

    Returns:
        ``RobustnessVsK(K, alpha, beta, area, pairwise_area)``.

    Examples:
        >>> from prefjax import plackett_luce as pl
        >>> r = pl.robustness_vs_k([1.0, 0.5, 0.0, -0.5], M=2.0)
        >>> r.K.tolist(), bool((r.area[1:] < r.area[:-1]).all())
        ([2, 3, 4], True)
    """
    scores = vd.check_scores(scores)
    n = scores.shape[-1]
    M = _check_m(M)
    vd.check_choice("wrt", wrt, WRT)
    u, v_ = vd.check_positions(u, v, n)
    if order is None:
        s = -jnp.sort(-scores, axis=-1)  # options by decreasing score
    else:
        order = vd.check_ranking("order", order, n)
        if len(order) != n:
            raise ValueError(f"order must rank all N = {n} options; got K = {len(order)}")
        s = scores[..., jnp.asarray(order)]
    ks = np.arange(max(2, v_ + 1), n + 1)
    alpha, beta, area = _robustness_kernel(s, M, u, v_, 1 if wrt == "uv" else 3)
    pairwise = bt.region_area(M) if M > 1 else jnp.asarray(jnp.nan)
    return RobustnessVsK(ks, alpha, beta, area, pairwise)
