"""examples/sensitivity_of_my_link.py runs, and what it prints agrees with independent numbers."""

import re
import subprocess
import sys
from pathlib import Path

import mpmath as mp

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "sensitivity_of_my_link.py"


def test_sensitivity_of_my_link_runs_and_prints_example_1():
    out = subprocess.run(
        [sys.executable, str(EXAMPLE)], check=True, capture_output=True, text=True, timeout=600
    ).stdout
    assert "[ok  ] 4." in out  # the mixture passes the symmetry check
    line = next(x for x in out.splitlines() if x.strip().startswith("logistic"))
    p_ij, d_ik = (float(v) for v in re.findall(r"= +([0-9.]+)", line)[:2])
    a, b = mp.mpf("0.99"), mp.mpf("0.02")
    assert abs(p_ij - float(a * b / (a * b + (1 - a) * (1 - b)))) < 1e-4  # Eq. (3)
    assert abs(d_ik - float(b * (1 - b) / (a + b - 2 * a * b - 1) ** 2)) < 1e-3  # Eq. (4)
    ratio = float(re.search(r"min \|dp_ij/dp_ik\| / M = ([0-9.]+)", out).group(1))
    assert ratio > 1
