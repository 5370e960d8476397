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

__all__ = ["analyze_rows", "default_method", "section4_claims"]


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
    references: Mapping[tuple[str, ...], Mapping[str, Any]] | None = None,
) -> dict[str, Any]:
    """A sweep's runs, analysed: ``{"summary": paragraph, "rows": [one flat dict per run],
    "claims": Section 4's observations with verdicts (``section4_claims``)}``.

    Each row holds ``order``, ``p23_data``, ``realised`` (the dataset's counts), ``seed``, the
    learned ``p12`` and ``p23`` (text, "1 - 4.2e-18" where p rounds to 1), the
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
                "realised": f"p12 {row.dataset.wins12}/{row.dataset.n12}, "
                f"p23 {row.dataset.wins23}/{row.dataset.n23}",
                "seed": row.seed,
                "p12": _p_text(lp.p12.log_odds),
                "p23": _p_text(lp.p23.log_odds),
                "p13": f"{_g(lp.p13.p)} [{_g(lp.p13.low)}, {_g(lp.p13.high)}]",
                "p13_bt": a.p13_implied,
                "local_M": a.local_M,
                "in_omega_M": a.in_omega_M,
                "consistent": a.consistent,
            }
        )
    claims = section4_claims(rows, references or {}, settings or {}, method=method, M=M, link=g)
    return {
        "summary": _summary(analyses, method, M, g.name, settings or {}),
        "rows": out_rows,
        "claims": claims,
    }


def _p_text(logit: float) -> str:
    """A probability from its log-odds, readable where it rounds to 0 or 1: "1 - 4.2e-18"."""
    import math

    if math.isinf(logit):
        return "1" if logit > 0 else "0"
    tail = 1.0 / (1.0 + math.exp(abs(logit)))  # min(p, 1 - p), exact in float64
    if tail < 1e-4:
        return f"1 - {tail:.2g}" if logit > 0 else f"{tail:.2g}"
    return _g(1.0 - tail if logit > 0 else tail)


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
        parts = [lora]
        if "learning_rate" in train:
            parts.append(f"learning rate {train['learning_rate']:g}")
        if "beta" in train:
            parts.append(f"beta' {train['beta']:g}")
        if "epochs" in train:
            parts.append(f"{train['epochs']:g} epoch(s)")
        if train.get("max_steps", -1) > 0:
            parts.append(f"at most {train['max_steps']} steps")
        how = f"the {how} preset: " + ", ".join(parts) if how else ", ".join(parts)
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
        f"{top_row.seed} (learned p12 = {_p_text(top.logit12)}, p23 = {_p_text(top.logit23)}). "
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


# --- Section 4's observations as claims with verdicts ---------------------------------------

SMALL_CHANGE = 0.1  # "a small change of p23": two of the paper's grid steps of 0.05
NEAR_0, NEAR_1 = 0.1, 0.9  # "from near 0 to near 1"
SAME, DIFFERENT = 0.02, 0.5  # "identical" learned values / "substantially different" ones
LARGE_CHANGE = 0.3  # a "significant change" between neighbouring grid points
OPTIMUM_BAND = (0.67, 1.5)  # a median fraction of the way to DPO's optimum in this band: reached

REPRODUCED, NOT_REPRODUCED, INCONCLUSIVE, NOT_RUN = (
    "reproduced at this scale",
    "not reproduced",
    "inconclusive",
    "not run here",
)
PAPER_COMMAND = (
    "llm-bridge sweep --preset paper --model meta-llama/Meta-Llama-3-8B-Instruct "
    "--out runs/paper   # 378 DPO runs of an 8B model: GPUs (docs/cluster.md)"
)


def _curves(rows: Sequence[RunRow], method: str) -> dict[str, dict[float, dict[str, float]]]:
    """{order: {p23_data: {"p12", "p23", "p13": mean learned p over seeds}}}."""
    acc: dict[str, dict[float, dict[str, list[float]]]] = {}
    for row in rows:
        cell = acc.setdefault(">".join(row.order), {}).setdefault(row.p23_data, {})
        for pair in ("p12", "p23", "p13"):
            cell.setdefault(pair, []).append(row.estimate(method, pair).p)
    return {
        order: {
            x: {k: float(np.mean(v)) for k, v in cell.items()} for x, cell in sorted(by.items())
        }
        for order, by in acc.items()
    }


def _claim(id_, statement, verdict, computed, details):
    return {
        "id": id_,
        "where": "Section 4 (Results), Figure 3",
        "statement": statement,
        "verdict": verdict,
        "computed": computed,
        "details": details,
    }


def _shift(curves) -> dict[str, Any]:
    best = None  # (width, order, pair, x_lo, x_hi)
    jump = None  # (size, order, pair, x_a, x_b)
    for order, by in curves.items():
        xs = list(by)
        for pair in ("p13", "p23"):
            ys = [by[x][pair] for x in xs]
            for a in range(len(xs)):
                for b in range(len(xs)):
                    lo_hi = ys[a] <= NEAR_0 and ys[b] >= NEAR_1
                    if lo_hi and (best is None or abs(xs[b] - xs[a]) < best[0]):
                        best = (abs(xs[b] - xs[a]), order, pair, xs[a], xs[b])
            for a in range(len(xs) - 1):
                size = abs(ys[a + 1] - ys[a])
                if jump is None or size > jump[0]:
                    jump = (size, order, pair, xs[a], xs[a + 1])
    computed = {
        "narrowest_interval": None
        if best is None
        else {"width": best[0], "order": best[1], "pair": best[2], "from": best[3], "to": best[4]},
        "largest_jump": None
        if jump is None
        else {"size": jump[0], "order": jump[1], "pair": jump[2], "from": jump[3], "to": jump[4]},
    }
    if best is None:
        verdict = NOT_REPRODUCED
        text = (
            f"No learned p13 or p23 (mean over seeds) goes from <= {NEAR_0} to >= {NEAR_1} "
            "anywhere on the grid."
        )
    else:
        verdict = REPRODUCED if best[0] <= SMALL_CHANGE + 1e-12 else INCONCLUSIVE
        text = (
            f"The learned {best[2]} ({best[1]}) goes from <= {NEAR_0} at p23 = {_g(best[3])} to "
            f">= {NEAR_1} at p23 = {_g(best[4])}: over a change of {_g(best[0])} in the data's "
            f"p23 (a small change is <= {SMALL_CHANGE})."
        )
    if jump is not None:
        text += (
            f" The largest jump between neighbouring grid points is {jump[0]:.3g} ({jump[2]}, "
            f"{jump[1]}, p23 from {_g(jump[3])} to {_g(jump[4])})."
        )
    return _claim(
        "sec4.shift",
        "The preference of trained models exhibits a significant shift in learned "
        "probabilities (from near 0 to near 1) despite comparatively minor changes in the "
        "distribution of training samples.",
        verdict,
        computed,
        text,
    )


def _same_different(rows: Sequence[RunRow], method: str) -> dict[str, Any]:
    found = {}
    for same, diff in (("p13", "p23"), ("p23", "p13")):
        best = None
        for i, a in enumerate(rows):
            for b in rows[i + 1 :]:
                d_same = abs(a.estimate(method, same).p - b.estimate(method, same).p)
                d_diff = abs(a.estimate(method, diff).p - b.estimate(method, diff).p)
                if d_same <= SAME and d_diff >= DIFFERENT and (best is None or d_diff > best[0]):
                    best = (d_diff, d_same, a, b)
        if best is not None:
            d_diff, d_same, a, b = best
            found[f"same_{same}"] = {
                "runs": [a.run_id, b.run_id],
                f"{same}": [a.estimate(method, same).p, b.estimate(method, same).p],
                f"{diff}": [a.estimate(method, diff).p, b.estimate(method, diff).p],
            }
    verdict = REPRODUCED if found else NOT_REPRODUCED
    parts = []
    for key, f in found.items():
        same = key.removeprefix("same_")
        diff = "p23" if same == "p13" else "p13"
        parts.append(
            f"{f['runs'][0]} and {f['runs'][1]}: learned {same} {f[same][0]:.4g} vs "
            f"{f[same][1]:.4g}, {diff} {f[diff][0]:.4g} vs {f[diff][1]:.4g}"
        )
    text = (
        f"Pairs of runs whose learned p13 (p23) differ by at most {SAME} while their p23 (p13) "
        f"differ by at least {DIFFERENT}: " + ("; ".join(parts) if parts else "none") + "."
    )
    return _claim(
        "sec4.same_p13_different_p23",
        "Models with identical values of p13^L (p23^L) could exhibit substantially different "
        "p23^L (p13^L).",
        verdict,
        found,
        text,
    )


def _not_all_in_omega(curves, p12_data: float, M: float, link) -> dict[str, Any]:
    from .convert import m_sensitive_mask

    changes = []
    for order, by in curves.items():
        xs = list(by)
        inside = m_sensitive_mask(p12_data, xs, M, link)
        for a in range(len(xs) - 1):
            for pair in ("p13", "p23"):
                size = abs(by[xs[a + 1]][pair] - by[xs[a]][pair])
                if size >= LARGE_CHANGE:
                    changes.append(
                        {
                            "order": order,
                            "pair": pair,
                            "from": xs[a],
                            "to": xs[a + 1],
                            "size": size,
                            "endpoints_in_omega": bool(inside[a] or inside[a + 1]),
                        }
                    )
    n_in = sum(c["endpoints_in_omega"] for c in changes)
    computed = {"large_changes": changes, "in_omega": n_in, "total": len(changes)}
    if not changes:
        verdict, share = INCONCLUSIVE, "no change"
    else:
        verdict = REPRODUCED if n_in < len(changes) else NOT_REPRODUCED
        share = f"{n_in} of {len(changes)}"
    text = (
        f"Large changes (>= {LARGE_CHANGE} between neighbouring grid points, mean over seeds) "
        f"with an endpoint whose data point (p12 = {_g(p12_data)}, p23) lies in Omega_{_g(M)} "
        f"(|dp13/dp12| > {_g(M)}, the shaded region of Figure 3): {share}."
    )
    return _claim(
        "sec4.not_all_in_omega",
        "Not all significant changes occur in M-sensitive regions.",
        verdict,
        computed,
        text,
    )


def _dpo_optimum(rows: Sequence[RunRow], references, method: str, beta: float | None):
    from . import theory

    fractions: dict[str, list[float]] = {"p12": [], "p23": [], "p13": []}
    for row in rows:
        ref = references.get(tuple(row.order), {}).get("likelihood")
        if ref is None or beta is None:
            continue
        q12, q23 = row.dataset.p12_hat, row.dataset.p23_hat
        data = {"p12": (q12,), "p23": (q23,), "p13": (q12, q23)}
        for pair, qs in data.items():
            if not all(0.0 < q < 1.0 for q in qs):
                continue  # an infinite optimum: no fraction of it
            target = (
                theory.dpo_optimum_averaged(
                    ref[pair].details["log_odds"].values(), sum(theory.logit(q) for q in qs), beta
                )[1]
                - ref[pair].logit
            )
            if abs(target) > 1e-9:
                fractions[pair].append(
                    (row.estimate(method, pair).logit - ref[pair].logit) / target
                )
    computed = {
        pair: None
        if not fs
        else {
            "median": float(np.median(fs)),
            "min": float(min(fs)),
            "max": float(max(fs)),
            "runs": len(fs),
        }
        for pair, fs in fractions.items()
    }
    medians = [c["median"] for c in computed.values() if c is not None]
    if beta is None or len(fractions["p23"]) + len(fractions["p12"]) < 3:
        verdict = INCONCLUSIVE
        text = "Too few runs with a finite optimum and a probed reference model to tell."
    else:
        lo, hi = OPTIMUM_BAND
        verdict = REPRODUCED if all(lo <= m <= hi for m in medians) else NOT_REPRODUCED
        text = (
            "Fraction of the log-odds distance from the reference model to DPO's optimum "
            "(Rafailov et al.; llm_bridge.theory Eq. (1), at the realised data proportions and "
            f"beta' = {_g(beta)}) that the learned preference covers: "
            + "; ".join(
                f"{pair} median {c['median']:.3g} (range {c['min']:.3g} to {c['max']:.3g}, "
                f"{c['runs']} runs)"
                for pair, c in computed.items()
                if c is not None
            )
            + f". Reached when every median lies in [{lo}, {hi}]."
        )
    return _claim(
        "sec4.dpo_optimum",
        "Training fits the models to the dataset's preferences (Appendix C.1: the purpose of "
        "training is to fit LLMs to the dominant preferences): at DPO's optimum, "
        "logit(p^L) = logit(p_ref) + logit(q) / beta'.",
        verdict,
        computed,
        text,
    )


def _paper_scale(settings: Mapping[str, Any]) -> dict[str, Any]:
    model = str(settings.get("model", ""))
    ran = "llama-3-8b" in model.lower()
    return _claim(
        "sec4.llama3_8b",
        "The observations hold for Llama-3-8B-Instruct (and zephyr-7b-alpha, Appendix C.3) "
        "trained with the paper's settings on six orders x 21 values of p23 x 3 seeds.",
        REPRODUCED if ran else NOT_RUN,
        {"model": model or None, "command": PAPER_COMMAND},
        "The paper's own model and scale need GPUs; this sweep ran "
        f"{model or 'another model'}. To run it: `{PAPER_COMMAND}`."
        if not ran
        else f"Run with {model}.",
    )


def section4_claims(
    rows: Sequence[RunRow],
    references: Mapping[tuple[str, ...], Mapping[str, Any]],
    settings: Mapping[str, Any],
    *,
    method: str,
    M: float,
    link: Any = "logistic",
) -> list[dict[str, Any]]:
    """Section 4's observations as claims, each with a verdict ("reproduced at this scale",
    "not reproduced", "inconclusive", "not run here"), the numbers behind it and the thresholds
    used (module constants), from a sweep's rows and its reference probes."""
    if not rows:
        return []
    curves = _curves(rows, method)
    beta = (settings.get("train") or {}).get("beta")
    p12_data = float(np.mean([r.p12_data for r in rows]))
    return [
        _shift(curves),
        _same_different(rows, method),
        _not_all_in_omega(curves, p12_data, M, link),
        _dpo_optimum(rows, references, method, beta),
        _paper_scale(settings),
    ]
