"""Paired-comparison data: battles, (winner, loser) pairs, win matrices and count tables.

Everything is aggregated on arrival into *cells*, one per ordered pair (first, second) of
items that met, each holding three counts: first won, second won, tie. "First" is the item
shown first (``model_a`` in a battle log) or playing at home; data that carries no such
order (pairs, matrices, plain count tables) is stored with first < second. Two million
battles between 200 items become at most 200 * 199 cells, and every fit, bootstrap and
audit works on those cells, never on the battles.

Every constructor checks its input and names the row, column and value it refuses: an
unknown winner label, an item compared with itself, a negative or non-integer count, an
empty data set.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

#: The Chatbot Arena winner labels and the outcome each stands for.
WINNER_LABELS = {
    "model_a": "first",
    "model_b": "second",
    "tie": "tie",
    "tie (bothbad)": "tie",
}

_EXAMPLES = {"baseball": "baseball.csv"}


def example_data(name: str = "baseball") -> Path:
    """The path of an example data set shipped with prefjax.

    ``"baseball"``: the 1987 American League East, 7 teams, 42 home/away pairings (columns
    ``home.team, away.team, home.wins, away.wins``; from the R package BradleyTerry2, after
    Agresti 2002, Table 10.11).

    Examples:
        >>> import prefjax
        >>> prefjax.example_data("baseball").name
        'baseball.csv'
    """
    if name not in _EXAMPLES:
        valid = ", ".join(repr(k) for k in _EXAMPLES)
        raise ValueError(f"unknown example data set {name!r}; valid names are {valid}")
    return Path(__file__).parent / "data" / _EXAMPLES[name]


@dataclass(frozen=True, eq=False)
class Comparisons:
    """Paired comparisons aggregated into cells (one per ordered pair that met).

    Build one with :meth:`from_battles`, :meth:`from_pairs`, :meth:`from_matrix`,
    :meth:`from_counts` or :meth:`read` (a CSV, JSONL or JSON file in any of those layouts).

    Attributes:
        items: item names; index k in every array refers to ``items[k]``.
        first, second: (C,) item indices of each cell; ``first`` was shown first / at home
            when ``positional`` is True, else ``first < second``.
        wins_first, wins_second, ties: (C,) counts of each outcome in each cell (float64
            holding whole numbers).
        positional: whether ``first`` carries an order (shown first, played at home), which
            ``prefjax.fit(..., position=True)`` needs.

    Examples:
        >>> import prefjax
        >>> data = prefjax.Comparisons.from_pairs([("a", "b"), ("b", "c"), ("c", "a"), ("a", "c")])
        >>> data.items, data.n_comparisons
        (('a', 'b', 'c'), 4)
    """

    items: tuple[str, ...]
    first: np.ndarray
    second: np.ndarray
    wins_first: np.ndarray
    wins_second: np.ndarray
    ties: np.ndarray
    positional: bool = False

    # --- constructors ------------------------------------------------------------------

    @classmethod
    def from_battles(cls, battles, items: Sequence[str] | None = None) -> Comparisons:
        """Battles in the Chatbot Arena layout: ``model_a``, ``model_b``, ``winner``.

        ``winner`` is one of ``"model_a"``, ``"model_b"``, ``"tie"``, ``"tie (bothbad)"``
        (both tie labels count as a tie); any other label is an error naming its row, never
        a silent tie. ``model_a`` is taken as the model shown first (``positional=True``).

        Args:
            battles: a path (CSV, JSONL or JSON), a mapping of columns (a dict of arrays, a
                pandas DataFrame), or an iterable of row mappings.
            items: fixes the item order (and keeps items that never played); defaults to the
                names in sorted order.
        """
        if isinstance(battles, str | Path):
            return cls.read(battles, items=items)
        cols, where = _columns(battles, ("model_a", "model_b", "winner"), "battles")
        winner = np.asarray(cols["winner"], dtype=object).astype(str)
        labels, code = np.unique(winner, return_inverse=True)
        for k, label in enumerate(labels):
            if label not in WINNER_LABELS:
                row = int(np.argmax(code == k))
                valid = ", ".join(repr(x) for x in WINNER_LABELS)
                raise ValueError(
                    f"battles {where(row)}: unknown winner {str(label)!r}; valid labels are {valid}"
                )
        kind = np.array([WINNER_LABELS[x] for x in labels])[code]
        names, a, b = _index(cols["model_a"], cols["model_b"], items, "battles", where)
        ones = np.ones(a.shape[0])
        return cls._build(
            names,
            a,
            b,
            np.where(kind == "first", ones, 0.0),
            np.where(kind == "second", ones, 0.0),
            np.where(kind == "tie", ones, 0.0),
            positional=True,
            what="battles",
            where=where,
        )

    @classmethod
    def from_pairs(cls, pairs, items: Sequence[str] | None = None) -> Comparisons:
        """(winner, loser) pairs of item indices or names: the choix convention.

        Args:
            pairs: a sequence of (winner, loser) or an (m, 2) array.
            items: item names (indices refer to it); defaults to the sorted names, or to
                ``"0", "1", ...`` for integer pairs.
        """
        arr = np.asarray(pairs, dtype=object)
        if arr.size == 0:
            raise ValueError("pairs: no comparisons (an empty set)")
        if arr.ndim != 2 or arr.shape[1] != 2:
            raise ValueError(
                f"pairs must be a sequence of (winner, loser) pairs; got shape {arr.shape}"
            )

        def where(r):
            return f"pairs[{r}]"

        names, a, b = _index(arr[:, 0], arr[:, 1], items, "pairs", where)
        ones = np.ones(a.shape[0])
        return cls._build(names, a, b, ones, 0 * ones, 0 * ones, False, "pairs", where)

    @classmethod
    def from_matrix(cls, wins, items: Sequence[str] | None = None, ties=None) -> Comparisons:
        """A wins matrix: ``wins[i, j]`` = times item i beat item j (diagonal zero).

        Args:
            wins: (n, n) whole non-negative numbers.
            items: n names; defaults to ``"0" ... "n-1"``.
            ties: optional symmetric (n, n) tie counts, ``ties[i, j] = ties[j, i]`` = the
                number of ties between i and j.
        """
        w = _numeric_array("wins", wins)
        if w.ndim != 2 or w.shape[0] != w.shape[1]:
            raise ValueError(f"wins must be a square matrix; got shape {w.shape}")
        n = w.shape[0]
        t = np.zeros_like(w) if ties is None else _numeric_array("ties", ties)
        if t.shape != w.shape:
            raise ValueError(f"ties must have the shape of wins {w.shape}; got {t.shape}")
        for name, m in (("wins", w), ("ties", t)):
            _check_counts(m, lambda idx, name=name: f"{name}[{idx[0]}, {idx[1]}]")
            d = np.flatnonzero(np.diag(m))
            if d.size:
                k = int(d[0])
                raise ValueError(f"{name}[{k}, {k}] = {m[k, k]:g}: item {k} compared with itself")
        asym = np.argwhere(t != t.T)
        if asym.size:
            r, c = (int(x) for x in asym[0])
            raise ValueError(
                f"ties must be symmetric (ties[i, j] = ties[j, i] = ties between i and j); "
                f"ties[{r}, {c}] = {t[r, c]:g} but ties[{c}, {r}] = {t[c, r]:g}"
            )
        names = _names(items, n, "items")
        ii, jj = np.triu_indices(n, 1)
        return cls._build(
            names, ii, jj, w[ii, jj], w[jj, ii], t[ii, jj], False, "wins", lambda r: f"cell {r}"
        )

    @classmethod
    def from_counts(
        cls,
        i,
        j,
        wins_i,
        wins_j,
        ties=None,
        items: Sequence[str] | None = None,
        positional: bool = False,
    ) -> Comparisons:
        """A table of (i, j, wins_i, wins_j[, ties]) rows; rows of the same pair add up.

        Args:
            i, j: item names or indices, one per row.
            wins_i, wins_j, ties: whole non-negative counts per row.
            items: fixes the item order (indices refer to it).
            positional: i was shown first / played at home in each row (baseball's
                ``home.team``), so that a position effect can be fitted.
        """
        n_rows = len(i)

        def where(r):
            return f"row {r}"

        names, a, b = _index(i, j, items, "counts", where)
        wi = _numeric_array("wins_i", wins_i)
        wj = _numeric_array("wins_j", wins_j)
        t = np.zeros(n_rows) if ties is None else _numeric_array("ties", ties)
        for name, x in (("wins_i", wi), ("wins_j", wj), ("ties", t)):
            if x.shape != (n_rows,):
                raise ValueError(f"{name} must have one entry per row ({n_rows}); got {x.shape}")
        return cls._build(
            names, a, b, wi, wj, t, positional, "counts", where, ("wins_i", "wins_j", "ties")
        )

    @classmethod
    def read(cls, path, items: Sequence[str] | None = None) -> Comparisons:
        """Read a CSV, JSONL or JSON file; the layout is recognised by its columns.

        ``model_a, model_b, winner``: battles (:meth:`from_battles`). ``winner, loser``:
        pairs. ``home.team, away.team, home.wins, away.wins``: a home/away count table
        (positional). ``i, j, wins_i, wins_j`` (optional ``ties``): a count table. Row
        numbers in error messages are the file's line numbers.

        Examples:
            >>> import prefjax
            >>> data = prefjax.Comparisons.read(prefjax.example_data("baseball"))
            >>> data.n_items, data.n_comparisons, data.positional
            (7, 273, True)
        """
        path = Path(path)
        rows, first_line = _read_rows(path)
        if not rows:
            raise ValueError(f"{path}: no rows")
        cols = {k: [r.get(k) for r in rows] for k in rows[0]}
        keys = set(cols)

        def where(r):
            return f"line {r + first_line} of {path.name}"

        if {"model_a", "model_b", "winner"} <= keys:
            data, _ = _columns(cols, ("model_a", "model_b", "winner"), "battles", where)
            return cls.from_battles(_Located(data, where), items=items)
        if {"winner", "loser"} <= keys:
            names, a, b = _index(cols["winner"], cols["loser"], items, str(path), where)
            ones = np.ones(a.shape[0])
            return cls._build(names, a, b, ones, 0 * ones, 0 * ones, False, str(path), where)
        for i, j, wi, wj, pos in (
            ("home.team", "away.team", "home.wins", "away.wins", True),
            ("i", "j", "wins_i", "wins_j", False),
        ):
            if {i, j, wi, wj} <= keys:
                names, a, b = _index(cols[i], cols[j], items, str(path), where)
                counts = [
                    _column_numbers(cols[c], c, where) if c in cols else np.zeros(len(rows))
                    for c in (wi, wj, "ties")
                ]
                return cls._build(names, a, b, *counts, pos, str(path), where, (wi, wj, "ties"))
        raise ValueError(
            f"{path}: unrecognised columns {sorted(keys)}; expected model_a/model_b/winner, "
            "winner/loser, home.team/away.team/home.wins/away.wins, or i/j/wins_i/wins_j[/ties]"
        )

    @classmethod
    def example(cls, name: str = "baseball") -> Comparisons:
        """An example data set shipped with prefjax (see :func:`prefjax.example_data`)."""
        return cls.read(example_data(name))

    @classmethod
    def _build(
        cls, names, a, b, w_first, w_second, ties, positional, what, where,
        labels=("wins_first", "wins_second", "ties"),
    ):  # fmt: skip
        a = np.asarray(a, dtype=np.int64)
        b = np.asarray(b, dtype=np.int64)
        counts = [
            _check_counts(np.asarray(x, dtype=np.float64), lambda r: f"{what} {where(r)}", label)
            for label, x in zip(labels, (w_first, w_second, ties), strict=True)
        ]
        same = np.flatnonzero(a == b)
        if same.size:
            r = int(same[0])
            raise ValueError(f"{what} {where(r)}: item {names[a[r]]!r} is compared with itself")
        n = len(names)
        wf, ws, tt = counts
        if not positional:  # canonical order first < second
            swap = a > b
            a, b = np.where(swap, b, a), np.where(swap, a, b)
            wf, ws = np.where(swap, ws, wf), np.where(swap, wf, ws)
        key = a * n + b
        uniq, inv = np.unique(key, return_inverse=True)
        sums = [np.bincount(inv, weights=x, minlength=uniq.size) for x in (wf, ws, tt)]
        keep = (sums[0] + sums[1] + sums[2]) > 0
        if not np.any(keep):
            raise ValueError(f"{what}: no comparisons (every count is zero or there are no rows)")
        uniq = uniq[keep]
        return cls(
            items=tuple(names),
            first=uniq // n,
            second=uniq % n,
            wins_first=sums[0][keep],
            wins_second=sums[1][keep],
            ties=sums[2][keep],
            positional=bool(positional),
        )

    # --- views ---------------------------------------------------------------------------

    @property
    def n_items(self) -> int:
        return len(self.items)

    @property
    def n_comparisons(self) -> int:
        """Total number of comparisons (ties included)."""
        return int(round(float(self.wins_first.sum() + self.wins_second.sum() + self.ties.sum())))

    @property
    def n_ties(self) -> int:
        return int(round(float(self.ties.sum())))

    def index(self, item) -> int:
        """The index of an item given by name or index (ValueError naming it otherwise)."""
        if isinstance(item, int | np.integer) and not isinstance(item, bool):
            if 0 <= int(item) < self.n_items:
                return int(item)
            raise ValueError(f"item index {item} is out of range for {self.n_items} items")
        try:
            return self.items.index(str(item))
        except ValueError:
            raise ValueError(f"unknown item {item!r}; items are {list(self.items)[:20]}") from None

    def pair_table(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Counts per unordered pair (k < l), summed over who was first.

        Returns:
            ``(k, l, wins_k, wins_l, ties)``, arrays over the pairs that met, sorted by
            (k, l).
        """
        a, b = self.first, self.second
        swap = a > b
        k, l_ = np.where(swap, b, a), np.where(swap, a, b)
        wk = np.where(swap, self.wins_second, self.wins_first)
        wl = np.where(swap, self.wins_first, self.wins_second)
        n = self.n_items
        uniq, inv = np.unique(k * n + l_, return_inverse=True)
        sums = [np.bincount(inv, weights=x, minlength=uniq.size) for x in (wk, wl, self.ties)]
        return uniq // n, uniq % n, sums[0], sums[1], sums[2]

    def wins_matrix(self) -> np.ndarray:
        """(n, n) ``W[i, j]`` = times i beat j (ties not included)."""
        n = self.n_items
        w = np.zeros((n, n))
        np.add.at(w, (self.first, self.second), self.wins_first)
        np.add.at(w, (self.second, self.first), self.wins_second)
        return w

    def components(self) -> list[list[str]]:
        """The connected parts of the comparison graph (item names), largest first."""
        return [[self.items[k] for k in part] for part in _components(self)]

    def subset(self, items: Iterable) -> Comparisons:
        """The comparisons among ``items`` only (names or indices), in the given order."""
        keep = [self.index(x) for x in items]
        remap = np.full(self.n_items, -1)
        remap[keep] = np.arange(len(keep))
        mask = (remap[self.first] >= 0) & (remap[self.second] >= 0)
        names = [self.items[k] for k in keep]
        return Comparisons._build(
            names,
            remap[self.first[mask]],
            remap[self.second[mask]],
            self.wins_first[mask],
            self.wins_second[mask],
            self.ties[mask],
            self.positional,
            "subset",
            lambda r: f"cell {r}",
        )

    def _with_counts(self, wins_first, wins_second, ties) -> Comparisons:
        """The same cells with other (possibly fractional) counts; for resampling and tests."""
        return Comparisons(
            self.items,
            self.first,
            self.second,
            np.asarray(wins_first, np.float64),
            np.asarray(wins_second, np.float64),
            np.asarray(ties, np.float64),
            self.positional,
        )

    def __repr__(self) -> str:
        order = ", positional" if self.positional else ""
        return (
            f"Comparisons({self.n_items} items, {self.n_comparisons} comparisons "
            f"({self.n_ties} ties) in {self.first.size} cells{order})"
        )


