"""A sweep's results: one typed ``RunRow`` per finished run, stored so that many writers are safe.

Each run writes its own record, ``runs/<run_id>/result.json``, atomically (``_io.atomic_write``)
when it is complete, and nothing else: a worker killed mid-run leaves no record, two workers
never write the same file (a run is claimed first, see ``claim``), and a run that raised leaves
its traceback in ``runs/<run_id>/failures.jsonl`` so that the next invocation retries it (up to
a limit). The sweep-wide files are *derived* from the records, rebuilt after each run::

    out/results.jsonl   one JSON object per finished run (``RunRow.to_json``)
    out/results.csv     the same, flat: one line per run

both in one canonical order (order, then p23, then seed), so they are the same bytes whichever
executor ran the runs and in whatever order, up to the ``timing`` fields. Readers call
``read_rows(out)``, which reads the records themselves.

``out/grid.json`` lists every run a sweep over ``out`` was asked to do (``record_grid``), so that
``status(out)`` (``llm-bridge status DIR``) can tell, from the files alone and while the sweep
runs elsewhere, which runs are done, running (claimed by a live process), failed (to be
retried), given up, or pending.

A ``RunRow`` holds what a run learned: for each probe method the three ``ProbeResult`` s (p12,
p23, p13, each with its log-odds), the realised dataset proportions, and a training summary.
``convert``, ``report``, ``plot`` and the CLI read rows through its attributes, never through
string keys.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import time
import traceback
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from ._io import atomic_write, write_json
from .probe import ProbeResult

__all__ = [
    "PAIRS",
    "DatasetCounts",
    "RunRow",
    "TrainSummary",
    "SweepStatus",
    "claim",
    "failures",
    "is_claimed",
    "read_references",
    "read_rows",
    "rebuild",
    "record_failure",
    "record_grid",
    "status",
    "write_record",
    "write_reference",
]

RESULTS = "results.jsonl"
RESULTS_CSV = "results.csv"
SETTINGS = "sweep.json"
RECORD = "result.json"
FAILURES = "failures.jsonl"
GRID = "grid.json"
CLAIM = ".claim"
RUNS = "runs"
PAIRS = ("p12", "p23", "p13")
"""The three preferences probed per run: P(o1 > o2), P(o2 > o3), P(o1 > o3)."""
_FORMAT = "llm_bridge.run/2"


@dataclass(frozen=True)
class DatasetCounts:
    """The dataset's realised proportions: of ``n12`` rows comparing (o1, o2), o1 won
    ``wins12`` (``p12_hat = wins12 / n12``); likewise for (o2, o3)."""

    n12: int
    wins12: int
    n23: int
    wins23: int

    @property
    def p12_hat(self) -> float:
        return self.wins12 / self.n12 if self.n12 else float("nan")

    @property
    def p23_hat(self) -> float:
        return self.wins23 / self.n23 if self.n23 else float("nan")


@dataclass(frozen=True)
class TrainSummary:
    """How the run's DPO training went (from ``train.TrainResult``)."""

    steps: int
    loss: float | None
    reward_accuracy: float | None
    reward_margin: float | None
    dir: str  # the run directory, relative to the sweep's ``out``


