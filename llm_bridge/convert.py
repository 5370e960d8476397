"""Learned preferences -> prefjax: the paper's analysis of what a trained model learned.

This module is the only place where ``llm_bridge`` and ``prefjax`` meet. It takes plain numbers
(a model's probed p12, p23, p13 with their intervals, ``LearnedPreferences``) and hands plain
float64 values to prefjax, with JAX's x64 mode switched on only around those calls
(``jax.enable_x64``), never at import.

For a learned point (p12, p23) and a link g (Bradley-Terry's logistic by default), ``analyze``
returns:

* the p13 implied by Lemma 1, p13* = g(g^-1(p12) + g^-1(p23)) (Eq. (3) for Bradley-Terry), with
  the interval obtained by composing the ends of the p12 and p23 intervals (Lemma 1 is
  increasing in both arguments, so the image of the box is [g(lo, lo), g(hi, hi)]);
* the sensitivity at the learned point (``prefjax.sensitivity``): dp13/dp12 and dp13/dp23;
* the local M, |dp13/dp12| at the point: the largest M for which the point lies in
  Omega_M(p13, p12) (Definition 4); and whether it lies in Omega_M for the M asked for;
* for the logistic link, the slice of Omega_M at the learned p23 (Eq. (5), ``region_bounds``):
  the p12 values for which the point would be M-sensitive;
* whether the learned p13 is consistent with the implied one: their intervals overlap.

The analysis runs in score space from the probes' log-odds (``ProbeResult.logit``):
x = g^-1(p) is computed from the logit through the lower tail, so a learned p12 of 1 - 1e-20
(logit 46.05), which float64 rounds to 1, is analysed at that point, and ``prefjax``'s
score-space Lemma 1 (``score_sensitivity``) gives p13, its log-odds and log |dp13/dp12| without
leaving the range float64 holds.

Probabilities of exactly 0 or 1 (log-odds +-inf) have no sensitivity. They occur with a sampled
probe (all n answers one way) and are analysed at the half-count value 0.5/n or 1 - 0.5/n; an
estimate given as a bare probability (no log-odds) that is 1 in float64 is analysed at the
largest float64 below 1, 1 - 2^-53, and one that is 0 (or subnormal) at its mirror image 2^-53.
Either move is listed in ``Analysis.notes``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

__all__ = [
    "Analysis",
    "Estimate",
    "LearnedPreferences",
    "analyze",
    "implied_p13",
    "learned_from_row",
    "m_sensitive_mask",
    "resolve_link",
]

_BELOW_ONE = float(np.nextafter(1.0, 0.0))  # 1 - 2^-53
_ABOVE_ZERO = 2.0**-53  # its mirror image: logit(2^-53) = -logit(1 - 2^-53)
_TINY = float(np.finfo(np.float64).tiny)  # below: subnormal, which XLA on the CPU flushes to 0


class Estimate(NamedTuple):
    """One learned probability with its interval.

    Attributes:
        p: the estimate, in [0, 1].
        low, high: its interval, ``low <= p <= high``.
        count: the number of Bernoulli observations behind ``p`` for a sampled estimate (answers
            read), None for an exact one.
        logit: log(p / (1 - p)) when it is known more precisely than ``p`` (a probe's log-odds,
            finite where p rounds to 0 or 1); None: computed from ``p``.
    """

    p: float
    low: float
    high: float
    count: int | None = None
    logit: float | None = None

    @property
    def log_odds(self) -> float:
        """``logit`` if given, else log(p) - log(1 - p) (+-inf at 1 and 0)."""
        if self.logit is not None:
            return float(self.logit)
        if self.p <= 0.0:
            return -math.inf
        if self.p >= 1.0:
            return math.inf
        return math.log(self.p) - math.log1p(-self.p)

    @classmethod
    def of(cls, value: Any) -> Estimate:
        """An ``Estimate`` from an ``Estimate``, a ``probe.ProbeResult`` (or anything with ``p``,
        ``ci_low``, ``ci_high`` and optionally ``logit``, ``count``), a mapping with those keys,
        or a bare number (no interval)."""
        if isinstance(value, Estimate):
            return value
        if isinstance(value, int | float) and not isinstance(value, bool):
            return cls(float(value), float(value), float(value))
        get = value.get if isinstance(value, Mapping) else lambda k, d=None: getattr(value, k, d)
        count = get("count")
        count = count if isinstance(count, int) and not isinstance(count, bool) else None
        logit = get("logit")
        logit = float(logit) if isinstance(logit, int | float) else None
        low = get("ci_low", get("low"))
        high = get("ci_high", get("high"))
        return cls(float(get("p")), float(low), float(high), count, logit)


def _check_estimate(name: str, e: Estimate) -> None:
    for part in ("p", "low", "high"):
        v = getattr(e, part)
        if not (isinstance(v, float) and 0.0 <= v <= 1.0):
            raise ValueError(f"{name}.{part} must be a probability in [0, 1], got {v!r}")
    if not e.low <= e.p <= e.high:
        raise ValueError(f"{name} must satisfy low <= p <= high, got {tuple(e[:3])!r}")
    if e.count is not None and e.count < 0:
        raise ValueError(f"{name}.count must be >= 0 or None, got {e.count!r}")
    if e.logit is not None and math.isnan(e.logit):
        raise ValueError(f"{name}.logit is NaN")
    if e.logit is not None and not math.isinf(e.logit):
        # p and its log-odds describe one number: sigma(logit) rounds to p
        if abs(_sigmoid(e.logit) - e.p) > 1e-9 * max(min(e.p, 1.0 - e.p), 1e-300) + 1e-15:
            raise ValueError(f"{name}.logit = {e.logit!r} is not the log-odds of p = {e.p!r}")


@dataclass(frozen=True)
class LearnedPreferences:
    """What a model learned about the ranking ``order = (o1, o2, o3)``: P(o1 over o2), P(o2 over
    o3) and P(o1 over o3), each an ``Estimate``, the probe method, and the dataset it was
    trained on (``p12_data``, ``p23_data``, ``seed``; None when unknown)."""

    p12: Estimate
    p23: Estimate
    p13: Estimate
    method: str = "likelihood"
    order: tuple[str, str, str] = ("o1", "o2", "o3")
    p12_data: float | None = None
    p23_data: float | None = None
    seed: int | None = None

    def __post_init__(self) -> None:
        for name in ("p12", "p23", "p13"):
            object.__setattr__(self, name, Estimate.of(getattr(self, name)))
            _check_estimate(name, getattr(self, name))
        if len(tuple(self.order)) != 3:
            raise ValueError(f"order must name three options, got {self.order!r}")
        object.__setattr__(self, "order", tuple(self.order))

    @classmethod
    def from_probes(cls, probes: Mapping[str, Any], **kwargs: Any) -> LearnedPreferences:
        """From ``{"p12": r, "p23": r, "p13": r}`` of ``probe.probe_order`` results (or their
        JSON dicts); the method is read from them unless given."""
        method = kwargs.pop("method", None)
        if method is None:
            first = probes["p12"]
            method = first.get("method") if isinstance(first, Mapping) else first.method
        return cls(
            p12=Estimate.of(probes["p12"]),
            p23=Estimate.of(probes["p23"]),
            p13=Estimate.of(probes["p13"]),
            method=method,
            **kwargs,
        )


class Analysis(NamedTuple):
    """prefjax's reading of a learned point (see the module docstring); plain Python values.

    Attributes:
        link: the link's name ("logistic" is Bradley-Terry).
        p12, p23, p13: the learned values analysed (after any move off 0 or 1, see ``notes``);
            near 0 and 1 these round, their log-odds below do not.
        logit12, logit23, logit13: their log-odds, log(p / (1 - p)), the values analysed.
        p13_implied, p13_implied_low, p13_implied_high: Lemma 1's p13 from (p12, p23) and the
            image of the p12 x p23 interval box.
        p13_implied_logit: the log-odds of ``p13_implied``, finite where it rounds to 0 or 1.
        d13_d12, d13_d23: dp13/dp12 and dp13/dp23 at the learned point (Lemma 1, Eq. (2)).
        local_M: |dp13/dp12|, the largest M with the point in Omega_M(p13, p12);
            ``log_local_M`` its logarithm (from ``prefjax.score_sensitivity``).
        M: the threshold asked about; ``in_omega_M``: local_M > M.
        omega_p12: for the logistic link, the open p12 interval that is M-sensitive at the
            learned p23 (Eq. (5)), or None (no such p12, or another link).
        consistent: the learned p13 interval overlaps the implied one.
        notes: values moved off 0 or 1 before the analysis, and why.
    """

    link: str
    p12: float
    p23: float
    p13: float
    logit12: float
    logit23: float
    logit13: float
    p13_implied: float
    p13_implied_low: float
    p13_implied_high: float
    p13_implied_logit: float
    d13_d12: float
    d13_d23: float
    local_M: float
    log_local_M: float
    M: float
    in_omega_M: bool
    omega_p12: tuple[float, float] | None
    consistent: bool
    notes: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (tuples become lists)."""
        out = self._asdict()
        out["omega_p12"] = list(self.omega_p12) if self.omega_p12 is not None else None
        out["notes"] = list(self.notes)
        return out


