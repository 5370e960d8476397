"""Probes: the free-text reader, the Wilson interval, each method on tiny-random, and
"likelihood" vs "sample" vs "reward" on a stub language model whose answers are known exactly."""

import copy
import math
import warnings
from functools import cache

import mpmath as mp
import pytest
import torch
from scipy.stats import binomtest
from torch import nn
from transformers import DynamicCache, GenerationMixin, LlamaConfig, PreTrainedModel
from transformers.modeling_outputs import CausalLMOutputWithPast

from llm_bridge.models import load_model, tiny_tokenizer
from llm_bridge.probe import (
    ProbeResult,
    answer_logprobs,
    parse_preference,
    probe,
    probe_order,
    wilson_interval,
)
from llm_bridge.templates import ANSWER_TEMPLATES, PROBE_QUESTION, fill

RTOL_F32 = 1e-5  # logits and log-softmax run in float32
TOL_SUM_F32 = 1e-4  # a sum of ~40 float32 token log-probabilities


@pytest.fixture(scope="module")
def tiny():
    return load_model("tiny-random", progress=False)


# --- the free-text reader ----------------------------------------------------------------------


@pytest.mark.parametrize("a, b", [("dog", "bird"), ("cat", "dog"), ("red panda", "owl")])
def test_reader_reads_every_answer_template_both_ways(a, b):
    # Each template states a preference for <A> (templates.py); capitalised too, as a model
    # would start a sentence.
    for template in ANSWER_TEMPLATES:
        for first, second, want in ((a, b, "a"), (b, a, "b")):
            text = fill(template, first, second)
            assert parse_preference(text, a, b) == want, text
            assert parse_preference(text[0].upper() + text[1:], a, b) == want, text


@pytest.mark.parametrize(
    "text, want",
    [
        ("Dogs are wonderful companions!", "a"),
        ("Birds, definitely.", "b"),
        ("I would choose a bird over a dog.", "b"),
        ("I prefer dogs to birds.", "a"),
        ("Rather than dogs, I'd choose birds.", "b"),
        ("I don't like dogs, I prefer birds.", "b"),
        ("I like dogs less than birds.", "b"),
        ("A dog is worse than a bird for me.", "b"),
        ("I would never pick a dog.", "b"),
        ("I'm partial to birds.", "b"),
        ("Dogs and birds are both lovely. But I'd pick a bird.", "b"),
        ("Do you prefer dog or bird? I prefer dog.", "a"),
        ("I'd go with the dog; birds are noisy.", "a"),
        ("As an AI, I don't have personal preferences.", None),
        ("As an AI language model, I cannot have preferences, but dogs are popular.", None),
        ("Neither, I like fish.", None),
        ("I like them both equally.", None),
        ("Hmm, let me think.", None),
        ("Cats are the best.", None),
        ("Dog or bird, who knows.", None),
        ("", None),
        # negations that do not reject the option they precede
        ("You can't go wrong with a dog.", "a"),
        ("Honestly, I can't resist a dog.", "a"),
        ("I couldn't imagine life without a dog.", "a"),
        ("I'm not a fan of dogs.", "b"),
        ("I don't really like dogs.", "b"),
        # a negated subject turns "beats" / "better than" around
        ("Nothing beats a dog.", "a"),
        ("Nothing is better than a dog.", "a"),
        ("There's no better pet than a dog.", "a"),
        ("I don't think anything beats a dog.", "a"),
        # "less ... than" flips only its own comparison, and only after a liking verb
        ("Birds are less messy than dogs, so I prefer birds.", "b"),
        ("I enjoy birds less than dogs.", "a"),
        ("Dogs are less work than birds.", None),
        ("A bird is worse than a dog, and I'd pick a dog.", "a"),
    ],
)
def test_reader_on_free_text(text, want):
    assert parse_preference(text, "dog", "bird") == want


