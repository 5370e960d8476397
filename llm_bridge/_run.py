"""One run of a sweep: ``run_one`` (train, probe, the typed row) and ``attempt`` (claim the run,
do it, write its record or its failure), the unit of work every executor runs; and the untrained
model's reference probes, kept once per sweep and order."""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

from . import __version__
from . import results as store
from ._grid import RunSpec, SweepConfig
from ._launch import train_in_processes, train_run
from .results import RunRow

__all__ = ["REFERENCE_METHODS", "Outcome", "attempt", "reference_probes", "run_one"]


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