def resolve_link(link: Any = "logistic"):
    """A prefjax link from a name (``"logistic"``, ``"probit"``, ``"cauchit"``) or a Link."""
    import prefjax

    if isinstance(link, str):
        links = prefjax.LINKS
        if link not in links:
            raise ValueError(f"link must be one of {sorted(links)} or a prefjax.Link, got {link!r}")
        return links[link]
    return prefjax.link(link) if not isinstance(link, prefjax.Link) else link


def _sigmoid(x: float) -> float:
    # the two branches keep exp() from overflowing in either tail
    return 1.0 / (1.0 + math.exp(-x)) if x >= 0 else math.exp(x) / (1.0 + math.exp(x))


def _interior(name: str, e: Estimate, notes: list[str]) -> tuple[float, float]:
    """(log-odds, p) to analyse: the estimate's own where its log-odds are finite, else moved
    off 0 and 1 (see the module docstring)."""
    logit = e.log_odds
    if e.logit is not None and math.isfinite(logit):
        return logit, _sigmoid(logit)
    if e.logit is None and _TINY <= e.p < 1.0:
        return logit, e.p
    low = e.p < 0.5  # 0, or so close to 0 that float64 holds it only as a subnormal
    if e.count:
        moved = 0.5 / e.count if low else 1.0 - 0.5 / e.count
        notes.append(f"{name} = {e.p:g} ({e.count} of {e.count} answers): analysed at {moved:.6g}")
    else:
        moved = _ABOVE_ZERO if low else _BELOW_ONE
        notes.append(f"{name} = {e.p:g} in float64: analysed at {moved!r}")
    return math.log(moved) - math.log1p(-moved), moved


