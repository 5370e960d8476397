"""prefjax.Comparisons: every input layout, aggregation, and every bad input named."""

import json

import numpy as np
import pytest

import prefjax
from prefjax import Comparisons

BASEBALL_ROWS = 42
BASEBALL_GAMES = 273  # sum of home.wins + away.wins in the CSV


def test_baseball_example_is_vendored_and_positional():
    path = prefjax.example_data("baseball")
    assert path.is_file()
    data = Comparisons.example("baseball")
    assert data.n_items == 7 and data.positional
    assert data.first.size == BASEBALL_ROWS
    assert data.n_comparisons == BASEBALL_GAMES
    # Row "Milwaukee,Baltimore,6,0": Milwaukee at home beat Baltimore 6 times.
    m, b = data.index("Milwaukee"), data.index("Baltimore")
    cell = np.flatnonzero((data.first == m) & (data.second == b))
    assert data.wins_first[cell].tolist() == [6.0] and data.wins_second[cell].tolist() == [0.0]


def test_pair_table_sums_both_orientations():
    data = Comparisons.example("baseball")
    k, l_, wk, wl, _ = data.pair_table()
    m, b = data.index("Milwaukee"), data.index("Baltimore")
    row = np.flatnonzero((k == min(m, b)) & (l_ == max(m, b)))[0]
    # Milwaukee-Baltimore: 6-0 at Milwaukee, 5-2 at Baltimore (Baltimore,Milwaukee,2,5).
    mil = wk[row] if k[row] == m else wl[row]
    bal = wl[row] if k[row] == m else wk[row]
    assert (mil, bal) == (11.0, 2.0)


def test_battles_rows_columns_and_files_agree(tmp_path):
    rows = [
        {"model_a": "x", "model_b": "y", "winner": "model_a"},
        {"model_a": "y", "model_b": "x", "winner": "model_b"},
        {"model_a": "x", "model_b": "z", "winner": "tie"},
        {"model_a": "z", "model_b": "y", "winner": "tie (bothbad)"},
    ]
    a = Comparisons.from_battles(rows)
    cols = {k: [r[k] for r in rows] for k in rows[0]}
    b = Comparisons.from_battles(cols)
    jsonl = tmp_path / "b.jsonl"
    jsonl.write_text("".join(json.dumps(r) + "\n" for r in rows))
    csv = tmp_path / "b.csv"
    csv.write_text("model_a,model_b,winner\n" + "".join(
        f"{r['model_a']},{r['model_b']},{r['winner']}\n" for r in rows))  # fmt: skip
    for other in (b, Comparisons.read(jsonl), Comparisons.from_battles(csv)):
        for field in ("first", "second", "wins_first", "wins_second", "ties"):
            np.testing.assert_array_equal(getattr(a, field), getattr(other, field))
    assert a.items == ("x", "y", "z") and a.positional
    assert a.n_ties == 2 and a.n_comparisons == 4
    # x beat y twice (once first, once second): the two orientations stay separate cells.
    assert a.wins_matrix()[0, 1] == 2.0


def test_pairs_matrix_and_counts_agree():
    pairs = [(0, 1), (0, 1), (1, 0), (2, 1), (0, 2)]
    p = Comparisons.from_pairs(pairs, items=["a", "b", "c"])
    w = np.zeros((3, 3))
    for i, j in pairs:
        w[i, j] += 1
    m = Comparisons.from_matrix(w, items=["a", "b", "c"])
    c = Comparisons.from_counts(["a", "b", "a"], ["b", "c", "c"], [2, 0, 1], [1, 1, 0])
    for other in (m, c):
        np.testing.assert_array_equal(p.wins_matrix(), other.wins_matrix())
    assert not p.positional and np.all(p.first < p.second)


