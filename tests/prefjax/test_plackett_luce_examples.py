"""examples/choose_k.py runs and its choice of K follows Proposition 2 (checked here by hand)."""

import importlib.util
import math
from pathlib import Path

import numpy as np

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "choose_k.py"


def load_example():
    spec = importlib.util.spec_from_file_location("choose_k", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def prop2_area_by_hand(scores, k, M):
    """Eq. (10) for the top-K prefix (decreasing scores), (u, v) = (0, 1), and Proposition 2."""
    s = np.sort(scores)[::-1][:k]
    alpha = 1 + sum(math.exp(s[t] - s[0]) for t in range(2, k))
    beta = math.prod(
        1 / (1 + sum(math.exp(s[m] - s[l_]) for m in range(l_ + 1, k))) for l_ in range(1, k - 1)
    )
    return beta**2 / (6 * alpha * M * M)


def test_choose_k_picks_the_smallest_k_below_the_target(capsys):
    example = load_example()
    M, target = 10.0, 1e-5
    chosen = example.main(["--M", str(M), "--target", str(target)])
    out = capsys.readouterr().out
    assert f"K = {chosen}" in out
    areas = {k: prop2_area_by_hand(example.SCORES, k, M) for k in range(2, len(example.SCORES) + 1)}
    assert areas[chosen] <= target < areas[chosen - 1]
