"""Sweep rows (``results.RunRow``) built by hand for the analysis and plotting tests."""

import math

from llm_bridge.probe import ProbeResult
from llm_bridge.results import DatasetCounts, RunRow, TrainSummary

TINY_GRID = dict(
    model="tiny-random",
    p12=0.75,  # realisable with 4 rows of (o1, o2): 3 of 4
    p23=("0.2,0.8",),
    seeds=1,
    n=8,
    probe=("likelihood",),
    train={"max_steps": 1, "batch_size": 4, "lora_r": 4, "learning_rate": 1e-2},
)
"""A sweep on tiny-random, one optimizer step a run (seconds per run): ``SweepConfig(**TINY_GRID)``."""


def estimate(p, low=None, high=None, method="likelihood", count=None, logit=None):
    """A ``ProbeResult`` with p and its interval (log-odds from p unless given)."""
    low = p if low is None else low
    high = p if high is None else high
    if logit is None:
        logit = -math.inf if p == 0 else math.inf if p == 1 else math.log(p / (1 - p))
    return ProbeResult(p, logit, low, high, method, 120, count, {})


def make_row(order, p23_data, seed, p12, p23, p13, spread=1e-3, method="likelihood", **kw):
    """One finished run whose ``method`` probe learned (p12, p23, p13), each +- ``spread``."""
    probes = {
        k: estimate(v, max(0.0, v - spread), min(1.0, v + spread), method)
        for k, v in (("p12", p12), ("p23", p23), ("p13", p13))
    }
    fields = dict(
        run_id=f"{'-'.join(order)}_p12=0.99_p23={p23_data}_seed={seed}",
        order=tuple(order),
        p12_data=0.99,
        p23_data=p23_data,
        seed=seed,
        n=64,
        exact=True,
        model="stub",
        dataset=DatasetCounts(n12=32, wins12=32, n23=32, wins23=round(32 * p23_data)),
        train=TrainSummary(steps=8, loss=0.5, reward_accuracy=1.0, reward_margin=1.0, dir="x"),
        probes={method: probes},
        llm_bridge_version="test",
        timing={"seconds": 1.0},
    )
    fields.update(kw)
    return RunRow(**fields)