def test_names_default_for_integer_pairs_and_subset():
    data = Comparisons.from_pairs([(0, 3), (3, 1)])
    assert data.items == ("0", "1", "2", "3")
    assert data.components() == [["0", "1", "3"], ["2"]]
    sub = data.subset(["3", "0"])
    assert sub.items == ("3", "0") and sub.n_comparisons == 1


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: Comparisons.from_battles([{"model_a": "x", "model_b": "y", "winner": "both"}]),
         r"row 0: unknown winner 'both'; valid labels are 'model_a'"),
        (lambda: Comparisons.from_battles(
            [{"model_a": "x", "model_b": "y", "winner": "tie"},
             {"model_a": "y", "model_b": "y", "winner": "model_a"}]),
         r"row 1: item 'y' is compared with itself"),
        (lambda: Comparisons.from_battles([{"model_a": "x", "winner": "tie"}]),
         r"row 0: missing field 'model_b'"),
        (lambda: Comparisons.from_counts(["a", "b"], ["b", "c"], [1, -2], [0, 1]),
         r"row 1: wins_i = -2.0 is negative"),
        (lambda: Comparisons.from_counts(["a", "b"], ["b", "c"], [1, 2], [0.5, 1]),
         r"row 0: wins_j = 0.5 is not a whole number"),
        (lambda: Comparisons.from_counts(["a"], ["b"], [np.nan], [1]),
         r"row 0: wins_i = nan is not finite"),
        (lambda: Comparisons.from_counts(["a"], ["b"], [0], [0]),
         r"no comparisons"),
        (lambda: Comparisons.from_pairs([]), r"no comparisons"),
        (lambda: Comparisons.from_battles([]), r"no rows"),
        (lambda: Comparisons.from_pairs([(1, 1)]), r"pairs\[0\]: item '1' is compared with itself"),
        (lambda: Comparisons.from_pairs([(0, 5)], items=["a", "b"]),
         r"pairs\[0\]: item index 5 is out of range for 2 items"),
        (lambda: Comparisons.from_pairs([("a", "q")], items=["a", "b"]),
         r"pairs\[0\]: item 'q' is not in items"),
        (lambda: Comparisons.from_matrix([[0, 1], [-1, 0]]), r"wins\[1, 0\] = -1.0 is negative"),
        (lambda: Comparisons.from_matrix([[2, 1], [1, 0]]), r"wins\[0, 0\] = 2: item 0 compared"),
        (lambda: Comparisons.from_matrix([[0, 1], [1, 0]], ties=[[0, 1], [0, 0]]),
         r"ties must be symmetric"),
    ],
)  # fmt: skip
def test_bad_inputs_name_the_row(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_file_errors_name_the_line(tmp_path):
    path = tmp_path / "battles.csv"
    path.write_text("model_a,model_b,winner\nx,y,model_a\nx,y,bothbad\n")
    with pytest.raises(ValueError, match=r"line 3 of battles.csv: unknown winner 'bothbad'"):
        Comparisons.read(path)
    path = tmp_path / "counts.csv"
    path.write_text("home.team,away.team,home.wins,away.wins\nA,B,3,x\n")
    with pytest.raises(ValueError, match=r"line 2 of counts.csv: away.wins = 'x' is not a number"):
        Comparisons.read(path)
    path = tmp_path / "other.csv"
    path.write_text("p,q\n1,2\n")
    with pytest.raises(ValueError, match=r"unrecognised columns \['p', 'q'\]"):
        Comparisons.read(path)
    with pytest.raises(ValueError, match=r"unknown example data set 'nope'"):
        prefjax.example_data("nope")


def test_audit_names_are_public():
    import prefjax.plot

    for name in ["Comparisons", "example_data", "fit", "Fit", "ConvergenceWarning", "audit",
                 "Audit", "AuditBootstrap"]:  # fmt: skip
        assert name in prefjax.__all__ and getattr(prefjax, name) is not None
    assert "audit_heatmap" in prefjax.plot.__all__
    assert set(prefjax.Fit._fields) >= {"items", "scores", "cov", "position", "converged"}
