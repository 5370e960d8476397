"""Where a sweep's runs execute: this process, Ray tasks, or a Slurm job array (submitit).

    EXECUTORS = {"local": LocalExecutor, "ray": RayExecutor, "slurm": SlurmExecutor}

Each executor is built from an ``ExecutorConfig`` and has one method, ``run(config, specs,
on_event)``: it runs ``_run.attempt(config, spec)`` once for each spec (the engine retries an
attempt whose worker died) and yields each attempt's ``Outcome`` as it finishes, in whatever
order they finish. The driver, ``sweep.run_sweep``, decides which runs are pending, rebuilds
the results files after each finished run and shows progress; an executor only places the
attempts. Since ``attempt`` claims its run and writes the run's record atomically, and the
results files are rebuilt from the records in grid order, the results do not depend on the
executor or on the order the runs finished.

Resources, the same flags for every executor:

* ``cpus_per_run``: the cores a run gets and the torch threads it computes with. A CPU
  reduction split over another number of threads may round differently, so give every executor
  the same value when comparing their results (none: local keeps this process's setting, Ray
  and Slurm use 1).
* ``gpus_per_run``: GPUs per Ray task or Slurm job. With N > 1 a run trains in N data-parallel
  processes (``_launch``: one per GPU) and is probed in one; ``train_dpo`` splits each batch
  over them, so the run learns the same as on one GPU.

A run uses ``device="cuda"`` exactly when its task was given GPUs and CUDA sees them: Ray sets
``CUDA_VISIBLE_DEVICES`` to the task's GPUs (and this module to none for a task without GPUs),
Slurm to the job's. GPUs declared to Ray without CUDA (``ray.init(num_gpus=2)`` on a CPU
machine, as the tests do) are scheduled but not used: the run computes on the CPU.

Ray and submitit are optional: ``pip install -e .[ray]`` / ``.[slurm]``.
"""

from __future__ import annotations

import importlib
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import results as store
from ._grid import RunSpec, SweepConfig
from ._run import Outcome, attempt

__all__ = [
    "EXECUTORS",
    "ExecutorConfig",
    "LocalExecutor",
    "MissingExtraError",
    "RayExecutor",
    "SlurmExecutor",
    "make_executor",
]

OnEvent = Callable[[str, RunSpec], None] | None

RAY_MAX_RETRIES = 2
"""Ray reruns a task whose worker process died (killed, out of memory, node lost) this often."""

SLURM_POLL_S = 2.0
"""How often the Slurm executor looks for finished jobs (submitit reads their result files)."""


@dataclass(frozen=True)
class ExecutorConfig:
    """Where and with what resources a sweep's runs execute. Validated on construction."""

    executor: str = field(
        default="local",
        metadata={
            "help": "local: this process, one run after another; ray: one Ray task per run; "
            "slurm: a Slurm job array through submitit",
            "choices": ["local", "ray", "slurm"],
        },
    )
    gpus_per_run: int = field(
        default=0,
        metadata={
            "help": "GPUs per run (a Ray task's or Slurm job's request); N > 1 trains each run "
            "in N data-parallel processes, one per GPU"
        },
    )
    cpus_per_run: int | None = field(
        default=None,
        metadata={
            "help": "CPU cores per run, also the torch threads it computes with (give every "
            "executor the same value to compare their floats); none: local keeps this "
            "process's threads, ray and slurm use 1"
        },
    )
    ray_address: str | None = field(
        default=None,
        metadata={
            "help": "join this Ray cluster ('auto': the one `ray start` runs here; "
            "ray://HOST:10001); none: start a local one with this machine's CPUs and GPUs",
            "metavar": "ADDRESS",
        },
    )
    slurm_partition: str | None = field(
        default=None, metadata={"help": "the Slurm partition; none: the cluster's default"}
    )
    slurm_time: int = field(
        default=60,
        metadata={
            "help": "minutes per job; a job that times out (or is preempted) is requeued and "
            "resumes from its last checkpoint",
            "metavar": "MINUTES",
        },
    )
    slurm_options: tuple[str, ...] = field(
        default=(),
        metadata={
            "help": "more sbatch options, KEY=VALUE comma-separated (account=lab,qos=high,"
            "mem=64G,constraint=a100)",
            "metavar": "KEY=VALUE,...",
        },
    )
    slurm_array_parallelism: int = field(
        default=256, metadata={"help": "at most this many jobs of the array run at once"}
    )
    slurm_cluster: str = field(
        default="slurm",
        metadata={
            "help": "where submitit runs the jobs: slurm (sbatch), or, to try a sweep without a "
            "cluster, local (subprocesses here) or debug (in this process)",
            "choices": ["slurm", "local", "debug"],
        },
    )

    def __post_init__(self) -> None:
        def bad(name: str, want: str) -> ValueError:
            return ValueError(f"{name} must be {want}, got {getattr(self, name)!r}")

        def is_int(x: Any) -> bool:
            return isinstance(x, int) and not isinstance(x, bool)

        if self.executor not in EXECUTORS:
            raise bad("executor", f"one of {sorted(EXECUTORS)}")
        if not is_int(self.gpus_per_run) or self.gpus_per_run < 0:
            raise bad("gpus_per_run", "an integer >= 0")
        if self.cpus_per_run is not None and (
            not is_int(self.cpus_per_run) or self.cpus_per_run < 1
        ):
            raise bad("cpus_per_run", "none or an integer >= 1")
        if not is_int(self.slurm_time) or self.slurm_time < 1:
            raise bad("slurm_time", "a number of minutes >= 1")
        if not is_int(self.slurm_array_parallelism) or self.slurm_array_parallelism < 1:
            raise bad("slurm_array_parallelism", "an integer >= 1")
        options = (
            (self.slurm_options,) if isinstance(self.slurm_options, str) else self.slurm_options
        )
        options = tuple(o for o in options if o)
        if any("=" not in o or not o.split("=", 1)[0].strip() for o in options):
            raise bad("slurm_options", "KEY=VALUE items, e.g. ('account=lab', 'qos=high')")
        object.__setattr__(self, "slurm_options", options)
        if self.slurm_cluster not in ("slurm", "local", "debug"):
            raise bad("slurm_cluster", "one of ['slurm', 'local', 'debug']")

    @property
    def processes(self) -> int:
        """Data-parallel training processes per run: one per GPU."""
        return max(1, self.gpus_per_run)

    @property
    def threads(self) -> int:
        """The torch threads of a run that executes elsewhere (a Ray task, a Slurm job)."""
        return self.cpus_per_run or 1


