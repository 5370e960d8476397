"""Each examples/llm_*.py script runs (on tiny-random), so the examples never rot."""

import importlib.util
import json
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def _load(name):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_llm_example_is_tested():
    tested = {"llm_train_one_dataset", "llm_dpo_convergence"}
    assert {p.stem for p in EXAMPLES.glob("llm_*.py")} == tested


@pytest.mark.slow
def test_llm_train_one_dataset(tmp_path, capsys):
    example = _load("llm_train_one_dataset")
    argv = ["--model", "tiny-random", "--n", "8", "--p12", "0.75", "--max-steps", "1"]
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


@pytest.mark.slow
def test_llm_dpo_convergence(tmp_path, monkeypatch, capsys):
    example = _load("llm_dpo_convergence")
    argv = ["--model", "tiny-random", "--steps", "2", "--every", "1", "--batch", "64"]
    argv += ["--betas", "0.5", "--p23", "0.3", "--out", str(tmp_path)]
    monkeypatch.setattr("sys.argv", ["llm_dpo_convergence.py", *argv])
    example.main()
    lines = [json.loads(x) for x in (tmp_path / "convergence.jsonl").read_text().splitlines()]
    assert [r["step"] for r in lines] == [0, 1, 2]
    first = lines[0]
    assert all(first[p]["moved"] == 0.0 for p in ("p12", "p23", "p13"))
    # the optimum's distance (theory, Eq. (1)) from the realised proportions: 127 of 128 rows
    # cannot be 0.99 exactly, so the data's q12 is 63/64 (n12 = 64) and q23 = 19/64
    assert first["q12"] == 63 / 64 and first["q23"] == 19 / 64
    assert (tmp_path / "convergence.png").read_bytes()[:4] == b"\x89PNG"
    assert "of the log-odds distance to DPO's optimum" in capsys.readouterr().out
