"""The paper's experiment as a resumable grid: dataset -> DPO -> probes, one run per grid point.

A run trains one model on D(order, p12, p23) with one seed (the dataset's and the training's)
and probes the learned p12, p23 and p13 with each method asked for. ``run_sweep(config)`` does
the runs of the grid that are not finished yet:

    out/
      sweep.json       the settings shared by every run (model, dataset size, training, probes);
                       a rerun with other shared settings is refused, a changed grid is not
      results.jsonl    one JSON object per finished run, appended and fsync'ed as it finishes
      results.csv      the same, flat (one row per run), rewritten atomically after each append
      runs/<run_id>/   the run's training directory (``train_dpo``): dataset, log, manifest,
                       the trained adapter/model (deleted after probing unless keep_models)

Nothing is lost when a sweep is interrupted: a run's row is written (under a lock, then
fsync'ed) only when the run is complete, a torn last line (a crash in mid-write) is ignored on
reading and never glued to the next row, and rerunning the same command skips the runs whose rows
exist. A run interrupted during training resumes from its last checkpoint (``train_dpo``); one
interrupted while being probed is probed again from its saved model. ``shard="i/n"`` does the
runs k with k mod n = i (0 <= i < n) of the grid, for a job array; shards may share ``out``
and must be given the same grid (k counts the runs of the grid each shard was given).

Presets (``PRESETS``): ``"quick"`` fits a laptop CPU (one order, six p23 values, one seed, small
datasets, the likelihood probe; measured in docs/llm_training.md) and ``"paper"`` is Section 4 /
Appendix C on a GPU (six orders x 21 p23 values x 3 seeds, the paper's training settings, 200
sampled answers and the likelihood probe).
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import io
import itertools
import json
import os
import shutil
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, NamedTuple

from . import __version__
from ._config import atomic_write, to_jsonable

__all__ = [
    "PRESETS",
    "RunSpec",
    "SweepConfig",
    "SweepResult",
    "append_row",
    "parse_grid",
    "preset",
    "read_rows",
    "run_sweep",
]

RESULTS = "results.jsonl"
RESULTS_CSV = "results.csv"
SETTINGS = "sweep.json"
_PROBE_METHODS = ("likelihood", "sample", "reward")


def parse_grid(spec: tuple[str, ...] | str) -> tuple[float, ...]:
    """Probabilities from ``"0:1:0.05"`` (start:stop:step, stop included), ``"0.1"`` or a
    comma-separated mix of both; decimal arithmetic, so ``0:1:0.05`` gives 0.15, not
    0.15000000000000002. Sorted, without duplicates.

    >>> parse_grid("0:0.2:0.05")
    (0.0, 0.05, 0.1, 0.15, 0.2)
    >>> parse_grid(("0.5", "0:0.1:0.1"))
    (0.0, 0.1, 0.5)
    """
    parts = spec.split(",") if isinstance(spec, str) else [p for s in spec for p in s.split(",")]
    values: set[Decimal] = set()
    for part in (p.strip() for p in parts):
        try:
            fields_ = [Decimal(x) for x in part.split(":")]
        except InvalidOperation:
            raise ValueError(f"p23 grid: cannot read {part!r}; use 0.3 or 0:1:0.05") from None
        if len(fields_) == 1:
            values.add(fields_[0])
        elif len(fields_) == 3:
            start, stop, step = fields_
            if step <= 0 or stop < start:
                raise ValueError(f"p23 grid: {part!r} needs start <= stop and step > 0")
            k = 0
            while start + k * step <= stop:
                values.add(start + k * step)
                k += 1
        else:
            raise ValueError(f"p23 grid: cannot read {part!r}; use 0.3 or 0:1:0.05")
    out = tuple(sorted(float(v) for v in values))
    if not out:
        raise ValueError("p23 grid is empty")
    for v in out:
        if not 0.0 <= v <= 1.0:
            raise ValueError(f"p23 grid: {v!r} is not a probability in [0, 1]")
    return out


def _parse_shard(shard: str) -> tuple[int, int]:
    try:
        i, n = (int(x) for x in shard.split("/"))
    except ValueError:
        raise ValueError(f"shard must be i/n with integers 0 <= i < n, got {shard!r}") from None
    if not 0 <= i < n:
        raise ValueError(f"shard must be i/n with 0 <= i < n, got {shard!r}")
    return i, n


@dataclass(frozen=True)
class SweepConfig:
    """A grid of DPO runs and how each is trained and probed. Validated on construction."""

    out: str = field(default="runs/sweep", metadata={"help": "output directory of the sweep"})
    model: str = field(
        default="smollm2",
        metadata={"help": "'smollm2', 'tiny-random', a Hugging Face id or a local path"},
    )
    order: tuple[str, ...] = field(
        default=("dog", "bird", "cat"),
        metadata={"help": "the ranking (o1, o2, o3)", "metavar": "O1,O2,O3"},
    )
    permute: bool = field(
        default=False,
        metadata={"help": "train on all six orders of the three options (the paper)"},
    )
    p12: float = field(default=0.99, metadata={"help": "P(o1 over o2) in every dataset"})
    p23: tuple[str, ...] = field(
        default=("0:1:0.05",),
        metadata={
            "help": "values of P(o2 over o3): start:stop:step (stop included) and/or a "
            "comma-separated list",
            "metavar": "GRID",
        },
    )
    seeds: int = field(
        default=3, metadata={"help": "seeds per grid point (0 .. seeds-1; data and training)"}
    )
    n: int = field(default=256, metadata={"help": "preference pairs per dataset"})
    exact: bool = field(
        default=True,
        metadata={"help": "stratified exact counts (see `llm-bridge synth --help`), not Bernoulli"},
    )
    probe: tuple[str, ...] = field(
        default=("likelihood",),
        metadata={
            "help": "probe methods, comma-separated: likelihood, sample, reward",
            "metavar": "METHODS",
        },
    )
    samples: int = field(
        default=200, metadata={"help": "answers sampled per pair by the 'sample' probe"}
    )
    train_preset: str = field(
        default="cpu",
        metadata={
            "help": "training preset (llm_bridge.train.PRESETS)",
            "choices": ["cpu", "paper"],
        },
    )
    train: dict[str, Any] = field(
        default_factory=dict,
        metadata={"help": "DPOTrainConfig fields overriding the training preset"},
    )
    keep_models: bool = field(
        default=True,
        metadata={"help": "keep each run's trained adapter/model (off: deleted after probing)"},
    )
    shard: str = field(
        default="0/1", metadata={"help": "do runs k with k mod n = i of the grid", "metavar": "I/N"}
    )
    device: str = field(
        default="auto",
        metadata={"help": "auto: cuda if available", "choices": ["auto", "cpu", "cuda"]},
    )
    trust_remote_code: bool = field(
        default=False, metadata={"help": "allow the model's own Python code from the hub"}
    )

    def __post_init__(self) -> None:
        from .data import DatasetConfig
        from .train import PRESETS as TRAIN_PRESETS
        from .train import preset as train_preset

        DatasetConfig(order=self.order, p12=self.p12, n=self.n)  # validates order, p12 and n
        object.__setattr__(self, "order", tuple(self.order))
        if isinstance(self.p23, str):
            object.__setattr__(self, "p23", (self.p23,))
        parse_grid(self.p23)
        if not isinstance(self.seeds, int) or isinstance(self.seeds, bool) or self.seeds < 1:
            raise ValueError(f"seeds must be an integer >= 1, got {self.seeds!r}")
        probe = (self.probe,) if isinstance(self.probe, str) else tuple(self.probe)
        if not probe or any(m not in _PROBE_METHODS for m in probe) or len(set(probe)) < len(probe):
            raise ValueError(
                f"probe must be distinct methods among {_PROBE_METHODS}, got {self.probe!r}"
            )
        object.__setattr__(self, "probe", probe)
        if not isinstance(self.samples, int) or isinstance(self.samples, bool) or self.samples < 1:
            raise ValueError(f"samples must be an integer >= 1, got {self.samples!r}")
        if self.train_preset not in TRAIN_PRESETS:
            raise ValueError(
                f"train_preset must be one of {sorted(TRAIN_PRESETS)}, got {self.train_preset!r}"
            )
        reserved = {"output_dir", "seed", "resume"} & set(self.train)
        if reserved:
            raise ValueError(f"train overrides may not set {sorted(reserved)}: the sweep sets them")
        train_preset(self.train_preset, **self.train)  # validates the overrides
        _parse_shard(self.shard)
        if not str(self.out):
            raise ValueError("out must be a directory path")

    def runs(self) -> list[RunSpec]:
        """Every run of the grid, in order: order, then p23, then seed."""
        orders = list(itertools.permutations(self.order)) if self.permute else [self.order]
        return [
            RunSpec(tuple(o), self.p12, p23, seed)
            for o in orders
            for p23 in parse_grid(self.p23)
            for seed in range(self.seeds)
        ]

    def shard_runs(self) -> list[RunSpec]:
        """The runs of this shard: run k of ``runs()`` when k mod n = i for ``shard = "i/n"``."""
        i, n = _parse_shard(self.shard)
        return [spec for k, spec in enumerate(self.runs()) if k % n == i]

    def train_config(self, spec: RunSpec):
        """The ``DPOTrainConfig`` of one run."""
        from .train import preset as train_preset

        overrides = {"device": self.device, **self.train} if self.device != "auto" else self.train
        return train_preset(
            self.train_preset,
            **{**overrides, "output_dir": str(Path(self.out) / "runs" / spec.run_id)},
            seed=spec.seed,
        )

    def settings(self) -> dict[str, Any]:
        """What every run of this sweep shares; a results directory holds one such set."""
        base = self.train_config(RunSpec(self.order, self.p12, 0.0, 0))
        train = {
            k: v
            for k, v in to_jsonable(base).items()
            if k not in ("output_dir", "seed", "resume", "logging_steps", "save_total_limit")
        }
        return {
            "format": "llm_bridge.sweep/1",
            "model": self.model,
            "p12": self.p12,  # plot and analyze pool runs by (order, p23): one p12 per directory
            "n": self.n,
            "exact": self.exact,
            "probe": list(self.probe),
            "samples": self.samples if "sample" in self.probe else None,
            "train_preset": self.train_preset,
            "train": train,
        }


class RunSpec(NamedTuple):
    """One grid point: a dataset D(order, p12, p23) and a seed."""

    order: tuple[str, ...]
    p12: float
    p23: float
    seed: int

    @property
    def run_id(self) -> str:
        """A file-name-safe identifier, e.g. ``dog-bird-cat_p12=0.99_p23=0.05_seed=0``."""
        return f"{'-'.join(self.order)}_p12={self.p12:.10g}_p23={self.p23:.10g}_seed={self.seed}"


PRESETS: dict[str, SweepConfig] = {
    # About 2 minutes a run, 12 in all, on this project's 2-core CPU with SmolLM2-135M
    # (docs/llm_probing.md). 64 pairs in batches of 8 make as many optimizer steps (8) as 128
    # pairs in the cpu preset's batches of 16, and learned nearly the same p12, p23 and p13 in
    # half the training time.
    "quick": SweepConfig(
        p23=("0,0.02,0.05,0.1,0.3,0.7",),
        seeds=1,
        n=64,
        probe=("likelihood",),
        samples=50,
        train_preset="cpu",
        train={"batch_size": 8},
    ),
    # Section 4 and Appendix C.1: six orders, p23 = 0, 0.05, ..., 1, three seeds, the paper's
    # DPO settings and Bernoulli datasets, 200 sampled answers per pair (plus the exact probe).
    # The paper does not state its dataset size; 1000 pairs is our choice.
    "paper": SweepConfig(
        permute=True,
        p23=("0:1:0.05",),
        seeds=3,
        n=1000,
        exact=False,
        probe=("sample", "likelihood"),
        samples=200,
        train_preset="paper",
        keep_models=False,
    ),
}
"""Named sweeps; ``preset(name, **overrides)`` adjusts one."""


def preset(name: str, **overrides: Any) -> SweepConfig:
    """``PRESETS[name]`` with some fields replaced (validated again)."""
    if name not in PRESETS:
        raise ValueError(f"unknown sweep preset {name!r}; choose one of {sorted(PRESETS)}")
    return dataclasses.replace(PRESETS[name], **overrides)


# --- the results store -------------------------------------------------------------------------


@contextlib.contextmanager
def _locked(out: Path) -> Iterator[None]:
    """An exclusive lock on ``out/.lock`` (shards of a job array may share ``out``)."""
    out.mkdir(parents=True, exist_ok=True)
    with open(out / ".lock", "a") as fh:
        try:
            import fcntl
        except ImportError:  # not POSIX: one process per directory
            yield
            return
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def read_rows(out: str | os.PathLike) -> list[dict[str, Any]]:
    """The finished runs in ``out/results.jsonl``, first row per run id kept; a line that does
    not parse (a write cut off by a crash) is skipped with a warning."""
    path = Path(out) / RESULTS
    if not path.is_file():
        return []
    rows, seen = [], set()
    for k, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            warnings.warn(
                f"{path}:{k}: skipping a line that is not JSON (a cut-off write?)", stacklevel=2
            )
            continue
        if row.get("run_id") not in seen:
            seen.add(row.get("run_id"))
            rows.append(row)
    return rows


def _flat(row: dict[str, Any]) -> dict[str, Any]:
    """One CSV row: the run's parameters, training summary and each probe's three estimates."""
    flat = {
        "run_id": row["run_id"],
        "order": ">".join(row["order"]),
        "p12_data": row["p12_data"],
        "p23_data": row["p23_data"],
        "seed": row["seed"],
        "n": row["n"],
        "p12_hat": row["dataset"]["p12_hat"],
        "p23_hat": row["dataset"]["p23_hat"],
        "train_steps": row["train"]["steps"],
        "train_loss": row["train"]["loss"],
        "seconds": row["seconds"],
    }
    for method, pairs in row["probes"].items():
        for pair, r in pairs.items():
            flat[f"{method}_{pair}"] = r["p"]
            flat[f"{method}_{pair}_low"] = r["ci_low"]
            flat[f"{method}_{pair}_high"] = r["ci_high"]
            if method == "sample":
                flat[f"{method}_{pair}_unparsed"] = r["details"]["unparsed"]
    return flat


def _csv_text(rows: list[dict[str, Any]]) -> str:
    flats = [_flat(r) for r in rows]
    header: list[str] = []
    for f in flats:
        header += [k for k in f if k not in header]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=header, lineterminator="\n")
    writer.writeheader()
    writer.writerows(flats)
    return buf.getvalue()


def append_row(out: str | os.PathLike, row: dict[str, Any]) -> None:
    """Append ``row`` to ``out/results.jsonl`` (one line, fsync'ed) and rewrite
    ``out/results.csv`` atomically, under the directory's lock. A row whose run id is already
    there is not written again."""
    out = Path(out)
    path = out / RESULTS
    with _locked(out):
        rows = read_rows(out)
        if any(r.get("run_id") == row["run_id"] for r in rows):
            return
        data = (json.dumps(row, ensure_ascii=False, allow_nan=True) + "\n").encode("utf-8")
        with open(path, "ab") as fh:
            if fh.tell() > 0:
                with open(path, "rb") as check:
                    check.seek(-1, os.SEEK_END)
                    if check.read(1) != b"\n":
                        fh.write(b"\n")  # end a torn line so it stays one bad line
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        atomic_write(out / RESULTS_CSV, _csv_text([*rows, row]))


def _check_settings(out: Path, settings: dict[str, Any]) -> None:
    path = out / SETTINGS
    with _locked(out):
        if path.is_file():
            previous = json.loads(path.read_text(encoding="utf-8"))
            if previous != settings:
                diff = sorted(k for k in settings if previous.get(k) != settings[k])
                raise ValueError(
                    f"{out} holds a sweep with other settings ({', '.join(diff)} differ; see "
                    f"{path}); use another --out, or the same settings to continue it"
                )
        else:
            atomic_write(path, json.dumps(settings, indent=2, sort_keys=True) + "\n")


# --- one run -----------------------------------------------------------------------------------


def _run_one(
    config: SweepConfig, spec: RunSpec, event: Callable[[str], None], ref_cache: dict
) -> dict[str, Any]:
    from .data import make_dataset, summarize
    from .models import load_model
    from .probe import probe_order
    from .train import train_dpo

    started = time.time()
    dataset = make_dataset(spec.order, spec.p12, spec.p23, config.n, spec.seed, config.exact)
    counts = summarize(dataset)["pairs"]
    train_config = config.train_config(spec)
    load = dict(
        device=train_config.device, trust_remote_code=config.trust_remote_code, progress=False
    )
    model, tokenizer = load_model(config.model, **load)
    result = train_dpo(model, tokenizer, dataset, train_config, progress=False)
    event("trained")
    ref_model = None
    if "reward" in config.probe and train_config.lora_r == 0:
        # full-parameter training: the reference is the untrained model, loaded once per sweep
        if "model" not in ref_cache:
            ref_cache["model"] = load_model(config.model, **load)[0]
        ref_model = ref_cache["model"]
    probes = {}
    for method in config.probe:
        event(f"probe {method}")
        found = probe_order(
            result.model,
            tokenizer,
            spec.order,
            method,
            n=config.samples,
            seed=spec.seed,
            ref_model=ref_model,
            beta=train_config.beta,
        )
        probes[method] = {pair: r._asdict() for pair, r in found.items()}
    log = result.last_log
    row = {
        "run_id": spec.run_id,
        "order": list(spec.order),
        "p12_data": spec.p12,
        "p23_data": spec.p23,
        "seed": spec.seed,
        "n": config.n,
        "exact": config.exact,
        "model": config.model,
        "dataset": {"p12_hat": counts["1-2"]["p_hat"], "p23_hat": counts["2-3"]["p_hat"]},
        "train": {
            "steps": result.global_step,
            "loss": log.get("loss"),
            "reward_accuracy": log.get("rewards/accuracies"),
            "reward_margin": log.get("rewards/margins"),
            "seconds": round(result.seconds, 2),
            "dir": os.path.relpath(result.output_dir, config.out),
        },
        "probes": probes,
        "seconds": round(time.time() - started, 2),
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "llm_bridge_version": __version__,
    }
    return row


class SweepResult(NamedTuple):
    """What ``run_sweep`` did."""

    out: Path
    done: list[str]  # run ids finished by this call
    skipped: list[str]  # run ids of this shard already finished before
    total: int  # runs in the whole grid
    in_shard: int  # runs in this shard
    seconds: float
    rows: list[dict[str, Any]]  # every finished row in out (all shards)


def run_sweep(
    config: SweepConfig,
    *,
    progress: bool = True,
    on_event: Callable[[str, RunSpec], None] | None = None,
) -> SweepResult:
    """Do the runs of ``config``'s grid (this shard's) that ``config.out`` does not hold yet.

    Args:
        config: the sweep.
        progress: a progress bar over runs, with an ETA, on stderr.
        on_event: called as ``on_event(stage, spec)`` with stage ``"start"``, ``"trained"``,
            ``"probe <method>"`` and ``"done"`` (after the row is on disk).

    Returns:
        A ``SweepResult``.

    Raises:
        ValueError: ``config.out`` holds a sweep with other shared settings.
    """
    from tqdm.auto import tqdm

    started = time.time()
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    _check_settings(out, config.settings())
    runs = config.runs()
    mine = config.shard_runs()
    finished = {row["run_id"] for row in read_rows(out)}
    todo = [spec for spec in mine if spec.run_id not in finished]
    skipped = [spec.run_id for spec in mine if spec.run_id in finished]
    done: list[str] = []
    ref_cache: dict = {}
    bar = tqdm(total=len(todo), desc="sweep", unit="run", disable=not progress, dynamic_ncols=True)
    try:
        for spec in todo:

            def event(stage: str, spec: RunSpec = spec) -> None:
                bar.set_postfix_str(f"{spec.run_id}: {stage}", refresh=True)
                if on_event is not None:
                    on_event(stage, spec)

            event("start")
            row = _run_one(config, spec, event, ref_cache)
            append_row(out, row)
            if not config.keep_models:
                shutil.rmtree(out / "runs" / spec.run_id / "model", ignore_errors=True)
            shutil.rmtree(out / "runs" / spec.run_id / "checkpoints", ignore_errors=True)
            done.append(spec.run_id)
            bar.update()
            event("done")
    finally:
        bar.close()
    return SweepResult(
        out=out,
        done=done,
        skipped=skipped,
        total=len(runs),
        in_shard=len(mine),
        seconds=time.time() - started,
        rows=read_rows(out),
    )
