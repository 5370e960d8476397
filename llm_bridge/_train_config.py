"""The settings of a DPO run: ``DPOTrainConfig`` (Appendix C.1's defaults, validated on
construction; its fields' help texts make the CLI's ``train`` flags), ``PRESETS`` and
``preset(name, **overrides)``. Imports nothing heavy, so the CLI and the sweep's grid can read
it without torch; ``llm_bridge.train`` trains with it.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from typing import Any

__all__ = ["PRESETS", "DPOTrainConfig", "preset"]


@dataclass(frozen=True)
class DPOTrainConfig:
    """Settings of one DPO run; defaults follow Appendix C.1. Validated on construction."""

    output_dir: str = field(
        default="runs/dpo",
        metadata={"help": "run directory (checkpoints, log, trained model, manifest)"},
    )
    epochs: float = field(default=1.0, metadata={"help": "passes over the dataset (paper: 1)"})
    max_steps: int = field(
        default=-1, metadata={"help": "stop after this many optimizer steps; -1: use epochs"}
    )
    learning_rate: float = field(
        default=5e-6, metadata={"help": "peak learning rate (paper: 5e-6)"}
    )
    lr_scheduler: str = field(
        default="linear",
        metadata={
            "help": "learning-rate schedule (a transformers scheduler name)",
            "choices": ["linear", "constant", "cosine"],
        },
    )
    beta: float = field(default=0.1, metadata={"help": "DPO temperature beta' (paper: 0.1)"})
    batch_size: int = field(
        default=8,
        metadata={
            "help": "preference pairs per micro-batch; with N data-parallel processes each takes "
            "batch_size / N of them"
        },
    )
    gradient_accumulation_steps: int = field(
        default=1, metadata={"help": "micro-batches per optimizer step (batch_size each)"}
    )
    optim: str = field(
        default="adamw_bnb_8bit",
        metadata={
            "help": "optimizer: bitsandbytes 8-bit AdamW (paper) or torch AdamW",
            "choices": ["adamw_bnb_8bit", "adamw_torch"],
        },
    )
    lora_r: int = field(
        default=0, metadata={"help": "LoRA rank; 0 trains all parameters (as the paper)"}
    )
    lora_alpha: int | None = field(default=None, metadata={"help": "LoRA alpha; none: 2 * lora_r"})
    lora_dropout: float = field(default=0.0, metadata={"help": "LoRA dropout"})
    lora_target_modules: str = field(
        default="all-linear",
        metadata={"help": "LoRA targets: 'all-linear' or comma-separated module names"},
    )
    precompute_ref_log_probs: bool = field(
        default=False,
        metadata={
            "help": "compute the reference model's log-probs once before training instead of a "
            "reference forward pass per step"
        },
    )
    packed: bool = field(
        default=True,
        metadata={
            "help": "score each batch's chosen and rejected sequences as one prefix tree (shared "
            "prompt and answer beginnings computed once, LM head only where a label is scored) "
            "instead of padded separate sequences: the same loss, several times faster on a CPU; "
            "models whose attention takes no custom mask train unpacked"
        },
    )
    max_length: int | None = field(
        default=1024, metadata={"help": "truncate prompt+answer to this many tokens; none: never"}
    )
    seed: int = field(default=0, metadata={"help": "seed of LoRA init, data order and dropout"})
    device: str = field(
        default="auto",
        metadata={
            "help": "where to train; auto: cuda if available",
            "choices": ["auto", "cpu", "cuda"],
        },
    )
    precision: str = field(
        default="auto",
        metadata={
            "help": "auto: fp32 on CPU, bf16 on GPU (TRL's and the paper's GPU setting)",
            "choices": ["auto", "fp32", "bf16", "fp16"],
        },
    )
    gradient_checkpointing: str = field(
        default="auto",
        metadata={
            "help": "auto: off on CPU, on on GPU (TRL's default)",
            "choices": ["auto", "on", "off"],
        },
    )
    logging_steps: int = field(default=1, metadata={"help": "log every this many steps"})
    save_steps: int = field(
        default=25, metadata={"help": "checkpoint every this many steps (and at the end)"}
    )
    save_total_limit: int | None = field(
        default=2, metadata={"help": "checkpoints kept (oldest deleted); none: keep all"}
    )
    resume: bool = field(
        default=True,
        metadata={"help": "continue from the last complete checkpoint in output_dir, if any"},
    )

    def __post_init__(self) -> None:
        def bad(name: str, want: str) -> ValueError:
            return ValueError(f"{name} must be {want}, got {getattr(self, name)!r}")

        def is_int(x: Any) -> bool:
            return isinstance(x, int) and not isinstance(x, bool)

        def is_real(x: Any) -> bool:
            return isinstance(x, int | float) and not isinstance(x, bool) and x == x

        if not isinstance(self.output_dir, str | os.PathLike) or not os.fspath(self.output_dir):
            raise bad("output_dir", "a non-empty path")
        object.__setattr__(self, "output_dir", os.fspath(self.output_dir))
        if not is_real(self.epochs) or self.epochs <= 0:
            raise bad("epochs", "a number > 0")
        if not is_int(self.max_steps) or self.max_steps == 0 or self.max_steps < -1:
            raise bad("max_steps", "-1 (use epochs) or an integer >= 1")
        if not is_real(self.learning_rate) or not 0 < self.learning_rate < 1:
            raise bad("learning_rate", "a number in (0, 1)")
        if not is_real(self.beta) or self.beta <= 0:
            raise bad("beta", "a number > 0")
        for name in ("batch_size", "gradient_accumulation_steps", "logging_steps", "save_steps"):
            if not is_int(getattr(self, name)) or getattr(self, name) < 1:
                raise bad(name, "an integer >= 1")
        if not is_int(self.lora_r) or self.lora_r < 0:
            raise bad("lora_r", "an integer >= 0 (0: full-parameter training)")
        if self.lora_alpha is not None and (not is_int(self.lora_alpha) or self.lora_alpha < 1):
            raise bad("lora_alpha", "none or an integer >= 1")
        if not is_real(self.lora_dropout) or not 0 <= self.lora_dropout < 1:
            raise bad("lora_dropout", "a number in [0, 1)")
        if not isinstance(self.lora_target_modules, str) or not self.lora_target_modules.strip():
            raise bad("lora_target_modules", "'all-linear' or comma-separated module names")
        if self.max_length is not None and (not is_int(self.max_length) or self.max_length < 8):
            raise bad("max_length", "none or an integer >= 8")
        if not is_int(self.seed) or self.seed < 0:
            raise bad("seed", "an integer >= 0")
        if self.save_total_limit is not None and (
            not is_int(self.save_total_limit) or self.save_total_limit < 1
        ):
            raise bad("save_total_limit", "none or an integer >= 1")
        for f in dataclasses.fields(self):
            choices = f.metadata.get("choices")
            if choices and getattr(self, f.name) not in choices:
                raise bad(f.name, f"one of {choices}")
        for name in ("precompute_ref_log_probs", "resume", "packed"):
            if not isinstance(getattr(self, name), bool):
                raise bad(name, "True or False")


PRESETS: dict[str, DPOTrainConfig] = {
    # Appendix C.1: one epoch, lr 5e-6, beta' 0.1, 8-bit AdamW, all parameters trained.
    "paper": DPOTrainConfig(),
    # SmolLM2 on a CPU in about three minutes per 256-pair dataset (docs/llm_training.md).
    "cpu": DPOTrainConfig(
        learning_rate=2e-4,
        lr_scheduler="constant",
        batch_size=16,
        lora_r=16,
        precompute_ref_log_probs=True,
        device="cpu",
    ),
}
"""Named starting points; ``preset(name, **overrides)`` adjusts one."""


def preset(name: str, **overrides: Any) -> DPOTrainConfig:
    """``PRESETS[name]`` with some fields replaced (validated again)."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}")
    return dataclasses.replace(PRESETS[name], **overrides)
