"""The executors (local, Ray, Slurm through submitit) give the same results files for one grid;
a worker killed mid-run, a preempted job and two sweeps over one directory lose and duplicate
nothing; ``llm-bridge status`` reads where the runs stand; N processes train one run."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from llm_bridge import executors
from llm_bridge.cli import build_parser, main
from llm_bridge.executors import ExecutorConfig, MissingExtraError
from llm_bridge.results import (
    claim,
    failures,
    is_claimed,
    read_rows,
    record_failure,
    record_grid,
    status,
    write_record,
)
from llm_bridge.sweep import SweepConfig, run_sweep

from .rows import TINY_GRID, make_row

# Four runs on tiny-random (rows.TINY_GRID with two seeds).
GRID = {**TINY_GRID, "seeds": 2}
# One torch thread per run on every executor, so that all compute the same floats.
THREADS = 1
RTOL_DDP_F32 = 1e-5  # two processes average float32 gradients in another order than one
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


def results_without_timing(out: Path, run_ids=None) -> tuple[list[str], list[str]]:
    """results.jsonl and results.csv with the timing fields (and only those) taken out; only
    the lines of ``run_ids`` (and the CSV header) when given."""
    lines = []
    for line in (out / "results.jsonl").read_text().splitlines():
        row = json.loads(line)
        row.pop("timing")
        if run_ids is None or row["run_id"] in run_ids:
            lines.append(json.dumps(row, sort_keys=True))
    header, *rows = (out / "results.csv").read_text().splitlines()
    assert header.endswith(",seconds")  # the last column: cut it off each line
    rows = [r for r in rows if run_ids is None or r.split(",", 1)[0] in run_ids]
    return lines, [line.rsplit(",", 1)[0] for line in [header, *rows]]


@pytest.fixture(scope="module")
def local(tmp_path_factory):
    """The grid done by the local executor: its directory."""
    out = tmp_path_factory.mktemp("local")
    result = run_sweep(
        SweepConfig(out=str(out), **GRID),
        executor=ExecutorConfig(cpus_per_run=THREADS),
        progress=False,
    )
    assert len(result.done) == 4 and not result.failed
    return out


def assert_same_results(out: Path, local: Path, config: SweepConfig) -> None:
    """``out``'s results files are the local executor's for the runs of ``config`` (up to the
    timing fields): byte for byte, whatever executor ran them and in what order."""
    ids = {r.run_id for r in config.runs()}
    assert results_without_timing(out) == results_without_timing(local, ids)


def assert_each_run_once(out: Path, config: SweepConfig) -> None:
    """Every run has its record, results.jsonl one line per run, each run trained once."""
    ids = [r.run_id for r in config.runs()]
    assert [r.run_id for r in read_rows(out)] == ids
    lines = (out / "results.jsonl").read_text().splitlines()
    assert [json.loads(line)["run_id"] for line in lines] == ids
    for run_id in ids:
        log = (out / "runs" / run_id / "train_log.jsonl").read_text().splitlines()
        assert [json.loads(line)["step"] for line in log] == [1]  # one step, logged once


# --- configuration, errors, status (fast) --------------------------------------------------


def test_executor_config_validation():
    for field, value, match in [
        ("executor", "kubernetes", "executor"),
        ("gpus_per_run", -1, "gpus_per_run"),
        ("cpus_per_run", 0, "cpus_per_run"),
        ("slurm_time", 0, "slurm_time"),
        ("slurm_options", ("account",), "slurm_options"),
        ("slurm_cluster", "pbs", "slurm_cluster"),
    ]:
        with pytest.raises(ValueError, match=match):
            ExecutorConfig(**{field: value})
    assert sorted(executors.EXECUTORS) == ["local", "ray", "slurm"]
    assert ExecutorConfig(gpus_per_run=4).processes == 4 and ExecutorConfig().processes == 1
    args = build_parser().parse_args(
        ["sweep", "--executor", "slurm", "--gpus-per-run", "2", "--cpus-per-run", "8"]
        + [
            "--slurm-partition",
            "gpu",
            "--slurm-time",
            "90",
            "--slurm-options",
            "account=lab,qos=hi",
        ]
    )
    assert (args.executor, args.gpus_per_run, args.cpus_per_run) == ("slurm", 2, 8)
    assert args.slurm_options == ("account=lab", "qos=hi") and args.max_attempts == 3


def test_slurm_parameters_reach_submitit(tmp_path, monkeypatch):
    pytest.importorskip("submitit")
    fake = tmp_path / "bin"  # submitit looks for srun before it builds a Slurm executor
    fake.mkdir()
    (fake / "srun").write_text("#!/bin/sh\n")
    (fake / "srun").chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake}{os.pathsep}{os.environ['PATH']}")
    config = ExecutorConfig(
        executor="slurm",
        gpus_per_run=2,
        cpus_per_run=8,
        slurm_partition="gpu",
        slurm_time=90,
        slurm_options=("account=lab", "constraint=a100|h100"),
    )
    params = executors.SlurmExecutor(config).executor(tmp_path).parameters
    want = dict(gpus_per_node=2, cpus_per_task=8, partition="gpu", time=90, ntasks_per_node=1)
    assert {k: params[k] for k in want} == want
    assert params["additional_parameters"] == {"account": "lab", "constraint": "a100|h100"}


def test_a_missing_extra_names_the_install_command(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray raises ImportError
    with pytest.raises(MissingExtraError, match=r"pip install -e '\.\[ray\]'"):
        run_sweep(SweepConfig(out=str(tmp_path / "s"), **GRID), executor="ray", progress=False)
    assert not (tmp_path / "s").exists()  # refused before anything was written
    flags = ["sweep", "--model", "tiny-random", "--out", str(tmp_path / "s"), "--executor", "ray"]
    assert main(flags) == 2  # the CLI prints it as one line


def test_ray_refuses_a_run_larger_than_the_cluster():
    class Ray:  # two nodes of one GPU each (and a dead one with eight)
        def nodes(self):
            one = {"Alive": True, "Resources": {"CPU": 16.0, "GPU": 1.0}}
            return [one, one, {"Alive": False, "Resources": {"CPU": 64.0, "GPU": 8.0}}]

    ray = executors.RayExecutor.__new__(executors.RayExecutor)
    ray.ray = Ray()
    ray.config = ExecutorConfig(executor="ray", gpus_per_run=1, cpus_per_run=16)
    ray._check_resources()
    ray.config = ExecutorConfig(executor="ray", gpus_per_run=2)
    with pytest.raises(ValueError, match="asks for 2 GPUs but no node .* has more than 1"):
        ray._check_resources()


def test_status_of_a_sweep_read_from_its_files(tmp_path, capsys):
    rows = [make_row(("dog", "bird", "cat"), p23, 0, 0.99, 0.1, 0.5) for p23 in (0.1, 0.2)]
    ids = [r.run_id for r in rows] + ["running", "failed", "given_up", "pending"]
    record_grid(tmp_path, ids[:3], max_attempts=2)
    assert record_grid(tmp_path, ids[2:], max_attempts=2) == ids  # the union, first asked first
    for row in rows:
        write_record(tmp_path, row)
    record_failure(tmp_path, "failed", RuntimeError("CUDA out of memory"))
    for _ in range(2):
        record_failure(tmp_path, "given_up", ValueError("bad data"))
    with claim(tmp_path, "running") as mine:  # held here: is_claimed sees it from any process
        assert mine and is_claimed(tmp_path, "running")
        state = status(tmp_path)
        assert main(["status", str(tmp_path)]) == 0
    assert state.done == ids[:2] and state.running == ["running"] and state.pending == ["pending"]
    assert state.failed == ["failed"] and state.given_up == ["given_up"]
    assert state.summary() == "done 2, running 1, failed 1, given up 1, pending 1"
    printed = capsys.readouterr().out
    assert ["done", "2"] in [line.split() for line in printed.splitlines()]
    assert "running  running" in printed
    assert "failed   failed  (1 of 2): RuntimeError: CUDA out of memory" in printed
    assert "(2 given up): ValueError: bad data" in printed
    assert not is_claimed(tmp_path, "running") and status(tmp_path).pending == [
        "running",
        "pending",
    ]
    assert main(["status", str(tmp_path / "nothing")]) == 2


# --- the executors on the tiny grid (slow) -------------------------------------------------


@pytest.mark.slow
def test_local_executor_records_the_grid(local):
    out = local
    config = SweepConfig(out=str(out), **GRID)
    assert_each_run_once(out, config)
    state = status(out)
    assert len(state.done) == 4 and state.total == 4
    again = run_sweep(config, executor=ExecutorConfig(cpus_per_run=THREADS), progress=False)
    assert again.done == [] and len(again.skipped) == 4


def _kill_the_first_worker(out: Path, killed: list[str], deadline_s: float = 240.0) -> None:
    """SIGKILL the first process that claims a run in ``out`` (a worker mid-run), once."""
    deadline = time.time() + deadline_s
    while time.time() < deadline:
        for path in (out / "runs").glob("*/.claim"):
            run_id = path.parent.name
            if run_id.startswith("reference_") or not is_claimed(out, run_id):
                continue
            holder = path.read_text().split()  # host pid time, once the claim is written
            if len(holder) == 3 and int(holder[1]) != os.getpid():
                os.kill(int(holder[1]), signal.SIGKILL)
                killed.append(run_id)
                return
        time.sleep(0.02)


@pytest.mark.slow
def test_ray_gives_the_local_results_and_retries_a_killed_task(local, tmp_path):
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, num_gpus=2, include_dashboard=False, log_to_driver=False)
    try:
        config = SweepConfig(out=str(tmp_path), **GRID)
        killed: list[str] = []
        killer = threading.Thread(target=_kill_the_first_worker, args=(tmp_path, killed))
        killer.start()
        # Two declared GPUs, one per task: Ray schedules them; with no CUDA the runs use the CPU.
        result = run_sweep(
            config,
            executor=ExecutorConfig(executor="ray", gpus_per_run=1, cpus_per_run=THREADS),
            progress=False,
        )
        killer.join()
    finally:
        ray.shutdown()
    assert len(killed) == 1  # a worker died mid-run ...
    assert sorted(result.done) == sorted(r.run_id for r in config.runs()) and not result.failed
    assert not failures(tmp_path, killed[0])  # ... and Ray ran its task again
    assert_each_run_once(tmp_path, config)
    assert_same_results(tmp_path, local, config)


@pytest.mark.slow
def test_slurm_through_submitit_debug_gives_the_local_results(local, tmp_path):
    pytest.importorskip("submitit")
    config = SweepConfig(out=str(tmp_path), **GRID)
    executor = ExecutorConfig(executor="slurm", slurm_cluster="debug", cpus_per_run=THREADS)
    result = run_sweep(config, executor=executor, progress=False)
    assert len(result.done) == 4 and not result.failed
    assert_same_results(tmp_path, local, config)


def _preempt_the_first_job(out: Path, signalled: list[str], deadline_s: float = 240.0) -> None:
    """Send the first job that claims a run Slurm's preemption signal (SIGUSR2), once."""
    deadline = time.time() + deadline_s
    while time.time() < deadline:
        for path in (out / "runs").glob("*/.claim"):
            holder = path.read_text().split()
            if not path.parent.name.startswith("reference_") and len(holder) == 3:
                if is_claimed(out, path.parent.name):
                    os.kill(int(holder[1]), signal.SIGUSR2)
                    signalled.append(path.parent.name)
                    return
        time.sleep(0.02)


