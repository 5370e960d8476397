"""Measure the preference a language model has learned: ``probe(model, tokenizer, a, b)``.

Each method estimates P(a preferred to b) and returns a ``ProbeResult(p, ci_low, ci_high,
method, n, details)``:

* ``"likelihood"`` (default, exact): for a question q, the probability the model gives to the 30
  answer templates preferring ``a``, normalised by the probability of all 60 template answers
  (each template once preferring ``a``, once ``b``)::

      P_q(a) = sum_t p(t(a, b) | q) / sum_t [p(t(a, b) | q) + p(t(b, a) | q)]

  averaged over the questions: by default the paper's probe question "Do you prefer <A> or
  <B>?" asked in both orders, i.e. two values of q. It is what the ``"sample"`` estimate tends to
  as n grows, for a model whose answers are template answers. An answer's probability includes
  its end-of-turn token (the model stops there). The interval is the *range over the questions
  averaged* (min to max of P_q): how much the estimate depends on the wording and on which
  option is named first. It is not a sampling interval; there is no sampling. The shared prompt
  is run through the model once and its key/value cache reused for every answer; the 60
  answers of a question then go through the model as one prefix tree (shared beginnings such as
  "I prefer" computed once), so a pair costs two prompt passes and two tree passes.
* ``"sample"`` (the paper's, Section 4): ask the probe question in both orders (n/2 answers
  each), sample answers at temperature 1 with no top-k/top-p truncation, and read each answer's
  preference with ``parse_preference``, a rule-based reader for free text. Answers it cannot read
  (no option named, both named without a preference, "as an AI I have no preference") are
  counted and reported in ``details``, never silently dropped. p = k_a / (k_a + k_b) over the
  read answers, with a 95% Wilson interval; with no readable answer, p = 0.5 and the interval is
  (0, 1) (the Wilson formula at zero trials).
* ``"reward"``: the DPO implicit reward model against a reference model pi_ref (Rafailov et
  al.): for each question and answer template,
  sigma(beta' * [log pi/pi_ref(t(a, b) | q) - log pi/pi_ref(t(b, a) | q)]), averaged over the
  30 templates, then over the questions; the interval is the range over the questions, as for
  ``"likelihood"``. The reference is ``ref_model`` when given; for a LoRA (peft) model, the same
  model with its adapters disabled.

Everything is batched; ``batch_size`` bounds the sequences in one forward pass / generate call.
Seeds are set in one place (``_seeded``) and the global torch RNG is left as it was.
"""

from __future__ import annotations

import contextlib
import copy
import inspect
import math
import re
import warnings
from collections.abc import Iterator, Sequence
from typing import Any, NamedTuple

import torch

from .templates import ANSWER_TEMPLATES, PROBE_QUESTION, fill

__all__ = [
    "CONFIDENCE",
    "METHODS",
    "ProbeResult",
    "answer_logprobs",
    "parse_preference",
    "probe",
    "probe_order",
    "wilson_interval",
]

METHODS = ("likelihood", "sample", "reward")
CONFIDENCE = 0.95
_N_T = len(ANSWER_TEMPLATES)  # answers per direction (30)
_TREE_TOL = 1e-3  # tree vs alone, in log-probability: float32 sums of ~15 token terms
_Z = 1.959963984540054  # the standard normal 97.5% quantile: a two-sided 95% interval


class ProbeResult(NamedTuple):
    """An estimate of P(a preferred to b) by one probe method.

    Attributes:
        p: the estimate, in [0, 1].
        ci_low, ci_high: its interval; ``ci_low <= p <= ci_high``. For ``"sample"`` a 95%
            Wilson interval; for ``"likelihood"`` and ``"reward"`` the range of the estimate
            over the questions averaged (``details["interval"]`` says which).
        method: ``"likelihood"``, ``"sample"`` or ``"reward"``.
        n: answers sampled (``"sample"``), or (question, answer) pairs scored.
        details: JSON-ready facts behind the number (what was averaged, per-question values,
            counts of unreadable answers, ...).
    """

    p: float
    ci_low: float
    ci_high: float
    method: str
    n: int
    details: dict[str, Any]


# --- entry points ----------------------------------------------------------------------------


