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

Probabilities of exactly 0 or 1 have no sensitivity. They occur with the ``"sample"`` probe
(all n answers one way) and are analysed at the half-count value 0.5/n or 1 - 0.5/n; an exact
probe's value that rounds to 1 in float64 is analysed at the largest float64 below 1, 1 - 2^-53,
and one that is 0 (or subnormal) at its mirror image 2^-53. Either
move is listed in ``Analysis.notes``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np

__all__ = [
    "Analysis",
    "Estimate",
    "LearnedPreferences",
    "analyze",
    "implied_p13",
    "analyze_rows",
    "default_method",
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
    """

    p: float
    low: float
    high: float
    count: int | None = None

    @classmethod
    def of(cls, value: Any) -> Estimate:
        """An ``Estimate`` from an ``Estimate``, a ``probe.ProbeResult`` (or anything with ``p``,
        ``ci_low``, ``ci_high``), a mapping with those keys, or a bare number (no interval)."""
        if isinstance(value, Estimate):
            return value
        if isinstance(value, int | float) and not isinstance(value, bool):
            return cls(float(value), float(value), float(value))
        get = value.get if isinstance(value, Mapping) else lambda k, d=None: getattr(value, k, d)
        count = None
        details = get("details") or {}
        if get("method") == "sample" and "preferred_a" in details:
            count = int(details["preferred_a"]) + int(details["preferred_b"])
        elif isinstance(get("count"), int):  # (a NamedTuple's .count is a method)
            count = get("count")
        low = get("ci_low", get("low"))
        high = get("ci_high", get("high"))
        return cls(float(get("p")), float(low), float(high), count)


def _check_estimate(name: str, e: Estimate) -> None:
    for part in ("p", "low", "high"):
        v = getattr(e, part)
        if not (isinstance(v, float) and 0.0 <= v <= 1.0):
            raise ValueError(f"{name}.{part} must be a probability in [0, 1], got {v!r}")
    if not e.low <= e.p <= e.high:
        raise ValueError(f"{name} must satisfy low <= p <= high, got {tuple(e[:3])!r}")
    if e.count is not None and e.count < 0:
        raise ValueError(f"{name}.count must be >= 0 or None, got {e.count!r}")


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
    extra: dict[str, Any] = field(default_factory=dict)

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
        p12, p23, p13: the learned values analysed (after any move off 0 or 1, see ``notes``).
        p13_implied, p13_implied_low, p13_implied_high: Lemma 1's p13 from (p12, p23) and the
            image of the p12 x p23 interval box.
        d13_d12, d13_d23: dp13/dp12 and dp13/dp23 at the learned point (Lemma 1, Eq. (2)).
        local_M: |dp13/dp12|, the largest M with the point in Omega_M(p13, p12).
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
    p13_implied: float
    p13_implied_low: float
    p13_implied_high: float
    d13_d12: float
    d13_d23: float
    local_M: float
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


def _interior(name: str, e: Estimate, notes: list[str]) -> float:
    """The point estimate, moved off 0 and 1 where it sits on them (see the module docstring)."""
    if _TINY <= e.p < 1.0:
        return e.p
    low = e.p < 0.5  # 0, or so close to 0 that float64 holds it only as a subnormal
    if e.count:
        moved = 0.5 / e.count if low else 1.0 - 0.5 / e.count
        notes.append(f"{name} = {e.p:g} ({e.count} of {e.count} answers): analysed at {moved:.6g}")
    else:
        moved = _ABOVE_ZERO if low else _BELOW_ONE
        notes.append(f"{name} = {e.p:g} in float64: analysed at {moved!r}")
    return moved


def _compose_bound(g, x: float, y: float, *, lower: bool) -> float:
    """Lemma 1 at interval ends (x, y) that may be 0 or 1: the limit, or the conservative end
    of [0, 1] where no limit exists (x = 0 and y = 1 or the reverse)."""
    v = implied_p13(x, y, g)
    return (0.0 if lower else 1.0) if math.isnan(v) else v


def implied_p13(p12, p23, link: Any = "logistic"):
    """Lemma 1: p13 = g(g^-1(p12) + g^-1(p23)) in float64 (Eq. (3) for the logistic link).

    Scalars give a float, arrays (broadcast) a NumPy array. Ends of [0, 1] give the limits
    (0 or 1); where no limit exists (one argument 0, the other 1) the result is NaN.

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
        M: the threshold for the Omega_M membership reported (> 1).

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
    p12 = _interior("p12", learned.p12, notes)
    p23 = _interior("p23", learned.p23, notes)
    p13 = learned.p13.p
    with jax.enable_x64(True):
        s = prefjax.sensitivity(g, np.float64(p12), np.float64(p23))
        p13_implied, d12, d23 = float(s.p_ij), float(s.d_ik), float(s.d_kj)
        in_omega = bool(prefjax.is_m_sensitive(g, np.float64(p12), np.float64(p23), float(M)))
        omega = None
        if g is prefjax.logistic and 0.0 < p23 < 1.0:
            bounds = prefjax.bradley_terry.region_bounds(np.float64(p23), float(M))
            if not math.isnan(float(bounds.low)):
                omega = (float(bounds.low), float(bounds.high))
    low = _compose_bound(g, learned.p12.low, learned.p23.low, lower=True)
    high = _compose_bound(g, learned.p12.high, learned.p23.high, lower=False)
    low, high = min(low, p13_implied), max(high, p13_implied)  # the point is in its box
    consistent = learned.p13.low <= high and low <= learned.p13.high
    return Analysis(
        link=g.name,
        p12=p12,
        p23=p23,
        p13=p13,
        p13_implied=p13_implied,
        p13_implied_low=low,
        p13_implied_high=high,
        d13_d12=d12,
        d13_d23=d23,
        local_M=abs(d12),
        M=float(M),
        in_omega_M=in_omega,
        omega_p12=omega,
        consistent=bool(consistent),
        notes=tuple(notes),
    )


# --- a sweep's rows -----------------------------------------------------------------------------


def learned_from_row(row: Mapping[str, Any], method: str) -> LearnedPreferences:
    """The ``LearnedPreferences`` of one row of a sweep's ``results.jsonl`` for one probe method."""
    if method not in row["probes"]:
        raise ValueError(
            f"run {row['run_id']} has no {method!r} probe (it has {sorted(row['probes'])})"
        )
    return LearnedPreferences.from_probes(
        row["probes"][method],
        method=method,
        order=tuple(row["order"]),
        p12_data=row["p12_data"],
        p23_data=row["p23_data"],
        seed=row["seed"],
    )


def default_method(rows: Sequence[Mapping[str, Any]]) -> str:
    """The probe method to report: "likelihood" when every row has it, else the first method
    that every row has."""
    if not rows:
        return "likelihood"
    common = [m for m in rows[0]["probes"] if all(m in r["probes"] for r in rows)]
    if not common:
        raise ValueError("the runs share no probe method")
    return "likelihood" if "likelihood" in common else common[0]


def _g(x: float) -> str:
    return f"{x:.4g}"


def analyze_rows(
    rows: Sequence[Mapping[str, Any]],
    *,
    method: str | None = None,
    M: float = 10.0,
    link: Any = "logistic",
    settings: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """A sweep's runs, analysed: ``{"summary": paragraph, "rows": [one flat dict per run]}``.

    Each row holds ``order``, ``p23_data``, ``seed``, the learned ``p12`` and ``p23``, the
    learned ``p13`` with its interval (a string, "p [low, high]"), ``p13_bt`` (Lemma 1 from the
    learned p12 and p23), ``local_M`` (|dp13/dp12| there), ``in_omega_M`` (local_M > M) and
    ``consistent`` (the learned and implied p13 intervals overlap). Plain JSON values only.
    """
    method = method or default_method(rows)
    g = resolve_link(link)
    out_rows, analyses = [], []
    for row in rows:
        lp = learned_from_row(row, method)
        a = analyze(lp, link=g, M=M)
        analyses.append((row, lp, a))
        out_rows.append(
            {
                "order": ">".join(row["order"]),
                "p23_data": row["p23_data"],
                "seed": row["seed"],
                "p12": lp.p12.p,
                "p23": lp.p23.p,
                "p13": f"{_g(lp.p13.p)} [{_g(lp.p13.low)}, {_g(lp.p13.high)}]",
                "p13_bt": a.p13_implied,
                "local_M": a.local_M,
                "in_omega_M": a.in_omega_M,
                "consistent": a.consistent,
            }
        )
    return {"summary": _summary(analyses, method, M, g.name, settings or {}), "rows": out_rows}


def _summary(analyses, method: str, M: float, link: str, settings: Mapping[str, Any]) -> str:
    if not analyses:
        return "No finished runs: nothing was trained or measured yet."
    rows = [r for r, _, _ in analyses]
    n_runs = len(rows)
    orders = sorted({">".join(r["order"]) for r in rows})
    p23s = sorted({r["p23_data"] for r in rows})
    seeds = sorted({r["seed"] for r in rows})
    p12s = sorted({r["p12_data"] for r in rows})
    model = settings.get("model") or rows[0].get("model", "the model")
    train = settings.get("train") or {}
    how = settings.get("train_preset")
    if train:
        lora = f"LoRA rank {train['lora_r']}" if train.get("lora_r") else "all parameters"
        how = (
            f"the {how} preset: {lora}, learning rate {train['learning_rate']:g}, beta' "
            f"{train['beta']:g}, {train['epochs']:g} epoch(s)"
            + (f", at most {train['max_steps']} steps" if train.get("max_steps", -1) > 0 else "")
        )
    model_link = "Bradley-Terry (logistic)" if link == "logistic" else f"the {link} link"
    n_cons = sum(a.consistent for _, _, a in analyses)
    n_omega = sum(a.in_omega_M for _, _, a in analyses)
    top_row, _, top = max(analyses, key=lambda t: t[2].local_M)
    p13s = [lp.p13.p for _, lp, _ in analyses]
    text = (
        f"{model} was DPO-trained{f' ({how})' if how else ''} on datasets "
        f"D(order, p12 = {', '.join(_g(p) for p in p12s)}, p23) of {rows[0]['n']} preference "
        f"pairs each, for {len(orders)} order(s) ({', '.join(orders)}), {len(p23s)} value(s) of "
        f"p23 from {_g(p23s[0])} to {_g(p23s[-1])} and {len(seeds)} seed(s): {n_runs} run(s), "
        f"measured with the {method} probe. "
        f"The learned p13 is consistent with the p13 that {model_link} implies from the learned "
        f"p12 and p23 (Lemma 1; intervals overlapping) in {n_cons} of {n_runs} run(s). "
        f"{n_omega} of {n_runs} learned point(s) lie in Omega_M for M = {_g(M)} "
        f"(|dp13/dp12| > {_g(M)}); the largest local M is {top.local_M:.3g}, at "
        f"{'>'.join(top_row['order'])}, p23 = {_g(top_row['p23_data'])}, seed "
        f"{top_row['seed']} (learned p12 = {top.p12:.6g}, p23 = {top.p23:.4g}). "
        f"The learned p13 ranges from {_g(min(p13s))} to {_g(max(p13s))}"
    )
    jump = _largest_jump(analyses)
    if jump is not None:
        size, order, lo, hi = jump
        text += (
            f"; its largest change between neighbouring p23 values is {size:.3g} ({order}, "
            f"p23 from {_g(lo)} to {_g(hi)}, mean over seeds)"
        )
    return text + "."


def _largest_jump(analyses):
    """(|change|, order, p23 before, p23 after) of the mean learned p13 between neighbouring
    p23 values of one order, or None with fewer than two p23 values."""
    means: dict[str, dict[float, list[float]]] = {}
    for row, lp, _ in analyses:
        means.setdefault(">".join(row["order"]), {}).setdefault(row["p23_data"], []).append(
            lp.p13.p
        )
    best = None
    for order, by_p23 in means.items():
        xs = sorted(by_p23)
        for lo, hi in zip(xs, xs[1:], strict=False):
            size = abs(np.mean(by_p23[hi]) - np.mean(by_p23[lo]))
            if best is None or size > best[0]:
                best = (float(size), order, lo, hi)
    return best
