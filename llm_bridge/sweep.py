"""The paper's experiment as a resumable grid: dataset -> DPO -> probes, one run per grid point.

A run trains one model on D(order, p12, p23) with one seed (the dataset's and the training's)
and probes the learned p12, p23 and p13 with each method asked for. ``run_sweep(config)`` does
the runs of the grid that are not finished yet:

    out/
      sweep.json       the settings shared by every run (model, dataset size, training, probes);
                       a rerun with other shared settings is refused, a changed grid is not
      grid.json        every run asked of this directory (for ``llm-bridge status``)
      results.jsonl    one JSON object per finished run, rebuilt from the run records after
                       each run (``results.rebuild``), in canonical order
      results.csv      the same, flat (one line per run)
      runs/<run_id>/   the run's training directory (``train_dpo``): dataset, log, manifest, the
                       trained adapter/model (deleted after probing unless keep_models), and
                       result.json, the run's record, written last and atomically

Nothing is lost when a sweep is interrupted or several processes work on one directory: a run
is claimed before it starts (``results.claim``: a lock that dies with its process), its record
is written atomically only when it is complete, and results.jsonl/results.csv are derived from
the records. Rerunning the same command skips finished runs; a run interrupted during training
resumes from its last checkpoint (``train_dpo``), one interrupted while being probed is probed
again from its saved model, and one that raised is retried (its traceback is kept in
``runs/<run_id>/failures.jsonl``) until it has failed ``max_attempts`` times. ``shard="i/n"``
does the runs k with k mod n = i (0 <= i < n) of the grid, for a job array.

``attempt(config, spec)`` is the unit of work: a pure function of the configuration, the grid
point and the directory, which the executors (``executors.py``: this process, Ray tasks, Slurm
jobs) all run. ``run_sweep(config, executor="ray")`` places the attempts with one of them; the
driver here decides what is pending, rebuilds the results after each finished run and shows
progress, whichever executor runs them.

Presets (``PRESETS``): ``"quick"`` fits a laptop CPU and ``"paper"`` is Section 4 / Appendix C
on a GPU (six orders x 21 p23 values x 3 seeds, the paper's training settings, 200 sampled
answers and the likelihood probe).
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import json
import os
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from . import __version__
from . import results as store
from ._config import to_jsonable
from ._io import write_json
from .probe import METHODS as PROBE_METHODS
from .results import RunRow

if TYPE_CHECKING:
    from .executors import ExecutorConfig

__all__ = [
    "PRESETS",
    "RunSpec",
    "SweepConfig",
    "SweepResult",
    "Outcome",
    "attempt",
    "parse_grid",
    "preset",
    "read_rows",
    "run_one",
    "run_sweep",
]

RESULTS = store.RESULTS
RESULTS_CSV = store.RESULTS_CSV
SETTINGS = store.SETTINGS


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
            "help": "probe methods, comma-separated: " + ", ".join(PROBE_METHODS),
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

        object.__setattr__(self, "order", tuple(self.order))
        p23 = (self.p23,) if isinstance(self.p23, str) else tuple(self.p23)
        object.__setattr__(self, "p23", p23)
        for p23 in parse_grid(self.p23):  # order, p12, n, and each dataset realisable
            DatasetConfig(order=self.order, p12=self.p12, p23=p23, n=self.n, exact=self.exact)
        if not isinstance(self.seeds, int) or isinstance(self.seeds, bool) or self.seeds < 1:
            raise ValueError(f"seeds must be an integer >= 1, got {self.seeds!r}")
        probe = (self.probe,) if isinstance(self.probe, str) else tuple(self.probe)
        methods = tuple(PROBE_METHODS)
        if not probe or any(m not in methods for m in probe) or len(set(probe)) < len(probe):
            raise ValueError(f"probe must be distinct methods among {methods}, got {self.probe!r}")
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
            "samples": self.samples if any(PROBE_METHODS[m].sampled for m in self.probe) else None,
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


# The CPU presets train as the convergence study in docs/llm_training.md chose: the paper's
# beta' = 0.1 and one epoch, on 200 pairs (so that p12 = 0.99 is 99 of the 100 rows of (o1, o2)),
# in batches of 8 (25 optimizer steps; LoRA at a constant 2e-4 moves the log-odds by about 1.6
# per step, so the dominant pair lands near 1 - 1e-10 and the others part of the way to DPO's
# optimum). About 2 minutes a run on this project's 2-core CPU.
_CPU_TRAIN = {"batch_size": 8, "beta": 0.1}

PRESETS: dict[str, SweepConfig] = {
    # Section 4 at a laptop's scale: one order, one seed, p23 over [0, 1] with its points where
    # DPO's optimum changes fastest (p13 near p23 = 0.01, p23 near 0.5), the exact probe.
    "quick": SweepConfig(
        p23=("0,0.02,0.05,0.1,0.3,0.5,0.7,1",),
        seeds=1,
        n=200,
        probe=("likelihood",),
        samples=50,
        train_preset="cpu",
        train=_CPU_TRAIN,
    ),
    # The paper's grid (p23 = 0, 0.05, ..., 1) with the quick preset's training, one order, two
    # seeds: 42 runs, hours on a CPU (its snapshot is in docs/cpu-full/).
    "cpu-full": SweepConfig(
        p23=("0:1:0.05",),
        seeds=2,
        n=200,
        probe=("likelihood",),
        samples=50,
        train_preset="cpu",
        train=_CPU_TRAIN,
        keep_models=False,
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


# --- the shared settings ------------------------------------------------------------------------


def check_settings(out: Path, settings: dict[str, Any]) -> None:
    """Record ``settings`` in ``out/sweep.json``, or refuse when the directory holds a sweep with
    other shared settings (a changed grid is fine: runs are identified by their grid point)."""
    path = out / SETTINGS
    with store.locked(out):
        if path.is_file():
            previous = json.loads(path.read_text(encoding="utf-8"))
            if previous != settings:
                diff = sorted(k for k in settings if previous.get(k) != settings[k])
                raise ValueError(
                    f"{out} holds a sweep with other settings ({', '.join(diff)} differ; see "
                    f"{path}); use another --out, or the same settings to continue it"
                )
        else:
            write_json(path, settings)


# --- one run -----------------------------------------------------------------------------------


def train_run(config: SweepConfig, spec: RunSpec):
    """Train one grid point's model in its run directory (``train_dpo``; a finished training is
    loaded, an interrupted one resumed); returns ``(TrainResult, tokenizer, dataset)``. Each of
    N data-parallel processes runs this for the same run (``_launch``)."""
    from .data import make_dataset
    from .models import load_model
    from .train import train_dpo

    dataset = make_dataset(spec.order, spec.p12, spec.p23, config.n, spec.seed, config.exact)
    train_config = config.train_config(spec)
    model, tokenizer = load_model(
        config.model,
        device=train_config.device,
        trust_remote_code=config.trust_remote_code,
        progress=False,
    )
    return train_dpo(model, tokenizer, dataset, train_config, progress=False), tokenizer, dataset


def run_one(
    config: SweepConfig,
    spec: RunSpec,
    on_event: Callable[[str], None] | None = None,
    *,
    processes: int = 1,
) -> RunRow:
    """Train and probe one grid point; returns its row (the caller writes the record).

    ``on_event(stage)`` is called with "trained" and "probe <method>". A run whose training
    finished earlier (its ``manifest.json`` exists) is loaded, not trained again; one
    interrupted during training resumes from its last checkpoint (``train_dpo``). With
    ``processes`` > 1 the training runs in that many data-parallel processes (one per GPU,
    ``_launch.train_in_processes``) and the trained model is then probed in this one.
    """
    from .data import summarize
    from .models import load_model
    from .probe import probe_order

    event = on_event or (lambda stage: None)
    started = time.time()
    if processes > 1:
        from ._launch import train_in_processes

        train_in_processes(config, spec, processes)
    result, tokenizer, dataset = train_run(config, spec)
    pairs = summarize(dataset)["pairs"]
    train_config = config.train_config(spec)
    load = dict(
        device=train_config.device, trust_remote_code=config.trust_remote_code, progress=False
    )
    event("trained")
    ref_model = None
    if "reward" in config.probe and train_config.lora_r == 0:
        # full-parameter training: the reference is the untrained model
        ref_model = load_model(config.model, **load)[0]
    probes = {}
    for method in config.probe:
        event(f"probe {method}")
        probes[method] = probe_order(
            result.model,
            tokenizer,
            spec.order,
            method,
            n=config.samples,
            seed=spec.seed,
            ref_model=ref_model,
            beta=train_config.beta,
        )
    log = result.last_log
    return RunRow(
        run_id=spec.run_id,
        order=tuple(spec.order),
        p12_data=spec.p12,
        p23_data=spec.p23,
        seed=spec.seed,
        n=config.n,
        exact=config.exact,
        model=config.model,
        dataset=store.DatasetCounts(
            n12=pairs["1-2"]["n"],
            wins12=pairs["1-2"]["i_preferred"],
            n23=pairs["2-3"]["n"],
            wins23=pairs["2-3"]["i_preferred"],
        ),
        train=store.TrainSummary(
            steps=result.global_step,
            loss=log.get("loss"),
            reward_accuracy=log.get("rewards/accuracies"),
            reward_margin=log.get("rewards/margins"),
            dir=os.path.relpath(result.output_dir, config.out),
        ),
        probes=probes,
        llm_bridge_version=__version__,
        timing={
            "seconds": round(time.time() - started, 2),
            "train_seconds": round(result.seconds, 2),
            "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        },
    )


REFERENCE_METHODS = ("likelihood",)
"""Probe methods asked of the untrained model: the reference preferences p_ref of DPO's optimum
(``theory``) are the likelihood probe's."""


