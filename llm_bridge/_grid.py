"""The grid of a sweep: ``SweepConfig`` (what every run shares and which grid points to run),
``RunSpec`` (one grid point) and the named presets. Plain data, no torch: ``llm_bridge.sweep``
re-exports all of it."""

from __future__ import annotations

import dataclasses
import itertools
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, NamedTuple

from ._config import to_jsonable
from .probe import METHODS as PROBE_METHODS

__all__ = ["PRESETS", "RunSpec", "SweepConfig", "parse_grid", "preset"]


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
        from ._train_config import PRESETS as TRAIN_PRESETS
        from ._train_config import preset as train_preset
        from .data import DatasetConfig

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
        from ._train_config import preset as train_preset

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
# per step, so the dominant pair lands near 1 - 1e-17 and the others part of the way to DPO's
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
