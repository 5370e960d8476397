"""The sweep: grid parsing, presets, shards, the results store, and resuming after a crash."""

import json
import math
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from llm_bridge import sweep as sweep_module
from llm_bridge.cli import main
from llm_bridge.results import (
    RunRow,
    claim,
    failures,
    is_claimed,
    read_rows,
    rebuild,
    record_failure,
    write_record,
)
from llm_bridge.sweep import PRESETS, SweepConfig, parse_grid, run_sweep

from .rows import TINY_GRID, make_row

# Two runs on tiny-random (rows.TINY_GRID).
TINY = TINY_GRID


def test_parse_grid():
    values = parse_grid("0:1:0.05")
    assert len(values) == 21 and values[3] == 0.15 and values[-1] == 1.0
    assert parse_grid(("0.3", "0:0.1:0.05", "0.3")) == (0.0, 0.05, 0.1, 0.3)
    for bad in ("0:1", "a", "0:1:0", "1:0:0.1", "1.5"):
        with pytest.raises(ValueError, match="p23 grid"):
            parse_grid(bad)


def test_config_validation():
    for field, value, match in [
        ("seeds", 0, "seeds"),
        ("probe", ("likelihood", "vibes"), "probe"),
        ("probe", ("sample", "sample"), "probe"),
        ("samples", 0, "samples"),
        ("shard", "2/2", "shard"),
        ("shard", "x", "shard"),
        ("train_preset", "gpu", "train_preset"),
        ("train", {"output_dir": "x"}, "may not set"),
        ("train", {"batch_size": 0}, "batch_size"),
        ("order", ("dog", "dog", "cat"), "distinct"),
        ("p12", 1.5, "p12"),
    ]:
        with pytest.raises(ValueError, match=match):
            SweepConfig(**{field: value})


def test_presets():
    quick = PRESETS["quick"]
    runs = quick.runs()
    assert len({r.order for r in runs}) == 1 and len({r.seed for r in runs}) == 1
    assert quick.probe == ("likelihood",)
    grid = sorted({r.p23 for r in runs})
    assert grid[0] == 0.0 and grid[-1] == 1.0  # the whole of [0, 1], as the paper
    # where DPO's optimum (theory) changes fastest: p13 around p23 = 0.01 (logit(0.99) +
    # logit(p23) = 0), p23 around 0.5; at least three grid points there
    assert sum(x <= 0.05 or 0.45 <= x <= 0.55 for x in grid) >= 3
    # the datasets realise p12 = 0.99 exactly: 99 of every 100 rows of (o1, o2)
    n12 = (quick.n + 1) // 2
    assert round(0.99 * n12, 9) == int(round(0.99 * n12))
    paper = PRESETS["paper"]
    assert len(paper.runs()) == 6 * 21 * 3  # six orders x p23 = 0, 0.05, ..., 1 x three seeds
    assert {r.order for r in paper.runs()} == {
        ("dog", "bird", "cat"),
        ("dog", "cat", "bird"),
        ("bird", "dog", "cat"),
        ("bird", "cat", "dog"),
        ("cat", "dog", "bird"),
        ("cat", "bird", "dog"),
    }
    assert paper.samples == 200 and "sample" in paper.probe and not paper.exact
    t = paper.train_config(paper.runs()[0])
    # Appendix C.1: one epoch, learning rate 5e-6, beta' = 0.1, 8-bit AdamW, full training
    assert (t.epochs, t.learning_rate, t.beta, t.optim, t.lora_r) == (
        1.0,
        5e-6,
        0.1,
        "adamw_bnb_8bit",
        0,
    )


def test_shards_partition_the_grid():
    config = SweepConfig(permute=True, p23=("0:1:0.25",), seeds=2)
    every = [r.run_id for r in config.runs()]
    assert len(every) == len(set(every)) == 6 * 5 * 2
    parts = [
        [
            r.run_id
            for r in SweepConfig(
                permute=True, p23=("0:1:0.25",), seeds=2, shard=f"{i}/4"
            ).shard_runs()
        ]
        for i in range(4)
    ]
    assert sorted(sum(parts, [])) == sorted(every)  # every run in exactly one shard
    assert all(14 <= len(p) <= 16 for p in parts)