# --- helpers ------------------------------------------------------------------------------


class _Located:
    """Columns that carry their own row labels (file line numbers)."""

    def __init__(self, cols, where):
        self.cols, self.where = cols, where


def _columns(data, required, what, where=None):
    """(columns dict, row-label function) from a mapping of columns or an iterable of rows."""
    if isinstance(data, _Located):
        return data.cols, data.where
    if where is None:

        def where(r):
            return f"row {r}"

    if hasattr(data, "to_dict") and hasattr(data, "columns"):  # a pandas DataFrame
        data = {str(c): np.asarray(data[c]) for c in data.columns}
    if isinstance(data, Mapping):
        missing = [k for k in required if k not in data]
        if missing:
            raise ValueError(f"{what}: missing columns {missing}; got {sorted(map(str, data))}")
        cols = {k: np.asarray(data[k], dtype=object) for k in required}
    else:
        rows = list(data)
        if not rows:
            raise ValueError(f"{what}: no rows")
        cols = {}
        for k in required:
            vals = []
            for r, row in enumerate(rows):
                if not isinstance(row, Mapping) or k not in row:
                    raise ValueError(f"{what} {where(r)}: missing field {k!r}")
                vals.append(row[k])
            cols[k] = np.asarray(vals, dtype=object)
    lengths = {len(v) for v in cols.values()}
    if len(lengths) > 1:
        raise ValueError(f"{what}: columns have different lengths {sorted(lengths)}")
    if not lengths or lengths == {0}:
        raise ValueError(f"{what}: no rows")
    return cols, where


