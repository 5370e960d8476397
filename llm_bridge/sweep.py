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

Presets (``PRESETS``, in ``_grid``): ``"quick"`` fits a laptop CPU (8 runs), ``"cpu-full"`` is the
paper's p23 grid with two seeds at the quick preset's training (42 runs, hours on a CPU) and
``"paper"`` is Section 4 / Appendix C on a GPU (six orders x 21 p23 values x 3 seeds, the paper's training settings, 200 sampled
answers and the likelihood probe).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

from . import results as store
from ._grid import PRESETS as PRESETS
from ._grid import RunSpec as RunSpec
from ._grid import SweepConfig as SweepConfig
from ._grid import parse_grid as parse_grid
from ._grid import preset as preset
from ._io import write_json
from ._run import Outcome as Outcome
from ._run import attempt as attempt
from ._run import reference_probes as reference_probes
from ._run import run_one as run_one
from .executors import ExecutorConfig, make_executor
from .results import RunRow

__all__ = [
    "PRESETS",
    "Outcome",
    "RunSpec",
    "SweepConfig",
    "SweepResult",
    "attempt",
    "check_settings",
    "parse_grid",
    "preset",
    "read_rows",
    "reference_probes",
    "run_one",
    "run_sweep",
]

RESULTS = store.RESULTS
RESULTS_CSV = store.RESULTS_CSV
SETTINGS = store.SETTINGS


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
