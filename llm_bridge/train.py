"""DPO training (Appendix C.1) with TRL: ``train_dpo(model, tokenizer, dataset, config)``.

``DPOTrainConfig`` defaults are the paper's settings: one epoch, learning rate 5e-6, DPO
temperature beta' = 0.1, bitsandbytes' 8-bit AdamW, full-parameter training against a frozen
copy of the initial model. The paper trained on GPUs; on a GPU the run keeps TRL's GPU defaults
(bfloat16, gradient checkpointing). On a CPU those defaults are wrong (bfloat16 matmuls are slow
and lossy there, checkpointing only costs time), so ``precision`` and ``gradient_checkpointing``
resolve per device in one place, ``_resolve_device_settings``.

``PRESETS["cpu"]`` is what moves SmolLM2-135M to a dataset's preferences on a laptop-class CPU
in minutes: LoRA (rank 16, alpha 32, on every linear layer), a constant learning rate of 2e-4,
batch 16, the reference log-probabilities computed once before training. The evidence is in
docs/llm_training.md.

A run directory holds::

    output_dir/
      run.json            what identifies the run (config, dataset digest, base model); a rerun
                          with a different identity is refused instead of mixed in
      dataset.jsonl       the training data (+ dataset.manifest.json)
      checkpoints/        Trainer checkpoints (safetensors weights; optimizer/RNG state)
      train_log.jsonl     one JSON object per logged step (loss, rewards/*, logps/*, ...)
      model/              the trained adapter (LoRA) or model, and the tokenizer, as safetensors
      cache/              several processes only: the tokenized data TRL caches log-probs beside
      manifest.json       written last: config, dataset, versions, device, timing, final metrics

A run that is interrupted (killed, Ctrl-C, an exception) is resumed from its last complete
checkpoint by calling ``train_dpo`` again with the same arguments (``config.resume``, on by
default); the log keeps one line per step. Calling it again on a finished run trains nothing: it
loads the trained weights onto the model passed and returns (``already_finished=True``). Checkpoint optimizer/scheduler/RNG state is read
by transformers with ``torch.load(..., weights_only=True)``: tensors and plain containers only,
no arbitrary unpickling.

Several GPUs: under ``accelerate launch --num_processes N`` (or ``torchrun --nproc_per_node N``)
each process runs ``train_dpo`` and TRL trains data-parallel (DDP). ``batch_size`` stays the
global batch (each process takes ``batch_size / N`` pairs of it), so the optimizer steps, and
what the run learns, do not depend on N. Only the main process writes the run directory; the
others wait for it (``_Processes``).
"""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import re
import shutil
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import __version__
from ._config import to_jsonable
from ._io import atomic_write, write_json
from ._train_config import PRESETS, DPOTrainConfig, preset

if TYPE_CHECKING:  # the heavy imports happen inside train_dpo, so `llm-bridge --help` is quick
    from datasets import Dataset
    from transformers import PreTrainedModel, PreTrainedTokenizerBase, TrainerCallback

__all__ = ["PRESETS", "DPOTrainConfig", "TrainResult", "preset", "train_dpo"]


@dataclass
class TrainResult:
    """What ``train_dpo`` did and where it put it."""

    model: Any  # the trained model (a peft.PeftModel when LoRA is on), in memory
    output_dir: Path
    model_dir: Path  # output_dir / "model": adapter or full weights + tokenizer (safetensors)
    log_path: Path  # output_dir / "train_log.jsonl"
    manifest_path: Path  # output_dir / "manifest.json"
    global_step: int
    train_loss: float | None  # mean DPO loss over the steps of this call
    last_log: dict[str, Any]  # the last logged training metrics (loss, rewards/*, ...)
    seconds: float  # wall time of this call
    resumed_from: str | None  # the checkpoint this call continued from, if any
    already_finished: bool = False  # True: output_dir held this finished run; nothing was trained


