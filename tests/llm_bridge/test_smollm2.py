"""Smoke test of the embedded SmolLM2: convert the GGUF, load it, take one DPO step.

Marked ``smollm2`` (about a minute here: the conversion alone dequantizes 272 tensors).
Run it with ``pytest -m smollm2``.
"""

import json
import time

import numpy as np
import pytest
import torch

from llm_bridge.data import make_dataset
from llm_bridge.models import convert_smollm2, load_model, smollm2_gguf_path
from llm_bridge.train import preset, train_dpo

pytestmark = [pytest.mark.smollm2, pytest.mark.slow]

# GGUF tensor name -> transformers name, for tensors the Llama converter does not permute
# (q and k projections are row-permuted for rotary embeddings, so they are left out).
UNPERMUTED = {
    "token_embd.weight": "model.embed_tokens.weight",
    "blk.0.attn_norm.weight": "model.layers.0.input_layernorm.weight",
    "blk.0.attn_v.weight": "model.layers.0.self_attn.v_proj.weight",
    "blk.0.ffn_down.weight": "model.layers.0.mlp.down_proj.weight",
    "blk.29.ffn_up.weight": "model.layers.29.mlp.up_proj.weight",
    "output_norm.weight": "model.norm.weight",
}


def test_smollm2_convert_load_and_one_dpo_step(tmp_path, monkeypatch):
    from gguf import GGUFReader
    from gguf.quants import dequantize
    from safetensors.numpy import load_file

    start = time.time()
    checkpoint = convert_smollm2(tmp_path / "smollm2", progress=False)
    converted = time.time()

    # An ordinary float32 checkpoint: no quantization flag, weights equal to the GGUF's
    # dequantized tensors as the gguf package itself decodes them.
    config = json.loads((checkpoint / "config.json").read_text())
    assert "quantization_config" not in config
    assert config["model_type"] == "llama"
    weights = load_file(checkpoint / "model.safetensors")
    reader = GGUFReader(smollm2_gguf_path())
    tensors = {t.name: t for t in reader.tensors}
    for gguf_name, hf_name in UNPERMUTED.items():
        t = tensors[gguf_name]
        expected = dequantize(t.data, t.tensor_type).astype(np.float32)
        np.testing.assert_array_equal(weights[hf_name], expected.reshape(weights[hf_name].shape))

    # "smollm2" resolves to the converted cache (no second conversion) and is a working model
    monkeypatch.setenv("LLM_BRIDGE_CACHE", str(tmp_path))
    model, tok = load_model("smollm2", device="cpu")
    assert tok.chat_template and "<|im_start|>" in tok.chat_template
    messages = [{"role": "user", "content": "What is the capital of France?"}]
    prompt = tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    inputs = tok(prompt, return_tensors="pt", add_special_tokens=False)
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=12, do_sample=False)
    answer = tok.decode(out[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True)
    assert "Paris" in answer, answer

    # one DPO step with the cpu preset
    dataset = make_dataset(p12=0.5, p23=0.5, n=4, exact=True)
    cfg = preset("cpu", output_dir=str(tmp_path / "run"), max_steps=1, batch_size=2)
    result = train_dpo(model, tok, dataset, cfg, progress=False)
    log = [json.loads(line) for line in result.log_path.read_text().splitlines()]
    assert len(log) == 1 and np.isfinite(log[0]["loss"])
    assert (result.model_dir / "adapter_model.safetensors").is_file()
    print(
        f"\nSmolLM2 smoke: conversion {converted - start:.1f} s, "
        f"load + generate + DPO step {time.time() - converted:.1f} s"
    )
