"""Measure the preference a language model has learned: ``probe(model, tokenizer, a, b)``.

Each method estimates P(a preferred to b) and returns a ``ProbeResult(p, logit, ci_low, ci_high,
method, n, count, details)``:

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

Every result carries ``logit``, log(p / (1 - p)), computed from the log-probabilities without
cancellation (a log-sum-exp over answers and questions), so a preference of 1 - 1e-20 is kept
as logit 46.05 where p itself rounds to 1 in float64; ``llm_bridge.convert`` analyses from it.

The methods are the entries of ``METHODS`` (name -> ``ProbeMethod``), the one list the sweep,
the command line and ``convert`` read. Adding a method is one function
``(model, tokenizer, a, b, options) -> ProbeResult`` and one entry there
(docs/architecture.md, "Add a probe method"). Importing this module does not import torch: the
scoring engine (``_scoring``) is loaded by the methods when they run.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

from ._parse import parse_preference, read_answer
from .templates import ANSWER_TEMPLATES, PROBE_QUESTION, fill

__all__ = [
    "METHODS",
    "ProbeMethod",
    "ProbeOptions",
    "ProbeResult",
    "answer_logprobs",  # noqa: F822 (loaded lazily, see __getattr__)
    "parse_preference",
    "probe",
    "probe_order",
    "wilson_interval",
]

_N_T = len(ANSWER_TEMPLATES)  # answers per direction (30)
_Z = 1.959963984540054  # the standard normal 97.5% quantile: a two-sided 95% interval


class ProbeResult(NamedTuple):
    """An estimate of P(a preferred to b) by one probe method.

    Attributes:
        p: the estimate, in [0, 1].
        logit: log(p / (1 - p)), computed without cancellation from the log-probabilities:
            finite (e.g. 46.05 for p = 1 - 1e-20) where ``p`` rounds to 0 or 1 in float64;
            +-inf only for a sampled estimate with every answer read one way.
        ci_low, ci_high: its interval; ``ci_low <= p <= ci_high``. For ``"sample"`` a 95%
            Wilson interval; for ``"likelihood"`` and ``"reward"`` the range of the estimate
            over the questions averaged (``details["interval"]`` says which).
        method: a name in ``METHODS``.
        n: answers sampled (sampled methods), or (question, answer) pairs scored.
        count: the Bernoulli observations behind ``p`` for a sampled method (the answers
            read), None for an exact one.
        details: JSON-ready facts behind the number (what was averaged, per-question values,
            counts of unreadable answers, ...).
    """

    p: float
    logit: float
    ci_low: float
    ci_high: float
    method: str
    n: int
    count: int | None
    details: dict[str, Any]


class ProbeOptions(NamedTuple):
    """The settings every method receives (each reads the ones it needs; see ``probe``)."""

    questions: tuple[str, ...]
    n: int
    seed: int
    batch_size: int
    max_new_tokens: int
    ref_model: Any
    beta: float
    prefix_reuse: bool


class ProbeMethod(NamedTuple):
    """One probe method: ``run(model, tokenizer, a, b, options) -> ProbeResult``.

    Attributes:
        name: the method's name (its key in ``METHODS``).
        run: the estimator.
        sampled: True when the estimate counts sampled answers (a binomial proportion with
            ``ProbeResult.count`` observations), False for an exact computation.
        summary: one line for help texts.
    """

    name: str
    run: Callable[..., ProbeResult]
    sampled: bool
    summary: str


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
        method: a name in ``METHODS``: ``"likelihood"`` (exact, default), ``"sample"`` (the
            paper's) or ``"reward"``.
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
        raise ValueError(f"method must be one of {tuple(METHODS)}, got {method!r}")
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
    options = ProbeOptions(
        questions, n, seed, batch_size, max_new_tokens, ref_model, beta, prefix_reuse
    )
    try:
        return METHODS[method].run(model, tokenizer, a, b, options)
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


def _softplus(x: float) -> float:
    """log(1 + e^x), without overflow for large x or loss for very negative x."""
    return max(x, 0.0) + math.log1p(math.exp(-abs(x)))


def _logsumexp(xs: Sequence[float]) -> float:
    m = max(xs)
    if math.isinf(m):
        return m
    return m + math.log(sum(math.exp(x - m) for x in xs))


def _sigmoid(x: float) -> float:
    # the two branches keep exp() from overflowing in either tail
    return 1.0 / (1.0 + math.exp(-x)) if x >= 0 else math.exp(x) / (1.0 + math.exp(x))


def mean_sigmoid_logit(log_odds: Sequence[float]) -> float:
    """logit of the mean of sigma(l) over ``log_odds``, without cancellation:
    log sum sigma(l) - log sum sigma(-l), with log sigma(l) = -softplus(-l).

    >>> round(mean_sigmoid_logit([46.0, 47.0]), 6)  # p = 1 - 7.2e-21 rounds to 1; its logit does not
    46.379885
    """
    return _logsumexp([-_softplus(-x) for x in log_odds]) - _logsumexp(
        [-_softplus(x) for x in log_odds]
    )


def _range_result(method, per_q, log_odds, labels, n, details) -> ProbeResult:
    """The mean of per-question values with their range; ``log_odds`` are the log-odds whose
    sigmoids are averaged (equal weight each), from which the mean's logit is computed."""
    p = sum(per_q) / len(per_q)
    low, high = min(min(per_q), p), max(max(per_q), p)  # min() guards float rounding of the mean
    details = {
        **details,
        "interval": "min and max of the per-question values over the questions averaged "
        "(wording and option-order spread); not a sampling interval",
        "per_question": {label: v for label, v in zip(labels, per_q, strict=True)},
    }
    return ProbeResult(p, mean_sigmoid_logit(log_odds), low, high, method, n, None, details)


