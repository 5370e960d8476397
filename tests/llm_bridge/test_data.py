"""Dataset synthesis (Appendix C.2): proportions, structure, determinism, JSONL, bad inputs.

References are independent of the code under test: binomial intervals from scipy, exact
rounding with ``fractions.Fraction``, and the row text parsed back with plain string search.
"""

import hashlib
import json
import math
import re
from fractions import Fraction

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from scipy import stats

from llm_bridge.data import (
    FEATURES,
    DatasetConfig,
    dataset_params,
    load_jsonl,
    make_dataset,
    manifest_path,
    save_jsonl,
)
from llm_bridge.templates import ANSWER_TEMPLATES, QUESTION_TEMPLATES

ORDER = ("dog", "bird", "cat")
# Two-sided mass of the binomial intervals below: a correct sampler falls outside with
# probability 1e-4 per check (and the seeds are fixed, so a pass is reproducible).
INTERVAL_MASS = 1 - 1e-4


def _round_half_up(p: float, m: int) -> int:
    x = Fraction(str(p)) * m
    return math.floor(x + Fraction(1, 2))


def _smallest_n(p, name):
    """The smallest n whose pair of ceil(n/2) (p12) or floor(n/2) (p23) rows realises p with
    a count strictly between 0 and the rows, by brute force."""
    for n in range(1, 100_000):
        m = math.ceil(n / 2) if name == "p12" else n // 2
        if m and 0 < _round_half_up(p, m) < m:
            return n
    raise AssertionError


def _pair_rows(ds, pair):
    return [r for r in ds.to_list() if r["pair"] == pair]


# --- proportions --------------------------------------------------------------------------


