"""Synthesize the paper's preference datasets D(omega_a, p12, p23) (Section 4, Appendix C.2).

A dataset is built from a ranking ``order = (o1, o2, o3)`` and two probabilities: ``p12``, how
often o1 is preferred to o2, and ``p23``, how often o2 is preferred to o3. Each row asks one of
the two *observed* pairs, 1-2 or 2-3 (never 1-3: the dataset says nothing about p13), with a
question template whose two options appear in a random order, and answers with one answer
template: the chosen answer prefers the winner, the rejected answer is the same template with
the options swapped.

Two ways to draw the labels:

* ``exact=False`` (the paper): each row independently picks its pair (1/2 each), its winner
  (Bernoulli(p)), the order the options are shown in (1/2 each) and its two templates
  (uniformly).
* ``exact=True`` (stratified): the counts are fixed instead of drawn. The 1-2 pair gets
  ``ceil(n/2)`` rows and 2-3 ``floor(n/2)``; o1 wins ``round(p12 * n12)`` of the 1-2 rows (halves
  round up) and o2 ``round(p23 * n23)`` of the 2-3 rows; within each (pair, winner) cell half the
  questions show the winner first; every question and answer template is used
  ``floor(n/20)`` or ``ceil(n/20)`` (``/30``) times. Only which row gets what is random. Use it
  for small n: at n = 200 and p = 0.99 a Bernoulli draw gives 0 to 3 losses in a 1-2 pair of 100
  (a spread as large as the effect under study), where exact gives one.

The result is a :class:`datasets.Dataset` in TRL's conversational preference format (``prompt``,
``chosen``, ``rejected`` as lists of chat messages) plus metadata columns (see ``FEATURES``).
``save_jsonl`` / ``load_jsonl`` write and read it as JSONL with a manifest beside it; the same
parameters and seed give byte-identical files.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import warnings
from collections import Counter
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

from datasets import Dataset, DatasetInfo, Features, List, Value
from tqdm.auto import tqdm

from . import __version__
from ._config import to_jsonable
from ._io import atomic_write
from .templates import ANSWER_TEMPLATES, QUESTION_TEMPLATES, TEMPLATES_SHA256, fill

__all__ = [
    "FEATURES",
    "PAIRS",
    "DatasetConfig",
    "dataset_params",
    "dataset_sha256",
    "load_jsonl",
    "make_dataset",
    "manifest_path",
    "realised",
    "save_jsonl",
    "summarize",
]

PAIRS = ("1-2", "2-3")
"""The two observed pairs, as stored in the ``pair`` column (ranks within ``order``)."""

_MESSAGES = List({"role": Value("string"), "content": Value("string")})
FEATURES = Features(
    {
        "prompt": _MESSAGES,  # [{"role": "user", "content": question}]
        "chosen": _MESSAGES,  # [{"role": "assistant", "content": answer preferring `winner`}]
        "rejected": _MESSAGES,  # [{"role": "assistant", "content": same template, `loser` preferred}]
        "pair": Value("string"),  # "1-2" or "2-3"
        "option_i": Value("string"),  # the pair's better-ranked option in `order` (o1 or o2)
        "option_j": Value("string"),  # the pair's other option (o2 or o3)
        "winner": Value("string"),  # the option the chosen answer prefers
        "loser": Value("string"),
        "shown_first": Value("string"),  # the option the question names first (<A>)
        "shown_second": Value("string"),
        "question_id": Value("int32"),  # 0-based index into templates.QUESTION_TEMPLATES
        "answer_id": Value("int32"),  # 0-based index into templates.ANSWER_TEMPLATES
    }
)
"""Column types of a synthesized dataset, in column order."""

_PARAMS_KEY = "llm_bridge.DatasetConfig"
_FORMAT = "llm_bridge.preference_dataset/1"


def _is_real(x: Any) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool)


@dataclass(frozen=True)
class DatasetConfig:
    """Parameters of one dataset D(order, p12, p23), validated on construction."""

    order: tuple[str, ...] = field(
        default=("dog", "bird", "cat"),
        metadata={
            "help": "the ranking omega_a = (o1, o2, o3): three distinct option names, "
            "comma-separated on the command line",
            "metavar": "O1,O2,O3",
        },
    )
    p12: float = field(
        default=0.99, metadata={"help": "probability that o1 is preferred to o2, in [0, 1]"}
    )
    p23: float = field(
        default=0.3, metadata={"help": "probability that o2 is preferred to o3, in [0, 1]"}
    )
    n: int = field(default=256, metadata={"help": "number of preference pairs (rows), >= 1"})
    seed: int = field(default=0, metadata={"help": "random seed (>= 0); same seed, same bytes"})
    exact: bool = field(
        default=False,
        metadata={
            "help": "stratified exact counts (round(p * n_pair) wins per pair, balanced templates "
            "and option order) instead of the paper's independent Bernoulli draws"
        },
    )

    def __post_init__(self) -> None:
        order = self.order
        if isinstance(order, str) or not hasattr(order, "__len__"):
            raise ValueError(
                f"order must be a sequence of three option names, e.g. ('dog', 'bird', 'cat'), "
                f"got {order!r}"
            )
        order = tuple(order)
        if len(order) != 3:
            raise ValueError(
                f"order must hold exactly three option names, got {len(order)}: {order!r}"
            )
        for k, name in enumerate(order, start=1):
            if not isinstance(name, str) or not name.strip():
                raise ValueError(
                    f"order[{k - 1}] (option o{k}) must be a non-empty string, got {name!r}"
                )
            if name != name.strip():
                raise ValueError(
                    f"order[{k - 1}] (option o{k}) has leading or trailing whitespace: {name!r}"
                )
        folded = [name.casefold() for name in order]
        if len(set(folded)) != 3:
            raise ValueError(
                f"order must name three distinct options (case-insensitive), got {order!r}"
            )
        object.__setattr__(self, "order", order)
        for name in ("p12", "p23"):
            p = getattr(self, name)
            if not _is_real(p) or not (0.0 <= p <= 1.0):  # NaN fails the comparison too
                raise ValueError(f"{name} must be a probability in [0, 1], got {p!r}")
            object.__setattr__(self, name, float(p))
        if not isinstance(self.n, int) or isinstance(self.n, bool) or self.n < 1:
            raise ValueError(f"n must be an integer >= 1 (the number of pairs), got {self.n!r}")
        if not isinstance(self.seed, int) or isinstance(self.seed, bool) or self.seed < 0:
            raise ValueError(f"seed must be an integer >= 0, got {self.seed!r}")
        if not isinstance(self.exact, bool):
            raise ValueError(f"exact must be True or False, got {self.exact!r}")
        if self.exact:
            _check_realisable(self)


def _pair_sizes(n: int) -> dict[str, int]:
    """Rows of each pair in an exact dataset of n rows: ceil(n/2) for 1-2, floor(n/2) for 2-3."""
    return {"1-2": (n + 1) // 2, "2-3": n // 2}


def realised(p: float, m: int) -> tuple[int, float]:
    """(wins, proportion) that an exact dataset gives a pair of m rows asked for p: the nearest
    count, halves rounded up (``round(p * m)``)."""
    k = _round_half_up(p, m)
    return k, (k / m if m else float("nan"))


def _check_realisable(cfg: DatasetConfig) -> None:
    """An exact dataset must realise a requested 0 < p < 1 strictly inside (0, 1): p12 = 0.99
    with 32 rows of (o1, o2) would be 32 of 32, i.e. 1.0, a preference with no finite DPO
    optimum and no finite log-odds. Raise, naming the smallest n that works."""
    for name, pair in (("p12", "1-2"), ("p23", "2-3")):
        p = getattr(cfg, name)
        if not 0.0 < p < 1.0:
            continue
        m = _pair_sizes(cfg.n)[pair]
        k, got = realised(p, m)
        if 0 < k < m:
            continue
        n = cfg.n
        while not 0 < realised(p, _pair_sizes(n)[pair])[0] < _pair_sizes(n)[pair]:
            n += 1
        raise ValueError(
            f"{name} = {p!r} cannot be realised with {m} rows of pair {pair} (n = {cfg.n}): "
            f"the nearest count is {k} of {m}, a proportion of {got:g}; the smallest n that "
            f"realises it strictly between 0 and 1 is {n}"
        )


def _round_half_up(p: float, m: int) -> int:
    # Decimal(repr(p)) is the probability as typed (0.35, not 0.34999999999999997), so the
    # half-way cases round the way a reader expects.
    return int((Decimal(repr(p)) * m).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def _balanced(rng: random.Random, k: int, m: int) -> list[int]:
    """m indices into range(k), each used floor(m/k) or ceil(m/k) times, in random order."""
    out = list(range(k)) * (m // k) + rng.sample(range(k), m % k)
    rng.shuffle(out)
    return out


def _plan_bernoulli(
    cfg: DatasetConfig, rng: random.Random
) -> list[tuple[str, bool, bool, int, int]]:
    probs = {"1-2": cfg.p12, "2-3": cfg.p23}
    plan = []
    for _ in range(cfg.n):
        pair = PAIRS[0] if rng.random() < 0.5 else PAIRS[1]
        i_wins = rng.random() < probs[pair]  # Bernoulli(p): random() is in [0, 1)
        i_first = rng.random() < 0.5
        plan.append((pair, i_wins, i_first, rng.randrange(20), rng.randrange(30)))
    return plan


def _plan_exact(cfg: DatasetConfig, rng: random.Random) -> list[tuple[str, bool, bool, int, int]]:
    sizes = _pair_sizes(cfg.n)
    wins = {
        "1-2": _round_half_up(cfg.p12, sizes["1-2"]),
        "2-3": _round_half_up(cfg.p23, sizes["2-3"]),
    }
    cells = []
    for pair in PAIRS:
        for i_wins, m in ((True, wins[pair]), (False, sizes[pair] - wins[pair])):
            # winner shown first in half of the cell; a leftover row gets a coin flip
            winner_first = [True] * (m // 2) + [False] * (m // 2)
            if m % 2:
                winner_first.append(rng.random() < 0.5)
            cells += [(pair, i_wins, wf == i_wins) for wf in winner_first]
    rng.shuffle(cells)
    questions = _balanced(rng, len(QUESTION_TEMPLATES), cfg.n)
    answers = _balanced(rng, len(ANSWER_TEMPLATES), cfg.n)
    return [(*cell, q, a) for cell, q, a in zip(cells, questions, answers, strict=True)]


def make_dataset(
    order: tuple[str, str, str] = ("dog", "bird", "cat"),
    p12: float = 0.99,
    p23: float = 0.3,
    n: int = 256,
    seed: int = 0,
    exact: bool = False,
    *,
    progress: bool = False,
) -> Dataset:
    """Synthesize D(order, p12, p23) with ``n`` rows (Appendix C.2); see the module docstring.

    Args:
        order: the ranking (o1, o2, o3); three distinct non-empty names.
        p12: P(o1 preferred to o2) in [0, 1].
        p23: P(o2 preferred to o3) in [0, 1].
        n: number of rows (preference pairs), >= 1.
        seed: seed of the generator (Python's ``random.Random``, Mersenne Twister).
        exact: stratified exact counts instead of Bernoulli draws.
        progress: show a progress bar.

    Returns:
        A ``datasets.Dataset`` with columns ``FEATURES``; its ``info.description`` records the
        parameters (read them back with ``dataset_params``).

    Raises:
        ValueError: a bad parameter, named with its value.

    Examples:
        >>> ds = make_dataset(n=200, exact=True)  # p12 = 0.99 is 99 of the 100 rows of (o1, o2)
        >>> sorted(ds.column_names)[:3], ds[0]["prompt"][0]["role"]
        (['answer_id', 'chosen', 'loser'], 'user')
    """
    cfg = DatasetConfig(order=order, p12=p12, p23=p23, n=n, seed=seed, exact=exact)
    rng = random.Random(cfg.seed)
    plan = _plan_exact(cfg, rng) if cfg.exact else _plan_bernoulli(cfg, rng)
    o1, o2, o3 = cfg.order
    members = {"1-2": (o1, o2), "2-3": (o2, o3)}
    rows = []
    for pair, i_wins, i_first, q, a in tqdm(plan, desc="synthesizing", disable=not progress):
        opt_i, opt_j = members[pair]
        winner, loser = (opt_i, opt_j) if i_wins else (opt_j, opt_i)
        first, second = (opt_i, opt_j) if i_first else (opt_j, opt_i)
        rows.append(
            {
                "prompt": [{"role": "user", "content": fill(QUESTION_TEMPLATES[q], first, second)}],
                "chosen": [
                    {"role": "assistant", "content": fill(ANSWER_TEMPLATES[a], winner, loser)}
                ],
                "rejected": [
                    {"role": "assistant", "content": fill(ANSWER_TEMPLATES[a], loser, winner)}
                ],
                "pair": pair,
                "option_i": opt_i,
                "option_j": opt_j,
                "winner": winner,
                "loser": loser,
                "shown_first": first,
                "shown_second": second,
                "question_id": q,
                "answer_id": a,
            }
        )
    if not cfg.exact:
        for name, pair in (("p12", "1-2"), ("p23", "2-3")):
            p = getattr(cfg, name)
            cells = [i_wins for pr, i_wins, *_ in plan if pr == pair]
            if 0.0 < p < 1.0 and cells and sum(cells) in (0, len(cells)):
                warnings.warn(
                    f"the Bernoulli draw realised {name} = {p!r} as {sum(cells)} of "
                    f"{len(cells)} (a proportion of {sum(cells) / len(cells):g}); use more rows "
                    "or exact=True to realise it strictly between 0 and 1",
                    stacklevel=2,
                )
    description = json.dumps({_PARAMS_KEY: to_jsonable(cfg)}, sort_keys=True)
    return Dataset.from_list(rows, info=DatasetInfo(description=description, features=FEATURES))


def dataset_params(dataset: Dataset) -> DatasetConfig | None:
    """The parameters ``make_dataset`` recorded in ``dataset``, or None for a dataset made otherwise."""
    try:
        params = json.loads(dataset.info.description or "")[_PARAMS_KEY]
    except (ValueError, KeyError, TypeError):
        return None
    return DatasetConfig(**{**params, "order": tuple(params["order"])})


def summarize(dataset: Dataset) -> dict[str, Any]:
    """Counts per pair (rows, wins of the better-ranked option, the empirical p), per template,
    and how often that option was shown first. Needs the metadata columns of ``FEATURES``."""
    cols = {c: dataset[c] for c in ("pair", "option_i", "option_j", "winner", "shown_first")}
    pairs = {}
    for pair in PAIRS:
        idx = [k for k, p in enumerate(cols["pair"]) if p == pair]
        wins = sum(cols["winner"][k] == cols["option_i"][k] for k in idx)
        i_first = sum(cols["shown_first"][k] == cols["option_i"][k] for k in idx)
        pairs[pair] = {
            "option_i": cols["option_i"][idx[0]] if idx else None,
            "option_j": cols["option_j"][idx[0]] if idx else None,
            "n": len(idx),
            "i_preferred": wins,
            "p_hat": wins / len(idx) if idx else None,
            "i_shown_first": i_first,
        }
    q = Counter(dataset["question_id"])
    a = Counter(dataset["answer_id"])
    return {
        "n": len(dataset),
        "pairs": pairs,
        "question_id_counts": [q.get(k, 0) for k in range(len(QUESTION_TEMPLATES))],
        "answer_id_counts": [a.get(k, 0) for k in range(len(ANSWER_TEMPLATES))],
    }


def manifest_path(path: str | os.PathLike) -> Path:
    """Where the manifest of the JSONL file ``path`` lives: ``x.jsonl`` -> ``x.manifest.json``."""
    return Path(path).with_suffix(".manifest.json")


def _jsonl_bytes(dataset: Dataset) -> bytes:
    lines = [json.dumps(row, ensure_ascii=False) for row in dataset.to_list()]
    return ("\n".join(lines) + "\n").encode("utf-8") if lines else b""


def dataset_sha256(dataset: Dataset) -> str:
    """The SHA-256 of the JSONL file ``save_jsonl`` writes for ``dataset`` (its identity)."""
    return hashlib.sha256(_jsonl_bytes(dataset)).hexdigest()


def save_jsonl(dataset: Dataset, path: str | os.PathLike) -> Path:
    """Write ``dataset`` as JSONL (one row per line, UTF-8) and a manifest beside it.

    The manifest (``manifest_path(path)``) holds the parameters and seed, the counts of
    ``summarize``, the package version, and SHA-256 digests of the data and of the templates.
    Nothing time- or machine-dependent goes in, so equal inputs give byte-identical files. Both
    files are written atomically (temporary file, then rename).

    Returns:
        The path of the manifest.
    """
    path = Path(path)
    data = _jsonl_bytes(dataset)
    params = dataset_params(dataset)
    manifest = {
        "format": _FORMAT,
        "data_file": path.name,
        "data_sha256": hashlib.sha256(data).hexdigest(),
        "rows": len(dataset),
        "params": to_jsonable(params) if params is not None else None,
        "counts": summarize(dataset) if set(FEATURES) <= set(dataset.column_names) else None,
        "package": "llm_bridge",
        "package_version": __version__,
        "templates_sha256": TEMPLATES_SHA256,
    }
    atomic_write(path, data)
    mpath = manifest_path(path)
    atomic_write(mpath, (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode("utf-8"))
    return mpath


def load_jsonl(path: str | os.PathLike) -> Dataset:
    """Read a dataset written by ``save_jsonl`` (or any JSONL with prompt/chosen/rejected).

    The manifest, when present, restores the recorded parameters; a data file whose digest no
    longer matches its manifest is loaded with a warning.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"no dataset at {path}; write one with `llm-bridge synth --out {path}`"
        )
    data = path.read_bytes()
    rows = [json.loads(line) for line in data.decode("utf-8").splitlines() if line.strip()]
    if not rows:
        raise ValueError(f"{path} holds no rows")
    missing = {"prompt", "chosen", "rejected"} - set(rows[0])
    if missing:
        raise ValueError(f"{path} is not a preference dataset: rows lack {sorted(missing)}")
    description = ""
    mpath = manifest_path(path)
    if mpath.is_file():
        manifest = json.loads(mpath.read_text(encoding="utf-8"))
        if manifest.get("data_sha256") != hashlib.sha256(data).hexdigest():
            warnings.warn(
                f"{path} changed after its manifest {mpath} was written (SHA-256 differs)",
                stacklevel=2,
            )
        if manifest.get("params") is not None:
            description = json.dumps({_PARAMS_KEY: manifest["params"]}, sort_keys=True)
    if set(rows[0]) == set(FEATURES):
        info = DatasetInfo(description=description, features=FEATURES)
        return Dataset.from_list([{k: r[k] for k in FEATURES} for r in rows], info=info)
    return Dataset.from_list(rows, info=DatasetInfo(description=description))
