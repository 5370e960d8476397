"""The scoring engine behind the probes: chat rendering, answer log-probabilities on a cached
prompt, answers as one prefix tree (a tree-shaped 4D attention mask), and pure sampling.

Torch and transformers live here; ``probe.py`` holds the methods and their registry.
"""

from __future__ import annotations

import contextlib
import copy
import inspect
import warnings
from collections.abc import Iterator, Sequence

import torch

TREE_TOL = 1e-3  # tree vs alone, in log-probability: float32 sums of ~15 token terms

# --- chat rendering ---------------------------------------------------------------------------


def prompt_text(tokenizer, question: str) -> str:
    messages = [{"role": "user", "content": question}]
    return tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)


def stop_ids(model, tokenizer) -> set[int]:
    ids = {tokenizer.eos_token_id} if tokenizer.eos_token_id is not None else set()
    eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    if isinstance(eos, int):
        ids.add(eos)
    elif eos is not None:
        ids.update(eos)
    return ids


def answer_ids(tokenizer, question: str, answers: Sequence[str], stop: set[int]) -> list[list[int]]:
    """The tokens the model would generate to give each answer: the answer as the chat template
    renders an assistant turn, up to and including the first end-of-turn token.

    The prompt and the answer are tokenized separately, as in generation (the prompt is the
    model's input, the answer its output), which is also how TRL tokenizes preference pairs.
    """
    prompt = prompt_text(tokenizer, question)
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


def length_batches(lengths: Sequence[int], batch_size: int, slack: int = 2) -> list[list[int]]:
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


def base_model(model):
    """The transformers model under a peft wrapper (or the model itself)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def cache_kwarg(model) -> str:
    """The forward argument that takes a key/value cache (``cache`` in transformers >= 5.2x)."""
    params = inspect.signature(base_model(model).forward).parameters
    return "cache" if "cache" in params else "past_key_values"


def takes_custom_masks(model) -> bool:
    """Whether the model applies a 4D attention mask as given (eager and SDPA attention do;
    flash-attention kernels take no arbitrary mask)."""
    return getattr(base_model(model).config, "_attn_implementation", None) in ("sdpa", "eager")


def cache_of(output):
    """The key/value cache of a model output (``cache`` in transformers >= 5.2x, formerly
    ``past_key_values``), or None."""
    for key in ("cache", "past_key_values"):
        if key in output.keys():
            return output[key]
    return None


def prefix_tree(suffixes: Sequence[Sequence[int]]) -> tuple[list[int], list[int], list[list[int]]]:
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


def tree_attention(parents: Sequence[int], dtype, prefix_len: int = 0):
    """The additive 4D attention mask (1, 1, n, prefix_len + n) and the depths (1, n) of a
    prefix tree's nodes laid out in one row: node i attends to the ``prefix_len`` positions
    before the tree (a cached prompt) and to itself and its ancestors, at position id = its
    depth, so it computes exactly what it would compute in its own sequence."""
    n = len(parents)
    depth = [0] * n
    allowed = torch.zeros((n, n), dtype=torch.bool)
    for i, parent in enumerate(parents):
        if parent >= 0:
            depth[i] = depth[parent] + 1
            allowed[i] = allowed[parent]
        allowed[i, i] = True
    mask = torch.zeros((1, 1, n, prefix_len + n), dtype=dtype)
    mask[0, 0, :, prefix_len:].masked_fill_(~allowed, torch.finfo(dtype).min)
    return mask, torch.tensor([depth])


def tree_logprobs(
    model, cache, cache_kw: str, first_logp, prompt_len: int, suffixes, device
) -> list[float]:
    """Score answers that share a prompt in one forward pass of their prefix tree.

    Every distinct answer prefix is one position of a single row; a position attends to the
    prompt (through ``cache``) and to its own ancestors in the tree (a custom 4D attention mask),
    at its depth's position id, so it sees exactly the tokens it would see in its own sequence.
    Shared beginnings ("I prefer ...") are computed once.
    """
    tokens, parents, paths = prefix_tree(suffixes)
    mask, depth = tree_attention(parents, next(model.parameters()).dtype, prefix_len=prompt_len)
    x = torch.tensor([tokens], device=device)
    logits = model(
        input_ids=x,
        attention_mask=mask.to(device),
        position_ids=(prompt_len + depth).to(device),
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
    stop = stop_ids(model, tokenizer)
    prompt_ids = tokenizer(prompt_text(tokenizer, question), add_special_tokens=False)["input_ids"]
    suffixes = answer_ids(tokenizer, question, answers, stop)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    out = [0.0] * len(answers)
    cache, first_logp, cache_kw = None, None, None
    if prefix_reuse:
        cache_kw = cache_kwarg(model)
        prompt = torch.tensor([prompt_ids], device=device)  # (1, Lp)
        result = model(input_ids=prompt, use_cache=True)
        cache = cache_of(result)
        first_logp = torch.log_softmax(result.logits[0, -1].float(), dim=-1)  # (V,)

    def batched(indices: Sequence[int]) -> None:
        """Score answers ``indices`` in batches of similar length, one sequence per answer."""
        for group in length_batches([len(suffixes[k]) for k in indices], batch_size):
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

    if cache is not None and takes_custom_masks(model) and len(suffixes) > 1:
        # Groups of batch_size answers, each scored as one prefix tree on the prompt's cache.
        tree = [0.0] * len(suffixes)
        for start in range(0, len(suffixes), batch_size):
            group = list(range(start, min(start + batch_size, len(suffixes))))
            scores = tree_logprobs(
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
        bad = [k for k in check if abs(out[k] - tree[k]) > TREE_TOL + 1e-6 * abs(out[k])]
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


# --- sampling -------------------------------------------------------------------------------


@contextlib.contextmanager
def seeded(seed: int, device) -> Iterator[None]:
    """Run with torch's RNG seeded; the global RNG state is restored afterwards."""
    devices = [device] if getattr(device, "type", "cpu") == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