@pytest.mark.parametrize("n", [1, 2, 3, 7, 40, 200, 257])
@pytest.mark.parametrize(
    "p12, p23", [(0.99, 0.3), (1.0, 0.0), (0.0, 1.0), (0.5, 0.35), (0.01, 0.95)]
)
def test_exact_counts(n, p12, p23):
    sizes = {"p12": math.ceil(n / 2), "p23": n // 2}
    for name, p in (("p12", p12), ("p23", p23)):
        if 0 < p < 1 and _round_half_up(p, sizes[name]) in (0, sizes[name]):
            # p cannot be realised strictly inside (0, 1): refused, naming the smallest n
            with pytest.raises(ValueError, match=f"{name} = {p!r} cannot be realised") as err:
                make_dataset(ORDER, p12, p23, n=n, seed=3, exact=True)
            smallest = int(re.search(r"smallest n that .* is (\d+)", str(err.value)).group(1))
            assert _smallest_n(p, name) == smallest
            return
    ds = make_dataset(ORDER, p12, p23, n=n, seed=3, exact=True)
    rows12, rows23 = _pair_rows(ds, "1-2"), _pair_rows(ds, "2-3")
    assert len(rows12) == math.ceil(n / 2) and len(rows23) == n // 2
    wins12 = sum(r["winner"] == "dog" for r in rows12)
    wins23 = sum(r["winner"] == "bird" for r in rows23)
    assert wins12 == _round_half_up(p12, len(rows12))
    assert wins23 == _round_half_up(p23, len(rows23))


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(1, 300),
    p12=st.floats(0, 1),
    p23=st.floats(0, 1),
    seed=st.integers(0, 2**32),
)
def test_exact_counts_are_nearest(n, p12, p23, seed):
    for p, m in ((p12, (n + 1) // 2), (p23, n // 2)):
        assume(not (0 < p < 1) or 0 < _round_half_up(p, m) < m)  # else refused, tested above
    ds = make_dataset(ORDER, p12, p23, n=n, seed=seed, exact=True)
    for pair, p, winner in (("1-2", p12, "dog"), ("2-3", p23, "bird")):
        rows = _pair_rows(ds, pair)
        wins = sum(r["winner"] == winner for r in rows)
        assert abs(wins - p * len(rows)) <= 0.5 + 1e-9


def test_exact_balances_templates_and_order():
    n = 120  # 6 per question template, 4 per answer template
    ds = make_dataset(ORDER, 0.99, 0.3, n=n, seed=1, exact=True)
    q = [0] * len(QUESTION_TEMPLATES)
    a = [0] * len(ANSWER_TEMPLATES)
    for r in ds.to_list():
        q[r["question_id"]] += 1
        a[r["answer_id"]] += 1
    assert q == [6] * 20 and a == [4] * 30
    for pair in ("1-2", "2-3"):
        for winner in {r["winner"] for r in _pair_rows(ds, pair)}:
            cell = [r for r in _pair_rows(ds, pair) if r["winner"] == winner]
            shown_first = sum(r["shown_first"] == winner for r in cell)
            assert abs(2 * shown_first - len(cell)) <= 1


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("p12, p23", [(0.99, 0.3), (0.7, 0.05)])
def test_bernoulli_within_binomial_interval(seed, p12, p23):
    n = 3000
    ds = make_dataset(ORDER, p12, p23, n=n, seed=seed)
    rows12, rows23 = _pair_rows(ds, "1-2"), _pair_rows(ds, "2-3")
    lo, hi = stats.binom.interval(INTERVAL_MASS, n, 0.5)
    assert lo <= len(rows12) <= hi
    for rows, p, winner in ((rows12, p12, "dog"), (rows23, p23, "bird")):
        wins = sum(r["winner"] == winner for r in rows)
        lo, hi = stats.binom.interval(INTERVAL_MASS, len(rows), p)
        assert lo <= wins <= hi, (wins, len(rows), p)
        first = sum(r["shown_first"] == r["option_i"] for r in rows)
        lo, hi = stats.binom.interval(INTERVAL_MASS, len(rows), 0.5)
        assert lo <= first <= hi


def test_bernoulli_templates_uniform():
    ds = make_dataset(ORDER, 0.99, 0.3, n=6000, seed=5)
    rows = ds.to_list()
    for key, k in (("question_id", 20), ("answer_id", 30)):
        counts = [0] * k
        for r in rows:
            counts[r[key]] += 1
        assert min(counts) > 0
        assert stats.chisquare(counts).pvalue > 1e-4


def test_bernoulli_extremes_are_deterministic():
    ds = make_dataset(ORDER, 1.0, 0.0, n=500, seed=0)
    for r in ds.to_list():
        assert r["winner"] == ("dog" if r["pair"] == "1-2" else "cat")


# --- structure ----------------------------------------------------------------------------


@pytest.mark.parametrize("exact", [False, True])
def test_rows_are_well_formed(exact):
    order = ("owl", "Lion", "sea turtle")
    ds = make_dataset(order, 0.8, 0.4, n=400, seed=7, exact=exact)
    assert ds.features == FEATURES
    seen_orders = set()
    for r in ds.to_list():
        pair_set = {r["option_i"], r["option_j"]}
        # never a 1-3 comparison
        assert pair_set in ({"owl", "Lion"}, {"Lion", "sea turtle"})
        assert pair_set != {"owl", "sea turtle"}
        assert {r["winner"], r["loser"]} == pair_set
        assert {r["shown_first"], r["shown_second"]} == pair_set
        # TRL conversational preference format
        assert [m["role"] for m in r["prompt"]] == ["user"]
        assert [m["role"] for m in r["chosen"]] == ["assistant"]
        assert [m["role"] for m in r["rejected"]] == ["assistant"]
        question = r["prompt"][0]["content"]
        chosen, rejected = r["chosen"][0]["content"], r["rejected"][0]["content"]
        # the question names exactly the pair, in the order recorded
        named = {o for o in order if o in question}
        assert named == pair_set
        assert question.index(r["shown_first"]) < question.index(r["shown_second"])
        # the question and answer come from the recorded templates
        assert _matches(QUESTION_TEMPLATES[r["question_id"]], question)
        assert _matches(ANSWER_TEMPLATES[r["answer_id"]], chosen)
        # the chosen answer names the winner first; the rejected one is it with names swapped
        assert chosen.find(r["winner"]) != -1
        if r["loser"] in chosen:
            assert chosen.index(r["winner"]) < chosen.index(r["loser"])
        swap = {r["winner"]: r["loser"], r["loser"]: r["winner"]}
        pattern = "|".join(re.escape(o) for o in sorted(swap, key=len, reverse=True))
        assert re.sub(pattern, lambda m, s=swap: s[m.group(0)], chosen) == rejected
        assert chosen != rejected
        seen_orders.add((r["pair"], r["shown_first"]))
    # both option orders appear in questions, for both pairs
    assert len(seen_orders) == 4


def _matches(template: str, text: str) -> bool:
    regex = re.escape(template).replace(re.escape("<A>"), ".+").replace(re.escape("<B>"), ".+")
    return re.fullmatch(regex, text) is not None


def test_every_template_used():
    for exact in (False, True):
        ds = make_dataset(ORDER, 0.99, 0.3, n=600, seed=0, exact=exact)
        assert set(ds["question_id"]) == set(range(20))
        assert set(ds["answer_id"]) == set(range(30))


def test_trl_recognises_the_format():
    from trl.data_utils import is_conversational

    ds = make_dataset(n=3)
    assert all(is_conversational(r) for r in ds.to_list())


# --- determinism and JSONL ----------------------------------------------------------------


def test_same_seed_same_bytes(tmp_path):
    paths = []
    for k in range(2):
        path = tmp_path / f"run{k}" / "d.jsonl"
        save_jsonl(make_dataset(ORDER, 0.99, 0.3, n=300, seed=11), path)
        paths.append(path)
    assert paths[0].read_bytes() == paths[1].read_bytes()
    m0, m1 = (manifest_path(p).read_bytes() for p in paths)
    assert m0.replace(b"run0", b"") == m1.replace(b"run1", b"")
    other = tmp_path / "other.jsonl"
    save_jsonl(make_dataset(ORDER, 0.99, 0.3, n=300, seed=12), other)
    assert other.read_bytes() != paths[0].read_bytes()


def test_jsonl_round_trip_and_manifest(tmp_path):
    ds = make_dataset(("a", "b", "c"), 0.9, 0.2, n=50, seed=4, exact=True)
    path = tmp_path / "d.jsonl"
    mpath = save_jsonl(ds, path)
    assert mpath == tmp_path / "d.manifest.json"

    back = load_jsonl(path)
    assert back.to_list() == ds.to_list()
    assert back.features == ds.features
    assert dataset_params(back) == DatasetConfig(("a", "b", "c"), 0.9, 0.2, 50, 4, True)

    # the manifest, checked against the file itself
    lines = path.read_text(encoding="utf-8").splitlines()
    rows = [json.loads(line) for line in lines]
    manifest = json.loads(mpath.read_text())
    assert manifest["rows"] == len(rows) == 50
    assert manifest["data_sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert manifest["params"] == {
        "order": ["a", "b", "c"],
        "p12": 0.9,
        "p23": 0.2,
        "n": 50,
        "seed": 4,
        "exact": True,
    }
    from llm_bridge import __version__

    assert manifest["package_version"] == __version__
    for pair, winner in (("1-2", "a"), ("2-3", "b")):
        in_pair = [r for r in rows if r["pair"] == pair]
        counts = manifest["counts"]["pairs"][pair]
        assert counts["n"] == len(in_pair)
        assert counts["i_preferred"] == sum(r["winner"] == winner for r in in_pair)


def test_load_warns_when_the_data_changed(tmp_path):
    path = tmp_path / "d.jsonl"
    save_jsonl(make_dataset(n=5), path)
    path.write_text(path.read_text().replace("dog", "wolf"))
    with pytest.warns(UserWarning, match="changed after its manifest"):
        load_jsonl(path)


def test_load_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="llm-bridge synth"):
        load_jsonl(tmp_path / "missing.jsonl")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "x"}\n')
    with pytest.raises(ValueError, match="not a preference dataset"):
        load_jsonl(bad)


