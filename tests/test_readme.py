"""The README's Python quickstart runs and prints what its comments say."""

import contextlib
import io
import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def test_quickstart_runs_and_matches_its_comments():
    text = README.read_text()
    block = re.search(r"## Quickstart\s+```python\n(.*?)```", text, re.S).group(1)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(block, "README.md quickstart", "exec"), {})
    first, second, third = out.getvalue().splitlines()
    p_ij, d_ik = map(float, first.split())
    # Example 1 by hand: Eq. (3) and Eq. (4) at (0.99, 0.02)
    p, q = 0.99, 0.02
    assert p_ij == pytest.approx(p * q / (p * q + (1 - p) * (1 - q)), rel=1e-12)
    assert d_ik == pytest.approx(q * (1 - q) / (p + q - 2 * p * q - 1) ** 2, rel=1e-12)
    assert first.startswith("0.6689") and " 22.37" in first  # the comment's digits
    assert second.startswith("AreaEstimate(value=0.00368")
    quad, prop1 = map(float, third.split())
    assert quad == pytest.approx(prop1, rel=1e-10)