def _fake_row(order, p23, seed=0, p13=0.5):
    return make_row(order, p23, seed, 0.999, 0.1, p13, n=8)


def test_store_rebuilds_results_in_canonical_order(tmp_path):
    rows = [
        _fake_row(("dog", "bird", "cat"), 0.5),
        _fake_row(("cat", "dog", "bird"), 0.1),
        _fake_row(("dog", "bird", "cat"), 0.1, seed=1),
        _fake_row(("dog", "bird", "cat"), 0.1, seed=0),
    ]
    for row in rows:  # written in any order ...
        write_record(tmp_path, row)
    rebuild(tmp_path)
    first = (tmp_path / "results.jsonl").read_bytes()
    other = tmp_path / "other"
    for row in reversed(rows):  # ... the same bytes
        write_record(other, row)
    rebuild(other)
    assert (other / "results.jsonl").read_bytes() == first
    got = read_rows(tmp_path)
    assert [(r.order[0], r.p23_data, r.seed) for r in got] == [
        ("cat", 0.1, 0),
        ("dog", 0.1, 0),
        ("dog", 0.1, 1),
        ("dog", 0.5, 0),
    ]
    assert got[1] == rows[3] and RunRow.from_json(got[1].to_json()) == rows[3]
    lines = (tmp_path / "results.csv").read_text().splitlines()
    assert len(lines) == 5 and lines[0].startswith("run_id,order,p12_data")
    # a damaged record is skipped with a warning naming it, never half-read
    bad = tmp_path / "runs" / rows[0].run_id / "result.json"
    bad.write_text(bad.read_text()[:40])
    with pytest.warns(UserWarning, match="unreadable run record"):
        assert len(read_rows(tmp_path)) == 3


def test_a_claim_is_exclusive_and_dies_with_its_process(tmp_path):
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from llm_bridge.results import claim\n"
            f"with claim({str(tmp_path)!r}, 'r1') as mine:\n"
            "    print(mine, flush=True); time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "True"
        assert is_claimed(tmp_path, "r1")
        with claim(tmp_path, "r1") as mine:
            assert not mine
        with claim(tmp_path, "r2") as mine:  # another run is free
            assert mine
    finally:
        holder.kill()
        holder.wait()
    assert not is_claimed(tmp_path, "r1")  # SIGKILL released it


def test_failures_are_recorded_with_their_traceback(tmp_path):
    try:
        raise RuntimeError("out of memory")
    except RuntimeError as err:
        assert record_failure(tmp_path, "r1", err) == 1
        assert record_failure(tmp_path, "r1", err) == 2
    with open(tmp_path / "runs" / "r1" / "failures.jsonl", "a") as fh:
        fh.write('{"error": "cut')  # a torn line
    found = failures(tmp_path, "r1")
    assert len(found) == 2 and found[0]["error"] == "RuntimeError: out of memory"
    assert "raise RuntimeError" in found[0]["traceback"]


def test_other_settings_in_the_same_directory_are_refused(tmp_path):
    sweep_module.check_settings(tmp_path, SweepConfig(**TINY).settings())
    # a different grid is fine, other shared settings are not
    sweep_module.check_settings(tmp_path, SweepConfig(**{**TINY, "seeds": 3}).settings())
    with pytest.raises(ValueError, match="other settings"):
        sweep_module.check_settings(tmp_path, SweepConfig(**{**TINY, "n": 16}).settings())
    with pytest.raises(ValueError, match="other settings"):  # Figure 3 pools runs by p23
        sweep_module.check_settings(tmp_path, SweepConfig(**{**TINY, "p12": 0.5}).settings())


class _Crash(Exception):
    pass


