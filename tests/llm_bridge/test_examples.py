"""Each examples/llm_*.py script runs (on tiny-random), so the examples never rot."""

import importlib.util
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def _load(name):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_llm_example_is_tested():
    tested = {"llm_train_one_dataset"}
    assert {p.stem for p in EXAMPLES.glob("llm_*.py")} == tested


@pytest.mark.slow
def test_llm_train_one_dataset(tmp_path, capsys):
    example = _load("llm_train_one_dataset")
    argv = ["--model", "tiny-random", "--n", "8", "--max-steps", "1"]
    result = example.main([*argv, "--out", str(tmp_path / "run")])
    assert result["steps"] == 1
    for when in ("before", "after"):
        assert len(result[when]) == 3
        assert all(0 < p < 1 for p in result[when].values())
    assert "p13 (dog over cat)" in capsys.readouterr().out


def test_preference_is_a_two_way_probability():
    # P(a over b) + P(b over a) = 1 by construction of the two opposite answers.
    from llm_bridge.models import load_model

    example = _load("llm_train_one_dataset")
    model, tok = load_model("tiny-random")
    p_ab = example.preference(model, tok, "dog", "bird")
    p_ba = example.preference(model, tok, "bird", "dog")
    assert abs(p_ab + p_ba - 1) < 1e-9