def _jsonl_log(path: Path) -> TrainerCallback:
    """A callback appending each Trainer log event to ``path`` (JSONL). On resume it first drops
    the lines an interrupted attempt wrote after the checkpoint being resumed, so each step
    appears once."""
    from transformers import TrainerCallback

    class JsonlLog(TrainerCallback):
        def __init__(self) -> None:
            self.start = time.time()

        def on_train_begin(self, args, state, control, **kwargs):
            if state.is_world_process_zero and path.exists():
                kept = []
                for line in path.read_text(encoding="utf-8").splitlines():
                    try:
                        step = json.loads(line).get("step", 0)
                    except json.JSONDecodeError:
                        continue  # a line cut off by the interruption
                    if step <= state.global_step:
                        kept.append(line)
                atomic_write(path, "".join(line + "\n" for line in kept))

        def on_log(self, args, state, control, logs=None, **kwargs):
            if not state.is_world_process_zero or not logs or "loss" not in logs:
                return  # the end-of-training summary goes into the manifest instead
            record = {"step": state.global_step, "epoch": state.epoch, **logs}
            record["elapsed_s"] = round(time.time() - self.start, 3)
            with path.open("a", encoding="utf-8") as fh:
                fh.write(json.dumps(record) + "\n")

    return JsonlLog()


_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")


def _last_complete_checkpoint(folder: Path) -> Path | None:
    """The newest ``checkpoint-N`` whose trainer_state.json (written last) exists."""
    if not folder.is_dir():
        return None
    done = [
        (int(m.group(1)), p)
        for p in folder.iterdir()
        if (m := _CHECKPOINT.match(p.name)) and (p / "trainer_state.json").is_file()
    ]
    return max(done)[1] if done else None


def _resolve_device_settings(config: DPOTrainConfig) -> tuple[str, str, bool]:
    """(device, precision, gradient checkpointing) for this machine: the one place they are set."""
    from .models import resolve_device

    device = resolve_device(config.device)
    on_gpu = device != "cpu"
    precision = config.precision if config.precision != "auto" else ("bf16" if on_gpu else "fp32")
    if config.gradient_checkpointing == "auto":
        checkpointing = on_gpu
    else:
        checkpointing = config.gradient_checkpointing == "on"
    return device, precision, checkpointing


def _versions() -> dict[str, str | None]:
    from importlib.metadata import PackageNotFoundError, version

    out: dict[str, str | None] = {"llm_bridge": __version__, "python": sys.version.split()[0]}
    for dist in ("torch", "transformers", "trl", "peft", "bitsandbytes", "datasets", "accelerate"):
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:
            out[dist] = None
    return out


@dataclass(frozen=True)
class _RunDir:
    """The files of one run directory (see the module docstring)."""

    root: Path

    run_json = property(lambda self: self.root / "run.json")
    data = property(lambda self: self.root / "dataset.jsonl")
    checkpoints = property(lambda self: self.root / "checkpoints")
    log = property(lambda self: self.root / "train_log.jsonl")
    model = property(lambda self: self.root / "model")
    manifest = property(lambda self: self.root / "manifest.json")
    cache = property(lambda self: self.root / "cache")  # multi-process runs only; then deleted


def _identity(config: DPOTrainConfig, model, dataset) -> dict[str, Any]:
    """What makes two runs the same run: the settings that change the result, the data, the
    base model (not where the run lives, whether it resumes, or how often it logs)."""
    from .data import dataset_sha256

    ignored = ("output_dir", "resume", "logging_steps", "save_total_limit")
    return {
        "config": {k: v for k, v in to_jsonable(config).items() if k not in ignored},
        "dataset_sha256": dataset_sha256(dataset),
        "base_model": model.config.name_or_path,
    }


def _claim_run_dir(config: DPOTrainConfig, identity: dict[str, Any]) -> tuple[_RunDir, bool]:
    """Step 1: the run directory, checked to hold this run or nothing; returns it and whether
    the run already finished there. A directory holding another run is refused."""
    run = _RunDir(Path(config.output_dir))
    run.root.mkdir(parents=True, exist_ok=True)
    previous = json.loads(run.run_json.read_text("utf-8")) if run.run_json.is_file() else None
    if config.resume and previous is not None and previous != identity:
        raise ValueError(
            f"{run.root} holds a run with different settings, data or base model (see "
            f"{run.run_json}); choose another output_dir or delete that one"
        )
    finished = config.resume and previous == identity and run.manifest.is_file()
    return run, finished