def _names(items, n, argname):
    if items is None:
        return [str(k) for k in range(n)]
    names = [str(x) for x in items]
    if len(names) != n:
        raise ValueError(f"{argname} must have {n} names; got {len(names)}")
    if len(set(names)) != len(names):
        dup = next(x for x in names if names.count(x) > 1)
        raise ValueError(f"{argname}: duplicate name {dup!r}")
    return names


def _index(col_a, col_b, items, what, where):
    """Item names and integer indices for two columns of names or non-negative integers."""
    a = np.asarray(col_a, dtype=object)
    b = np.asarray(col_b, dtype=object)
    if a.shape[0] == 0:
        raise ValueError(f"{what}: no rows")
    for col in (a, b):
        for r, x in enumerate(col):
            if x is None or (isinstance(x, float) and math.isnan(x)) or str(x).strip() == "":
                raise ValueError(f"{what} {where(r)}: missing item name")
    integer = all(_is_int(x) for x in a) and all(_is_int(x) for x in b)
    if integer:
        ia = np.array([int(x) for x in a], dtype=np.int64)
        ib = np.array([int(x) for x in b], dtype=np.int64)
        bad = np.flatnonzero((ia < 0) | (ib < 0))
        if bad.size:
            r = int(bad[0])
            raise ValueError(f"{what} {where(r)}: negative item index {min(ia[r], ib[r])}")
        n = int(max(ia.max(), ib.max())) + 1
        if items is not None:
            names = _names(items, len(list(items)), "items")
            if n > len(names):
                r = int(np.argmax(np.maximum(ia, ib) >= len(names)))
                raise ValueError(
                    f"{what} {where(r)}: item index {max(ia[r], ib[r])} is out of range "
                    f"for {len(names)} items"
                )
            return names, ia, ib
        return [str(k) for k in range(n)], ia, ib
    sa = np.array([str(x).strip() for x in a], dtype=object)
    sb = np.array([str(x).strip() for x in b], dtype=object)
    if items is None:
        names = sorted(set(sa.tolist()) | set(sb.tolist()))
    else:
        names = _names(items, len(list(items)), "items")
    lookup = {x: k for k, x in enumerate(names)}
    for col in (sa, sb):
        for r, x in enumerate(col):
            if x not in lookup:
                raise ValueError(f"{what} {where(r)}: item {x!r} is not in items")
    return names, np.array([lookup[x] for x in sa]), np.array([lookup[x] for x in sb])