class MissingExtraError(ImportError):
    """An executor's optional dependency is not installed; the message names the command."""


def _require(module: str, extra: str):
    """Import an optional dependency, or say how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise MissingExtraError(
            f"the {extra!r} executor needs {module}, an optional dependency: "
            f"pip install -e '.[{extra}]' (or pip install {module})"
        ) from err


def _lost(config: SweepConfig, spec: RunSpec, error: BaseException) -> Outcome:
    """An attempt that did not come back (its worker or job died, after the engine's retries):
    recorded as a failure of the run, so that it counts towards max_attempts."""
    store.record_failure(config.out, spec.run_id, error)
    return Outcome(spec.run_id, "failed", f"{type(error).__name__}: {error}")


# --- local ------------------------------------------------------------------------------------


class LocalExecutor:
    """Each run in this process, one after another (no dependency; the default)."""

    def __init__(self, config: ExecutorConfig) -> None:
        self.config = config

    def run(
        self, config: SweepConfig, specs: Sequence[RunSpec], on_event: OnEvent = None
    ) -> Iterator[Outcome]:
        for spec in specs:
            yield attempt(
                config,
                spec,
                on_event,
                threads=self.config.cpus_per_run,
                processes=self.config.processes,
            )


# --- Ray --------------------------------------------------------------------------------------


def _ray_task(config: SweepConfig, spec: RunSpec, threads: int, processes: int) -> Outcome:
    """A Ray task: one attempt, on the GPUs Ray gave this task (none: no GPU at all)."""
    import ray

    if not ray.get_gpu_ids():
        # Ray leaves CUDA_VISIBLE_DEVICES alone for a task without GPUs; hide them, so that a
        # device="auto" run computes on the CPU instead of on a GPU Ray gave another task.
        os.environ["CUDA_VISIBLE_DEVICES"] = ""
    return attempt(config, spec, threads=threads, processes=processes)


class RayExecutor:
    """Each run a Ray task asking for ``cpus_per_run`` CPUs and ``gpus_per_run`` GPUs.

    Joins the cluster at ``ray_address``, or the one this process already started
    (``ray.init``), or starts a local one (shut down again at the end). A task whose worker dies
    is rerun by Ray (``RAY_MAX_RETRIES``); its claim died with it, so the rerun takes the run
    over and resumes it from its last checkpoint."""

    def __init__(self, config: ExecutorConfig) -> None:
        self.config = config
        self.ray = _require("ray", "ray")

    def run(
        self, config: SweepConfig, specs: Sequence[RunSpec], on_event: OnEvent = None
    ) -> Iterator[Outcome]:
        ray = self.ray
        if not specs:
            return
        started_here = not ray.is_initialized()
        if started_here:
            ray.init(address=self.config.ray_address)
        try:
            self._check_resources()
            task = ray.remote(_ray_task).options(
                num_cpus=self.config.threads,
                num_gpus=self.config.gpus_per_run,
                max_retries=RAY_MAX_RETRIES,
                name="llm-bridge-run",
            )
            threads, processes = self.config.threads, self.config.processes
            pending = {task.remote(config, spec, threads, processes): spec for spec in specs}
            try:
                while pending:
                    (ready,), _ = ray.wait(list(pending), num_returns=1)
                    spec = pending.pop(ready)
                    try:
                        yield ray.get(ready)
                    except (
                        ray.exceptions.RayError
                    ) as err:  # the worker died RAY_MAX_RETRIES+1 times
                        yield _lost(config, spec, err)
            finally:
                for ref in pending:  # the driver stopped early: stop its tasks too
                    ray.cancel(ref, force=True)
        finally:
            if started_here:
                ray.shutdown()

    def _check_resources(self) -> None:
        """Refuse a run no node can hold (Ray would wait for it forever)."""
        nodes = [n["Resources"] for n in self.ray.nodes() if n.get("Alive")]
        for name, want in (("CPU", self.config.threads), ("GPU", self.config.gpus_per_run)):
            most = max((node.get(name, 0) for node in nodes), default=0)
            if want > most:
                raise ValueError(
                    f"a run asks for {want} {name}s but no node of the Ray cluster has more "
                    f"than {most:g}; lower --{name.lower()}s-per-run or join another cluster "
                    "(--ray-address)"
                )


# --- Slurm ------------------------------------------------------------------------------------


class _SlurmAttempt:
    """The callable a Slurm job runs: one attempt. Checkpointable (submitit): when the job is
    preempted or about to time out, submitit calls ``checkpoint`` and requeues the same call;
    the requeued job claims the run again and ``train_dpo`` resumes it from its last
    checkpoint."""

    def __init__(self, config: SweepConfig, threads: int, processes: int) -> None:
        self.config = config
        self.threads = threads
        self.processes = processes

    def __call__(self, spec: RunSpec) -> Outcome:
        return attempt(self.config, spec, threads=self.threads, processes=self.processes)

    def checkpoint(self, spec: RunSpec):
        from submitit.helpers import DelayedSubmission

        return DelayedSubmission(self, spec)  # nothing to save: the run directory holds it


class SlurmExecutor:
    """The runs as one Slurm job array (submitit): a job per run with ``gpus_per_run`` GPUs,
    ``cpus_per_run`` cores and ``slurm_time`` minutes, on ``slurm_partition``, with the
    ``slurm_options`` passed to sbatch. Job logs go to ``OUT/slurm/<job id>_*``.

    The driver waits for the jobs; stopping it leaves them running (``llm-bridge status OUT``
    follows them, and rerunning the sweep picks up what they leave)."""

    def __init__(self, config: ExecutorConfig) -> None:
        self.config = config
        self.submitit = _require("submitit", "slurm")

    def executor(self, out: str | os.PathLike):
        """The configured ``submitit.AutoExecutor``."""
        c = self.config
        executor = self.submitit.AutoExecutor(
            folder=Path(out) / "slurm" / "%j", cluster=c.slurm_cluster
        )
        executor.update_parameters(
            name="llm-bridge",
            timeout_min=c.slurm_time,
            nodes=1,
            tasks_per_node=1,
            cpus_per_task=c.threads,
            gpus_per_node=c.gpus_per_run,
            slurm_partition=c.slurm_partition,
            slurm_array_parallelism=c.slurm_array_parallelism,
            slurm_additional_parameters=dict(
                (k.strip(), v.strip()) for k, v in (o.split("=", 1) for o in c.slurm_options)
            ),
        )
        return executor

    def run(
        self, config: SweepConfig, specs: Sequence[RunSpec], on_event: OnEvent = None
    ) -> Iterator[Outcome]:
        if not specs:
            return
        task = _SlurmAttempt(config, self.config.threads, self.config.processes)
        jobs = self.executor(config.out).map_array(task, list(specs))
        pending = list(zip(jobs, specs, strict=True))
        while pending:
            waiting = []
            for job, spec in pending:
                if not job.done():
                    waiting.append((job, spec))
                    continue
                try:
                    outcome = job.result()
                except Exception as err:  # the job died outside attempt (node failure, OOM)
                    outcome = _lost(config, spec, err)
                yield outcome
            pending = waiting
            if pending:
                time.sleep(SLURM_POLL_S)


EXECUTORS: dict[str, type] = {
    "local": LocalExecutor,
    "ray": RayExecutor,
    "slurm": SlurmExecutor,
}
"""Executor name -> class; each is built from an ``ExecutorConfig`` and has ``run``."""


def make_executor(config: ExecutorConfig):
    """The executor ``config`` names (its optional dependency imported: a clear ImportError
    naming the install command if it is missing)."""
    return EXECUTORS[config.executor](config)