def _finished_result(run: _RunDir, device: str, started: float) -> TrainResult:
    """Step 2: a finished run is loaded (``models.load_model`` of its directory), not trained."""
    from .models import load_model

    done = json.loads(run.manifest.read_text(encoding="utf-8"))
    trained, _ = load_model(run.root, device=device, progress=False)
    return TrainResult(
        model=trained,
        output_dir=run.root,
        model_dir=run.model,
        log_path=run.log,
        manifest_path=run.manifest,
        global_step=done["global_step"],
        train_loss=done["train_loss"],
        last_log=done["last_log"],
        seconds=time.time() - started,
        resumed_from=None,
        already_finished=True,
    )


def _start_or_resume(
    run: _RunDir, config: DPOTrainConfig, identity, dataset, *, main: bool = True
) -> Path | None:
    """Step 3: find the checkpoint to resume from and (the main process only) record the run
    (run.json, the dataset); a fresh start clears what an earlier attempt left."""
    from .data import save_jsonl

    resume_from = _last_complete_checkpoint(run.checkpoints) if config.resume else None
    if not main:
        return resume_from
    write_json(run.run_json, identity)
    save_jsonl(dataset, run.data)
    run.manifest.unlink(missing_ok=True)  # present again only once this call finishes
    if resume_from is None:
        shutil.rmtree(run.checkpoints, ignore_errors=True)
        shutil.rmtree(run.model, ignore_errors=True)
        run.log.unlink(missing_ok=True)
    return resume_from


def _trl_config(config: DPOTrainConfig, run: _RunDir, device, precision, checkpointing, progress):
    """Step 4a: TRL's ``DPOConfig`` from ours, with the CPU-hostile defaults set explicitly.
    Under ``accelerate launch``/``torchrun`` (``WORLD_SIZE`` processes) each process takes its
    share of ``batch_size``, so the global batch is the same as in one process."""
    from trl import DPOConfig

    processes = int(os.environ.get("WORLD_SIZE", "1"))
    if config.batch_size % processes:
        raise ValueError(
            f"batch_size {config.batch_size} cannot be split over {processes} processes; use a "
            f"multiple of {processes}"
        )
    per_process = config.batch_size // processes
    args = dict(
        output_dir=str(run.checkpoints),
        num_train_epochs=config.epochs,
        max_steps=config.max_steps,
        learning_rate=config.learning_rate,
        lr_scheduler_type=config.lr_scheduler,
        beta=config.beta,
        per_device_train_batch_size=per_process,
        gradient_accumulation_steps=config.gradient_accumulation_steps,
        optim=config.optim,
        precompute_ref_log_probs=config.precompute_ref_log_probs,
        precompute_ref_batch_size=per_process,
        max_length=config.max_length,
        seed=config.seed,
        use_cpu=device == "cpu",
        bf16=precision == "bf16",
        fp16=precision == "fp16",
        logging_steps=config.logging_steps,
        save_strategy="steps",
        save_steps=config.save_steps,
        save_total_limit=config.save_total_limit,
        report_to="none",
        disable_tqdm=not progress,
        dataloader_pin_memory=device != "cpu",
    )
    if "activation_checkpointing" in {f.name for f in dataclasses.fields(DPOConfig)}:
        args["activation_checkpointing"] = checkpointing  # transformers >= 5.x name
    args["gradient_checkpointing"] = checkpointing
    return DPOConfig(**args)


def _lora_config(config: DPOTrainConfig):
    """Step 4b: peft's ``LoraConfig``, or None for full-parameter training."""
    if config.lora_r == 0:
        return None
    from peft import LoraConfig

    targets = config.lora_target_modules
    return LoraConfig(
        r=config.lora_r,
        lora_alpha=config.lora_alpha if config.lora_alpha is not None else 2 * config.lora_r,
        lora_dropout=config.lora_dropout,
        target_modules=targets
        if targets == "all-linear"
        else [t.strip() for t in targets.split(",")],
        task_type="CAUSAL_LM",
    )


