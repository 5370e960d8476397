"""A sweep's runs read as an experiment: per-run analyses, the summary paragraph, and (later in
this module) the verdicts on the paper's Section 4 observations.

The flow is data -> train -> probe -> sweep -> report: this module reads typed rows
(``results.RunRow``) and hands each learned point to ``convert.analyze`` (prefjax); it writes
nothing itself (``llm-bridge analyze --json`` writes what it returns).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .convert import analyze, learned_from_row, resolve_link
from .results import RunRow

__all__ = ["analyze_rows", "default_method"]


def default_method(rows: Sequence[RunRow]) -> str:
    """The probe method to report: "likelihood" when every row has it, else the first method
    that every row has."""
    if not rows:
        return "likelihood"
    common = [m for m in rows[0].probes if all(m in r.probes for r in rows)]
    if not common:
        raise ValueError("the runs share no probe method")
    return "likelihood" if "likelihood" in common else common[0]


def _g(x: float) -> str:
    return f"{x:.4g}"


def analyze_rows(
    rows: Sequence[RunRow],
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
                "order": ">".join(row.order),
                "p23_data": row.p23_data,
                "seed": row.seed,
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
    orders = sorted({">".join(r.order) for r in rows})
    p23s = sorted({r.p23_data for r in rows})
    seeds = sorted({r.seed for r in rows})
    p12s = sorted({r.p12_data for r in rows})
    model = settings.get("model") or rows[0].model
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
        f"D(order, p12 = {', '.join(_g(p) for p in p12s)}, p23) of {rows[0].n} preference "
        f"pairs each, for {len(orders)} order(s) ({', '.join(orders)}), {len(p23s)} value(s) of "
        f"p23 from {_g(p23s[0])} to {_g(p23s[-1])} and {len(seeds)} seed(s): {n_runs} run(s), "
        f"measured with the {method} probe. "
        f"The learned p13 is consistent with the p13 that {model_link} implies from the learned "
        f"p12 and p23 (Lemma 1; intervals overlapping) in {n_cons} of {n_runs} run(s). "
        f"{n_omega} of {n_runs} learned point(s) lie in Omega_M for M = {_g(M)} "
        f"(|dp13/dp12| > {_g(M)}); the largest local M is {top.local_M:.3g}, at "
        f"{'>'.join(top_row.order)}, p23 = {_g(top_row.p23_data)}, seed "
        f"{top_row.seed} (learned p12 = {top.p12:.6g}, p23 = {top.p23:.4g}). "
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
        means.setdefault(">".join(row.order), {}).setdefault(row.p23_data, []).append(lp.p13.p)
    best = None
    for order, by_p23 in means.items():
        xs = sorted(by_p23)
        for lo, hi in zip(xs, xs[1:], strict=False):
            size = abs(np.mean(by_p23[hi]) - np.mean(by_p23[lo]))
            if best is None or size > best[0]:
                best = (float(size), order, lo, hi)
    return best
