"""Benchmark: prefjax.fit / prefjax.audit side by side with arenakit, choix and a FastChat-style
baseline, on the 1987 AL East baseball data and a synthetic arena (200 items, 2 million
battles, 10% ties), measured in one run.

Prints, for each data set:
- agreement: max |score difference| after the same identification (scores sum to 0), for
  arenakit.fit_bt (ties half, prior 0), the FastChat-style fit (scipy L-BFGS-B on the
  battle log-likelihood, ties half) and choix.opt_pairwise / ilsr_pairwise (ties dropped:
  choix has no ties); target <= 1e-6;
- fit time of each (best of --repeats after a warm-up call; prefjax's first call, which
  compiles and checks the data, printed apart) and the ratio fastest peer / prefjax,
  target >= 5;
- bootstrap, --rounds resamples (arena only for the peers): arenakit.bootstrap and the
  FastChat-style multinomial bootstrap against prefjax.audit(fit, bootstrap=...) (which also
  computes the whole audit); ratio target >= 10 against arenakit, with the largest
  difference of the 95% percentile interval endpoints in units of the score's bootstrap SD
  (Monte-Carlo error of one endpoint at 1,000 resamples is ~0.09 SD, of a difference ~0.12);
- what only prefjax computes: probit and Davidson fits, the audit (Lemma 1 paths through
  every k, the implicit-function Jacobian against every observed pair, verdicts), and the
  bootstrap of the sensitivities (baseball).

Peers: ``pip install -e .[bench]`` (arenakit, choix, scipy). arenakit's Battle objects
(pydantic, one per battle) are bypassed for 2 million battles: its Arena is filled with the
same index arrays its own loader makes.

Run: .venv/bin/python bench/bench_audit.py [--quick] [--repeats 3] [--rounds 1000]
"""

from __future__ import annotations

import argparse
import time

import jax

jax.config.update("jax_enable_x64", True)

import numpy as np  # noqa: E402
from scipy import optimize, special  # noqa: E402

import prefjax  # noqa: E402


class T(float):
    """A wall-clock time (seconds) that also carries the process CPU time of the same run."""

    cpu: float


def _t(wall, cpu):
    out = T(wall)
    out.cpu = cpu
    return out


def best(fn, repeats):
    """Fastest of ``repeats`` runs after a warm-up, wall and CPU (each its own minimum)."""
    out = fn()  # warm-up: compilation, caches
    walls, cpus = [], []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        out = fn()
        walls.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
    return _t(min(walls), min(cpus)), out


def race(fns, repeats):
    """Time several functions in turns (one call each per round, after a warm-up round), so
    that a burst of load on a shared machine hits all of them alike; min over rounds."""
    outs = [fn() for fn in fns]
    walls = [[] for _ in fns]
    cpus = [[] for _ in fns]
    for _ in range(repeats):
        for k, fn in enumerate(fns):
            t0, c0 = time.perf_counter(), time.process_time()
            outs[k] = fn()
            walls[k].append(time.perf_counter() - t0)
            cpus[k].append(time.process_time() - c0)
    return [(_t(min(w), min(c)), o) for w, c, o in zip(walls, cpus, outs, strict=True)]


def once(fn):
    t0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    return _t(time.perf_counter() - t0, time.process_time() - c0), out


# --- data --------------------------------------------------------------------------------


def synthetic_arena(n_items, n_battles, seed=0, tie_rate=0.1):
    """Battles (a shown first, b, outcome 0: a wins, 1: b wins, 2: tie) from a BT model."""
    rng = np.random.default_rng(seed)
    s = rng.normal(0.0, 1.0, n_items)
    a = rng.integers(0, n_items, n_battles)
    b = rng.integers(0, n_items - 1, n_battles)
    b = b + (b >= a)
    p = special.expit(s[a] - s[b])
    y = np.where(rng.random(n_battles) < tie_rate, 2, np.where(rng.random(n_battles) < p, 0, 1))
    return a, b, y.astype(np.int8)


