"""DPO training throughput on SmolLM2: today's path against the packed one, side by side.

    python bench/bench_train.py                  # 8 optimizer steps of 16 pairs, 2 rounds
    python bench/bench_train.py --steps 4 --rounds 1 --quick

One sweep run at a fixed number of optimizer steps (the cpu preset: LoRA rank 16, lr 2e-4,
batch 16, reference log-probabilities precomputed), trained with

* ``packed=False``: TRL's own path: every batch padded, chosen and rejected sequences run
  separately, TRL's fused LM head over every position;
* ``packed=True``: the batch as one prefix tree (``llm_bridge._scoring.packed_logps``): the chat
  template's system prompt, each prompt shared by its chosen and rejected answer and the answers'
  common beginnings computed once, the LM head only where a label is scored;

in alternation (A B A B ...) in one process, so the ratio holds when the machine's speed drifts.
Reported: the training wall time of each (median over rounds), their ratio, and what each run
learned (the likelihood probe's log-odds of p12, p23, p13) beside the same for another seed: the
two paths compute the same loss, so their difference should be of the size of float32 rounding
carried through training, far below the seed-to-seed difference.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import torch

from llm_bridge.data import make_dataset
from llm_bridge.models import load_model
from llm_bridge.probe import probe_order
from llm_bridge.train import preset, train_dpo

ORDER = ("dog", "bird", "cat")


def one_run(packed: bool, steps: int, seed: int, n: int, model_name: str):
    """(training seconds, learned log-odds {pair: logit}) of one run in a fresh directory."""
    model, tokenizer = load_model(model_name, progress=False)
    dataset = make_dataset(ORDER, 0.99, 0.3, n=n, seed=seed, exact=True)
    with tempfile.TemporaryDirectory() as out:
        config = preset("cpu", output_dir=out, max_steps=steps, seed=seed, packed=packed)
        start = time.perf_counter()
        result = train_dpo(model, tokenizer, dataset, config, progress=False)
        seconds = time.perf_counter() - start
        learned = probe_order(result.model, tokenizer, ORDER)
    return seconds, {pair: r.logit for pair, r in learned.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--model", default="smollm2")
    parser.add_argument(
        "--quick", action="store_true", help="tiny-random model, 2 steps: a check that it runs"
    )
    args = parser.parse_args()
    if args.quick:
        args.model, args.steps, args.rounds = "tiny-random", 2, 1
    n = 16 * args.steps  # one epoch of batches of 16
    torch.set_num_threads(torch.get_num_threads())
    times = {False: [], True: []}
    learned = {}
    for _ in range(args.rounds):
        for packed in (False, True):
            seconds, logits = one_run(packed, args.steps, 0, n, args.model)
            times[packed].append(seconds)
            learned[packed] = logits
            print(f"  packed={packed}: {seconds:.1f} s", flush=True)
    _, other_seed = one_run(True, args.steps, 1, n, args.model)
    old, new = statistics.median(times[False]), statistics.median(times[True])
    print(
        f"\n{args.model}, {args.steps} optimizer steps of 16 pairs (n = {n}), "
        f"{torch.get_num_threads()} threads, {args.rounds} round(s)"
    )
    print(f"  today's path (TRL, padded):   {old:7.1f} s")
    print(f"  packed prefix tree:           {new:7.1f} s")
    print(f"  ratio today / packed:         {old / new:7.2f}x")
    print("  learned log-odds (likelihood probe):   today    packed   packed, seed 1")
    for pair in ("p12", "p23", "p13"):
        print(
            f"    {pair}: {learned[False][pair]:22.4f} {learned[True][pair]:9.4f} "
            f"{other_seed[pair]:12.4f}"
        )
    diff = max(abs(learned[False][p] - learned[True][p]) for p in learned[True])
    seeds = max(abs(other_seed[p] - learned[True][p]) for p in learned[True])
    print(f"  max |today - packed| = {diff:.3g}; max |seed 1 - seed 0| = {seeds:.3g}")


if __name__ == "__main__":
    main()
