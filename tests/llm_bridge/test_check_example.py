"""examples/check_learned_llm_preferences.py runs on tiny-random, so it never rots."""

import importlib.util
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "check_learned_llm_preferences.py"


def _example():
    spec = importlib.util.spec_from_file_location("check_learned_llm_preferences", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_check_example_on_tiny_random(capsys):
    out = _example().main(["--model", "tiny-random", "--order", "dog,bird,cat", "--M", "5"])
    p12, p23 = out["probes"]["p12"], out["probes"]["p23"]
    # Eq. (3) by hand
    assert out["analysis"]["p13_implied"] == pytest.approx(
        p12 * p23 / (p12 * p23 + (1 - p12) * (1 - p23)), rel=1e-12
    )
    assert out["analysis"]["in_omega_M"] == (out["analysis"]["local_M"] > 5)
    text = capsys.readouterr().out
    verdicts = [line for line in text.splitlines() if line.startswith("Verdict:")]
    assert len(verdicts) == 1 and verdicts[0].count(". ") == 0 and verdicts[0].endswith(".")
    assert "implied p13 (Lemma 1)" in text and "P(dog over cat)" in text


@pytest.mark.slow
def test_check_example_on_a_trained_run_directory(tmp_path, capsys):
    from llm_bridge.data import make_dataset
    from llm_bridge.models import load_model
    from llm_bridge.train import preset, train_dpo

    model, tok = load_model("tiny-random", progress=False)
    data = make_dataset(("dog", "bird", "cat"), 0.75, 0.25, n=8, exact=True)
    config = preset("cpu", output_dir=str(tmp_path / "run"), max_steps=1, batch_size=4, lora_r=4)
    train_dpo(model, tok, data, config, progress=False)
    out = _example().main(["--model", str(tmp_path / "run"), "--method", "reward"])
    assert all(0 < p < 1 for p in out["probes"].values())
    text = capsys.readouterr().out
    assert "trained on D(dog,bird,cat, p12 = 0.75, p23 = 0.25)" in text
    assert "(reward probe)" in text