def sampling_config(model, tokenizer, max_new_tokens: int):
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
def sample_answers(model, tokenizer, question: str, count: int, batch_size, max_new_tokens):
    device = next(model.parameters()).device
    config = sampling_config(model, tokenizer, max_new_tokens)
    prompt = tokenizer(prompt_text(tokenizer, question), add_special_tokens=False)["input_ids"]
    texts = []
    for start in range(0, count, batch_size):
        rows = min(batch_size, count - start)
        ids = torch.tensor([prompt] * rows, device=device)  # (B, Lp): one prompt, no padding
        out = model.generate(
            input_ids=ids, attention_mask=torch.ones_like(ids), generation_config=config
        )  # (B, Lp + new)
        texts += tokenizer.batch_decode(out[:, len(prompt) :], skip_special_tokens=True)
    return texts


# --- training: a batch of preference pairs as one prefix tree ----------------------------------


class PackedOutput(dict):
    """What TRL's fused LM head returns (``trl.trainer.utils.FusedCausalLMOutput``'s fields),
    as a dict with attribute access: per-token fields of shape (S, T - 1), zero where the label
    is -100."""

    __getattr__ = dict.get


def packed_logps(model, input_ids, attention_mask, labels):
    """Per-token log-probabilities of ``labels`` for a padded batch, computed as one prefix tree.

    ``input_ids`` (S, T) holds S right-padded sequences starting at position 0 (TRL's DPO
    batch: the chosen sequences, then the rejected ones, each prompt + completion); ``labels``
    is ``input_ids`` with -100 where nothing is scored (the prompt, the padding). All S
    sequences become one trie: a shared beginning (the chat template's system prompt, a prompt
    common to the chosen and the rejected answer, a shared answer prefix) is one node, run
    through the backbone once, with a tree-shaped attention mask (``tree_attention``), and the
    LM head is applied only at the positions that predict a label. The result equals scoring
    each sequence on its own (up to float rounding); gradients flow through it.

    Returns a ``PackedOutput`` with ``log_probs``, ``entropy``, ``mean_logits``, ``is_top1``
    and ``label_mask`` of shape (S, T - 1), and ``loss`` (the mean negative log-likelihood).
    """
    device = input_ids.device
    lengths = attention_mask.sum(dim=1).tolist()
    ids = input_ids.tolist()
    seqs = [row[:n] for row, n in zip(ids, lengths, strict=True)]
    tokens, parents, paths = prefix_tree(seqs)
    dtype = next(model.parameters()).dtype
    mask, depth = tree_attention(parents, dtype)
    backbone = model.get_decoder() if hasattr(model, "get_decoder") else model.base_model
    hidden = backbone(
        input_ids=torch.tensor([tokens], device=device),
        attention_mask=mask.to(device),
        position_ids=depth.to(device),
        use_cache=False,
    ).last_hidden_state[0]  # (n, H): one row per distinct prefix
    shifted = labels[:, 1:]  # (S, T - 1): the token each position predicts
    label_mask = shifted != -100
    rows, cols = torch.nonzero(label_mask, as_tuple=True)  # (K,) each
    nodes = torch.tensor(
        [paths[r][c] for r, c in zip(rows.tolist(), cols.tolist(), strict=True)],
        dtype=torch.long,
        device=device,
    )
    targets = shifted[rows, cols]  # (K,)
    logits = model.get_output_embeddings()(hidden[nodes]).float()  # (K, V)
    logp = torch.log_softmax(logits, dim=-1)
    picked = logp.gather(1, targets[:, None])[:, 0]  # (K,)

    def place(values):
        out = torch.zeros(shifted.shape, dtype=values.dtype, device=device)
        return out.index_put((rows, cols), values)

    with torch.no_grad():
        entropy = -(logp.exp() * logp).sum(dim=-1)
        mean_logits = logits.mean(dim=-1)
        top1 = logits.argmax(dim=-1) == targets
    log_probs = place(picked)
    return PackedOutput(
        loss=-picked.sum() / max(len(picked), 1),
        log_probs=log_probs,
        entropy=place(entropy),
        mean_logits=place(mean_logits),
        is_top1=place(top1),
        label_mask=label_mask,
    )


def can_pack(model) -> bool:
    """Whether ``packed_logps`` computes what the model's own forward would: a decoder-only LM
    whose attention takes a custom 4D mask (eager or SDPA) and whose logits are the plain LM
    head (no softcapping or logit scaling)."""
    config = base_model(model).config
    scaled = any(
        getattr(config, name, None) not in (None, 1.0)
        for name in ("final_logit_softcapping", "logit_scale", "logits_scaling")
    )
    return takes_custom_masks(model) and not scaled and not config.is_encoder_decoder


def add_packed_forward(model) -> None:
    """Route the fused-LM-head calls that TRL's DPO trainer makes
    (``model(input_ids, attention_mask, labels, fused_lm_head=True)``, for the policy and for
    the reference log-probabilities) through ``packed_logps``; every other call, generation
    included, goes to the forward as it was. Patch the transformers model (under a peft
    wrapper: ``get_base_model()``) after TRL has added its own fused head."""
    import types

    previous = model.forward

    def forward(self, *args, fused_lm_head=False, labels=None, **kwargs):
        if not fused_lm_head or args or "input_ids" not in kwargs:
            return previous(*args, fused_lm_head=fused_lm_head, labels=labels, **kwargs)
        return packed_logps(self, kwargs["input_ids"], kwargs["attention_mask"], labels)

    model.forward = types.MethodType(forward, model)
