"""How far DPO gets towards its optimum: learned log-odds against optimizer steps.

    python examples/llm_dpo_convergence.py --out runs/convergence            # SmolLM2, ~20 min
    python examples/llm_dpo_convergence.py --model tiny-random --steps 2 --every 1 --batch 64 --out /tmp/c

For each DPO temperature beta and each p23 of the data, one model is trained on
D((dog, bird, cat), 0.99, p23) with each pair seen once (n = steps x batch, one epoch), and its
preferences are probed (likelihood probe) every ``--every`` optimizer steps. What it plots, per
pair (p12, p23 and the unseen p13), is the distance the model has moved in log-odds,

    logit(p^L) - logit(p_ref),

against the steps, beside the line it should approach: DPO's optimum (``llm_bridge.theory``,
Eq. (1)/(2)): logit(q)/beta for an observed pair with data proportion q, and
(logit(q12) + logit(q23))/beta for the unseen one. (The probe averages two question orders; the
optimum drawn is the averaged one, ``theory.dpo_optimum_averaged``, minus the reference's
logit.) Writes ``OUT/convergence.jsonl`` (one line per probe), ``OUT/convergence.png`` and a
summary of the fraction of the distance covered at the last step. An interrupted study resumes:
finished (beta, p23) runs are read back from the JSONL.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

from llm_bridge import theory
from llm_bridge.data import make_dataset, summarize
from llm_bridge.models import load_model
from llm_bridge.probe import probe_order
from llm_bridge.train import preset, train_dpo

ORDER = ("dog", "bird", "cat")
PAIRS = ("p12", "p23", "p13")


def probe_logits(model, tokenizer):
    """{pair: (logit, per-context log-odds)} of the likelihood probe."""
    found = probe_order(model, tokenizer, ORDER)
    return {k: (r.logit, list(r.details["log_odds"].values())) for k, r in found.items()}


def one_study(model_name, beta, p23, steps, every, batch, lr, out: Path, seed: int = 0):
    """Train once, probing every ``every`` steps; yields one record per probe."""
    from transformers import TrainerCallback

    n = steps * batch
    model, tokenizer = load_model(model_name, progress=False)
    reference = probe_logits(model, tokenizer)
    dataset = make_dataset(ORDER, 0.99, p23, n=n, seed=seed, exact=True)
    pairs = summarize(dataset)["pairs"]
    q12, q23 = pairs["1-2"]["p_hat"], pairs["2-3"]["p_hat"]
    data_logit = {
        "p12": theory.logit(q12),
        "p23": theory.logit(q23),
        "p13": theory.logit(q12) + theory.logit(q23),
    }
    records = []

    def record(step, learned):
        row = {"beta": beta, "p23_data": p23, "q12": q12, "q23": q23, "step": step}
        for pair in PAIRS:
            ref_logit, ref_contexts = reference[pair]
            optimum = theory.dpo_optimum_averaged(ref_contexts, data_logit[pair], beta)[1]
            row[pair] = {
                "moved": learned[pair][0] - ref_logit,
                "target": optimum - ref_logit,
                "logit": learned[pair][0],
            }
        records.append(row)

    class ProbeEvery(TrainerCallback):
        def on_step_end(self, args, state, control, model=None, **kwargs):
            if state.global_step % every == 0 or state.global_step == steps:
                record(state.global_step, probe_logits(model, tokenizer))

    record(0, reference)
    config = preset(
        "cpu",
        output_dir=str(out / f"beta={beta:g}_p23={p23:g}"),
        batch_size=batch,
        max_steps=steps,
        beta=beta,
        learning_rate=lr,
        save_steps=10**6,
        seed=seed,
    )
    train_dpo(model, tokenizer, dataset, config, callbacks=[ProbeEvery()], progress=False)
    return records


def plot(records, path: Path) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(13, 4.2), layout="constrained")
    axes = fig.subplots(1, 3)
    runs = sorted({(r["beta"], r["p23_data"]) for r in records})
    colors = {run: f"C{k}" for k, run in enumerate(runs)}
    for ax, pair in zip(axes, PAIRS, strict=True):
        for run in runs:
            rs = sorted(
                (r for r in records if (r["beta"], r["p23_data"]) == run), key=lambda r: r["step"]
            )
            steps = [r["step"] for r in rs]
            moved = [r[pair]["moved"] for r in rs]
            target = rs[-1][pair]["target"]
            label = f"beta={run[0]:g}, p23={run[1]:g}"
            ax.plot(steps, moved, "o-", ms=3, color=colors[run], label=label)
            if math.isfinite(target):
                ax.axhline(target, ls="--", lw=1, color=colors[run])
        ax.set_title(f"{pair}: logit($p^L$) - logit($p_{{ref}}$); dashed: DPO optimum", fontsize=9)
        ax.set_xlabel("optimizer step")
        ax.set_yscale("symlog", linthresh=1.0)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="smollm2")
    parser.add_argument("--betas", default="0.1,1")
    parser.add_argument("--p23", default="0.02,0.3,0.5")
    parser.add_argument("--steps", type=int, default=32)
    parser.add_argument("--every", type=int, default=4)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--lr", type=float, default=2e-4)
    parser.add_argument("--out", default="runs/convergence")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    log = out / "convergence.jsonl"
    records = [json.loads(x) for x in log.read_text().splitlines()] if log.exists() else []
    done = {(r["beta"], r["p23_data"]) for r in records if r["step"] == args.steps}
    for beta in (float(b) for b in args.betas.split(",")):
        for p23 in (float(p) for p in args.p23.split(",")):
            if (beta, p23) in done:
                continue
            new = one_study(args.model, beta, p23, args.steps, args.every, args.batch, args.lr, out)
            with log.open("a") as fh:  # one study at a time: what finished is kept
                fh.writelines(json.dumps(r) + "\n" for r in new)
            records += new
            last = new[-1]
            # (a target of ~0, e.g. p23 at q23 = 1/2, has no fraction to cover)
            cover = {
                p: last[p]["moved"] / last[p]["target"]
                for p in PAIRS
                if abs(last[p]["target"]) > 1e-6
            }
            print(
                f"beta={beta:g} p23={p23:g}: after {last['step']} steps the model covered "
                + ", ".join(f"{p} {c:.2f}" for p, c in cover.items())
                + " of the log-odds distance to DPO's optimum",
                flush=True,
            )
    plot(records, out / "convergence.png")
    print(f"wrote {log} and {out / 'convergence.png'}")


if __name__ == "__main__":
    main()
