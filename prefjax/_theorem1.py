"""Theorem 1, constructively: the objects of its proof for any link, and a check of its claim."""

from __future__ import annotations

import dataclasses
import math

import jax.numpy as jnp
import numpy as np

from . import _validate as v
from ._link import Link
from ._links import as_link
from ._sensitivity import score_sensitivity, sensitivity

SIDES = ("upper", "lower")
_PROB_SPACE_LIMIT = 1e-13  # below this distance to an end, evaluate in score space


@dataclasses.dataclass(frozen=True)
class Theorem1Witness:
    """The objects of Theorem 1's proof for a link g and a threshold M.

    With eps = g'(delta) / M, x0 is the point beyond which g'(x) < eps (Lemma 2), p0 = g(x0),
    and along the curve p_kj = g(g^-1(1 - p_ik) + delta) (Lemma 4: = g(delta - g^-1(p_ik)))
    every p_ik in (p0, 1) has |dp_ij/dp_ik| = g'(delta) / g'(g^-1(p_ik)) > M.

    ``side="lower"`` is the mirrored case the paper mentions: p_ik in (0, 1 - p0) with
    p_kj = g(-delta - g^-1(p_ik)).

    Attributes:
        link: the link g.
        M: the threshold.
        delta: the proof's delta > 0 (g'(delta) > 0).
        x0: the score beyond which g' < g'(delta) / M.
        p0: g(x0); the interval is (p0, 1) on the upper side and (0, 1 - p0) on the lower.
        side: "upper" or "lower".
        one_minus_p0: 1 - p0 = g(-x0), exact where p0 rounds to 1.
    """

    link: Link
    M: float
    delta: float
    x0: float
    p0: float
    side: str
    one_minus_p0: float

    def curve(self, p_ik):
        """p_kj on the proof's curve for the given p_ik."""
        g, u = self.link, self.link.inverse(jnp.asarray(p_ik))
        return g(self.delta - u) if self.side == "upper" else g(-self.delta - u)

    def _points(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """n points spread evenly (in probability) over the interval: each one's distance to
        the interval's end at 1 (or 0), exact, and its score u = g^-1(p_ik)."""
        k = np.arange(1, n + 1) / (n + 1)
        near = self.one_minus_p0 * (1.0 - k)  # distance of p_ik to the end, exact
        u_near = np.asarray(self.link.inverse(jnp.asarray(near)))
        return near, (-u_near if self.side == "upper" else u_near)

    def scores(self, n: int) -> np.ndarray:
        """Scores u = g^-1(p_ik) of n points spread evenly (in probability) over the interval:
        (p0, 1) for the upper side, (0, 1 - p0) for the lower side."""
        return self._points(n)[1]

    def verify(self, n: int = 1000) -> float:
        """The smallest |dp_ij/dp_ik| / M over n points of the interval (> 1: the claim holds).

        Evaluated with :func:`prefjax.sensitivity` in probability space where the points are
        further than 1e-13 from 0 and 1, and with :func:`prefjax.score_sensitivity` (scores,
        exact) where they are not.
        """
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"n must be a positive int; got {n!r}")
        g = self.link
        near, u = self._points(n)
        other = self.delta - u if self.side == "upper" else -self.delta - u
        log_d = np.array(score_sensitivity(g, u, other).log_d_ik)  # a writable copy
        prob = near > _PROB_SPACE_LIMIT
        if prob.any():
            p_ik = np.asarray(g(jnp.asarray(u[prob])))
            p_kj = np.asarray(g(jnp.asarray(other[prob])))
            ok = (p_ik > 0) & (p_ik < 1) & (p_kj > 0) & (p_kj < 1)
            d = np.asarray(sensitivity(g, p_ik[ok], p_kj[ok]).d_ik)
            log_d[np.flatnonzero(prob)[ok]] = np.log(d)
        return float(np.exp(np.min(log_d) - math.log(self.M)))


@v.needs_x64("prefjax.theorem1_witness")
def theorem1_witness(g, M, delta: float = 1.0, side: str = "upper") -> Theorem1Witness:
    """Build the objects of Theorem 1's proof for the link g and threshold M.

    The proof: pick delta > 0 with g'(delta) > 0, let eps = g'(delta) / M, take x0 with
    g'(x) < eps for all x > x0 (it exists by Lemma 2), p0 = g(x0), and
    p_kj = g(g^-1(1 - p_ik) + delta). Then dp_ij/dp_ik = g'(delta) / g'(g^-1(p_ik)) > M for
    every p_ik in (p0, 1) (Eq. (2) with A1 = g'(delta)).

    x0 is found in score space (log g' against log eps: a 3,000-point scan out to 1e300, then
    bisection to machine precision), so M up to 1e6 and beyond works even where p0 is too
    close to 1 for float64; :meth:`Theorem1Witness.verify` checks the claim numerically.

    Args:
        g: a :class:`prefjax.Link` or a bare callable.
        M: the threshold, > 0.
        delta: the proof's delta, > 0.
        side: "upper" (p_ik -> 1, the proof) or "lower" (p_ik -> 0, the mirrored case).

    Returns:
        :class:`Theorem1Witness`.

    Examples:
        >>> import prefjax
        >>> w = prefjax.theorem1_witness(prefjax.logistic, 100.0)
        >>> w.verify(1000) > 1
        True
    """
    g = as_link(g)
    M = v.check_positive_number("M", M)
    delta = v.check_positive_number("delta", delta)
    v.check_choice("side", side, SIDES)
    log_eps = float(g.log_derivative(delta)) - math.log(M)
    if not math.isfinite(log_eps):
        raise ValueError(f"g'(delta) = 0 at delta = {delta}; choose a delta where g' > 0")
    # The last scan point where log g'(x) >= log eps: beyond the next one, g' < eps.
    xs = np.concatenate([np.linspace(0.0, 50.0, 1001), np.geomspace(50.0, 1e300, 2000)[1:]])
    L = np.asarray(g.log_derivative(jnp.asarray(xs)))
    above = np.flatnonzero(L >= log_eps)
    if above.size == 0:
        x0 = 0.0
    elif above[-1] == xs.size - 1:
        raise ValueError(
            f"g' does not fall below g'(delta)/M = {math.exp(log_eps):.3g} by x = 1e300"
        )
    else:
        lo, hi = xs[above[-1]], xs[above[-1] + 1]
        for _ in range(200):
            mid = 0.5 * (lo + hi)
            if mid in (lo, hi):
                break
            if float(g.log_derivative(mid)) >= log_eps:
                lo = mid
            else:
                hi = mid
        x0 = hi
    return Theorem1Witness(g, M, delta, float(x0), float(g(x0)), side, float(g(-x0)))
