"""llm_bridge.report: a sweep's rows analysed, against Eq. (3)-(4) evaluated in mpmath."""

import json

import mpmath as mp
import pytest

from llm_bridge.report import analyze_rows

from .rows import make_row

RTOL_F64 = 1e-10  # prefjax in float64 against 50-digit mpmath
mp.mp.dps = 50


def eq3(p, q):
    """Eq. (3), Bradley-Terry: p_ij = 1 / (1 + (1 - p_ik)(1 - p_kj) / (p_ik p_kj))."""
    p, q = mp.mpf(p), mp.mpf(q)
    return 1 / (1 + (1 - p) * (1 - q) / (p * q))


def eq4(p, q):
    """Eq. (4): dp_ij/dp_ik = p_kj (1 - p_kj) / (p_ik + p_kj - 2 p_ik p_kj - 1)^2."""
    p, q = mp.mpf(p), mp.mpf(q)
    return q * (1 - q) / (p + q - 2 * p * q - 1) ** 2


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
        assert len(r) <= 10
        assert set(r) == {
            "order",
            "p23_data",
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