def _pack(trainer) -> None:
    """Route the trainer's log-probabilities (policy, reference) through the packed forward
    (``_scoring.add_packed_forward``), once; models that cannot be packed are left alone."""
    from ._scoring import add_packed_forward, can_pack

    inner = trainer.model
    base = inner.get_base_model() if hasattr(inner, "get_base_model") else inner
    if getattr(base, "_llm_bridge_packed", False) or not can_pack(inner):
        return
    add_packed_forward(base)
    base._llm_bridge_packed = True
    if trainer.ref_model is not None:
        add_packed_forward(trainer.ref_model)


def _trainer(model, tokenizer, dataset, config, run, dpo_args, callbacks, progress):
    """Step 4c: the ``DPOTrainer``, with the reference model TRL needs (none for LoRA, whose
    reference is the model with its adapters off, or with precomputed reference log-probs: an
    in-memory copy otherwise, never a hub download) and the packed forward when asked (installed
    before TRL precomputes the reference log-probabilities, which it does while constructed)."""
    from datasets import load_from_disk
    from transformers.trainer_callback import PrinterCallback
    from trl import DPOTrainer

    class Trainer(DPOTrainer):
        def _precompute_ref_logps(self, dataset, name, batch_size):
            if config.packed:
                _pack(self)  # TRL has added its fused head by now; ours goes on top of it
            if self.accelerator.num_processes > 1 and not dataset.cache_files:
                # TRL caches the log-probs beside the dataset's files; an in-memory dataset has
                # none, and its per-process temporary directory is invisible to the other
                # processes. Give it files in the run directory (written by the main process).
                path = run.cache / name
                if self.accelerator.is_main_process:
                    shutil.rmtree(path, ignore_errors=True)
                    dataset.save_to_disk(path)
                self.accelerator.wait_for_everyone()
                dataset = load_from_disk(path)
            return super()._precompute_ref_logps(dataset, name, batch_size)

    peft_config = _lora_config(config)
    ref_model = None
    if peft_config is None and not config.precompute_ref_log_probs:
        ref_model = copy.deepcopy(model).eval().requires_grad_(False)
    trainer = Trainer(
        model=model,
        ref_model=ref_model,
        args=dpo_args,
        train_dataset=dataset,
        processing_class=tokenizer,
        peft_config=peft_config,
        callbacks=[_jsonl_log(run.log), *(callbacks or [])],
    )
    if not progress:  # with its bars off the Trainer prints every log dict; the JSONL has them
        trainer.remove_callback(PrinterCallback)
    if config.packed:
        _pack(trainer)
    return trainer


def _manifest(
    trainer, output, config, run, base_model, device, precision, checkpointing, resume_from, seconds
):
    """Step 6: what the run did, written last (its presence marks the run finished)."""
    from .data import manifest_path

    data_manifest = json.loads(manifest_path(run.data).read_text(encoding="utf-8"))
    logged = [h for h in trainer.state.log_history if "loss" in h]
    return {
        "status": "finished",
        "base_model": base_model,
        "config": to_jsonable(config),
        "dataset": {k: data_manifest[k] for k in ("data_file", "data_sha256", "params", "counts")},
        "device": device,
        "precision": precision,
        "gradient_checkpointing": checkpointing,
        "global_step": trainer.state.global_step,
        "train_loss": output.training_loss,
        "last_log": logged[-1] if logged else {},
        "resumed_from": resume_from.name if resume_from else None,
        "seconds_this_call": round(seconds, 2),
        "trainable_parameters": sum(
            p.numel() for p in trainer.model.parameters() if p.requires_grad
        ),
        "processes": trainer.accelerator.num_processes,
        "versions": _versions(),
        "model_dir": run.model.name,
        "log": run.log.name,
    }


