"""llm_bridge.report: a sweep's rows analysed, against Eq. (3)-(4) evaluated in mpmath."""

import json

import mpmath as mp
import pytest

from llm_bridge.report import analyze_rows

from .references import eq3, eq4
from .rows import make_row

RTOL_F64 = 1e-10  # prefjax in float64 against 50-digit mpmath
mp.mp.dps = 50


def test_analyze_rows_summary_and_rows():
    order = ("dog", "bird", "cat")
    rows = [
        make_row(order, 0.0, 0, 0.999, 0.01, 0.2),
        make_row(order, 0.05, 0, 0.999, 0.04, 0.97),
        make_row(order, 0.5, 0, 0.98, 0.6, 0.986),
    ]
    out = analyze_rows(rows, M=10)
    json.dumps(out, allow_nan=False)  # plain JSON
    assert len(out["rows"]) == 3
    for r, src in zip(out["rows"], rows, strict=True):
        assert len(r) <= 11
        assert set(r) == {
            "order",
            "p23_data",
            "realised",
            "seed",
            "p12",
            "p23",
            "p13",
            "p13_bt",
            "local_M",
            "in_omega_M",
            "consistent",
        }
        p12, p23 = src.estimate("likelihood", "p12").p, src.estimate("likelihood", "p23").p
        assert r["p13_bt"] == pytest.approx(float(eq3(p12, p23)), rel=RTOL_F64)
        assert r["local_M"] == pytest.approx(float(eq4(p12, p23)), rel=1e-9)
        assert r["in_omega_M"] == (float(eq4(p12, p23)) > 10)
        assert r["order"] == "dog>bird>cat" and isinstance(r["p13"], str)
    # implied intervals, Eq. (3) at the ends of the +-1e-3 boxes (an end at 1 gives 1):
    # [0.89, 0.92], [0.95, 1], [0.9859, 0.9873]; learned 0.2, 0.97, 0.986 (+-1e-3)
    for r, src in zip(out["rows"], rows, strict=True):
        est = {k: src.estimate("likelihood", k) for k in ("p12", "p23", "p13")}
        lo = float(eq3(est["p12"].ci_low, est["p23"].ci_low))
        hi = (
            1.0 if est["p12"].ci_high == 1.0 else float(eq3(est["p12"].ci_high, est["p23"].ci_high))
        )
        assert r["consistent"] == (est["p13"].ci_low <= hi and lo <= est["p13"].ci_high)
    assert [r["consistent"] for r in out["rows"]] == [False, True, True]
    s = out["summary"]
    assert "3 run(s)" in s and "in 2 of 3 run(s)" in s
    largest = max(float(eq4(0.999, 0.01)), float(eq4(0.999, 0.04)), float(eq4(0.98, 0.6)))
    assert f"the largest local M is {largest:.3g}" in s
    # the largest jump of learned p13 between neighbouring p23 values: 0.2 -> 0.97
    assert "0.77 (dog>bird>cat, p23 from 0 to 0.05" in s
    assert analyze_rows([])["summary"].startswith("No finished runs")


# --- Section 4 claims ---------------------------------------------------------------------------

ORDER = ("dog", "bird", "cat")


def _by_id(claims):
    return {c["id"]: c for c in claims}


def test_shift_and_same_p13_different_p23():
    rows = [
        make_row(ORDER, 0.0, 0, 0.999, 0.01, 0.05),
        make_row(ORDER, 0.05, 0, 0.999, 0.05, 0.50),
        make_row(ORDER, 0.1, 0, 0.999, 0.10, 0.95),
        make_row(ORDER, 0.6, 0, 0.999, 0.80, 0.96),
    ]
    claims = _by_id(analyze_rows(rows, M=10)["claims"])
    shift = claims["sec4.shift"]
    # p13 from 0.05 (<= 0.1) at p23 = 0 to 0.95 (>= 0.9) at 0.1: an interval of 0.1
    assert shift["verdict"] == "reproduced at this scale"
    assert shift["computed"]["narrowest_interval"]["width"] == pytest.approx(0.1)
    # the largest jump of a learned curve between neighbouring grid points: p23 0.10 -> 0.80
    jump = shift["computed"]["largest_jump"]
    assert jump["size"] == pytest.approx(0.7) and (jump["pair"], jump["from"]) == ("p23", 0.1)
    # runs 3 and 4: p13 0.95 vs 0.96 (<= 0.02 apart), p23 0.10 vs 0.80 (>= 0.5 apart)
    same = claims["sec4.same_p13_different_p23"]
    assert same["verdict"] == "reproduced at this scale"
    assert same["computed"]["same_p13"]["runs"] == [rows[2].run_id, rows[3].run_id]
    assert claims["sec4.llama3_8b"]["verdict"] == "not run here"
    assert "--preset paper" in claims["sec4.llama3_8b"]["computed"]["command"]
    json.dumps(claims, allow_nan=False)