def _is_int(x) -> bool:
    if isinstance(x, bool):
        return False
    if isinstance(x, int | np.integer):
        return True
    return False


def _numeric_array(name, x) -> np.ndarray:
    try:
        arr = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must hold numbers; got {x!r}") from None
    return arr


def _column_numbers(values, name, where) -> np.ndarray:
    out = np.empty(len(values))
    for r, v in enumerate(values):
        try:
            out[r] = float(v)
        except (TypeError, ValueError):
            raise ValueError(f"{where(r)}: {name} = {v!r} is not a number") from None
    return out


def _check_counts(x, where, label=None) -> np.ndarray:
    """Whole, finite, non-negative counts, or a ValueError naming the first bad row."""
    bad_nan = ~np.isfinite(x)
    bad_neg = x < 0
    bad_int = np.isfinite(x) & (x != np.round(x))
    for mask, what in ((bad_nan, "is not finite"), (bad_neg, "is negative"),
                       (bad_int, "is not a whole number")):  # fmt: skip
        if np.any(mask):
            idx = np.unravel_index(int(np.argmax(mask)), mask.shape)
            loc = where(idx if x.ndim > 1 else int(idx[0]))
            loc = f"{loc}: {label}" if label else loc
            raise ValueError(
                f"{loc} = {float(x[idx])!r} {what} (counts must be whole numbers >= 0)"
            )
    return x