def train_dpo(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    dataset: Dataset,
    config: DPOTrainConfig | None = None,
    *,
    callbacks: list[TrainerCallback] | None = None,
    progress: bool = True,
) -> TrainResult:
    """DPO-train ``model`` on ``dataset`` (TRL conversational preference format) with TRL.

    The steps, each a function below: claim the run directory (refusing one that holds another
    run), reuse a finished run, record the run and find its checkpoint, build TRL's config,
    LoRA and reference model, train, write the manifest.

    Args:
        model: a causal LM from ``load_model`` (its ``config.name_or_path`` is recorded as the
            base model). Pass a freshly loaded model, also when resuming.
        tokenizer: its tokenizer; it must have a chat template.
        dataset: rows with ``prompt``/``chosen``/``rejected`` message lists (``make_dataset``);
            other columns are ignored by the trainer.
        config: the run's settings (default: ``DPOTrainConfig()``, the paper's).
        callbacks: extra ``transformers.TrainerCallback`` objects.
        progress: show progress bars.

    Returns:
        A ``TrainResult``; the run directory is laid out as in the module docstring.

    Raises:
        ValueError: bad inputs, or ``output_dir`` holding a different run.
    """
    import torch
    from transformers import set_seed

    from ._progress import library_progress

    config = config if config is not None else DPOTrainConfig()
    if not isinstance(config, DPOTrainConfig):
        raise TypeError(f"config must be a DPOTrainConfig, got {type(config).__name__}")
    if not tokenizer.chat_template:
        raise ValueError(
            "the tokenizer has no chat template, so the conversational dataset cannot be "
            "rendered; use an instruct/chat model"
        )
    missing = {"prompt", "chosen", "rejected"} - set(dataset.column_names)
    if missing:
        raise ValueError(f"dataset lacks the columns {sorted(missing)} of a preference dataset")
    started = time.time()
    # Seed and precision: set here, nowhere else.
    device, precision, checkpointing = _resolve_device_settings(config)
    set_seed(config.seed)
    if device != "cpu" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} requested but no GPU is visible")

    identity = _identity(config, model, dataset)
    run, finished = _claim_run_dir(config, identity)
    if finished:
        return _finished_result(run, device, started)
    dpo_args = _trl_config(config, run, device, precision, checkpointing, progress)
    # Under accelerate launch / torchrun the process group starts here (TRL's own set-up);
    # only the main process writes the run directory, the others wait for it.
    main = dpo_args.process_index == 0
    with dpo_args.main_process_first(local=False, desc="recording the run"):
        resume_from = _start_or_resume(run, config, identity, dataset, main=main)

    model.to(device)
    with library_progress(progress), warnings.catch_warnings():  # TRL tokenizes, precomputes
        # TRL 1.16 asks transformers 5 for a property it has renamed; nothing to act on here.
        warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated")
        # peft asks the hub whether the base model's vocabulary changed each time it saves an
        # adapter; "smollm2" and "tiny-random" are not hub ids, and the answer does not matter
        # (the adapter never touches the embeddings).
        warnings.filterwarnings("ignore", message="Could not find a config file in")
        warnings.filterwarnings("ignore", message="Unable to fetch remote file")
        trainer = _trainer(model, tokenizer, dataset, config, run, dpo_args, callbacks, progress)
        output = trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)

    # Step 5: the trained weights (the adapter only, for LoRA) and the tokenizer, safetensors.
    if main and config.lora_r > 0:
        trainer.model.save_pretrained(run.model, save_embedding_layers=False)
    elif main:
        trainer.model.save_pretrained(run.model)
    if main:
        tokenizer.save_pretrained(run.model)
    seconds = time.time() - started
    manifest = _manifest(
        trainer,
        output,
        config,
        run,
        model.config.name_or_path,
        device,
        precision,
        checkpointing,
        resume_from,
        seconds,
    )
    if main:
        write_json(run.manifest, manifest)
        shutil.rmtree(run.cache, ignore_errors=True)
    trainer.accelerator.wait_for_everyone()  # every process returns a finished run
    return TrainResult(
        model=trainer.model,
        output_dir=run.root,
        model_dir=run.model,
        log_path=run.log,
        manifest_path=run.manifest,
        global_step=trainer.state.global_step,
        train_loss=output.training_loss,
        last_log=manifest["last_log"],
        seconds=seconds,
        resumed_from=str(resume_from) if resume_from else None,
    )