@pytest.mark.slow
def test_slurm_through_submitit_local_jobs_requeues_a_preempted_job(local, tmp_path):
    pytest.importorskip("submitit")
    config = SweepConfig(out=str(tmp_path), **{**GRID, "p23": ("0.8",), "seeds": 1})  # one job
    signalled: list[str] = []
    preempt = threading.Thread(target=_preempt_the_first_job, args=(tmp_path, signalled))
    preempt.start()
    executor = ExecutorConfig(executor="slurm", slurm_cluster="local", cpus_per_run=THREADS)
    result = run_sweep(config, executor=executor, progress=False)
    preempt.join()
    assert len(signalled) == 1 and len(result.done) == 1 and not result.failed
    log = "".join(p.read_text() for p in (tmp_path / "slurm").rglob("*_log.out"))
    assert "this job is preempted" in log and "Requeued job" in log  # submitit's own words
    assert log.count("Starting with JobEnvironment") == 2  # the job ran again
    assert not failures(tmp_path, signalled[0])
    assert_each_run_once(tmp_path, config)
    assert_same_results(tmp_path, local, config)


@pytest.mark.slow
def test_two_sweeps_over_one_directory_do_each_run_once(local, tmp_path):
    # A sweep in another process takes the first run; this one starts while it runs.
    grid = {**GRID, "seeds": 1}
    config = SweepConfig(out=str(tmp_path), **grid)
    first, second = (r.run_id for r in config.runs())
    script = textwrap.dedent(
        f"""
        import json
        from llm_bridge.executors import ExecutorConfig
        from llm_bridge.sweep import SweepConfig, run_sweep
        result = run_sweep(
            SweepConfig(out={str(tmp_path)!r}, **{grid!r}),
            executor=ExecutorConfig(cpus_per_run={THREADS}),
            progress=False,
        )
        print(json.dumps({{"done": result.done, "failed": list(result.failed)}}))
        """
    )
    other = subprocess.Popen(
        [sys.executable, "-c", script], env=ENV, stdout=subprocess.PIPE, text=True
    )
    try:
        deadline = time.time() + 120
        while not is_claimed(tmp_path, first) and other.poll() is None and time.time() < deadline:
            time.sleep(0.02)
        here = run_sweep(config, executor=ExecutorConfig(cpus_per_run=THREADS), progress=False)
    finally:
        report = json.loads(other.communicate(timeout=300)[0].splitlines()[-1])
    assert other.returncode == 0 and not report["failed"] and not here.failed
    assert here.busy == [first] and here.done == [second]  # it left the held run to the other
    assert report["done"] == [first]  # which did that one only
    assert_each_run_once(tmp_path, config)
    assert_same_results(tmp_path, local, config)