@pytest.mark.slow
def test_a_failed_run_is_recorded_and_retried_without_lost_or_repeated_rows(tmp_path):
    config = SweepConfig(out=str(tmp_path), **TINY)
    first, second = (r.run_id for r in config.runs())
    seen = []

    def crash_after_training_the_second(stage, spec):
        seen.append((stage, spec.run_id))
        if stage == "trained" and spec.run_id == second:
            raise _Crash("lost the GPU")

    result = run_sweep(config, progress=False, on_event=crash_after_training_the_second)
    assert result.done == [first] and list(result.failed) == [second]
    assert "lost the GPU" in result.failed[second]
    assert [r.run_id for r in read_rows(tmp_path)] == [first]
    assert "_Crash: lost the GPU" in failures(tmp_path, second)[0]["error"]
    first_line = (tmp_path / "results.jsonl").read_text().splitlines()[0]

    seen.clear()
    result = run_sweep(config, progress=False, on_event=lambda stage, spec: seen.append(stage))
    assert result.done == [second] and result.skipped == [first] and not result.failed
    assert seen[0] == "start" and seen.count("start") == 1  # the first run is not redone
    lines = (tmp_path / "results.jsonl").read_text().splitlines()
    assert len(lines) == 2 and lines[0] == first_line
    rows = read_rows(tmp_path)
    assert [r.run_id for r in rows] == [first, second]
    # the second run's training had finished before the crash: it was loaded, not redone
    manifest = json.loads((tmp_path / "runs" / second / "manifest.json").read_text())
    assert manifest["global_step"] == 1 and rows[1].train.steps == 1
    for row in rows:
        for pair in ("p12", "p23", "p13"):
            r = row.estimate("likelihood", pair)
            assert 0.0 < r.p < 1.0 and r.ci_low <= r.p <= r.ci_high
            assert r.logit == pytest.approx(math.log(r.p / (1 - r.p)), rel=1e-9)
    assert len((tmp_path / "results.csv").read_text().splitlines()) == 3
    assert not (tmp_path / "runs" / first / "checkpoints").exists()  # kept: model/, not states
    assert (tmp_path / "runs" / first / "model" / "adapter_model.safetensors").is_file()

    # a third call has nothing to do
    again = run_sweep(config, progress=False)
    assert again.done == [] and len(again.rows) == 2


def test_a_run_that_keeps_failing_is_given_up_after_max_attempts(tmp_path):
    config = SweepConfig(out=str(tmp_path), **{**TINY, "p23": ("0.2",)})
    (spec,) = config.runs()
    for _ in range(2):
        record_failure(tmp_path, spec.run_id, RuntimeError("bad"))
    result = run_sweep(config, progress=False, max_attempts=2)
    assert result.given_up == [spec.run_id] and not result.done and not result.failed


@pytest.mark.slow
def test_sweep_killed_mid_run_then_resumed_from_the_command_line(tmp_path):
    # A real SIGKILL (no cleanup runs) while the first run is being probed, then the CLI.
    out = tmp_path / "sweep"
    script = textwrap.dedent(
        f"""
        import os, signal
        from llm_bridge.sweep import SweepConfig, run_sweep
        config = SweepConfig(out={str(out)!r}, **{TINY!r})
        def kill(stage, spec):
            if stage.startswith("probe"):
                os.kill(os.getpid(), signal.SIGKILL)
        run_sweep(config, progress=False, on_event=kill)
        """
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    killed = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True)
    assert killed.returncode == -signal.SIGKILL
    assert not read_rows(out)
    flags = [
        "--model",
        "tiny-random",
        "--p12",
        "0.75",
        "--p23",
        "0.2,0.8",
        "--seeds",
        "1",
        "--n",
        "8",
    ]
    flags += ["--train-max-steps", "1", "--train-batch-size", "4", "--train-lora-r", "4"]
    flags += ["--train-learning-rate", "0.01", "--out", str(out), "--quiet"]
    resumed = subprocess.run(
        [sys.executable, "-m", "llm_bridge.cli", "sweep", *flags],
        env=env,
        capture_output=True,
        text=True,
    )
    assert resumed.returncode == 0, resumed.stderr
    assert "2 of 2 runs finished" in resumed.stdout and "2 done now" in resumed.stdout
    lines = (out / "results.jsonl").read_text().splitlines()
    assert sorted(json.loads(x)["run_id"] for x in lines) == sorted(
        r.run_id for r in SweepConfig(out=str(out), **TINY).runs()
    )
    # plot and analyze read the same directory
    assert main(["plot", str(out), "--out", str(tmp_path / "fig3.png")]) == 0
    assert (tmp_path / "fig3.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert main(["analyze", str(out), "--json", str(tmp_path / "a.json")]) == 0
    analysis = json.loads(Path(tmp_path / "a.json").read_text())
    assert len(analysis["rows"]) == 2 and "2 run(s)" in analysis["summary"]
