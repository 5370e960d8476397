"""DPO training on tiny-random: steps logged, parameters moved, run files, resume."""

import hashlib
import json
import math

import pytest
import torch
from safetensors.torch import load_file
from transformers import TrainerCallback

from llm_bridge import train as train_module
from llm_bridge.data import make_dataset
from llm_bridge.models import load_model
from llm_bridge.train import DPOTrainConfig, preset, train_dpo

# Small and fast: 4 pairs per step, LoRA rank 4, a learning rate big enough to move weights.
FAST = dict(batch_size=4, lora_r=4, learning_rate=1e-2, save_steps=2, device="cpu")


@pytest.fixture(scope="module")
def dataset():
    return make_dataset(p12=0.9, n=32, seed=0, exact=True)


def _steps(log_path):
    return [json.loads(line) for line in log_path.read_text().splitlines()]


# --- config -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "field, value",
    [
        ("epochs", 0),
        ("max_steps", 0),
        ("learning_rate", -1e-5),
        ("learning_rate", float("nan")),
        ("beta", 0.0),
        ("batch_size", 0),
        ("lora_r", -1),
        ("lora_alpha", 0),
        ("lora_dropout", 1.0),
        ("seed", -1),
        ("device", "tpu"),
        ("precision", "int4"),
        ("optim", "sgd"),
        ("max_length", 2),
        ("save_total_limit", 0),
        ("resume", "yes"),
    ],
)
def test_config_rejects_bad_values(field, value):
    with pytest.raises(ValueError, match=rf"{field} must be .*got {value!r}"):
        DPOTrainConfig(**{field: value})


def test_defaults_are_appendix_c1():
    cfg = DPOTrainConfig()
    # Appendix C.1: one epoch, learning rate 5e-6, beta' = 0.1, bitsandbytes 8-bit AdamW.
    assert cfg.epochs == 1 and cfg.learning_rate == 5e-6 and cfg.beta == 0.1
    assert cfg.optim == "adamw_bnb_8bit"
    assert cfg.lora_r == 0  # the paper trains the full model


def test_preset_overrides_and_unknown_name():
    cfg = preset("cpu", batch_size=2)
    assert cfg.batch_size == 2 and cfg.lora_r > 0 and cfg.precompute_ref_log_probs
    with pytest.raises(ValueError, match="unknown preset"):
        preset("gpu-farm")
    with pytest.raises(ValueError, match="batch_size"):
        preset("cpu", batch_size=0)


def test_device_settings_cpu_and_gpu(monkeypatch):
    # TRL's defaults (bf16, gradient checkpointing) are set explicitly per device.
    assert train_module._resolve_device_settings(DPOTrainConfig(device="cpu")) == (
        "cpu",
        "fp32",
        False,
    )
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert train_module._resolve_device_settings(DPOTrainConfig()) == ("cuda", "bf16", True)
    cfg = DPOTrainConfig(precision="fp32", gradient_checkpointing="off")
    assert train_module._resolve_device_settings(cfg) == ("cuda", "fp32", False)