def _read_rows(path: Path):
    """Rows as dicts and the line number of the first row."""
    suffix = path.suffix.lower()
    if not path.exists():
        raise FileNotFoundError(f"no such data file: {path}")
    if suffix in (".csv", ".tsv"):
        with path.open(newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh, delimiter="\t" if suffix == ".tsv" else ",")
            return [dict(r) for r in reader], 2
    if suffix == ".jsonl":
        rows = []
        with path.open(encoding="utf-8") as fh:
            for line_no, line in enumerate(fh, start=1):
                if line.strip():
                    try:
                        rows.append(json.loads(line))
                    except json.JSONDecodeError as exc:
                        raise ValueError(f"line {line_no} of {path.name}: {exc}") from None
        return rows, 1
    if suffix == ".json":
        payload = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(payload, dict):
            payload = payload.get("battles", payload.get("comparisons", payload))
        if not isinstance(payload, list):
            raise ValueError(f"{path}: expected a list of rows")
        return payload, 0
    raise ValueError(f"unsupported data file {path.name!r}: use .csv, .tsv, .jsonl or .json")


def _components(data: Comparisons) -> list[list[int]]:
    """Connected parts of the (undirected) comparison graph, largest first."""
    n = data.n_items
    parent = np.arange(n)

    def find(x):
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for a, b in zip(data.first.tolist(), data.second.tolist(), strict=True):
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[ra] = rb
    roots = np.array([find(k) for k in range(n)])
    parts: dict[int, list[int]] = {}
    for k, r in enumerate(roots.tolist()):
        parts.setdefault(r, []).append(k)
    return sorted(parts.values(), key=lambda p: (-len(p), p[0]))
