"""Probe methods side by side on SmolLM2: time per pair, and how often they agree.

    python bench/bench_probe.py                      # trains a cpu-preset model once (cached)
    python bench/bench_probe.py --trained runs/d     # or uses a run directory you have

1. Time for one pair (dog, bird), measured in one process after a warm-up call of each:
   "likelihood" with its default questions (the probe question in both orders, 30 answer
   templates each way, scored as one prefix tree on the prompt's key/value cache), the same
   scored on full sequences (no reuse), and "sample" with n = 200 answers. Prints the ratio
   sample / likelihood.
2. Agreement: for each pair of dog, bird, cat, on the untrained SmolLM2 and on a DPO-trained one,
   whether the likelihood estimate falls inside the sampled 95% Wilson interval (n = 200), and
   how many sampled answers could not be read.

The numbers depend on the machine and on what else runs on it; the ratio is measured side by side
in one run. Results of this script on the development machine are in docs/llm_training.md.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import torch

from llm_bridge.data import make_dataset
from llm_bridge.models import load_model
from llm_bridge.probe import probe
from llm_bridge.train import preset, train_dpo

PAIRS = [("dog", "bird"), ("bird", "cat"), ("dog", "cat")]


def timed(fn, repeats: int = 1):
    """(result of the last call, the fastest wall time of ``repeats`` calls)."""
    best, result = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return result, best


def trained_model(path: str | None):
    """A DPO-trained SmolLM2: the run at ``path``, or a cpu-preset run on
    D((dog, bird, cat), 0.99, 0.3) with 128 pairs, trained once into runs/bench_probe_model."""
    if path is not None:
        return load_model(path, progress=False)
    model, tokenizer = load_model("smollm2", progress=False)
    dataset = make_dataset(("dog", "bird", "cat"), 0.99, 0.3, n=128, seed=0, exact=True)
    out = Path("runs") / "bench_probe_model"
    print(f"training (or loading) the cpu-preset model in {out} ...", flush=True)
    result = train_dpo(
        model, tokenizer, dataset, preset("cpu", output_dir=str(out)), progress=False
    )
    return result.model, tokenizer


def timing(model, tokenizer, n: int) -> None:
    a, b = PAIRS[0]
    print(
        f"\n1. One pair ({a}, {b}), torch threads = {torch.get_num_threads()}, load average "
        f"{os.getloadavg()[0]:.1f}; after a warm-up call"
    )
    runs = {
        "likelihood (prefix reuse)": lambda: probe(model, tokenizer, a, b),
        "likelihood (full sequences)": lambda: probe(model, tokenizer, a, b, prefix_reuse=False),
        f"sample (n = {n})": lambda: probe(model, tokenizer, a, b, method="sample", n=n, seed=1),
    }
    probe(model, tokenizer, a, b)  # warm-up: first-call costs (allocations, kernels)
    probe(model, tokenizer, a, b, method="sample", n=8, seed=0)
    times = {}
    for name, fn in runs.items():
        r, t = timed(fn)
        times[name] = t
        extra = f", {r.details['unparsed']} unreadable" if r.method == "sample" else ""
        print(f"   {name:30s} {t:8.2f} s   p = {r.p:.4f} [{r.ci_low:.4f}, {r.ci_high:.4f}]{extra}")
    lik, full, smp = times.values()
    print(
        f"   ratio sample / likelihood: {smp / lik:.1f}x   (full sequences / reuse: "
        f"{full / lik:.1f}x)"
    )


def agreement(label: str, model, tokenizer, n: int) -> tuple[int, int]:
    inside = 0
    print(f"\n   {label}:")
    for a, b in PAIRS:
        lik = probe(model, tokenizer, a, b)
        smp = probe(model, tokenizer, a, b, method="sample", n=n, seed=0)
        ok = smp.ci_low <= lik.p <= smp.ci_high
        inside += ok
        d = smp.details
        print(
            f"   {a:>5s} over {b:5s} likelihood {lik.p:.4f} [{lik.ci_low:.4f}, {lik.ci_high:.4f}]"
            f"  sample {smp.p:.4f} [{smp.ci_low:.4f}, {smp.ci_high:.4f}] "
            f"({d['preferred_a']}:{d['preferred_b']}, {d['unparsed']} unreadable)  "
            f"{'inside' if ok else 'OUTSIDE'}"
        )
    print(f"   -> likelihood inside the sampled interval for {inside} of {len(PAIRS)} pairs")
    return inside, len(PAIRS)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trained", help="a trained run directory or model path")
    parser.add_argument("--n", type=int, default=200, help="answers per sample probe")
    args = parser.parse_args()

    model, tokenizer = load_model("smollm2", progress=False)
    timing(model, tokenizer, args.n)
    print(f"\n2. Agreement (sample n = {args.n}, seed 0)")
    results = [agreement("untrained SmolLM2-135M-Instruct", model, tokenizer, args.n)]
    del model
    model, tokenizer = trained_model(args.trained)
    results.append(agreement("DPO-trained (cpu preset)", model, tokenizer, args.n))
    inside = sum(k for k, _ in results)
    total = sum(m for _, m in results)
    print(f"\nlikelihood inside the sampled 95% interval: {inside} of {total} (pair, model) cases")


if __name__ == "__main__":
    main()