@dataclass(frozen=True)
class RunRow:
    """One finished run of a sweep: the grid point, the data, the training, what was learned.

    ``probes[method][pair]`` is the ``ProbeResult`` of ``method`` for ``pair`` in ``PAIRS``;
    ``timing`` holds the wall-clock fields (``seconds``, ``train_seconds``, ``finished``), the
    only ones that differ between two executions of the same run.
    """

    run_id: str
    order: tuple[str, str, str]
    p12_data: float
    p23_data: float
    seed: int
    n: int
    exact: bool
    model: str
    dataset: DatasetCounts
    train: TrainSummary
    probes: dict[str, dict[str, ProbeResult]]
    llm_bridge_version: str
    timing: dict[str, Any] = field(default_factory=dict, compare=False)

    def estimate(self, method: str, pair: str) -> ProbeResult:
        """The ``ProbeResult`` of ``method`` for ``pair`` ("p12", "p23" or "p13")."""
        if method not in self.probes:
            raise ValueError(
                f"run {self.run_id} has no {method!r} probe (it has {sorted(self.probes)})"
            )
        return self.probes[method][pair]

    @property
    def key(self) -> tuple:
        """The canonical sort key: order, p23, seed (then the id, for distinct p12)."""
        return (self.order, self.p23_data, self.seed, self.run_id)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (``from_json`` reads it back)."""
        return {
            "format": _FORMAT,
            "run_id": self.run_id,
            "order": list(self.order),
            "p12_data": self.p12_data,
            "p23_data": self.p23_data,
            "seed": self.seed,
            "n": self.n,
            "exact": self.exact,
            "model": self.model,
            "dataset": asdict(self.dataset),
            "train": asdict(self.train),
            "probes": {
                m: {pair: r._asdict() for pair, r in pairs.items()}
                for m, pairs in self.probes.items()
            },
            "llm_bridge_version": self.llm_bridge_version,
            "timing": dict(self.timing),
        }

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> RunRow:
        if d.get("format") != _FORMAT:
            raise ValueError(f"not a run record of format {_FORMAT}: {d.get('format')!r}")
        return cls(
            run_id=d["run_id"],
            order=tuple(d["order"]),
            p12_data=float(d["p12_data"]),
            p23_data=float(d["p23_data"]),
            seed=int(d["seed"]),
            n=int(d["n"]),
            exact=bool(d["exact"]),
            model=d["model"],
            dataset=DatasetCounts(**d["dataset"]),
            train=TrainSummary(**d["train"]),
            probes={
                m: {pair: ProbeResult(**r) for pair, r in pairs.items()}
                for m, pairs in d["probes"].items()
            },
            llm_bridge_version=d["llm_bridge_version"],
            timing=dict(d.get("timing", {})),
        )

    def flat(self) -> dict[str, Any]:
        """One CSV line: the grid point, data, training and each probe's three estimates."""
        out: dict[str, Any] = {
            "run_id": self.run_id,
            "order": ">".join(self.order),
            "p12_data": self.p12_data,
            "p23_data": self.p23_data,
            "seed": self.seed,
            "n": self.n,
            "p12_hat": self.dataset.p12_hat,
            "p23_hat": self.dataset.p23_hat,
            "train_steps": self.train.steps,
            "train_loss": self.train.loss,
        }
        for method, pairs in self.probes.items():
            for pair, r in pairs.items():
                out[f"{method}_{pair}"] = r.p
                out[f"{method}_{pair}_logit"] = r.logit
                out[f"{method}_{pair}_low"] = r.ci_low
                out[f"{method}_{pair}_high"] = r.ci_high
                if r.count is not None:
                    out[f"{method}_{pair}_count"] = r.count
        out["seconds"] = self.timing.get("seconds")
        return out


# --- the store ------------------------------------------------------------------------------


def run_dir(out: str | os.PathLike, run_id: str) -> Path:
    return Path(out) / RUNS / run_id


REFERENCE = "reference.json"


def reference_id(order: Sequence[str]) -> str:
    """The pseudo run id under which the untrained model's probes of ``order`` are kept."""
    return "reference_" + "-".join(order)


def write_reference(
    out: str | os.PathLike, order: Sequence[str], probes: Mapping[str, Mapping[str, ProbeResult]]
) -> Path:
    """Keep the reference (untrained) model's probes of ``order`` ({method: {pair: result}})."""
    record = {
        "order": list(order),
        "probes": {m: {k: r._asdict() for k, r in pairs.items()} for m, pairs in probes.items()},
    }
    text = json.dumps(record, indent=1, sort_keys=True, ensure_ascii=False)
    return atomic_write(run_dir(out, reference_id(order)) / REFERENCE, text + "\n")


def read_references(out: str | os.PathLike) -> dict[tuple[str, ...], dict[str, dict]]:
    """The reference model's probes kept in ``out``: {order: {method: {pair: ProbeResult}}}."""
    found = {}
    for path in sorted((Path(out) / RUNS).glob(f"reference_*/{REFERENCE}")):
        d = json.loads(path.read_text(encoding="utf-8"))
        found[tuple(d["order"])] = {
            m: {k: ProbeResult(**r) for k, r in pairs.items()} for m, pairs in d["probes"].items()
        }
    return found