# Below this probability a score g^-1(q) would come from a subnormal q, which XLA on the CPU
# flushes to 0: log-odds beyond +-708 are analysed at +-708 for links other than the logistic.
_MAX_LOGIT = -math.log(_TINY)


def _score(g, logit: float, name: str, notes: list[str]) -> float:
    """x = g^-1(p) for the p with log-odds ``logit``, through the lower tail:
    q = sigma(-|logit|) = min(p, 1 - p) is exact in float64 where p rounds to 1, and
    g^-1(1 - q) = -g^-1(q) (Lemma 4). For the logistic link x is the logit itself."""
    import jax

    import prefjax

    if g is prefjax.logistic:
        return logit
    if abs(logit) > _MAX_LOGIT:
        notes.append(
            f"{name}: log-odds {logit:.6g} analysed at {math.copysign(_MAX_LOGIT, logit):.6g}"
        )
        logit = math.copysign(_MAX_LOGIT, logit)
    q = _sigmoid(-abs(logit))
    with jax.enable_x64(True):
        x_low = float(g.inverse(np.float64(q)))
    return -x_low if logit > 0 else x_low


def _logit_of_score(g, x: float) -> float:
    """log(g(x) / g(-x)), from the lower tail g(-|x|) so that it stays finite where g(x)
    rounds to 1."""
    import jax

    import prefjax

    if g is prefjax.logistic:
        return x
    with jax.enable_x64(True):
        q = float(g(np.float64(-abs(x))))
    if q <= 0.0:
        return math.copysign(math.inf, x)
    value = math.log1p(-q) - math.log(q)
    return value if x >= 0 else -value


def _compose_bound(g, x: float, y: float, *, lower: bool) -> float:
    """Lemma 1 at interval ends (x, y) that may be 0 or 1: the limit, or the conservative end
    of [0, 1] where no limit exists (x = 0 and y = 1 or the reverse)."""
    v = implied_p13(x, y, g)
    return (0.0 if lower else 1.0) if math.isnan(v) else v


def implied_p13(p12, p23, link: Any = "logistic"):
    """Lemma 1: p13 = g(g^-1(p12) + g^-1(p23)) in float64 (Eq. (3) for the logistic link).

    Scalars give a float, arrays (broadcast) a NumPy array. Ends of [0, 1] (and subnormal p, read
    as 0) give the limits (0 or 1); where no limit exists (one argument 0, the other 1) the
    result is NaN.

    >>> round(implied_p13(0.9801, 0.02), 4)  # Example 1 of the paper
    0.5013
    """
    import jax

    import prefjax

    g = resolve_link(link)
    x, y = np.broadcast_arrays(np.asarray(p12, dtype=np.float64), np.asarray(p23, dtype=np.float64))
    for name, v in (("p12", x), ("p23", y)):
        if np.any(~((v >= 0.0) & (v <= 1.0))):
            raise ValueError(f"{name} must hold probabilities in [0, 1], got {v!r}")
    # a subnormal probability is its limit 0 here (XLA on the CPU flushes it to 0; prefjax
    # refuses it rather than compute with a silent 0)
    x, y = (np.where(v < _TINY, 0.0, v) for v in (x, y))
    out = np.where((x == 1.0) | (y == 1.0), 1.0, 0.0)  # the limits at the edges
    out[((x == 0.0) & (y == 1.0)) | ((x == 1.0) & (y == 0.0))] = np.nan
    inside = (x > 0.0) & (x < 1.0) & (y > 0.0) & (y < 1.0)
    if inside.any():
        with jax.enable_x64(True):
            out[inside] = np.asarray(prefjax.compose(g, x[inside], y[inside]))
    return float(out) if out.ndim == 0 else out