def test_a_smooth_sweep_is_not_a_shift():
    rows = [make_row(ORDER, x, 0, 0.9, 0.3 + 0.2 * x, 0.4 + 0.2 * x) for x in (0.0, 0.5, 1.0)]
    claims = _by_id(analyze_rows(rows, M=10)["claims"])
    assert claims["sec4.shift"]["verdict"] == "not reproduced"
    assert claims["sec4.same_p13_different_p23"]["verdict"] == "not reproduced"
    assert claims["sec4.not_all_in_omega"]["verdict"] == "inconclusive"  # no large change


def test_large_changes_and_omega_membership_by_eq4():
    xs = [0.0, 0.02, 0.3, 0.35]
    p13 = [0.05, 0.9, 0.92, 0.3]  # large changes: 0 -> 0.02 and 0.3 -> 0.35
    rows = [make_row(ORDER, x, 0, 0.999, 0.2, y) for x, y in zip(xs, p13, strict=True)]
    claim = _by_id(analyze_rows(rows, M=10)["claims"])["sec4.not_all_in_omega"]
    # the data point (0.99, p23) is in Omega_10 when Eq. (4) > 10 (p23 = 0 is not in (0, 1))
    inside = [0 < x < 1 and float(eq4(0.99, x)) > 10 for x in xs]
    want = [inside[0] or inside[1], inside[2] or inside[3]]
    got = [c["endpoints_in_omega"] for c in claim["computed"]["large_changes"]]
    assert got == want == [True, False]
    assert claim["verdict"] == "reproduced at this scale"  # one of two outside Omega_M


def test_dpo_optimum_fraction_from_the_reference_probes():
    from llm_bridge import theory

    from .rows import estimate

    contexts = {"p12": [0.2, -0.1], "p23": [0.4, 0.0], "p13": [0.3, 0.1]}
    ref = {}
    for pair, ls in contexts.items():
        p, logit = theory.dpo_optimum_averaged(ls, 0.0, 1.0)  # beta irrelevant at shift 0
        r = estimate(p, logit=logit)
        ref[pair] = r._replace(details={"log_odds": dict(enumerate(ls))})
    references = {ORDER: {"likelihood": ref}}
    settings = {"train": {"beta": 0.5}}
    beta = 0.5

    def at(fraction, x):
        q12, q23 = 198 / 200, x
        probes = {}
        for pair, data in (
            ("p12", theory.logit(q12)),
            ("p23", theory.logit(q23)),
            ("p13", theory.logit(q12) + theory.logit(q23)),
        ):
            target = theory.dpo_optimum_averaged(contexts[pair], data, beta)[1] - ref[pair].logit
            logit = ref[pair].logit + fraction * target
            probes[pair] = estimate(float(theory.sigmoid(logit)), logit=logit)
        row = make_row(ORDER, x, 0, 0.5, 0.5, 0.5)
        counts = row.dataset.__class__(n12=200, wins12=198, n23=100, wins23=round(100 * x))
        return row.__class__(
            **{**row.__dict__, "probes": {"likelihood": probes}, "dataset": counts}
        )

    rows = [at(1.0, x) for x in (0.1, 0.3, 0.6)]
    claim = _by_id(analyze_rows(rows, settings=settings, references=references)["claims"])[
        "sec4.dpo_optimum"
    ]
    assert claim["verdict"] == "reproduced at this scale"
    for pair in ("p12", "p23", "p13"):
        assert claim["computed"][pair]["median"] == pytest.approx(1.0, rel=1e-9)
    rows = [at(0.2, x) for x in (0.1, 0.3, 0.6)]
    claim = _by_id(analyze_rows(rows, settings=settings, references=references)["claims"])[
        "sec4.dpo_optimum"
    ]
    assert claim["verdict"] == "not reproduced"
    assert claim["computed"]["p23"]["median"] == pytest.approx(0.2, rel=1e-9)
    # no reference probes: nothing to measure the distance from
    claim = _by_id(analyze_rows(rows, settings=settings)["claims"])["sec4.dpo_optimum"]
    assert claim["verdict"] == "inconclusive"


def test_probabilities_near_one_are_written_from_their_log_odds():
    from llm_bridge.report import _p_text

    # 1 / (1 + e^40) = 4.248e-18 (mpmath), which float64 cannot add to 1
    assert _p_text(40.0) == "1 - 4.2e-18" and _p_text(-40.0) == "4.2e-18"
    assert _p_text(0.0) == "0.5" and _p_text(float("inf")) == "1"
    assert float(1 / (1 + mp.exp(40))) == pytest.approx(4.248354255291589e-18, rel=1e-12)