def write_record(out: str | os.PathLike, row: RunRow) -> Path:
    """Write ``row`` as its run's record (atomically); the run counts as finished from now."""
    text = json.dumps(row.to_json(), indent=1, sort_keys=True, ensure_ascii=False)
    return atomic_write(run_dir(out, row.run_id) / RECORD, text + "\n")


def read_record(out: str | os.PathLike, run_id: str) -> RunRow | None:
    """The record of ``run_id``, or None when the run has not finished."""
    path = run_dir(out, run_id) / RECORD
    if not path.is_file():
        return None
    return RunRow.from_json(json.loads(path.read_text(encoding="utf-8")))


def read_rows(out: str | os.PathLike) -> list[RunRow]:
    """Every finished run in ``out``, in canonical order. A record that cannot be read (written
    by another version, or damaged by hand) is skipped with a warning naming it."""
    rows = []
    for path in sorted((Path(out) / RUNS).glob(f"*/{RECORD}")):
        try:
            rows.append(RunRow.from_json(json.loads(path.read_text(encoding="utf-8"))))
        except (ValueError, KeyError, TypeError) as err:
            warnings.warn(f"{path}: skipping an unreadable run record ({err})", stacklevel=2)
    return sorted(rows, key=lambda r: r.key)


def _csv_text(rows: Sequence[RunRow]) -> str:
    flats = [r.flat() for r in rows]
    header: list[str] = []
    for f in flats:
        header += [k for k in f if k not in header]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=header, lineterminator="\n")
    writer.writeheader()
    writer.writerows(flats)
    return buf.getvalue()


def rebuild(out: str | os.PathLike) -> list[RunRow]:
    """Rewrite ``results.jsonl`` and ``results.csv`` from the run records (atomically, under the
    directory's lock); returns the rows."""
    out = Path(out)
    with locked(out):
        rows = read_rows(out)
        lines = [json.dumps(r.to_json(), sort_keys=True, ensure_ascii=False) for r in rows]
        atomic_write(out / RESULTS, "".join(line + "\n" for line in lines))
        atomic_write(out / RESULTS_CSV, _csv_text(rows))
    return rows