def comparisons_from_battles(a, b, y, n):
    key = a.astype(np.int64) * n + b
    cnt = [np.bincount(key[y == k], minlength=n * n) for k in range(3)]
    cells = np.flatnonzero(cnt[0] + cnt[1] + cnt[2])
    return prefjax.Comparisons.from_counts(
        cells // n, cells % n, cnt[0][cells], cnt[1][cells], cnt[2][cells],
        items=[str(k) for k in range(n)], positional=True,
    )  # fmt: skip


def battles_of(data):
    """(a, b, y) battle arrays that aggregate to ``data`` (for the peers' own formats)."""
    reps = [data.wins_first, data.wins_second, data.ties]
    a = np.concatenate([np.repeat(data.first, r.astype(int)) for r in reps])
    b = np.concatenate([np.repeat(data.second, r.astype(int)) for r in reps])
    y = np.concatenate([np.full(int(r.sum()), k, np.int8) for k, r in enumerate(reps)])
    return a, b, y


# --- peers -------------------------------------------------------------------------------


def arenakit_arena(a, b, y, n):
    from arenakit.schema import Arena

    arena = object.__new__(Arena)
    arena.models = [str(k) for k in range(n)]
    arena.a, arena.b, arena.y = a.astype(np.int32), b.astype(np.int32), y
    arena.item = arena.voter = None
    return arena


def arenakit_fit(counts):
    from arenakit import fit_bt

    return fit_bt(counts, ties="half", prior=0.0).scores


def fastchat_cells(data):
    """Unordered cells and the half-tie win counts of each side."""
    k, l_, wk, wl, t = data.pair_table()
    return k, l_, wk + t / 2, wl + t / 2


def fastchat_fit(n, k, l_, wk, wl):
    """FastChat-style MLE: scipy L-BFGS-B on the Bradley-Terry log-likelihood."""

    def nll(s):
        x = s[k] - s[l_]
        f = np.sum(wk * np.logaddexp(0, -x) + wl * np.logaddexp(0, x))
        r = wk * special.expit(-x) - wl * special.expit(x)  # -dF/dx
        g = -np.bincount(k, r, n) + np.bincount(l_, r, n)
        return f, g

    res = optimize.minimize(nll, np.zeros(n), jac=True, method="L-BFGS-B",
                            options={"ftol": 1e-15, "gtol": 1e-9, "maxiter": 10_000})  # fmt: skip
    return res.x - res.x.mean()


def fastchat_bootstrap(n, k, l_, wk, wl, ties, rounds, seed=0):
    """FastChat-style bootstrap: multinomial battle counts over the cells, refit each."""
    rng = np.random.default_rng(seed)
    w_win, w_loss = wk - ties / 2, wl - ties / 2
    counts = np.concatenate([w_win, w_loss, ties])
    total = int(counts.sum())
    out = []
    m = k.size
    for _ in range(rounds):
        c = rng.multinomial(total, counts / total)
        out.append(fastchat_fit(n, k, l_, c[:m] + c[2 * m :] / 2, c[m : 2 * m] + c[2 * m :] / 2))
    return np.array(out)


def choix_pairs(data):
    w = data.wins_matrix().astype(np.int64)
    i, j = np.nonzero(w)
    return [(int(a), int(b)) for a, b, c in zip(i, j, w[i, j], strict=True) for _ in range(c)]


# --- the report ----------------------------------------------------------------------------


def centred(s):
    s = np.asarray(s, dtype=float)
    return s - s.mean()