def _both_orders(questions: Sequence[str], a: str, b: str) -> list[tuple[str, str]]:
    """Each question template filled with (a, b) and with (b, a): (label, question text)."""
    return [
        (f"q{k}:{first}-first", fill(q, first, second))
        for k, q in enumerate(questions)
        for first, second in ((a, b), (b, a))
    ]


def _template_answers(a: str, b: str) -> tuple[list[str], list[str]]:
    return [fill(t, a, b) for t in ANSWER_TEMPLATES], [fill(t, b, a) for t in ANSWER_TEMPLATES]


def _probe_likelihood(model, tokenizer, a, b, opt: ProbeOptions) -> ProbeResult:
    from ._scoring import answer_logprobs

    questions = opt.questions
    prefer_a, prefer_b = _template_answers(a, b)
    labels, per_q, log_odds, mass = [], [], [], []
    for label, question in _both_orders(questions, a, b):
        lp = answer_logprobs(
            model,
            tokenizer,
            question,
            prefer_a + prefer_b,
            batch_size=opt.batch_size,
            prefix_reuse=opt.prefix_reuse,
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
        "prefix_reuse": opt.prefix_reuse,
    }
    return _range_result("likelihood", per_q, log_odds, labels, len(per_q) * 2 * _N_T, details)


def _probe_reward(model, tokenizer, a, b, opt: ProbeOptions) -> ProbeResult:
    from ._scoring import answer_logprobs

    questions, ref_model, beta = opt.questions, opt.ref_model, opt.beta
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
    kw = dict(batch_size=opt.batch_size, prefix_reuse=opt.prefix_reuse)
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
        "prefix_reuse": opt.prefix_reuse,
    }
    return _range_result("reward", per_q, flat, labels, len(per_q) * _N_T, details)


def _probe_sample(model, tokenizer, a, b, opt: ProbeOptions) -> ProbeResult:
    from ._scoring import sample_answers, seeded

    n, seed, batch_size, max_new_tokens = opt.n, opt.seed, opt.batch_size, opt.max_new_tokens
    counts = {"a": 0, "b": 0}
    unread: dict[str, int] = {}
    examples: list[str] = []
    per_order = {}
    device = next(model.parameters()).device
    with seeded(seed, device):
        for k, (first, second) in enumerate(((a, b), (b, a))):
            m = (n + 1 - k) // 2  # n/2 per order; the first order gets the odd one
            question = fill(PROBE_QUESTION, first, second)
            got = {"a": 0, "b": 0, "unread": 0}
            for text in sample_answers(model, tokenizer, question, m, batch_size, max_new_tokens):
                verdict, reason = read_answer(text, a, b)
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
    if read:
        logit = (
            math.log(counts["a"]) - math.log(counts["b"])
            if counts["a"] and counts["b"]
            else (math.inf if counts["a"] else -math.inf)
        )
    else:
        logit = 0.0
    return ProbeResult(p, logit, low, high, "sample", n, read, details)


METHODS: dict[str, ProbeMethod] = {
    m.name: m
    for m in (
        ProbeMethod(
            "likelihood",
            _probe_likelihood,
            sampled=False,
            summary="exact: template answers' probabilities on the probe question",
        ),
        ProbeMethod(
            "sample",
            _probe_sample,
            sampled=True,
            summary="the paper's: sample answers at temperature 1 and read them",
        ),
        ProbeMethod(
            "reward",
            _probe_reward,
            sampled=False,
            summary="exact: the DPO implicit reward model against the reference model",
        ),
    )
}
"""The probe methods by name: the one registry that ``probe``, the sweep, the command line
and ``convert`` read."""


def __getattr__(name: str):
    if name == "answer_logprobs":  # the scoring engine (torch) loads on first use
        from ._scoring import answer_logprobs

        return answer_logprobs
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
