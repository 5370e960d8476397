"""Train one model on one dataset D(order, p12, p23) and see its preferences move.

    python examples/llm_train_one_dataset.py                       # SmolLM2, cpu preset, ~3 min
    python examples/llm_train_one_dataset.py --p23 0.05 --out runs/p23-0.05
    python examples/llm_train_one_dataset.py --model tiny-random --max-steps 2   # a quick check

Before and after training it prints, for each pair (a, b) of the three options,

    P(a over b) = sigmoid(log p("I prefer a over b.") - log p("I prefer b over a."))

given the paper's probe question "Do you prefer a or b?", averaged over both orders of the
question: the model's preference between the two opposite answers of answer template 1. (The
full probes, with all 30 answer templates, sampling and intervals, are ``llm_bridge.probe``.)
The pair 1-3 never appears in the data; where it lands is what the paper is about.
"""

from __future__ import annotations

import argparse
import time

import torch

from llm_bridge.data import make_dataset, summarize
from llm_bridge.models import load_model
from llm_bridge.templates import ANSWER_TEMPLATES, PROBE_QUESTION, fill
from llm_bridge.train import PRESETS, preset, train_dpo


@torch.no_grad()
def answer_logprob(model, tokenizer, question: str, answer: str) -> float:
    """log p(answer | question) under the chat template: the sum over the answer's tokens,
    including the end-of-turn token."""
    prompt = [{"role": "user", "content": question}]
    prompt_ids = tokenizer.apply_chat_template(prompt, add_generation_prompt=True, tokenize=False)
    full = tokenizer.apply_chat_template(
        [*prompt, {"role": "assistant", "content": answer}], tokenize=False
    )
    head = tokenizer(prompt_ids, add_special_tokens=False)["input_ids"]
    ids = tokenizer(full, add_special_tokens=False, return_tensors="pt")["input_ids"]
    n_prompt = len(head)
    assert ids[0, :n_prompt].tolist() == head, "the prompt must tokenize as a prefix"
    ids = ids.to(model.device)  # (1, T)
    logits = model(input_ids=ids).logits.float()  # (1, T, V)
    logp = torch.log_softmax(logits[0, :-1], dim=-1)  # (T-1, V): position t predicts token t+1
    targets = ids[0, 1:]  # (T-1,)
    token_logp = logp.gather(1, targets[:, None])[:, 0]  # (T-1,)
    return token_logp[n_prompt - 1 :].sum().item()


def preference(model, tokenizer, a: str, b: str) -> float:
    """P(a over b) as in the module docstring."""
    template = ANSWER_TEMPLATES[0]  # "I prefer <A> over <B>."
    ps = []
    for first, second in ((a, b), (b, a)):
        question = fill(PROBE_QUESTION, first, second)
        la = answer_logprob(model, tokenizer, question, fill(template, a, b))
        lb = answer_logprob(model, tokenizer, question, fill(template, b, a))
        ps.append(torch.sigmoid(torch.tensor(la - lb, dtype=torch.float64)).item())
    return sum(ps) / len(ps)


def preferences(model, tokenizer, order) -> dict[str, float]:
    o1, o2, o3 = order
    model.eval()
    return {
        f"p12 ({o1} over {o2})": preference(model, tokenizer, o1, o2),
        f"p23 ({o2} over {o3})": preference(model, tokenizer, o2, o3),
        f"p13 ({o1} over {o3})": preference(model, tokenizer, o1, o3),
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="smollm2")
    parser.add_argument("--preset", default="cpu", choices=sorted(PRESETS))
    parser.add_argument("--order", default="dog,bird,cat")
    parser.add_argument("--p12", type=float, default=0.99)
    parser.add_argument("--p23", type=float, default=0.3)
    parser.add_argument("--n", type=int, default=256)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-steps", type=int, default=-1)
    parser.add_argument("--out", default="runs/llm_train_one_dataset")
    args = parser.parse_args(argv)

    order = tuple(args.order.split(","))
    dataset = make_dataset(order, args.p12, args.p23, n=args.n, seed=args.seed, exact=True)
    pairs = summarize(dataset)["pairs"]
    print(
        f"dataset: {len(dataset)} pairs; "
        + "; ".join(
            f"{k}: {v['option_i']} wins {v['i_preferred']}/{v['n']}" for k, v in pairs.items()
        )
    )

    model, tokenizer = load_model(args.model)
    before = preferences(model, tokenizer, order)
    config = preset(args.preset, output_dir=args.out, seed=args.seed, max_steps=args.max_steps)
    start = time.time()
    result = train_dpo(model, tokenizer, dataset, config)
    seconds = time.time() - start
    after = preferences(result.model, tokenizer, order)

    print(f"\n{'':24s} {'before':>12s} {'after':>12s}")
    for key in before:
        print(f"{key:24s} {before[key]:12.8f} {after[key]:12.8f}")
    print(
        f"\ntrained {args.model} with preset {args.preset!r}: {result.global_step} steps in "
        f"{seconds:.0f} s (last loss {result.last_log.get('loss', float('nan')):.4f}) "
        f"-> {result.model_dir}"
    )
    return {"before": before, "after": after, "seconds": seconds, "steps": result.global_step}


if __name__ == "__main__":
    main()
