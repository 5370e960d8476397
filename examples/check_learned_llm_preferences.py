"""Probe what a chat model prefers among three options and read it with prefjax.

    python examples/check_learned_llm_preferences.py --model runs/quick/runs/<run_id> --order dog,bird,cat
    python examples/check_learned_llm_preferences.py --model smollm2 --order dog,bird,cat
    python examples/check_learned_llm_preferences.py --model meta-llama/Meta-Llama-3-8B-Instruct \\
        --order dog,bird,cat --method sample

``--model`` is a run directory written by ``llm-bridge train``/``sweep`` (its trained adapter is
loaded on its base model), a Hugging Face id, a local path, "smollm2" or "tiny-random". The
script probes P(o1 over o2), P(o2 over o3) and P(o1 over o3) (``llm_bridge.probe``; exact
likelihoods by default) and prints prefjax's reading of them (``llm_bridge.convert``): the p13
that Bradley-Terry (or ``--link``) implies from the learned p12 and p23 by Lemma 1, the local
sensitivity M = |dp13/dp12| at the learned point, whether the point lies in Omega_M, and a
verdict in one sentence.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from llm_bridge.convert import LearnedPreferences, analyze
from llm_bridge.models import load_model
from llm_bridge.probe import probe_order


def dataset_of(model_arg: str) -> dict:
    """The dataset parameters recorded in a run directory, if ``model_arg`` is one."""
    manifest = Path(model_arg) / "manifest.json"
    if manifest.is_file():
        params = (json.loads(manifest.read_text()).get("dataset") or {}).get("params") or {}
        return {"p12_data": params.get("p12"), "p23_data": params.get("p23")}
    return {}


def verdict(a, order) -> str:
    o1, o2, o3 = order
    where = (
        f"lies in the M-sensitive region Omega_{a.M:g} (|dp13/dp12| = {a.local_M:.3g} > "
        f"{a.M:g}: a change of e in P({o1} over {o2}) moves the implied P({o1} over {o3}) by "
        f"about {a.local_M:.3g}e)"
        if a.in_omega_M
        else f"is not M-sensitive for M = {a.M:g} (|dp13/dp12| = {a.local_M:.3g})"
    )
    agree = (
        f"its learned P({o1} over {o3}) = {a.p13:.4g} agrees with the {a.link}-implied "
        f"{a.p13_implied:.4g}"
        if a.consistent
        else f"its learned P({o1} over {o3}) = {a.p13:.4g} departs from the {a.link}-implied "
        f"{a.p13_implied:.4g} [{a.p13_implied_low:.4g}, {a.p13_implied_high:.4g}], so it does "
        "not compose its preferences as that model would"
    )
    return f"Verdict: the model's learned point (p12, p23) {where}, and {agree}."


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="run directory, HF id, path, smollm2")
    parser.add_argument("--order", default="dog,bird,cat", help="o1,o2,o3 (o1 ranked first)")
    parser.add_argument(
        "--method", default="likelihood", choices=["likelihood", "sample", "reward"]
    )
    parser.add_argument("--n", type=int, default=200, help="answers per pair for --method sample")
    parser.add_argument(
        "--ref",
        help="reference model for --method reward (default: the LoRA "
        "model with its adapters disabled)",
    )
    parser.add_argument("--M", type=float, default=10.0, help="threshold of Omega_M")
    parser.add_argument("--link", default="logistic", choices=["logistic", "probit", "cauchit"])
    parser.add_argument("--trust-remote-code", action="store_true")
    args = parser.parse_args(argv)

    order = tuple(x.strip() for x in args.order.split(","))
    if len(order) != 3:
        parser.error(f"--order needs three options, got {args.order!r}")
    model, tokenizer = load_model(args.model, trust_remote_code=args.trust_remote_code)
    ref = None
    if args.ref:
        ref = load_model(args.ref, trust_remote_code=args.trust_remote_code)[0]
    probes = probe_order(model, tokenizer, order, args.method, n=args.n, ref_model=ref)
    learned = LearnedPreferences.from_probes(probes, order=order, **dataset_of(args.model))
    a = analyze(learned, link=args.link, M=args.M)

    o1, o2, o3 = order
    print(f"{args.model}: learned preferences ({args.method} probe)")
    for key, (x, y) in {"p12": (o1, o2), "p23": (o2, o3), "p13": (o1, o3)}.items():
        r = probes[key]
        print(f"  {key} P({x} over {y}) = {r.p:.6g}  [{r.ci_low:.6g}, {r.ci_high:.6g}]")
    print(f"  ({probes['p12'].details['interval']})")
    if learned.p23_data is not None:
        print(f"  trained on D({args.order}, p12 = {learned.p12_data}, p23 = {learned.p23_data})")
    print(f"prefjax, {a.link} link:")
    print(
        f"  implied p13 (Lemma 1)    {a.p13_implied:.6g}  [{a.p13_implied_low:.6g}, "
        f"{a.p13_implied_high:.6g}]"
    )
    print(f"  dp13/dp12, dp13/dp23     {a.d13_d12:.4g}, {a.d13_d23:.4g}")
    print(f"  local M = |dp13/dp12|    {a.local_M:.4g}  (in Omega_{a.M:g}: {a.in_omega_M})")
    if a.omega_p12 is not None:
        print(
            f"  Omega_{a.M:g} at p23 = {a.p23:.4g}: p12 in ({a.omega_p12[0]:.6g}, "
            f"{a.omega_p12[1]:.6g}) (Eq. 5)"
        )
    for note in a.notes:
        print(f"  note: {note}")
    print(verdict(a, order))
    return {"probes": {k: r.p for k, r in probes.items()}, "analysis": a.to_dict()}


if __name__ == "__main__":
    main()