@contextlib.contextmanager
def locked(out: str | os.PathLike) -> Iterator[None]:
    """An exclusive lock on ``out/.lock`` for short critical sections (blocking)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / ".lock", "a") as fh:
        try:
            import fcntl
        except ImportError:  # not POSIX: one process per directory
            yield
            return
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


CLAIM_TRIES = 10
"""A claim that is taken is tried again this often, 50 ms apart, before the run counts as held:
a reader asking ``is_claimed`` holds the lock for microseconds, a worker for the whole run."""


@contextlib.contextmanager
def claim(out: str | os.PathLike, run_id: str) -> Iterator[bool]:
    """Try to claim ``run_id`` for this process: yields True when it is ours for the block,
    False when another process (another sweep over the same directory, another worker) holds
    it. The claim is an advisory lock on ``runs/<run_id>/.claim``, released when the block ends
    or the process dies (also by SIGKILL), so a dead worker never leaves a run blocked. (On NFS
    Linux emulates it with a POSIX lock, which holds across nodes; Lustre needs its ``flock``
    mount option.)"""
    path = run_dir(out, run_id) / CLAIM
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as fh:
        try:
            import fcntl
        except ImportError:
            yield True
            return
        for _ in range(CLAIM_TRIES):
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                time.sleep(0.05)
        else:
            yield False
            return
        try:
            fh.seek(0)
            fh.truncate()
            fh.write(f"{os.uname().nodename} {os.getpid()} {time.strftime('%Y-%m-%dT%H:%M:%S')}\n")
            fh.flush()
            yield True
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def is_claimed(out: str | os.PathLike, run_id: str) -> bool:
    """Whether some process holds ``run_id``'s claim now (it is running). Only looks: a shared
    lock for an instant, nothing written, so a worker claiming the run meanwhile still gets it
    (``CLAIM_TRIES``)."""
    path = run_dir(out, run_id) / CLAIM
    try:
        import fcntl
    except ImportError:
        return False
    try:
        fh = open(path)
    except FileNotFoundError:
        return False
    with fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(fh, fcntl.LOCK_UN)
        return False


def record_failure(out: str | os.PathLike, run_id: str, error: BaseException) -> int:
    """Append ``error`` with its traceback to the run's ``failures.jsonl`` (one fsync'ed line);
    returns how many failures the run has now."""
    path = run_dir(out, run_id) / FAILURES
    path.parent.mkdir(parents=True, exist_ok=True)
    entry = {
        "error": f"{type(error).__name__}: {error}",
        "traceback": "".join(traceback.format_exception(error)),
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "host": os.uname().nodename,
        "pid": os.getpid(),
    }
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(entry) + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    return len(failures(out, run_id))


def failures(out: str | os.PathLike, run_id: str) -> list[dict[str, Any]]:
    """The recorded failures of ``run_id``, oldest first (a torn last line is ignored)."""
    path = run_dir(out, run_id) / FAILURES
    if not path.is_file():
        return []
    found = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            found.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return found


# --- the grid and its status ----------------------------------------------------------------


def record_grid(out: str | os.PathLike, run_ids: Sequence[str], max_attempts: int) -> list[str]:
    """Add ``run_ids`` to the runs ``out/grid.json`` lists (the union of every sweep asked of
    ``out``, first asked first) and keep ``max_attempts``, under the directory's lock; returns
    the whole list."""
    out = Path(out)
    with locked(out):
        path = out / GRID
        runs = json.loads(path.read_text(encoding="utf-8"))["runs"] if path.is_file() else []
        known = set(runs)
        runs += [r for r in dict.fromkeys(run_ids) if r not in known]
        write_json(path, {"runs": runs, "max_attempts": max_attempts})
    return runs


class SweepStatus(NamedTuple):
    """Where each run of a sweep stands, from the files in its directory (``status``)."""

    done: list[str]  # its record is written
    running: list[str]  # claimed by a live process now
    failed: list[str]  # raised (or its worker died) fewer than max_attempts times: retried
    given_up: list[str]  # failed max_attempts times: not retried
    pending: list[str]  # not started yet (or interrupted without a failure: resumed)
    max_attempts: int

    @property
    def total(self) -> int:
        return sum(len(x) for x in self[:5])

    def summary(self) -> str:
        """One line: ``done 3, running 2, failed 1, given up 0, pending 4``."""
        return (
            f"done {len(self.done)}, running {len(self.running)}, failed {len(self.failed)}, "
            f"given up {len(self.given_up)}, pending {len(self.pending)}"
        )

    def table(self) -> str:
        """The counts as an aligned table, one state a line."""
        lines = [
            ("done", self.done),
            ("running", self.running),
            ("failed", self.failed),
            ("given up", self.given_up),
            ("pending", self.pending),
        ]
        width = len(str(self.total))
        return "\n".join(f"  {name:<9}{len(ids):>{width}}" for name, ids in lines)


def status(
    out: str | os.PathLike, run_ids: Sequence[str] | None = None, max_attempts: int | None = None
) -> SweepStatus:
    """The state of each of ``run_ids`` (default: the runs in ``out/grid.json``) in ``out``:
    done, running, failed, given up (``max_attempts`` failures; default: grid.json's) or
    pending. Reads only files and locks, so it works while the sweep runs elsewhere."""
    out = Path(out)
    grid = json.loads((out / GRID).read_text(encoding="utf-8")) if (out / GRID).is_file() else {}
    run_ids = list(grid.get("runs", [])) if run_ids is None else list(run_ids)
    limit = max_attempts if max_attempts is not None else int(grid.get("max_attempts", 3))
    found: dict[str, list[str]] = {k: [] for k in ("done", "running", "failed", "given_up")}
    pending = []
    for run_id in run_ids:
        if (run_dir(out, run_id) / RECORD).is_file():
            found["done"].append(run_id)
        elif is_claimed(out, run_id):
            found["running"].append(run_id)
        elif (n := len(failures(out, run_id))) >= limit:
            found["given_up"].append(run_id)
        elif n:
            found["failed"].append(run_id)
        else:
            pending.append(run_id)
    return SweepStatus(**found, pending=pending, max_attempts=limit)


def claimed_by(out: str | os.PathLike, run_id: str) -> str:
    """What the run's claim file says: ``host pid start-time`` of the process that took it."""
    path = run_dir(out, run_id) / CLAIM
    return path.read_text(encoding="utf-8").strip() if path.is_file() else ""