def reference_probes(config: SweepConfig, order) -> dict[str, dict[str, Any]]:
    """The untrained model's probes of ``order`` ({method: {pair: ProbeResult}}), computed once
    per sweep directory and order and kept in ``runs/reference_<order>/reference.json``; the
    DPO-optimum curves of Figure 3 and the report start from them."""
    from .models import load_model
    from .probe import probe_order

    out = Path(config.out)
    order = tuple(order)
    found = store.read_references(out).get(order)
    if found is not None:
        return found
    with store.claim(out, store.reference_id(order)) as mine:
        found = store.read_references(out).get(order)
        if found is not None or not mine:  # another process computes it: leave it to it
            return found or {}
        model, tokenizer = load_model(
            config.model,
            device=config.train_config(RunSpec(order, config.p12, 0.0, 0)).device,
            trust_remote_code=config.trust_remote_code,
            progress=False,
        )
        probes = {m: probe_order(model, tokenizer, order, m) for m in REFERENCE_METHODS}
        store.write_reference(out, order, probes)
        return probes


@contextlib.contextmanager
def _torch_threads(threads: int | None) -> Iterator[None]:
    """torch computes with ``threads`` threads inside the block (none: unchanged)."""
    import torch

    previous = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


class Outcome(NamedTuple):
    """What one attempt at a run did: "done" (its record is written), "failed" (the error is
    recorded in its failures.jsonl), "busy" (another process holds the run) or "finished"
    (a record was already there)."""

    run_id: str
    status: str
    error: str | None = None


