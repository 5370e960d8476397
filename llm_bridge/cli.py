"""``llm-bridge`` commands, their flags generated from the config dataclasses.

    llm-bridge synth --order dog,bird,cat --p12 0.99 --p23 0.3 --n 256 --exact --out data/d.jsonl
    llm-bridge train --model smollm2 --preset cpu --data data/d.jsonl --output-dir runs/d
    llm-bridge train --model smollm2 --preset cpu --data-p23 0.3 --output-dir runs/d
    llm-bridge sweep --preset quick --model smollm2 --out runs/quick
    llm-bridge sweep --preset paper --model ID --out runs/paper --executor ray --gpus-per-run 1
    llm-bridge status runs/paper
    llm-bridge plot runs/quick --out runs/quick/fig3.png
    llm-bridge analyze runs/quick --json runs/quick/analysis.json

Each command is a pair of functions, ``_add_<name>(subparsers)`` (declares the flags, mostly
via ``_config.add_arguments`` on a config dataclass) and ``_run_<name>(args) -> int`` (does the
work, shows progress on stderr, prints one summary line on stdout). To add a command, write
such a pair and call ``_add_<name>`` in ``build_parser``.

Errors a user can fix (bad values, missing files or models) print one line and exit with 2;
Ctrl-C exits with 130 after saying how to resume.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

# Before torch loads OpenMP: idle threads sleep rather than spin. On a machine whose cores other
# work shares, spinning threads made a DPO step of SmolLM2 ten times slower (docs/llm_training.md).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from . import __version__
from ._config import add_arguments, given
from .probe import METHODS as PROBE_METHODS

__all__ = ["build_parser", "main"]


class _UserError(Exception):
    """A problem the user can fix; reported in one line."""


# --- synth --------------------------------------------------------------------------------


def _add_synth(sub: argparse._SubParsersAction) -> None:
    from .data import DatasetConfig

    p = sub.add_parser(
        "synth",
        help="write a preference dataset D(order, p12, p23) as JSONL + manifest",
        description="Synthesize the paper's preference dataset (Appendix C.2) and write it as "
        "JSONL with a manifest beside it (x.jsonl -> x.manifest.json).",
    )
    add_arguments(p, DatasetConfig, title="dataset")
    p.add_argument("--out", required=True, metavar="PATH", help="JSONL file to write")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_run_synth)


def _describe(counts: dict) -> str:
    parts = []
    for pair, c in counts["pairs"].items():
        if c["n"]:
            parts.append(
                f"{pair}: {c['option_i']} over {c['option_j']} "
                f"{c['i_preferred']}/{c['n']} = {c['p_hat']:.3f}"
            )
    return "; ".join(parts)


def _run_synth(args: argparse.Namespace) -> int:
    from .data import DatasetConfig, make_dataset, save_jsonl, summarize

    start = time.time()
    cfg = DatasetConfig(**given(args, DatasetConfig))
    dataset = make_dataset(**_kwargs(cfg), progress=not args.quiet)
    save_jsonl(dataset, args.out)
    print(
        f"llm-bridge synth: {len(dataset)} rows -> {args.out} "
        f"({_describe(summarize(dataset))}) in {time.time() - start:.1f} s"
    )
    return 0


def _kwargs(config) -> dict:
    """A dataclass's fields as keyword arguments."""
    import dataclasses

    return {f.name: getattr(config, f.name) for f in dataclasses.fields(config)}


# --- train --------------------------------------------------------------------------------