def section(name, data, args, peers_bootstrap):
    import choix
    from arenakit import bootstrap as ak_bootstrap

    n = data.n_items
    print(f"\n== {name}: {data}")
    a, b, y = battles_of(data)
    arena = arenakit_arena(a, b, y, n)
    counts = arena.counts()
    k, l_, wk, wl = fastchat_cells(data)
    _, _, _, _, ties = data.pair_table()
    no_ties = data._with_counts(data.wins_first, data.wins_second, 0 * data.ties)

    # The first call compiles (once per link, tie rule and size bucket) and aggregates and
    # checks the data (once per data set); both are reported apart from the warm time.
    t_first, _ = once(lambda: prefjax.fit(data))
    print(f"prefjax.fit first call (compile, data checks): {t_first:.2f} s")
    (t_ours, f), (t_ak, s_ak), (t_fc, s_fc), (t_drop, f_drop) = race(
        [
            lambda: prefjax.fit(data),
            lambda: arenakit_fit(counts),
            lambda: fastchat_fit(n, k, l_, wk, wl),
            lambda: prefjax.fit(data, ties="drop"),
        ],
        args.repeats,
    )
    pairs = choix_pairs(no_ties)
    big = len(pairs) > 100_000  # choix loops over pairs in Python: one timed call, no warm-up
    timer = once if big else (lambda fn: best(fn, args.repeats))
    t_ci, s_ci = timer(lambda: choix.ilsr_pairwise(n, pairs, tol=1e-12, max_iter=1000))
    s = centred(f.scores)
    sd = centred(f_drop.scores)
    rows = [
        ("arenakit.fit_bt (MM)", t_ak, np.max(np.abs(s - centred(s_ak))), "half"),
        ("FastChat-style L-BFGS-B", t_fc, np.max(np.abs(s - centred(s_fc))), "half"),
        ("choix.ilsr_pairwise", t_ci, np.max(np.abs(sd - centred(s_ci))), "drop"),
    ]
    if len(pairs) <= 300_000:  # opt_pairwise: Python loops per objective/gradient/Hessian call
        t_co, s_co = timer(lambda: choix.opt_pairwise(n, pairs, alpha=0.0, tol=1e-12))
        rows.append(("choix.opt_pairwise", t_co, np.max(np.abs(sd - centred(s_co))), "drop"))
    else:
        print(f"(choix.opt_pairwise skipped: {len(pairs)} pairs through Python loops)")
    print(f"prefjax.fit: {1e3 * t_ours:.2f} ms wall, {1e3 * t_ours.cpu:.2f} ms CPU (ties half); "
          f"{1e3 * t_drop:.2f} ms wall (ties drop); {f.iterations} Newton iterations")  # fmt: skip
    print(f"{'peer':26s} {'wall ms':>9s} {'CPU ms':>9s} {'ratio wall':>10s} {'ratio CPU':>9s} "
          f"{'max |ds|':>9s}  ties")  # fmt: skip
    for label, t, diff, tie in rows:
        ours = t_ours if tie == "half" else t_drop
        print(f"{label:26s} {1e3 * t:9.2f} {1e3 * t.cpu:9.2f} {t / ours:10.1f} "
              f"{t.cpu / ours.cpu:9.1f} {diff:9.2e}  {tie}")  # fmt: skip
    fastest = min(rows, key=lambda r: r[1] / (t_ours if r[3] == "half" else t_drop))
    ours = t_ours if fastest[3] == "half" else t_drop
    print(f"fit ratio vs the fastest peer ({fastest[0]}): {fastest[1] / ours:.1f}x wall, "
          f"{fastest[1].cpu / ours.cpu:.1f}x CPU (target >= 5)")  # fmt: skip
    print(f"agreement: max |ds| over all peers {max(r[2] for r in rows):.2e} (target <= 1e-6)")

    # What only prefjax computes.
    t_probit, _ = best(lambda: prefjax.fit(data, link=prefjax.probit), args.repeats)
    t_dav = float("nan")
    if data.n_ties:
        t_dav, _ = best(lambda: prefjax.fit(data, ties="davidson"), args.repeats)
    t_pos, _ = best(lambda: prefjax.fit(data, position=True), args.repeats)
    t_audit, aud = best(lambda: prefjax.audit(f), 1)
    print(f"only prefjax: probit fit {1e3 * t_probit:.1f} ms, Davidson fit {1e3 * t_dav:.1f} ms, "
          f"position fit {1e3 * t_pos:.1f} ms, audit (Lemma 1 paths, Jacobian "
          f"{aud.i.size} x {aud.pairs.shape[0]}, verdicts) {t_audit:.2f} s")  # fmt: skip

    rounds = args.rounds
    prefjax.audit(f, bootstrap=64, bootstrap_sensitivities=False)  # compile
    # The rounds in 4 seeded segments, prefjax and the peers in turns (load bursts hit both).
    seg = [rounds // 4 + (k < rounds % 4) for k in range(4)]
    fit_fn = lambda c: __import__("arenakit").fit_bt(c, ties="half", prior=0.0)  # noqa: E731
    t_b = t_akb = t_fcb = _t(0.0, 0.0)
    ours_d, ak_d, fc_d = [], [], []
    for r, m in enumerate(seg):
        # The audit without the bootstrap, timed next to each segment: the rounds alone are
        # the difference (a load burst in one measurement of the audit would skew them all).
        t_a, _ = once(lambda: prefjax.audit(f))
        t, ab = once(lambda m=m, r=r: prefjax.audit(
            f, bootstrap=m, seed=r, bootstrap_sensitivities=False))  # fmt: skip
        t_b = _t(t_b + t - t_a, t_b.cpu + t.cpu - t_a.cpu)
        ours_d.append(ab.bootstrap.scores)
        if peers_bootstrap:
            t, bk = once(lambda m=m, r=r: ak_bootstrap(arena, fit=fit_fn, n_resamples=m, seed=r))
            t_akb = _t(t_akb + t, t_akb.cpu + t.cpu)
            ak_d.append(bk.scores - bk.scores.mean(1, keepdims=True))
            t, bf = once(lambda m=m, r=r: fastchat_bootstrap(n, k, l_, wk, wl, ties, m, seed=r))
            t_fcb = _t(t_fcb + t, t_fcb.cpu + t.cpu)
            fc_d.append(bf)
    print(f"prefjax.audit(bootstrap={rounds}), the rounds alone (the audit's own time, "
          f"measured next to each segment, subtracted): {t_b:.2f} s wall ({t_b.cpu:.2f} s "
          "CPU)")  # fmt: skip
    if peers_bootstrap:
        ours_s = np.concatenate(ours_d)
        sd_b = ours_s.std(0)
        ours = np.percentile(ours_s, [2.5, 97.5], axis=0)
        gap_ak = np.abs(ours - np.percentile(np.concatenate(ak_d), [2.5, 97.5], 0)) / sd_b
        gap_fc = np.abs(ours - np.percentile(np.concatenate(fc_d), [2.5, 97.5], 0)) / sd_b
        print(f"arenakit.bootstrap({rounds}): {t_akb:.2f} s wall ({t_akb.cpu:.2f} s CPU) -> "
              f"ratio {t_akb / t_b:.1f}x wall, {t_akb.cpu / t_b.cpu:.1f}x CPU (target >= 10); "
              f"95% interval endpoints differ by median {np.median(gap_ak):.3f}, max "
              f"{gap_ak.max():.3f} bootstrap SD")  # fmt: skip
        print(f"FastChat-style bootstrap({rounds}): {t_fcb:.2f} s wall ({t_fcb.cpu:.2f} s CPU) "
              f"-> ratio {t_fcb / t_b:.1f}x wall; endpoints differ by median "
              f"{np.median(gap_fc):.3f}, max {gap_fc.max():.3f} SD")  # fmt: skip
    if n <= 50:
        t_sb, _ = once(lambda: prefjax.audit(f, bootstrap=rounds, bootstrap_sensitivities=True))
        print(f"only prefjax: bootstrap of p_ij, sensitivities, local M and verdicts "
              f"({rounds} resamples): {t_sb:.2f} s")  # fmt: skip


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (a smoke run)")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=1000)
    parser.add_argument("--items", type=int, default=200)
    parser.add_argument("--battles", type=int, default=2_000_000)
    parser.add_argument("--arena-only", action="store_true", help="skip the baseball set")
    args = parser.parse_args()
    if args.quick:
        args.items, args.battles, args.rounds, args.repeats = 20, 20_000, 64, 1
    if not args.arena_only:
        section("baseball (1987 AL East)", prefjax.Comparisons.example("baseball"), args, True)
    a, b, y = synthetic_arena(args.items, args.battles)
    t0 = time.perf_counter()
    data = comparisons_from_battles(a, b, y, args.items)
    print(f"\n(aggregating {args.battles} battles into cells: {time.perf_counter() - t0:.2f} s)")
    section(f"synthetic arena ({args.items} items, {args.battles} battles)", data, args, True)


if __name__ == "__main__":
    main()