def test_gpu_requested_without_gpu(tmp_path, dataset, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    model, tok = load_model("tiny-random")
    with pytest.raises(ValueError, match="no GPU"):
        train_dpo(model, tok, dataset, DPOTrainConfig(output_dir=str(tmp_path), device="cuda"))


def test_dataset_and_tokenizer_checks(tmp_path, dataset):
    model, tok = load_model("tiny-random")
    with pytest.raises(ValueError, match="lacks the columns"):
        train_dpo(model, tok, dataset.remove_columns("rejected"), preset("cpu", output_dir="x"))
    tok.chat_template = None
    with pytest.raises(ValueError, match="chat template"):
        train_dpo(model, tok, dataset, preset("cpu", output_dir=str(tmp_path)))


# --- training -----------------------------------------------------------------------------


@pytest.mark.slow
def test_two_lora_steps(tmp_path, dataset, capfd):
    model, tok = load_model("tiny-random")
    cfg = preset("cpu", output_dir=str(tmp_path / "run"), max_steps=2, **FAST)
    result = train_dpo(model, tok, dataset, cfg, progress=False)
    out = tmp_path / "run"

    # progress=False: no bars, no printed log dicts (the sweep draws its own bar)
    printed = capfd.readouterr()
    assert "'loss'" not in printed.out and "it/s" not in printed.err + printed.out
    assert "Computing reference log probs" not in printed.err

    # loss logged once per step, finite, starting at log 2 (policy == reference at step 1)
    log = _steps(result.log_path)
    assert [r["step"] for r in log] == [1, 2]
    assert all(math.isfinite(r["loss"]) for r in log)
    assert log[0]["loss"] == pytest.approx(math.log(2), abs=1e-4)

    # the adapter moved: LoRA's B matrices start at zero
    adapter = load_file(out / "model" / "adapter_model.safetensors")
    b_mats = [v for k, v in adapter.items() if "lora_B" in k]
    assert b_mats and all(v.abs().max() > 0 for v in b_mats)
    assert (out / "model" / "adapter_config.json").is_file()
    assert not list((out / "model").glob("*.bin"))  # nothing pickled

    # the manifest, checked against the files
    manifest = json.loads(result.manifest_path.read_text())
    assert manifest["status"] == "finished" and manifest["global_step"] == 2
    assert manifest["base_model"] == "tiny-random"
    assert manifest["precision"] == "fp32" and manifest["gradient_checkpointing"] is False
    data_sha = hashlib.sha256((out / "dataset.jsonl").read_bytes()).hexdigest()
    assert manifest["dataset"]["data_sha256"] == data_sha
    assert manifest["dataset"]["params"]["n"] == 32

    # the run directory loads back as the trained model, with the same outputs
    reloaded, _ = load_model(str(out))
    ids = tok("Do you prefer dog or bird?", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        expected = result.model.eval()(input_ids=ids).logits
        got = reloaded(input_ids=ids).logits
        base = load_model("tiny-random")[0](input_ids=ids).logits
    torch.testing.assert_close(got, expected)
    assert not torch.allclose(got, base)


@pytest.mark.slow
def test_full_parameter_step_with_reference_copy(tmp_path, dataset):
    model, tok = load_model("tiny-random")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    cfg = DPOTrainConfig(
        output_dir=str(tmp_path),
        max_steps=1,
        batch_size=4,
        learning_rate=1e-2,
        device="cpu",
        optim="adamw_torch",
    )
    result = train_dpo(model, tok, dataset, cfg, progress=False)
    after = load_file(tmp_path / "model" / "model.safetensors")
    changed = [k for k in after if not torch.equal(after[k], before[k])]
    assert changed
    # the reference was a frozen copy: the first step's loss is exactly log 2
    assert _steps(result.log_path)[0]["loss"] == pytest.approx(math.log(2), abs=1e-4)


class _Interrupt(TrainerCallback):
    """Ctrl-C right after step 3 was logged, before it could be checkpointed."""

    def on_log(self, args, state, control, **kwargs):
        if state.global_step == 3:
            raise KeyboardInterrupt


@pytest.mark.slow
def test_resume_after_interruption(tmp_path, dataset):
    # Reference: the same 4 steps without interruption.
    cfg = dict(max_steps=4, **FAST)
    model, tok = load_model("tiny-random")
    whole = train_dpo(model, tok, dataset, preset("cpu", output_dir=str(tmp_path / "a"), **cfg))

    model, tok = load_model("tiny-random")
    config = preset("cpu", output_dir=str(tmp_path / "b"), **cfg)
    with pytest.raises(KeyboardInterrupt):
        train_dpo(model, tok, dataset, config, callbacks=[_Interrupt()], progress=False)
    assert not (tmp_path / "b" / "manifest.json").exists()  # not finished
    assert [r["step"] for r in _steps(tmp_path / "b" / "train_log.jsonl")] == [1, 2, 3]

    model, tok = load_model("tiny-random")
    resumed = train_dpo(model, tok, dataset, config, progress=False)
    assert resumed.resumed_from.endswith("checkpoint-2")  # save_steps=2: step 3 was lost
    assert resumed.global_step == 4
    log = _steps(resumed.log_path)
    assert [r["step"] for r in log] == [1, 2, 3, 4]  # step 3 once, from the resumed attempt
    ref_log = _steps(whole.log_path)
    for got, want in zip(log, ref_log, strict=True):
        assert got["loss"] == pytest.approx(want["loss"], rel=1e-5)
    a = load_file(tmp_path / "a" / "model" / "adapter_model.safetensors")
    b = load_file(tmp_path / "b" / "model" / "adapter_model.safetensors")
    for key in a:
        torch.testing.assert_close(b[key], a[key])

    # running the finished run again trains nothing and returns the trained model
    model, tok = load_model("tiny-random")
    again = train_dpo(model, tok, dataset, config, progress=False)
    assert again.already_finished and again.global_step == 4
    assert [r["step"] for r in _steps(again.log_path)] == [1, 2, 3, 4]
    ids = tok("Do you prefer dog or bird?", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        torch.testing.assert_close(
            again.model(input_ids=ids).logits, resumed.model.eval()(input_ids=ids).logits
        )


@pytest.mark.slow
def test_output_dir_of_another_run_is_refused(tmp_path, dataset):
    model, tok = load_model("tiny-random")
    cfg = preset("cpu", output_dir=str(tmp_path), max_steps=1, **FAST)
    train_dpo(model, tok, dataset, cfg, progress=False)
    data_before = (tmp_path / "dataset.jsonl").read_bytes()
    model, tok = load_model("tiny-random")
    with pytest.raises(ValueError, match="different settings, data or base model"):
        train_dpo(model, tok, make_dataset(n=8), cfg, progress=False)
    assert (tmp_path / "dataset.jsonl").read_bytes() == data_before  # left untouched
    with pytest.raises(ValueError, match="different settings"):
        train_dpo(
            model,
            tok,
            dataset,
            preset("cpu", output_dir=str(tmp_path), max_steps=1, **{**FAST, "learning_rate": 1e-3}),
            progress=False,
        )
    # resume=False starts over instead
    fresh = preset(
        "cpu",
        output_dir=str(tmp_path),
        max_steps=1,
        resume=False,
        **{**FAST, "learning_rate": 1e-3},
    )
    result = train_dpo(model, tok, dataset, fresh, progress=False)
    assert result.resumed_from is None and result.global_step == 1