def test_wilson_interval_matches_scipy():
    for k, n in [(0, 10), (3, 10), (10, 10), (57, 200), (199, 200), (1, 1)]:
        ours = wilson_interval(k, n)
        ref = binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
        assert ours == pytest.approx((ref.low, ref.high), abs=1e-12)
        assert ours[0] <= k / n <= ours[1]
    assert wilson_interval(0, 0) == (0.0, 1.0)


# --- each method on tiny-random -----------------------------------------------------------------


def test_likelihood_on_tiny_random(tiny):
    model, tok = tiny
    r = probe(model, tok, "dog", "bird")
    assert isinstance(r, ProbeResult) and r.method == "likelihood"
    assert 0.0 < r.p < 1.0
    assert r.ci_low <= r.p <= r.ci_high
    assert r.n == 2 * 60  # one question in both orders, 30 templates each way
    assert set(r.details["per_question"]) == {"q0:dog-first", "q0:bird-first"}
    per_q = list(r.details["per_question"].values())
    assert r.p == pytest.approx(sum(per_q) / 2, rel=1e-12)
    assert (r.ci_low, r.ci_high) == (min(per_q), max(per_q))
    # the log-odds: of the mean of the per-question sigmoids (independently, in mpmath)
    mp.mp.dps = 40
    mean = sum(1 / (1 + mp.exp(-mp.mpf(x))) for x in r.details["log_odds"].values()) / 2
    assert r.logit == pytest.approx(float(mp.log(mean / (1 - mean))), rel=1e-12)
    # swapping the options gives the complement (the 60 answers are the same set), up to the
    # float32 rounding of the answers' log-probabilities, which are scored in another tree order:
    # |d logit| <= a float32 sum's tolerance, so |d p| <= p (1 - p) times that
    swapped = probe(model, tok, "bird", "dog")
    assert swapped.logit == pytest.approx(-r.logit, abs=TOL_SUM_F32)
    assert swapped.p == pytest.approx(1.0 - r.p, abs=r.p * (1 - r.p) * TOL_SUM_F32)


def test_sample_on_tiny_random_counts_unreadable_answers(tiny):
    model, tok = tiny
    torch.manual_seed(7)
    after = torch.rand(2)
    torch.manual_seed(7)
    r = probe(model, tok, "dog", "bird", method="sample", n=12, seed=3, max_new_tokens=8)
    assert torch.equal(torch.rand(2), after)  # the global RNG is left alone
    d = r.details
    assert r.method == "sample" and r.n == 12
    assert d["preferred_a"] + d["preferred_b"] + d["unparsed"] == 12
    assert sum(d["unparsed_reasons"].values()) == d["unparsed"]
    assert sum(sum(v.values()) for v in d["per_order"].values()) == 12
    # random bytes name no option: every answer is unreadable, and that is reported
    assert d["unparsed"] > 0 and d["unparsed_examples"]
    assert 0.0 <= r.ci_low <= r.p <= r.ci_high <= 1.0
    if d["unparsed"] == 12:
        assert (r.p, r.ci_low, r.ci_high) == (0.5, 0.0, 1.0)
    again = probe(model, tok, "dog", "bird", method="sample", n=12, seed=3, max_new_tokens=8)
    assert again.details["unparsed_examples"] == d["unparsed_examples"]  # seeded


def test_reward_on_tiny_random_lora_equals_explicit_reference(tiny):
    from peft import LoraConfig, get_peft_model

    base, tok = load_model("tiny-random", progress=False)
    reference = copy.deepcopy(base)
    # random (not zero) adapter weights, so the policy differs from its reference
    lora = get_peft_model(
        base, LoraConfig(r=4, target_modules="all-linear", init_lora_weights=False)
    )
    r = probe(lora, tok, "dog", "bird", method="reward", beta=0.5)
    assert r.method == "reward" and 0.0 < r.p < 1.0 and r.ci_low <= r.p <= r.ci_high
    assert r.p != pytest.approx(0.5, abs=1e-4)
    explicit = probe(lora, tok, "dog", "bird", method="reward", beta=0.5, ref_model=reference)
    assert explicit.p == pytest.approx(r.p, rel=RTOL_F32)
    with pytest.raises(ValueError, match="reference model"):
        probe(reference, tok, "dog", "bird", method="reward")


