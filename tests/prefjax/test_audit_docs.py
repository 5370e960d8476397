"""The audit how-to pages run as written, and say what their code prints."""

import re
from pathlib import Path

import numpy as np
import pytest

DOCS = Path(__file__).resolve().parents[2] / "docs" / "howto"


def _run_page(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    text = (DOCS / name).read_text()
    namespace: dict = {}
    for block in re.findall(r"```python\n(.*?)```", text, re.S):
        exec(compile(block, name, "exec"), namespace)
    return namespace


def test_dataset_page(tmp_path, monkeypatch, capsys):
    ns = _run_page("audit-dataset.md", tmp_path, monkeypatch)
    fit, home, audit = ns["fit"], ns["home"], ns["audit"]
    assert home.position == pytest.approx(0.302, abs=5e-4)
    assert int(audit.fragile.sum()) == 0  # "nothing is fragile at M = 10"
    assert round(float(audit.sensitivity.max()), 2) == 0.32
    assert round(float(np.nanmax(audit.local_M)), 1) == 3.5
    assert fit.reference == "Baltimore"


def test_leaderboard_page(tmp_path, monkeypatch, capsys):
    ns = _run_page("audit-leaderboard.md", tmp_path, monkeypatch)
    audit = ns["audit"]
    assert int(audit.fragile.sum()) == 12
    row = audit.fragile_rows()[0]
    assert (row["i"], row["j"], row["observed"]) == ("m5", "new-y", 0)
    assert round(row["p"], 3) == 0.488 and round(row["sensitivity"], 1) == 25.2
    assert round(row["local_M"]) == 24
    path = audit.paths("new-x", "new-y")[0]
    assert path["k"] == "baseline" and round(path["local_M"]) == 64
    assert path["p_ik"] == pytest.approx(200.5 / 201)
    pool = {"baseline", "m1", "m2", "m3", "m4", "m5"}
    assert max(r["sensitivity"] for r in audit.to_rows() if {r["i"], r["j"]} <= pool) < 1