def m_sensitive_mask(p12: float, p23: Sequence[float], M: float, link: Any = "logistic"):
    """For each p23 in ``p23``, whether (p12, p23) lies in Omega_M(p13, p12), i.e.
    |dp13/dp12| > M (``prefjax.is_m_sensitive``); a NumPy bool array. Values of p23 at 0 or 1
    give False."""
    import jax

    import prefjax

    g = resolve_link(link)
    q = np.asarray(p23, dtype=np.float64)
    inside = (q > 0.0) & (q < 1.0)
    out = np.zeros(q.shape, dtype=bool)
    if inside.any():
        with jax.enable_x64(True):
            out[inside] = np.asarray(
                prefjax.is_m_sensitive(g, np.float64(p12), q[inside], float(M), wrt="ik")
            )
    return out


def analyze(learned: LearnedPreferences, link: Any = "logistic", M: float = 10.0) -> Analysis:
    """prefjax's analysis of a learned point (see the module docstring).

    Args:
        learned: the probed preferences.
        link: ``"logistic"`` (Bradley-Terry, default), ``"probit"``, ``"cauchit"`` or any
            ``prefjax.Link``.
        M: the threshold for the Omega_M membership reported (> 1): the point is in Omega_M
            when log |dp13/dp12| > log M.

    Returns:
        An ``Analysis`` of plain floats and bools.

    Examples:
        >>> lp = LearnedPreferences(p12=0.99, p23=0.02, p13=0.5)
        >>> a = analyze(lp, M=20)
        >>> round(a.p13_implied, 4), a.in_omega_M  # Example 1: (0.99, 0.02) is in Omega_20
        (0.6689, True)
    """
    import jax

    import prefjax

    if not isinstance(learned, LearnedPreferences):
        raise TypeError(f"learned must be LearnedPreferences, got {type(learned).__name__}")
    if not (isinstance(M, int | float) and not isinstance(M, bool) and M > 1 and math.isfinite(M)):
        raise ValueError(f"M must be a finite number > 1, got {M!r}")
    g = resolve_link(link)
    notes: list[str] = []
    logit12, p12 = _interior("p12", learned.p12, notes)
    logit23, p23 = _interior("p23", learned.p23, notes)
    x12, x23 = _score(g, logit12, "p12", notes), _score(g, logit23, "p23", notes)
    p13 = learned.p13.p
    with jax.enable_x64(True):
        # Lemma 1 in score space: x13 = x12 + x23, log|dp13/dp12| = log g'(x13) - log g'(x12)
        s = prefjax.score_sensitivity(g, np.float64(x12), np.float64(x23))
        x13 = float(s.x_ij)
        p13_implied, log_d12, log_d23 = float(s.p_ij), float(s.log_d_ik), float(s.log_d_kj)
        omega = None
        if g is prefjax.logistic and 0.0 < p23 < 1.0:
            bounds = prefjax.bradley_terry.region_bounds(np.float64(p23), float(M))
            if not math.isnan(float(bounds.low)):
                omega = (float(bounds.low), float(bounds.high))
    d12, d23 = (math.exp(v) if v < 709.0 else math.inf for v in (log_d12, log_d23))
    in_omega = log_d12 > math.log(M)
    low = _compose_bound(g, learned.p12.low, learned.p23.low, lower=True)
    high = _compose_bound(g, learned.p12.high, learned.p23.high, lower=False)
    low, high = min(low, p13_implied), max(high, p13_implied)  # the point is in its box
    consistent = learned.p13.low <= high and low <= learned.p13.high
    return Analysis(
        link=g.name,
        p12=p12,
        p23=p23,
        p13=p13,
        logit12=logit12,
        logit23=logit23,
        logit13=learned.p13.log_odds,
        p13_implied=p13_implied,
        p13_implied_low=low,
        p13_implied_high=high,
        p13_implied_logit=_logit_of_score(g, x13),
        d13_d12=d12,
        d13_d23=d23,
        local_M=d12,
        log_local_M=log_d12,
        M=float(M),
        in_omega_M=in_omega,
        omega_p12=omega,
        consistent=bool(consistent),
        notes=tuple(notes),
    )


def learned_from_row(row, method: str) -> LearnedPreferences:
    """The ``LearnedPreferences`` of one sweep run (a ``results.RunRow``) for one probe method."""
    return LearnedPreferences.from_probes(
        {pair: row.estimate(method, pair) for pair in ("p12", "p23", "p13")},
        method=method,
        order=tuple(row.order),
        p12_data=row.p12_data,
        p23_data=row.p23_data,
        seed=row.seed,
    )