def test_prefix_reuse_equals_full_sequences(tiny):
    model, tok = tiny
    question = fill(PROBE_QUESTION, "dog", "bird")
    answers = [fill(t, "dog", "bird") for t in ANSWER_TEMPLATES[:7]] + ["Bird."]
    cached = answer_logprobs(model, tok, question, answers, batch_size=3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # one prefix tree, no fallback to the plain path
        tree = answer_logprobs(model, tok, question, answers)
    full = answer_logprobs(model, tok, question, answers, prefix_reuse=False)
    # an independent computation: the whole chat through the model, sum of the answer's
    # token log-probabilities up to and including the end-of-turn token
    for answer, got_cached, got_full in zip(answers, cached, full, strict=True):
        prompt = tok.apply_chat_template(
            [{"role": "user", "content": question}], add_generation_prompt=True, tokenize=False
        )
        head = tok(prompt, add_special_tokens=False)["input_ids"]
        tail = tok(answer + "<|im_end|>", add_special_tokens=False)["input_ids"]
        ids = torch.tensor([head + tail])
        with torch.no_grad():
            logp = torch.log_softmax(model(input_ids=ids).logits[0].double(), dim=-1)
        want = sum(float(logp[len(head) - 1 + k, t]) for k, t in enumerate(tail))
        assert got_cached == pytest.approx(want, abs=TOL_SUM_F32)
        assert got_full == pytest.approx(want, abs=TOL_SUM_F32)
    assert tree == pytest.approx(full, abs=TOL_SUM_F32)


def test_probe_order_and_bad_inputs(tiny):
    model, tok = tiny
    got = probe_order(model, tok, ("dog", "bird", "cat"))
    assert list(got) == ["p12", "p23", "p13"]
    assert got["p13"].details["questions"][0] == "Do you prefer dog or cat?"
    with pytest.raises(ValueError, match="method"):
        probe(model, tok, "dog", "bird", method="vibes")
    with pytest.raises(ValueError, match="two different options"):
        probe(model, tok, "dog", "Dog")
    with pytest.raises(ValueError, match="n must be"):
        probe(model, tok, "dog", "bird", method="sample", n=0)
    with pytest.raises(ValueError, match="<A> and <B>"):
        probe(model, tok, "dog", "bird", questions=["Which one?"])


# --- a stub language model with known answers ---------------------------------------------------


class StubLM(PreTrainedModel, GenerationMixin):
    """A chat model whose reply is drawn from a fixed table: given the user question, it answers
    ``text`` with probability ``weights[key][text]`` (``key``: the option the question names
    first), token by token on the byte-level tiny tokenizer, then ends its turn. Its next-token
    logits are the log of the conditional branch masses of that table (-1e4 elsewhere), so every
    answer's probability is known in closed form. The key/value cache holds the token ids."""

    config_class = LlamaConfig

    def __init__(self, tokenizer, weights):
        config = LlamaConfig(
            vocab_size=len(tokenizer),
            hidden_size=8,
            intermediate_size=8,
            num_hidden_layers=1,
            num_attention_heads=1,
            num_key_value_heads=1,
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=tokenizer.eos_token_id,
            bos_token_id=tokenizer.bos_token_id,
        )
        super().__init__(config)
        self.anchor = nn.Parameter(torch.zeros(1))  # gives the model a device
        self.tok = tokenizer
        self.end = tokenizer.convert_tokens_to_ids("<|im_end|>")
        self.marker = tokenizer("<|im_start|>assistant\n", add_special_tokens=False)["input_ids"]
        self.table = {
            key: [
                (tuple(tokenizer(text, add_special_tokens=False)["input_ids"] + [self.end]), w)
                for text, w in answers.items()
            ]
            for key, answers in weights.items()
        }
        self.post_init()

    @cache  # noqa: B019 -- the table is fixed
    def _logits(self, key, generated):
        mass = {}
        for ids, w in self.table[key]:
            if ids[: len(generated)] == generated and len(ids) > len(generated):
                mass[ids[len(generated)]] = mass.get(ids[len(generated)], 0.0) + w
        mass = mass or {self.end: 1.0}
        out = torch.full((self.config.vocab_size,), -1e4)
        total = sum(mass.values())
        for token, w in mass.items():
            out[token] = math.log(w / total)
        return out

    def _row(self, history, first):
        """Logits (T, V) for positions first .. len(history)-1 of one sequence."""
        m = len(self.marker)
        starts = [i + m for i in range(len(history) - m + 1) if history[i : i + m] == self.marker]
        rows = []
        for t in range(first, len(history)):
            begun = [s for s in starts if s <= t + 1]
            if not begun:
                rows.append(torch.zeros(self.config.vocab_size))
                continue
            start = begun[-1]
            user = self.tok.decode(history[:start])
            user = user[user.rfind("user") :]
            key = min(self.table, key=user.find)  # the option named first
            rows.append(self._logits(key, tuple(history[start : t + 1])))
        return torch.stack(rows)

    def forward(self, input_ids=None, attention_mask=None, cache=None, use_cache=None, **kw):
        cache = cache if cache is not None else kw.get("past_key_values")
        if use_cache and cache is None:
            cache = DynamicCache()
        if cache is not None and cache.get_seq_length() > 0:
            past = cache.layers[0].keys[:, 0, :, 0].long()  # (B, P): the ids seen so far
        else:
            past = input_ids[:, :0]
        if cache is not None:
            ids = input_ids[:, None, :, None].float()  # (B, 1, T, 1)
            cache.update(ids, ids, 0)
        history = torch.cat([past, input_ids], dim=1).tolist()
        logits = torch.stack([self._row(h, past.shape[1]) for h in history])  # (B, T, V)
        return CausalLMOutputWithPast(logits=logits, cache=cache)


# With "dog" named first the stub prefers dog; with "bird" first, bird; one answer in five (in
# both orders) is not a preference at all. Answer probabilities are exact by construction.
STUB_WEIGHTS = {
    "dog": {
        "I prefer dog over bird.": 0.40,
        "I just prefer dog.": 0.10,
        "I prefer bird over dog.": 0.20,
        "dog is more attractive to me than bird.": 0.10,
        "Hmm, hard to say.": 0.20,
    },
    "bird": {
        "I prefer dog over bird.": 0.30,
        "I prefer bird over dog.": 0.30,
        "bird is more attractive to me than dog.": 0.20,
        "Hmm, hard to say.": 0.20,
    },
}


def _closed_form_p_dog(weights):
    """P(an answer prefers dog | it is a template answer), per question, by reading the table:
    the templates are 'I prefer <A> over <B>.', 'I just prefer <A>.' and '<A> is more attractive
    to me than <B>.'."""
    out = {}
    for key, answers in weights.items():
        dog = sum(w for t, w in answers.items() if t.startswith(("I prefer dog", "I just", "dog")))
        read = sum(w for t, w in answers.items() if not t.startswith("Hmm"))
        out[key] = dog / read
    return out


def test_likelihood_and_sample_agree_on_a_model_known_in_closed_form():
    tok = tiny_tokenizer()
    stub = StubLM(tok, STUB_WEIGHTS).eval()
    exact = _closed_form_p_dog(STUB_WEIGHTS)  # {"dog": 0.75, "bird": 0.5}
    want = (exact["dog"] + exact["bird"]) / 2

    # the stub reads its input as one sequence, ignoring masks: the prefix tree is refused
    with pytest.warns(UserWarning, match="does not apply a custom attention mask"):
        lik = probe(stub, tok, "dog", "bird")
    assert lik.p == pytest.approx(want, rel=RTOL_F32)
    assert lik.details["per_question"]["q0:dog-first"] == pytest.approx(exact["dog"], rel=RTOL_F32)
    assert lik.details["per_question"]["q0:bird-first"] == pytest.approx(
        exact["bird"], rel=RTOL_F32
    )
    # the template answers carry 80% of the stub's answers, in both orders
    for mass in lik.details["template_mass"].values():
        assert mass == pytest.approx(0.8, rel=RTOL_F32)

    n = 400
    smp = probe(stub, tok, "dog", "bird", method="sample", n=n, seed=0, batch_size=100)
    d = smp.details
    assert d["preferred_a"] + d["preferred_b"] + d["unparsed"] == n
    # both orders lose the same 20% to unreadable answers, so the pooled frequency estimates
    # the mean of the two per-order probabilities
    assert smp.ci_low <= want <= smp.ci_high
    assert smp.ci_low <= lik.p <= smp.ci_high
    unread = binomtest(d["unparsed"], n).proportion_ci(confidence_level=0.999, method="wilson")
    assert unread.low <= 0.2 <= unread.high
    assert d["unparsed_reasons"] == {"no option named": d["unparsed"]}


def test_log_odds_are_exact_where_p_rounds_to_one():
    # A stub whose template answers prefer dog 1e20 : 1 in both question orders: P = 1 - 1e-20,
    # which float64 rounds to 1; the log-odds, 46.0517, are kept (float32 scores: a few ulps of
    # the per-token log-probabilities).
    tok = tiny_tokenizer()
    weights = {"I prefer dog over bird.": 1.0, "I prefer bird over dog.": 1e-20}
    stub = StubLM(tok, {"dog": weights, "bird": weights}).eval()
    with pytest.warns(UserWarning, match="does not apply a custom attention mask"):
        r = probe(stub, tok, "dog", "bird")
    assert r.p == 1.0  # float64 cannot tell
    assert r.logit == pytest.approx(math.log(1e20), abs=TOL_SUM_F32)
    swapped = probe(stub, tok, "bird", "dog")
    assert swapped.p == pytest.approx(1e-20, rel=TOL_SUM_F32) and swapped.logit == pytest.approx(
        -math.log(1e20), abs=TOL_SUM_F32
    )


def test_reward_on_stub_models_matches_the_closed_form():
    # Policy and reference give every one of the 60 template answers some mass, so each
    # log pi/pi_ref is finite and known: log(w_policy / w_ref).
    tok = tiny_tokenizer()
    a, b = "dog", "bird"
    policy_w, ref_w = {}, {}
    for key in (a, b):
        policy_w[key], ref_w[key] = {}, {}
        for t, template in enumerate(ANSWER_TEMPLATES):
            pa, pb = 1.0 + (t % 3), 1.0 + (t % 5) * (2.0 if key == a else 0.5)
            policy_w[key][fill(template, a, b)] = pa
            policy_w[key][fill(template, b, a)] = pb
            ref_w[key][fill(template, a, b)] = 1.0 + (t % 2)
            ref_w[key][fill(template, b, a)] = 1.0
    beta = 0.7
    per_q = []
    for key in (a, b):
        zp, zr = sum(policy_w[key].values()), sum(ref_w[key].values())
        total = 0.0
        for template in ANSWER_TEMPLATES:
            ya, yb = fill(template, a, b), fill(template, b, a)
            ra = math.log(policy_w[key][ya] / zp) - math.log(ref_w[key][ya] / zr)
            rb = math.log(policy_w[key][yb] / zp) - math.log(ref_w[key][yb] / zr)
            total += 1.0 / (1.0 + math.exp(-beta * (ra - rb)))
        per_q.append(total / len(ANSWER_TEMPLATES))
    got = probe(
        StubLM(tok, policy_w).eval(),
        tok,
        a,
        b,
        method="reward",
        beta=beta,
        ref_model=StubLM(tok, ref_w).eval(),
    )
    assert got.p == pytest.approx(sum(per_q) / 2, rel=RTOL_F32)
    assert (got.ci_low, got.ci_high) == pytest.approx((min(per_q), max(per_q)), rel=RTOL_F32)