def probe(
    model,
    tokenizer,
    a: str,
    b: str,
    method: str = "likelihood",
    n: int = 200,
    seed: int = 0,
    *,
    questions: Sequence[str] | None = None,
    batch_size: int = 64,
    max_new_tokens: int = 32,
    ref_model=None,
    beta: float = 0.1,
    prefix_reuse: bool = True,
) -> ProbeResult:
    """Estimate P(``a`` preferred to ``b``) for a chat model (see the module docstring).

    Args:
        model: a causal LM (``transformers`` or a ``peft`` model wrapping one), as returned by
            ``load_model`` or ``train_dpo``.
        tokenizer: its tokenizer; it must have a chat template.
        a, b: the two options, e.g. ``"dog"``, ``"bird"``.
        method: ``"likelihood"`` (exact, default), ``"sample"`` (the paper's) or ``"reward"``.
        n: answers to sample in total, split over the two question orders (``"sample"`` only).
        seed: seed of the sampling (``"sample"`` only); the global RNG is left as it was.
        questions: question templates with ``<A>``/``<B>`` (``"likelihood"``/``"reward"``),
            each asked with the options in both orders; default the paper's probe question. Pass
            ``templates.QUESTION_TEMPLATES`` to average over the 20 training questions.
        batch_size: sequences per forward pass or generate call.
        max_new_tokens: length limit of a sampled answer (``"sample"``).
        ref_model: the reference model of ``"reward"``; default: ``model`` with its LoRA
            adapters disabled.
        beta: the DPO temperature beta' of ``"reward"`` (the paper's 0.1).
        prefix_reuse: score answers on the cached prompt (one prompt pass per question); False
            scores every full sequence (slower; the reference the cache is checked against).

    Returns:
        A ``ProbeResult``.

    Raises:
        ValueError: an unknown method, equal or empty options, n < 1, or ``"reward"`` without a
            reference model for a model that has no adapters.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    for name, option in (("a", a), ("b", b)):
        if not isinstance(option, str) or not option.strip():
            raise ValueError(f"{name} must be a non-empty option name, got {option!r}")
    if a.casefold() == b.casefold():
        raise ValueError(f"a and b must be two different options, got {a!r} twice")
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ValueError(f"n must be an integer >= 1, got {n!r}")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
    if not tokenizer.chat_template:
        raise ValueError("the tokenizer has no chat template; probes ask chat questions")
    questions = tuple(questions) if questions is not None else (PROBE_QUESTION,)
    for q in questions:
        if "<A>" not in q or "<B>" not in q:
            raise ValueError(f"a question template needs both <A> and <B>: {q!r}")
    was_training = model.training
    model.eval()
    try:
        if method == "sample":
            return _probe_sample(model, tokenizer, a, b, n, seed, batch_size, max_new_tokens)
        if method == "likelihood":
            return _probe_likelihood(model, tokenizer, a, b, questions, batch_size, prefix_reuse)
        return _probe_reward(
            model, tokenizer, a, b, questions, batch_size, prefix_reuse, ref_model, beta
        )
    finally:
        model.train(was_training)


def probe_order(
    model, tokenizer, order: Sequence[str], method: str = "likelihood", **kwargs
) -> dict[str, ProbeResult]:
    """Probe the three pairs of ``order = (o1, o2, o3)``: ``{"p12": ..., "p23": ..., "p13": ...}``,
    each P(better-ranked option preferred); ``kwargs`` go to ``probe``."""
    o1, o2, o3 = order
    return {
        key: probe(model, tokenizer, x, y, method=method, **kwargs)
        for key, (x, y) in {"p12": (o1, o2), "p23": (o2, o3), "p13": (o1, o3)}.items()
    }


def wilson_interval(k: int, n: int, z: float = _Z) -> tuple[float, float]:
    """The Wilson score interval of a binomial proportion k/n; (0, 1) when n = 0.

    center = (k + z^2/2) / (n + z^2), half-width = z sqrt(k (n - k) / n + z^2 / 4) / (n + z^2).

    Examples:
        >>> [round(x, 4) for x in wilson_interval(10, 20)]
        [0.2993, 0.7007]
    """
    if n == 0:
        return 0.0, 1.0
    denom = n + z * z
    center = (k + z * z / 2) / denom
    half = z * math.sqrt(k * (n - k) / n + z * z / 4) / denom
    # at k = 0 or k = n the bound equals the estimate; keep it exact against rounding
    low = 0.0 if k == 0 else max(0.0, center - half)
    high = 1.0 if k == n else min(1.0, center + half)
    return min(low, k / n), max(high, k / n)


# --- chat rendering ---------------------------------------------------------------------------


def _prompt_text(tokenizer, question: str) -> str:
    messages = [{"role": "user", "content": question}]
    return tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)


def _stop_ids(model, tokenizer) -> set[int]:
    ids = {tokenizer.eos_token_id} if tokenizer.eos_token_id is not None else set()
    eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    if isinstance(eos, int):
        ids.add(eos)
    elif eos is not None:
        ids.update(eos)
    return ids


def _answer_ids(
    tokenizer, question: str, answers: Sequence[str], stop: set[int]
) -> list[list[int]]:
    """The tokens the model would generate to give each answer: the answer as the chat template
    renders an assistant turn, up to and including the first end-of-turn token.

    The prompt and the answer are tokenized separately, as in generation (the prompt is the
    model's input, the answer its output), which is also how TRL tokenizes preference pairs.
    """
    prompt = _prompt_text(tokenizer, question)
    out = []
    for answer in answers:
        messages = [
            {"role": "user", "content": question},
            {"role": "assistant", "content": answer},
        ]
        full = tokenizer.apply_chat_template(messages, tokenize=False)
        if full.startswith(prompt) and answer in full[len(prompt) :]:
            ids = tokenizer(full[len(prompt) :], add_special_tokens=False)["input_ids"]
            ends = [k for k, tok in enumerate(ids) if tok in stop]
            out.append(ids[: ends[0] + 1] if ends else ids)
        else:
            # A template that renders history differently from a generation prompt (e.g. one
            # that strips reasoning blocks): the bare answer followed by the end-of-turn token.
            ids = tokenizer(answer, add_special_tokens=False)["input_ids"]
            eos = tokenizer.eos_token_id
            out.append(ids + ([eos] if eos is not None else []))
    return out


def _batches(lengths: Sequence[int], batch_size: int, slack: int = 2) -> list[list[int]]:
    """Indices grouped into batches of similar length (at most ``slack`` tokens of padding per
    sequence, at most ``batch_size`` sequences): padded positions cost as much as real ones."""
    order = sorted(range(len(lengths)), key=lambda k: lengths[k])
    batches: list[list[int]] = []
    for k in order:
        if batches and len(batches[-1]) < batch_size:
            if lengths[k] - lengths[batches[-1][0]] <= slack:
                batches[-1].append(k)
                continue
        batches.append([k])
    return batches


# --- scoring answers --------------------------------------------------------------------------


def _base(model):
    """The transformers model under a peft wrapper (or the model itself)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def _cache_kwarg(model) -> str:
    """The forward argument that takes a key/value cache (``cache`` in transformers >= 5.2x)."""
    params = inspect.signature(_base(model).forward).parameters
    return "cache" if "cache" in params else "past_key_values"


def _takes_custom_masks(model) -> bool:
    """Whether the model applies a 4D attention mask as given (eager and SDPA attention do;
    flash-attention kernels take no arbitrary mask)."""
    return getattr(_base(model).config, "_attn_implementation", None) in ("sdpa", "eager")


def _cache_of(output):
    """The key/value cache of a model output (``cache`` in transformers >= 5.2x, formerly
    ``past_key_values``), or None."""
    for key in ("cache", "past_key_values"):
        if key in output.keys():
            return output[key]
    return None


def _trie(suffixes: Sequence[Sequence[int]]) -> tuple[list[int], list[int], list[list[int]]]:
    """The answers' token sequences as a prefix tree: node tokens, node parents (-1 for a first
    token) and, per answer, the nodes of its path. Parents come before their children."""
    tokens: list[int] = []
    parents: list[int] = []
    index: dict[tuple[int, int], int] = {}
    paths = []
    for ids in suffixes:
        node, path = -1, []
        for tok in ids:
            key = (node, tok)
            if key not in index:
                index[key] = len(tokens)
                tokens.append(tok)
                parents.append(node)
            node = index[key]
            path.append(node)
        paths.append(path)
    return tokens, parents, paths


def _tree_logprobs(
    model, cache, cache_kw: str, first_logp, prompt_len: int, suffixes, device
) -> list[float]:
    """Score answers that share a prompt in one forward pass of their prefix tree.

    Every distinct answer prefix is one position of a single row; a position attends to the
    prompt (through ``cache``) and to its own ancestors in the tree (a custom 4D attention mask),
    at its depth's position id, so it sees exactly the tokens it would see in its own sequence.
    Shared beginnings ("I prefer ...") are computed once.
    """
    tokens, parents, paths = _trie(suffixes)
    n = len(tokens)
    depth = [0] * n
    allowed = torch.zeros((n, n), dtype=torch.bool)
    for i, parent in enumerate(parents):
        if parent >= 0:
            depth[i] = depth[parent] + 1
            allowed[i] = allowed[parent]
        allowed[i, i] = True
    dtype = next(model.parameters()).dtype
    mask = torch.zeros((1, 1, n, prompt_len + n), dtype=dtype)
    mask[0, 0, :, prompt_len:].masked_fill_(~allowed, torch.finfo(dtype).min)
    x = torch.tensor([tokens], device=device)
    position_ids = prompt_len + torch.tensor([depth], device=device)
    logits = model(
        input_ids=x,
        attention_mask=mask.to(device),
        position_ids=position_ids,
        use_cache=True,
        **{cache_kw: cache},
    ).logits[0]  # (n, V)
    logp = torch.log_softmax(logits.float(), dim=-1)  # (n, V)
    parent = torch.tensor(parents, device=device)
    tok = torch.tensor(tokens, device=device)
    node_logp = torch.where(
        parent >= 0, logp[parent.clamp(min=0), tok], first_logp[tok]
    ).double()  # (n,): log p(token | prompt, its ancestors)
    return [float(node_logp[path].sum()) for path in paths]


@torch.inference_mode()
def answer_logprobs(
    model,
    tokenizer,
    question: str,
    answers: Sequence[str],
    *,
    batch_size: int = 64,
    prefix_reuse: bool = True,
) -> list[float]:
    """log p(answer | question) for each answer, in float64: the sum of the answer's token
    log-probabilities (end-of-turn token included) after the chat-rendered question.

    With ``prefix_reuse`` the prompt is run once and its key/value cache reused: for models
    with eager or SDPA attention the answers (``batch_size`` at a time) form one prefix tree,
    run as one sequence with a tree-shaped attention mask, so shared beginnings are computed
    once (the three likeliest answers and the last of the first tree are also scored alone; on
    a mismatch, a warning and the plain path); otherwise the cache is copied for each batch of
    answers. Models that return no
    cache are scored on full sequences.
    """
    device = next(model.parameters()).device
    stop = _stop_ids(model, tokenizer)
    prompt_ids = tokenizer(_prompt_text(tokenizer, question), add_special_tokens=False)["input_ids"]
    suffixes = _answer_ids(tokenizer, question, answers, stop)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    out = [0.0] * len(answers)
    cache, first_logp, cache_kw = None, None, None
    if prefix_reuse:
        cache_kw = _cache_kwarg(model)
        prompt = torch.tensor([prompt_ids], device=device)  # (1, Lp)
        result = model(input_ids=prompt, use_cache=True)
        cache = _cache_of(result)
        first_logp = torch.log_softmax(result.logits[0, -1].float(), dim=-1)  # (V,)

    def batched(indices: Sequence[int]) -> None:
        """Score answers ``indices`` in batches of similar length, one sequence per answer."""
        for group in _batches([len(suffixes[k]) for k in indices], batch_size):
            idx = [indices[j] for j in group]
            width = max(len(suffixes[k]) for k in idx)
            x = torch.full((len(idx), width), pad, dtype=torch.long)  # (B, La), right-padded
            real = torch.zeros((len(idx), width), dtype=torch.bool)
            for row, k in enumerate(idx):
                x[row, : len(suffixes[k])] = torch.tensor(suffixes[k])
                real[row, : len(suffixes[k])] = True
            x, real = x.to(device), real.to(device)
            if cache is not None:
                # Right padding needs no attention mask: real tokens never attend to later pads.
                batch_cache = copy.deepcopy(cache)
                batch_cache.batch_repeat_interleave(len(idx))
                logits = model(input_ids=x, use_cache=True, **{cache_kw: batch_cache}).logits
                logp = torch.log_softmax(logits[:, :-1].float(), dim=-1)  # (B, La-1, V)
                token_logp = logp.gather(2, x[:, 1:, None])[..., 0]  # (B, La-1)
                first = first_logp[x[:, 0]]  # (B,): the prompt's last position predicts token 1
                token_logp = torch.cat([first[:, None], token_logp], dim=1)  # (B, La)
            else:
                head = torch.tensor(prompt_ids, device=device).expand(len(idx), -1)  # (B, Lp)
                full = torch.cat([head, x], dim=1)  # (B, Lp + La)
                logits = model(input_ids=full).logits[:, len(prompt_ids) - 1 : -1]  # (B, La, V)
                logp = torch.log_softmax(logits.float(), dim=-1)
                token_logp = logp.gather(2, x[:, :, None])[..., 0]  # (B, La)
            sums = (token_logp.double() * real).sum(dim=1)  # (B,)
            for row, k in enumerate(idx):
                out[k] = float(sums[row])

    if cache is not None and _takes_custom_masks(model) and len(suffixes) > 1:
        # Groups of batch_size answers, each scored as one prefix tree on the prompt's cache.
        tree = [0.0] * len(suffixes)
        for start in range(0, len(suffixes), batch_size):
            group = list(range(start, min(start + batch_size, len(suffixes))))
            scores = _tree_logprobs(
                model,
                copy.deepcopy(cache),
                cache_kw,
                first_logp,
                len(prompt_ids),
                [suffixes[k] for k in group],
                device,
            )
            for k, value in zip(group, scores, strict=True):
                tree[k] = value
        # A model that ignores custom masks or position ids would give wrong tree scores. Score
        # on their own the answers that weigh most (the three likeliest) and the last answer of
        # the first tree (the most scattered path); all must agree.
        likeliest = sorted(range(len(tree)), key=tree.__getitem__)[-3:]
        check = sorted({*likeliest, min(batch_size, len(suffixes)) - 1})
        batched(check)
        bad = [k for k in check if abs(out[k] - tree[k]) > _TREE_TOL + 1e-6 * abs(out[k])]
        if not bad:
            return tree
        warnings.warn(
            f"{type(model).__name__} does not apply a custom attention mask as given (answer "
            f"{bad[0]} scored {tree[bad[0]]:.6g} in the prefix tree, {out[bad[0]]:.6g} alone); "
            "scoring each answer as its own sequence instead",
            stacklevel=2,
        )
    batched(list(range(len(suffixes))))
    return out


def _both_orders(questions: Sequence[str], a: str, b: str) -> list[tuple[str, str]]:
    """Each question template filled with (a, b) and with (b, a): (label, question text)."""
    return [
        (f"q{k}:{first}-first", fill(q, first, second))
        for k, q in enumerate(questions)
        for first, second in ((a, b), (b, a))
    ]


def _template_answers(a: str, b: str) -> tuple[list[str], list[str]]:
    return [fill(t, a, b) for t in ANSWER_TEMPLATES], [fill(t, b, a) for t in ANSWER_TEMPLATES]


def _logsumexp(xs: Sequence[float]) -> float:
    m = max(xs)
    return m + math.log(sum(math.exp(x - m) for x in xs))


def _sigmoid(x: float) -> float:
    # the two branches keep exp() from overflowing in either tail
    return 1.0 / (1.0 + math.exp(-x)) if x >= 0 else math.exp(x) / (1.0 + math.exp(x))


def _range_result(method, per_q, labels, n, details) -> ProbeResult:
    p = sum(per_q) / len(per_q)
    low, high = min(min(per_q), p), max(max(per_q), p)  # min() guards float rounding of the mean
    details = {
        **details,
        "interval": "min and max of the per-question values over the questions averaged "
        "(wording and option-order spread); not a sampling interval",
        "per_question": {label: v for label, v in zip(labels, per_q, strict=True)},
    }
    return ProbeResult(p, low, high, method, n, details)


def _probe_likelihood(model, tokenizer, a, b, questions, batch_size, prefix_reuse) -> ProbeResult:
    prefer_a, prefer_b = _template_answers(a, b)
    labels, per_q, log_odds, mass = [], [], [], []
    for label, question in _both_orders(questions, a, b):
        lp = answer_logprobs(
            model,
            tokenizer,
            question,
            prefer_a + prefer_b,
            batch_size=batch_size,
            prefix_reuse=prefix_reuse,
        )
        la, lb = _logsumexp(lp[:_N_T]), _logsumexp(lp[_N_T:])
        labels.append(label)
        log_odds.append(la - lb)
        per_q.append(_sigmoid(la - lb))  # sum_t p(a-answers) / sum over all answers
        mass.append(math.exp(_logsumexp(lp)))
    details = {
        "averaged": f"P_q(a) = sum of p(answer | q) over the {len(ANSWER_TEMPLATES)} answer "
        f"templates preferring a, over the same sum for all {2 * len(ANSWER_TEMPLATES)} template "
        f"answers; mean over {len(per_q)} questions ({len(questions)} template(s) x both option "
        "orders)",
        "questions": [q for _, q in _both_orders(questions, a, b)],
        "log_odds": dict(zip(labels, log_odds, strict=True)),
        "template_mass": dict(zip(labels, mass, strict=True)),
        "prefix_reuse": prefix_reuse,
    }
    return _range_result("likelihood", per_q, labels, len(per_q) * 2 * _N_T, details)


def _probe_reward(
    model, tokenizer, a, b, questions, batch_size, prefix_reuse, ref_model, beta
) -> ProbeResult:
    if not (isinstance(beta, int | float) and beta > 0):
        raise ValueError(f"beta must be a number > 0, got {beta!r}")
    if ref_model is None and not hasattr(model, "disable_adapter"):
        raise ValueError(
            "method 'reward' needs the reference model: pass ref_model (the model before DPO "
            "training), or probe a LoRA (peft) model, whose reference is itself with the "
            "adapters disabled"
        )
    prefer_a, prefer_b = _template_answers(a, b)
    answers = prefer_a + prefer_b
    kw = dict(batch_size=batch_size, prefix_reuse=prefix_reuse)
    labels, per_q, margins = [], [], []
    for label, question in _both_orders(questions, a, b):
        policy = answer_logprobs(model, tokenizer, question, answers, **kw)
        if ref_model is not None:
            ref = answer_logprobs(ref_model, tokenizer, question, answers, **kw)
        else:
            with model.disable_adapter():
                ref = answer_logprobs(model, tokenizer, question, answers, **kw)
        ratio = [p - r for p, r in zip(policy, ref, strict=True)]  # log pi/pi_ref(y)
        margin = [beta * (ratio[t] - ratio[_N_T + t]) for t in range(_N_T)]
        labels.append(label)
        margins.append(margin)
        per_q.append(sum(_sigmoid(m) for m in margin) / _N_T)
    flat = [m for ms in margins for m in ms]
    details = {
        "averaged": "sigma(beta' * (log pi/pi_ref(y_a) - log pi/pi_ref(y_b))) for each of the "
        f"{len(ANSWER_TEMPLATES)} answer templates (y_a prefers a, y_b is the same template "
        f"preferring b); mean over templates, then over {len(per_q)} questions "
        f"({len(questions)} template(s) x both option orders)",
        "beta": beta,
        "reference": "ref_model" if ref_model is not None else "the model with adapters disabled",
        "reward_margin_range": [min(flat), max(flat)],
        "template_p_range": [_sigmoid(min(flat)), _sigmoid(max(flat))],
        "prefix_reuse": prefix_reuse,
    }
    return _range_result("reward", per_q, labels, len(per_q) * _N_T, details)


# --- sampling -------------------------------------------------------------------------------


@contextlib.contextmanager
def _seeded(seed: int, device) -> Iterator[None]:
    """Run with torch's RNG seeded; the global RNG state is restored afterwards."""
    devices = [device] if getattr(device, "type", "cpu") == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


def _generation_config(model, tokenizer, max_new_tokens: int):
    """The model's generation settings with sampling made pure: temperature 1, no top-k, no
    top-p, no repetition penalty, so answers are drawn from the model's own distribution."""
    from transformers import GenerationConfig

    base = getattr(model, "generation_config", None)
    config = copy.deepcopy(base) if base is not None else GenerationConfig()
    config.do_sample = True
    config.temperature = 1.0
    config.top_k = 0
    config.top_p = 1.0
    config.min_p = None
    config.typical_p = 1.0
    config.repetition_penalty = 1.0
    config.num_beams = 1
    config.max_new_tokens = max_new_tokens
    config.max_length = None
    if config.pad_token_id is None:
        config.pad_token_id = tokenizer.pad_token_id
    return config


@torch.inference_mode()
def _generate(model, tokenizer, question: str, count: int, batch_size, max_new_tokens):
    device = next(model.parameters()).device
    config = _generation_config(model, tokenizer, max_new_tokens)
    prompt = tokenizer(_prompt_text(tokenizer, question), add_special_tokens=False)["input_ids"]
    texts = []
    for start in range(0, count, batch_size):
        rows = min(batch_size, count - start)
        ids = torch.tensor([prompt] * rows, device=device)  # (B, Lp): one prompt, no padding
        out = model.generate(
            input_ids=ids, attention_mask=torch.ones_like(ids), generation_config=config
        )  # (B, Lp + new)
        texts += tokenizer.batch_decode(out[:, len(prompt) :], skip_special_tokens=True)
    return texts


def _probe_sample(model, tokenizer, a, b, n, seed, batch_size, max_new_tokens) -> ProbeResult:
    counts = {"a": 0, "b": 0}
    unread: dict[str, int] = {}
    examples: list[str] = []
    per_order = {}
    device = next(model.parameters()).device
    with _seeded(seed, device):
        for k, (first, second) in enumerate(((a, b), (b, a))):
            m = (n + 1 - k) // 2  # n/2 per order; the first order gets the odd one
            question = fill(PROBE_QUESTION, first, second)
            got = {"a": 0, "b": 0, "unread": 0}
            for text in _generate(model, tokenizer, question, m, batch_size, max_new_tokens):
                verdict, reason = _parse(text, a, b)
                if verdict is None:
                    unread[reason] = unread.get(reason, 0) + 1
                    got["unread"] += 1
                    if len(examples) < 5:
                        examples.append(text[:200])
                else:
                    counts[verdict] += 1
                    got[verdict] += 1
            per_order[f"{first}-first"] = got
    read = counts["a"] + counts["b"]
    low, high = wilson_interval(counts["a"], read)
    p = counts["a"] / read if read else 0.5
    details = {
        "question": PROBE_QUESTION,
        "averaged": f"{n} answers sampled at temperature 1 (no top-k/top-p), half with each "
        "option named first; p = answers preferring a / answers read",
        "interval": "95% Wilson score interval over the answers read",
        "preferred_a": counts["a"],
        "preferred_b": counts["b"],
        "unparsed": n - read,
        "unparsed_reasons": unread,
        "unparsed_examples": examples,
        "per_order": per_order,
        "max_new_tokens": max_new_tokens,
        "seed": seed,
    }
    return ProbeResult(p, low, high, "sample", n, details)


# --- reading free-text answers -----------------------------------------------------------------

_ARTICLE = r"(?:(?:a|an|the|my|some|our)\s+)?"
_LISTING = re.compile(
    rf"^\s*,?\s*(?:and|or|nor|vs\.?|versus|against|&|/)\s+{_ARTICLE}$", re.IGNORECASE
)
# The option right after one of these is the one *not* preferred ("a over b", "rather than b").
_LOSER_MARK = re.compile(
    r"(?:\brather than|\binstead of|\bover|\bthan|\babove|\bcompared (?:to|with)|\bversus"
    r"|\boutweighs?|\bbeats?|\btrumps?|\bsurpass(?:es)?|\bouts?hines?)"
    rf"\s+(?:(?:in|with|for|to|on)\s+)?{_ARTICLE}$",
    re.IGNORECASE,
)
_TO_MARK = re.compile(rf"\bto\s+{_ARTICLE}$", re.IGNORECASE)  # "prefer a to b"
# A negation marks an option as not preferred only when it governs a choice or liking verb
# right before it ("I don't like dogs", "I'd never pick a dog", "not a fan of dogs"); elsewhere
# it says nothing about the option ("You can't go wrong with a dog", "I can't resist a dog").
_NEGATED_CHOICE = re.compile(
    r"(?:\bnot|n't|\bnever|\bno longer|\bhardly)\s+(?:\w+\s+){0,2}?"
    r"(?:like|love|prefer|choose|pick|want|go with|go for|opt for|favou?r|select|enjoy"
    rf"|care for|recommend|fan of)\s+{_ARTICLE}$",
    re.IGNORECASE,
)
# A negated or empty subject turns a loser mark around: "Nothing beats a dog", "There's no
# better pet than a dog", "I don't think anything beats a dog".
_NEGATED_SUBJECT = re.compile(
    r"\b(?:nothing|nobody|no one|none|no|not|never)\b|n't\b", re.IGNORECASE
)
# "x is worse than y" prefers y; "I like x less than y" too, but "x is less messy than y"
# prefers x: "less"/"fewer" reverse the comparison only after a liking verb.
_WORSE_THAN = re.compile(
    rf"^[^,;:]*\b(?:worse|inferior)\b[^,;:]*\b(?:than|to)\s+{_ARTICLE}$", re.IGNORECASE
)
_LESS_THAN = re.compile(rf"^[^,;:]*\b(?:less|fewer)\b[^,;:]*\bthan\s+{_ARTICLE}$", re.IGNORECASE)
_LIKING = re.compile(r"\b(?:like|love|enjoy|prefer|care for|want)\b", re.IGNORECASE)
_STRONG = re.compile(
    r"(?:prefer|choose|pick|go with|go for|opt for|favou?r|select|side with|lean towards?"
    rf"|partial to|drawn to)\s+{_ARTICLE}$",
    re.IGNORECASE,
)
_NO_PREFERENCE = re.compile(
    r"\bas an ai\b|\b(?:don't|do not|cannot|can't|can not) (?:really )?(?:have|express|hold|"
    r"form) (?:a |any )?(?:personal )?(?:preferences?|opinions?|feelings?)"
    r"|\bno (?:personal |particular )?preference|\bneither\b|\b(?:like|love|enjoy|prefer) "
    r"(?:them )?(?:both|equally)\b|\bboth (?:are|have)\b|\bequally\b",
    re.IGNORECASE,
)
_SENTENCE = re.compile(r"[^.!?\n]+[.!?]?")
_CLAUSE = re.compile(r"[,;:]")


def _mentions(sentence: str, a: str, b: str) -> list[tuple[int, int, str]]:
    found = []
    for label, name in (("a", a), ("b", b)):
        pattern = re.compile(rf"\b{re.escape(name)}(?:e?s)?\b", re.IGNORECASE)
        found += [(m.start(), m.end(), label) for m in pattern.finditer(sentence)]
    return sorted(found)


def _clause_lead(sentence: str, found, k: int) -> str:
    """The text of mention k's clause before it (from the previous mention or clause mark)."""
    lead = sentence[found[k - 1][1] if k else 0 : found[k][0]]
    return lead[max((m.end() for m in _CLAUSE.finditer(lead)), default=0) :]


def _judge(sentence: str, a: str, b: str) -> tuple[str | None, str]:
    """('a' | 'b' | None, reason) for one sentence that names at least one option."""
    found = _mentions(sentence, a, b)
    neutral = [False] * len(found)
    forced: dict[int, bool] = {}  # mention -> is the loser, from a "worse/less ... than"
    for k in range(len(found) - 1):
        (_, end1, o1), (start2, _, o2) = found[k], found[k + 1]
        between = sentence[end1:start2]
        if o1 != o2 and _LISTING.match(between):
            neutral[k] = neutral[k + 1] = True  # "a and b", "a or b": named, not chosen
        elif _WORSE_THAN.search(between) or (
            _LESS_THAN.search(between) and _LIKING.search(_clause_lead(sentence, found, k))
        ):
            forced[k], forced[k + 1] = True, False
        elif _LESS_THAN.search(between):
            neutral[k] = neutral[k + 1] = True  # "less messy than": depends on the adjective
    winners, losers, strong = set(), set(), set()
    seen_real = False
    for k, (start, _, label) in enumerate(found):
        if neutral[k]:
            continue
        lead = sentence[found[k - 1][1] if k else 0 : start]
        context = _clause_lead(sentence, found, k)
        if k in forced:
            loser = forced[k]
        else:
            mark = _LOSER_MARK.search(lead)
            loser = bool(mark) and not _NEGATED_SUBJECT.search(lead[: mark.start()])
            loser = loser or (seen_real and bool(_TO_MARK.search(lead)))
            loser = loser or bool(_NEGATED_CHOICE.search(context))
        (losers if loser else winners).add(label)
        if not loser and _STRONG.search(lead):
            strong.add(label)
        seen_real = True
    other = {"a": "b", "b": "a"}
    if len(winners) == 1:
        return next(iter(winners)), "read"
    if not winners and len(losers) == 1:
        return other[next(iter(losers))], "read"
    if len(winners) == 2 and len(strong) == 1:
        return next(iter(strong)), "read"
    if not winners and not losers:
        return None, "only listed"
    return None, "ambiguous"


def _parse(text: str, a: str, b: str) -> tuple[str | None, str]:
    for sentence in _SENTENCE.findall(text):
        if _NO_PREFERENCE.search(sentence):
            return None, "no preference stated"
        if not _mentions(sentence, a, b):
            continue
        verdict, reason = _judge(sentence, a, b)
        if reason == "only listed":
            continue  # "dogs and birds are both ... " then maybe a choice in the next sentence
        return verdict, reason
    return None, "no option named"


def parse_preference(text: str, a: str, b: str) -> str | None:
    """Which of ``a`` and ``b`` a free-text answer prefers: ``"a"``, ``"b"``, or None.

    Rules, applied to the first sentence that names an option (sentences that only list both,
    as in "Dogs and birds are both lovely.", are passed over): options joined by and/or/against
    are listed, not chosen; an option after "over", "than", "rather than", "instead of",
    "compared to", "outweighs", or after "to" when another option came first ("prefer a to b"),
    or after a negated choice verb in its clause ("I don't like dogs", "I'd never pick a dog"),
    is the one not preferred, unless the comparison's subject is negated ("Nothing beats a
    dog"); "worse ... than", and "less ... than" after a liking verb ("I like dogs less than
    birds"), reverse the comparison, while other "less ... than" comparisons ("less messy than")
    are read as naming both options without a choice. One preferred option left: that one.
    Only a not-preferred one: the other. Both: the one after a choice verb (prefer, choose,
    pick, ...), if exactly one is. Statements of no preference ("As an AI ...", "neither",
    "both are", "equally") give None, as does text that names neither option.

    >>> parse_preference("I'd go with a bird over a dog.", "dog", "bird")
    'b'
    >>> parse_preference("Between dog and bird, dog comes out on top for me.", "dog", "bird")
    'a'
    >>> parse_preference("As an AI, I have no preference.", "dog", "bird") is None
    True
    """
    return _parse(text, a, b)[0]