# --- one run on several processes (slow) ---------------------------------------------------


@pytest.mark.slow
def test_a_run_on_two_gpus_trains_in_two_processes(tmp_path):
    # gpus_per_run=2 trains with torchrun --nproc-per-node 2 (where there is no CUDA: two CPU
    # processes, gloo), the launcher of `accelerate launch --multi_gpu`, and probes here. The
    # global batch is split over the processes, so both steps match one process's training up
    # to float32 reduction order.
    grid = {**GRID, "p23": ("0.2",), "seeds": 1, "train": {**GRID["train"], "max_steps": 2}}
    runs = {}
    for gpus in (2, 0):
        config = SweepConfig(out=str(tmp_path / f"gpus={gpus}"), **grid)
        executor = ExecutorConfig(gpus_per_run=gpus, cpus_per_run=THREADS)
        result = run_sweep(config, executor=executor, progress=False)
        assert len(result.done) == 1 and not result.failed, result.failed
        (row,) = read_rows(config.out)
        run = Path(config.out) / "runs" / row.run_id
        manifest = json.loads((run / "manifest.json").read_text())
        log = [json.loads(line) for line in (run / "train_log.jsonl").read_text().splitlines()]
        runs[gpus] = row, manifest, log
    (two, manifest, log), (one, _, log_one) = runs[2], runs[0]
    assert manifest["processes"] == 2 and manifest["global_step"] == 2
    assert [r["step"] for r in log] == [1, 2]  # the main process alone wrote the log
    assert not (tmp_path / "gpus=2" / "runs" / two.run_id / "cache").exists()
    for mine, alone in zip(log, log_one, strict=True):
        for key in ("loss", "grad_norm", "rewards/margins"):
            assert mine[key] == pytest.approx(alone[key], rel=RTOL_DDP_F32, abs=RTOL_DDP_F32), key
    for pair in ("p12", "p23", "p13"):
        got, want = two.estimate("likelihood", pair), one.estimate("likelihood", pair)
        assert got.logit == pytest.approx(want.logit, rel=RTOL_DDP_F32, abs=RTOL_DDP_F32)