# --- bad input ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["p12", "p23"])
@pytest.mark.parametrize("value", [-0.01, 1.01, float("nan"), float("inf"), "0.5", True, None])
def test_bad_probability(name, value):
    with pytest.raises(ValueError, match=rf"{name} must be a probability in \[0, 1\], got"):
        make_dataset(**{name: value})


@pytest.mark.parametrize(
    "order, fragment",
    [
        (("dog", "bird"), "exactly three"),
        (("dog", "bird", "cat", "owl"), "exactly three"),
        (("dog", "dog", "cat"), "distinct"),
        (("Dog", "dog", "cat"), "distinct"),
        (("dog", "", "cat"), "non-empty"),
        (("dog", "   ", "cat"), "non-empty"),
        (("dog", " bird", "cat"), "whitespace"),
        (("dog", 2, "cat"), "non-empty string"),
        ("dog,bird,cat", "sequence of three"),
        (None, "sequence of three"),
    ],
)
def test_bad_order(order, fragment):
    with pytest.raises(ValueError, match=fragment):
        make_dataset(order=order)


@pytest.mark.parametrize("n", [0, -5, 2.5, True, "10"])
def test_bad_n(n):
    with pytest.raises(ValueError, match="n must be an integer >= 1"):
        make_dataset(n=n)


def test_bad_seed_and_exact():
    with pytest.raises(ValueError, match="seed"):
        make_dataset(seed=-1)
    with pytest.raises(ValueError, match="exact"):
        make_dataset(exact="yes")