def _add_train(sub: argparse._SubParsersAction) -> None:
    from ._train_config import PRESETS, DPOTrainConfig
    from .data import DatasetConfig

    p = sub.add_parser(
        "train",
        help="DPO-train a model on a preference dataset (resumes an interrupted run)",
        description="DPO-train a model with TRL. The dataset is a JSONL file (--data) or is "
        "synthesized from the --data-* flags. A preset fills the training settings; any "
        "flag given overrides it. Rerunning an interrupted command resumes it.",
    )
    p.add_argument(
        "--model",
        default="smollm2",
        help="'smollm2' (embedded), 'tiny-random', a Hugging Face id or a local path "
        "(default: smollm2)",
    )
    p.add_argument(
        "--trust-remote-code",
        action="store_true",
        help="allow the model's own Python code from the hub (off by default)",
    )
    p.add_argument(
        "--preset",
        default="paper",
        choices=sorted(PRESETS),
        help="starting settings: 'paper' (Appendix C.1, for a GPU) or 'cpu' (LoRA, minutes "
        "on a CPU); the defaults listed below are the paper's (default: paper)",
    )
    p.add_argument("--data", metavar="PATH", help="a dataset JSONL written by `llm-bridge synth`")
    add_arguments(p, DatasetConfig, prefix="data", title="dataset (used when --data is not given)")
    add_arguments(p, DPOTrainConfig, title="training")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_run_train)


def _run_train(args: argparse.Namespace) -> int:
    from ._train_config import DPOTrainConfig, preset
    from .data import DatasetConfig, load_jsonl, make_dataset
    from .models import load_model
    from .train import train_dpo

    start = time.time()
    config = preset(args.preset, **given(args, DPOTrainConfig))
    data_flags = given(args, DatasetConfig, prefix="data")
    if args.data is not None:
        if data_flags:
            raise _UserError(
                "give either --data or the --data-* flags that synthesize a dataset, not both"
            )
        dataset = load_jsonl(args.data)
    else:
        dataset = make_dataset(**_kwargs(DatasetConfig(**data_flags)), progress=not args.quiet)
    model, tokenizer = load_model(
        args.model,
        device=config.device,
        trust_remote_code=args.trust_remote_code,
        progress=not args.quiet,
    )
    result = train_dpo(model, tokenizer, dataset, config, progress=not args.quiet)
    if int(os.environ.get("RANK", "0")) != 0:
        return 0  # under accelerate launch / torchrun, the main process reports
    log = result.last_log
    resumed = f", resumed from {result.resumed_from}" if result.resumed_from else ""
    print(
        f"llm-bridge train: {args.model} on {len(dataset)} pairs, {result.global_step} steps "
        f"in {time.time() - start:.0f} s{resumed}; last loss {log.get('loss', float('nan')):.4f}, "
        f"reward accuracy {log.get('rewards/accuracies', float('nan')):.2f}, "
        f"margin {log.get('rewards/margins', float('nan')):.3f} -> {result.model_dir}"
    )
    return 0


# --- sweep --------------------------------------------------------------------------------