def attempt(
    config: SweepConfig,
    spec: RunSpec,
    on_event: Callable[[str, RunSpec], None] | None = None,
    *,
    threads: int | None = None,
    processes: int = 1,
) -> Outcome:
    """Claim ``spec``'s run, do it and write its record; the unit of work every executor runs.

    A pure function of (config, spec) and the files in ``config.out``, so it runs the same in
    this process, a Ray task or a Slurm job. A run that raises is recorded as failed (with its
    traceback) and left for the next invocation to retry; KeyboardInterrupt and SystemExit
    propagate.

    ``threads``: the torch threads the run computes with (none: leave this process's setting);
    a CPU reduction split over another number of threads may round differently, so every
    executor sets it from ``--cpus-per-run``. ``processes``: data-parallel training processes
    (``run_one``).
    """
    out = Path(config.out)
    with _torch_threads(threads), store.claim(out, spec.run_id) as mine:
        if not mine:
            return Outcome(spec.run_id, "busy")
        if store.read_record(out, spec.run_id) is not None:
            return Outcome(spec.run_id, "finished")

        def event(stage: str) -> None:
            if on_event is not None:
                on_event(stage, spec)

        try:
            event("start")
            reference_probes(config, spec.order)
            row = run_one(config, spec, event, processes=processes)
            store.write_record(out, row)
        except Exception as err:
            store.record_failure(out, spec.run_id, err)
            return Outcome(spec.run_id, "failed", f"{type(err).__name__}: {err}")
        run_path = store.run_dir(out, spec.run_id)
        if not config.keep_models:
            shutil.rmtree(run_path / "model", ignore_errors=True)
        shutil.rmtree(run_path / "checkpoints", ignore_errors=True)
        event("done")
        return Outcome(spec.run_id, "done")


# --- the driver ---------------------------------------------------------------------------------


class SweepResult(NamedTuple):
    """What ``run_sweep`` did."""

    out: Path
    done: list[str]  # run ids finished by this call
    skipped: list[str]  # run ids of this shard already finished before
    failed: dict[str, str]  # run id -> error, for the runs that raised in this call
    given_up: list[str]  # run ids not attempted: they failed max_attempts times already
    busy: list[str]  # run ids held by another process during this call
    total: int  # runs in the whole grid
    in_shard: int  # runs in this shard
    seconds: float
    rows: list[RunRow]  # every finished row in out (all shards), in canonical order


def run_sweep(
    config: SweepConfig,
    *,
    executor: str | ExecutorConfig = "local",
    progress: bool = True,
    on_event: Callable[[str, RunSpec], None] | None = None,
    max_attempts: int = 3,
) -> SweepResult:
    """Do the runs of ``config``'s grid (this shard's) that ``config.out`` does not hold yet.

    Runs already finished are skipped; runs that failed before are retried until they have
    failed ``max_attempts`` times; runs another process holds are left to it. The rest go to
    the executor, which runs ``attempt`` for each; after each finished run, results.jsonl and
    results.csv are rebuilt from the run records.

    Args:
        config: the sweep.
        executor: ``"local"`` (this process, one run after another), ``"ray"``, ``"slurm"``,
            or an ``executors.ExecutorConfig`` with the resources per run.
        progress: a progress bar over runs (done / running / failed / pending), on stderr.
        on_event: called as ``on_event(stage, spec)`` with stage ``"start"``, ``"trained"``,
            ``"probe <method>"`` and ``"done"`` (after the record is on disk), in the process
            that does the run: here with the local executor; not called for Ray or Slurm.
        max_attempts: failures after which a run is no longer retried.

    Returns:
        A ``SweepResult``.

    Raises:
        ValueError: ``config.out`` holds a sweep with other shared settings, or a bad executor.
        executors.MissingExtraError: the executor's optional dependency (Ray, submitit) is not
            installed; the message names the install command.
    """
    from tqdm.auto import tqdm

    from .executors import ExecutorConfig, make_executor

    started = time.time()
    if isinstance(executor, str):
        executor = ExecutorConfig(executor=executor)
    runner = make_executor(executor)  # before any file is written: a missing extra fails fast
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    check_settings(out, config.settings())
    runs = config.runs()
    mine = config.shard_runs()
    store.record_grid(out, [s.run_id for s in runs], max_attempts)
    finished = {row.run_id for row in store.read_rows(out)}
    skipped = [s.run_id for s in mine if s.run_id in finished]
    given_up = [
        s.run_id
        for s in mine
        if s.run_id not in finished and len(store.failures(out, s.run_id)) >= max_attempts
    ]
    todo = [s for s in mine if s.run_id not in finished and s.run_id not in given_up]
    ids = [s.run_id for s in todo]
    done: list[str] = []
    failed: dict[str, str] = {}
    busy: list[str] = []
    bar = tqdm(total=len(todo), desc="sweep", unit="run", disable=not progress, dynamic_ncols=True)

    def show(note: str = "", refresh: bool = True) -> None:
        if not bar.disable:
            counts = store.status(out, ids, max_attempts).summary()
            bar.set_postfix_str(f"{counts}{note}", refresh=refresh)

    def event(stage: str, spec: RunSpec) -> None:
        show(f" | {spec.run_id}: {stage}")
        if on_event is not None:
            on_event(stage, spec)

    try:
        show()
        for outcome in runner.run(config, todo, event):
            if outcome.status == "done":
                done.append(outcome.run_id)
                store.rebuild(out)
            elif outcome.status == "failed":
                failed[outcome.run_id] = outcome.error or ""
            elif outcome.status == "busy":
                busy.append(outcome.run_id)
            else:  # "finished": another process did it meanwhile
                skipped.append(outcome.run_id)
            show(refresh=False)
            bar.update()
    finally:
        bar.close()
    rows = store.rebuild(out)
    return SweepResult(
        out=out,
        done=done,
        skipped=skipped,
        failed=failed,
        given_up=given_up,
        busy=busy,
        total=len(runs),
        in_shard=len(mine),
        seconds=time.time() - started,
        rows=rows,
    )


def read_rows(out: str | os.PathLike) -> list[RunRow]:
    """The finished runs of the sweep in ``out`` (``results.read_rows``)."""
    return store.read_rows(out)