def _add_sweep(sub: argparse._SubParsersAction) -> None:
    from ._train_config import DPOTrainConfig
    from .executors import ExecutorConfig
    from .sweep import PRESETS, SweepConfig

    p = sub.add_parser(
        "sweep",
        help="the paper's grid: dataset -> DPO -> probes per run, resumable, shardable",
        description="Train one model per grid point (order, p23, seed) and probe its learned "
        "p12, p23, p13. Each finished run is added to OUT/results.jsonl (and results.csv); "
        "rerunning the command skips finished runs and retries failed ones. The runs execute "
        "here one after another, as Ray tasks or as a Slurm job array (--executor). A preset "
        "fills the settings; any flag given overrides it.",
    )
    p.add_argument(
        "--preset",
        choices=sorted(PRESETS),
        help="'quick' (CPU, 8 runs, about 16 minutes with smollm2), 'cpu-full' (the paper's grid "
        "on a CPU, 42 runs, hours) or 'paper' (Section 4 on a GPU); "
        "without it the defaults below apply",
    )
    add_arguments(p, SweepConfig, skip=("train",), title="sweep")
    add_arguments(
        p,
        DPOTrainConfig,
        prefix="train",
        skip=("output_dir", "seed", "resume"),
        title="training overrides (on top of --train-preset)",
    )
    add_arguments(p, ExecutorConfig, title="executor (where the runs execute)")
    p.add_argument(
        "--max-attempts",
        type=int,
        default=3,
        metavar="N",
        help="a run that failed this many times is no longer retried (default: 3)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_run_sweep)


def _run_sweep(args: argparse.Namespace) -> int:
    import dataclasses

    from ._train_config import DPOTrainConfig
    from .executors import ExecutorConfig
    from .report import default_method
    from .sweep import SweepConfig, preset, run_sweep

    if args.max_attempts < 1:
        raise _UserError(f"--max-attempts must be >= 1, got {args.max_attempts}")
    executor = ExecutorConfig(**given(args, ExecutorConfig))
    flags = given(args, SweepConfig)
    train = given(args, DPOTrainConfig, prefix="train")
    if args.preset is not None:
        base = preset(args.preset)
        config = dataclasses.replace(base, **flags, train={**base.train, **train})
    else:
        config = SweepConfig(**flags, train=train)
    result = run_sweep(
        config, executor=executor, progress=not args.quiet, max_attempts=args.max_attempts
    )
    rows = result.rows
    mine = f", shard {config.shard}: {result.in_shard} runs" if config.shard != "0/1" else ""
    learned = ""
    if rows:
        method = default_method(rows)
        p13 = [r.estimate(method, "p13").p for r in rows]
        learned = f"; learned p13 ({method}) from {min(p13):.3g} to {max(p13):.3g}"
    problems = ""
    if result.failed or result.given_up or result.busy:
        problems = (
            f"; {len(result.failed)} failed now, {len(result.given_up)} given up, "
            f"{len(result.busy)} held by another process (`llm-bridge status {config.out}`)"
        )
    print(
        f"llm-bridge sweep: {len(rows)} of {result.total} runs finished in {config.out}{mine} "
        f"({len(result.done)} done now, {len(result.skipped)} already done) in "
        f"{result.seconds:.0f} s{learned}{problems} -> {result.out / 'results.jsonl'}"
    )
    return 0


# --- status -------------------------------------------------------------------------------


def _add_status(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "status",
        help="where a sweep's runs stand: done, running, failed, given up, pending",
        description="Read a sweep's directory (also while the sweep runs elsewhere: Ray, "
        "Slurm) and print how many of its runs are done, running (claimed by a live process), "
        "failed (retried by the next `llm-bridge sweep`), given up and pending, with the last "
        "error of each failed run and who runs each running one.",
    )
    p.add_argument("dir", metavar="DIR", help="a sweep's output directory")
    p.add_argument(
        "--rebuild",
        action="store_true",
        help="also rewrite DIR/results.jsonl and results.csv from the finished runs' records",
    )
    p.set_defaults(func=_run_status)


def _run_status(args: argparse.Namespace) -> int:
    from pathlib import Path

    from . import results as store

    out = Path(args.dir)
    if not (out / store.GRID).is_file():
        raise _UserError(f"no sweep in {out} (no {store.GRID}); run `llm-bridge sweep --out {out}`")
    state = store.status(out)
    print(f"llm-bridge status: {out}, {state.total} runs")
    print(state.table())
    for run_id in state.running:
        print(f"running  {run_id}  ({store.claimed_by(out, run_id)})")
    for run_id in state.failed + state.given_up:
        errors = store.failures(out, run_id)
        limit = "given up" if run_id in state.given_up else f"of {state.max_attempts}"
        print(f"failed   {run_id}  ({len(errors)} {limit}): {errors[-1]['error']}")
    if args.rebuild:
        rows = store.rebuild(out)
        print(f"llm-bridge status: {len(rows)} runs -> {out / store.RESULTS}")
    return 0


# --- plot and analyze ---------------------------------------------------------------------


def _add_analysis_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("dir", metavar="DIR", help="a sweep's output directory (holds results.jsonl)")
    p.add_argument(
        "--method",
        choices=list(PROBE_METHODS),
        help="the probe whose numbers are used (default: likelihood when present)",
    )
    p.add_argument(
        "--M",
        type=float,
        default=10.0,
        dest="M",
        help="threshold of the M-sensitive region Omega_M (default: 10)",
    )
    p.add_argument(
        "--link",
        default="logistic",
        choices=["logistic", "probit", "cauchit"],
        help="the pairwise model g of Lemma 1 (default: logistic, Bradley-Terry)",
    )


def _rows(directory: str) -> list:
    from pathlib import Path

    from .results import SETTINGS, read_rows

    if not (Path(directory) / SETTINGS).is_file():
        raise _UserError(f"no sweep in {directory}; run `llm-bridge sweep --out {directory}`")
    rows = read_rows(directory)
    if not rows:
        raise _UserError(f"the sweep in {directory} holds no finished run yet")
    return rows


def _add_plot(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "plot",
        help="Figure 3 from a sweep: learned p13 and p23 against the dataset's p23",
        description="Draw Figure 3: learned p13 and p23 (mean and one standard deviation over "
        "seeds) against the dataset's p23, with the Bradley-Terry-implied p13 and the "
        "M-sensitive region drawn over it; one panel per order.",
    )
    _add_analysis_flags(p)
    p.add_argument("--out", required=True, metavar="FILE", help="image to write (.png, .pdf, ...)")
    p.set_defaults(func=_run_plot)


def _run_plot(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from .plot import save_figure3
    from .results import SETTINGS, read_references

    rows = _rows(args.dir)
    settings = json.loads((Path(args.dir) / SETTINGS).read_text())
    path = save_figure3(
        rows,
        args.out,
        method=args.method,
        M=args.M,
        link=args.link,
        references=read_references(args.dir),
        beta=(settings.get("train") or {}).get("beta"),
    )
    print(f"llm-bridge plot: {len(rows)} runs -> {path}")
    return 0


def _add_analyze(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "analyze",
        help="a sweep's learned preferences through prefjax: implied p13, local M, Omega_M",
        description="For each finished run: the p13 that the pairwise model implies from the "
        "learned p12 and p23 (Lemma 1), the local sensitivity |dp13/dp12|, membership of "
        "Omega_M, and whether the learned p13 is consistent with the implied one. Prints a "
        "summary paragraph; --json writes it with one row per run.",
    )
    _add_analysis_flags(p)
    p.add_argument("--json", metavar="FILE", help="write {summary, rows} as JSON here")
    p.set_defaults(func=_run_analyze)


def _run_analyze(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from ._io import atomic_write
    from .report import analyze_rows
    from .results import read_references
    from .sweep import SETTINGS

    rows = _rows(args.dir)
    settings_path = Path(args.dir) / SETTINGS
    settings = json.loads(settings_path.read_text()) if settings_path.is_file() else None
    result = analyze_rows(
        rows,
        method=args.method,
        M=args.M,
        link=args.link,
        settings=settings,
        references=read_references(args.dir),
    )
    print(result["summary"])
    for claim in result["claims"]:
        print(f"  {claim['id']}: {claim['verdict']}. {claim['details']}")
    if args.json:
        path = Path(args.json)
        atomic_write(path, json.dumps(result, indent=2, allow_nan=False) + "\n")
        print(f"llm-bridge analyze: {len(rows)} runs -> {path}")
    return 0


# --- entry point --------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    """The ``llm-bridge`` parser with all its subcommands."""
    parser = argparse.ArgumentParser(
        prog="llm-bridge",
        description="Synthesize the paper's preference datasets, DPO-train LLMs on them, probe "
        "what they learned and analyse it with prefjax.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_synth(sub)
    _add_train(sub)
    _add_sweep(sub)
    _add_status(sub)
    _add_plot(sub)
    _add_analyze(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run ``llm-bridge``; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    from .executors import MissingExtraError
    from .models import ModelNotFoundError

    try:
        return args.func(args)
    except (
        _UserError,
        ValueError,
        FileNotFoundError,
        MissingExtraError,
        ModelNotFoundError,
    ) as err:
        print(f"llm-bridge {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(
            f"llm-bridge {args.command}: interrupted. For `train` and `sweep`, run the same "
            "command again to resume (train: from the last checkpoint; sweep: finished runs are "
            "kept and skipped).",
            file=sys.stderr,
        )
        return 130


if __name__ == "__main__":
    sys.exit(main())
