"""The fragility audit of a fitted model: which predicted preferences hinge on few comparisons.

For every ordered pair (i, j) of items, :func:`audit` reports

- the fitted p_ij = g(s_i - s_j) with a delta-method interval (and a bootstrap one);
- the observed count and rate of (i, j) if they met;
- Lemma 1 through every item k that met both i and j: the implied
  p_ij = g(g^-1(p_ik) + g^-1(p_kj)) from the observed rates (Eq. (1)), its partial
  derivatives d_ik, d_kj (Eq. (2)), the local M = max(d_ik, d_kj) and the worst path;
- the sensitivity of the fitted p_ij to every observed pair's rate through the whole fit,
  dp_ij / dr_kl, from the implicit function theorem on the likelihood's stationarity
  condition;
- a verdict: fragile when moving one observed rate by one percentage point moves p_ij by
  more than a threshold (default M points).
"""

from __future__ import annotations

import csv
import json
import math
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from . import _validate as v
from ._fit import (
    Config,
    Fit,
    fit_config,
    free_mask,
    masked,
    objective,
    padded_cells,
    prepare_cells,
    solve,
    solve_chord,
)
from ._links import Link

Array = jax.Array

#: One percentage point: the move of an observed rate the fragility verdict is about.
STEP = 0.01
BOOT_XTOL = 1e-6
#: Chord steps per resample: the rate ||I - H0^-1 H_b|| is a few percent for a resample of
#: a large data set, so 5 steps take a start one standard error away below BOOT_XTOL; a
#: resample whose last step is larger is refitted by damped Newton.
BOOT_CHORD_STEPS = 5
_BLOCK_ELEMENTS = 4_000_000  # size of the (pairs x observed pairs) blocks held at once


class AuditBootstrap(NamedTuple):
    """Percentile intervals from resampling the comparisons (see :func:`audit`).

    Attributes:
        n_resamples, seed, level: what was drawn, with which seed, at which level.
        scores: (B, n) the resampled scores (identified as in the fit).
        p_low, p_high: (P,) percentile interval of each ordered pair's fitted p_ij.
        sensitivity_low, sensitivity_high: (P,) of max_kl |dp_ij / dr_kl| (None when the
            sensitivities were not resampled).
        local_M_low, local_M_high: (P,) of the Lemma 1 local M (None likewise).
        fragile_share: (P,) share of resamples in which the pair is fragile (None likewise).
        n_unconverged: resamples whose fit hit its iteration limit (kept, and counted here).
    """

    n_resamples: int
    seed: int
    level: float
    scores: np.ndarray
    p_low: np.ndarray
    p_high: np.ndarray
    sensitivity_low: np.ndarray | None
    sensitivity_high: np.ndarray | None
    local_M_low: np.ndarray | None
    local_M_high: np.ndarray | None
    fragile_share: np.ndarray | None
    n_unconverged: int


class Audit(NamedTuple):
    """The fragility audit of a :class:`prefjax.Fit`, one entry per ordered pair (i, j).

    Arrays of length P = n (n - 1) run over the ordered pairs ``(i[q], j[q])``; ``pairs``
    lists the Q observed (unordered) pairs whose rates the Jacobian is taken against.

    Attributes:
        fit: the audited fit.
        M: the M of the verdict; ``threshold`` is the change of p_ij (probability units)
            that moving one observed rate by ``STEP`` = one percentage point must exceed for
            a pair to be fragile (default M * STEP).
        level: the level of the intervals.
        i, j: (P,) item indices.
        p, p_low, p_high: fitted p_ij = g(s_i - s_j) (a neutral position) and its
            delta-method interval g(x -/+ z se(x)), x = s_i - s_j.
        observed: (P,) comparisons between i and j (0 if they never met).
        rate: (P,) observed rate of i over j, ties counting half (NaN if they never met).
        implied_p, local_M, worst_k, n_paths: Lemma 1 through the worst path k (the one
            with the largest local M = max(d_ik, d_kj)), NaN / -1 / 0 without a path.
        sensitivity: (P,) max over observed pairs (k, l) of |dp_ij / dr_kl|.
        max_jacobian, max_jacobian_pair: the signed entry attaining it, and its index into
            ``pairs``.
        fragile: (P,) sensitivity * STEP > threshold.
        pairs, pair_rates, pair_counts: (Q, 2) observed pairs (k < l), rate of k over l
            (ties half; without ties under ``ties="drop"``), number of comparisons.
        dscores: (n, Q) d s / d r_kl by the implicit function theorem; :meth:`jacobian`
            reads it.
        bootstrap: an :class:`AuditBootstrap`, or None.
    """

    fit: Fit
    M: float
    threshold: float
    level: float
    i: np.ndarray
    j: np.ndarray
    p: np.ndarray
    p_low: np.ndarray
    p_high: np.ndarray
    observed: np.ndarray
    rate: np.ndarray
    implied_p: np.ndarray
    local_M: np.ndarray
    worst_k: np.ndarray
    n_paths: np.ndarray
    sensitivity: np.ndarray
    max_jacobian: np.ndarray
    max_jacobian_pair: np.ndarray
    fragile: np.ndarray
    pairs: np.ndarray
    pair_rates: np.ndarray
    pair_counts: np.ndarray
    dscores: np.ndarray
    bootstrap: AuditBootstrap | None

    @property
    def items(self) -> tuple[str, ...]:
        return self.fit.items

    def _q(self, i, j) -> int:
        a, b = self.fit.data.index(i), self.fit.data.index(j)
        if a == b:
            raise ValueError(f"i and j must differ; got {i!r} twice")
        n = len(self.items)
        return a * (n - 1) + (b if b < a else b - 1)

    def jacobian(self, i, j) -> np.ndarray:
        """dp_ij / dr_kl for every observed pair (k, l) = ``pairs[q]`` (a (Q,) array)."""
        a, b = self.fit.data.index(i), self.fit.data.index(j)
        x = float(self.fit.scores[a] - self.fit.scores[b])
        return float(self.fit.link.derivative(x)) * (self.dscores[a] - self.dscores[b])

    def paths(self, i, j) -> list[dict]:
        """Lemma 1 through every k that met both i and j, worst (largest local M) first.

        Each dict: ``k`` (name), ``p_ik``, ``p_kj`` (observed rates, continuity-corrected
        where 0 or 1), ``implied_p``, ``d_ik``, ``d_kj``, ``local_M``.
        """
        a, b = self.fit.data.index(i), self.fit.data.index(j)
        xr, _ = _observed_scores(
            self.fit.link, self.pairs, self.pair_rates, self.pair_counts, len(self.items)
        )
        g = self.fit.link
        out = []
        for k in range(len(self.items)):
            if k in (a, b) or not (np.isfinite(xr[a, k]) and np.isfinite(xr[k, b])):
                continue
            x_ik, x_kj = xr[a, k], xr[k, b]
            log_dg = float(g.log_derivative(x_ik + x_kj))
            d_ik = math.exp(log_dg - float(g.log_derivative(x_ik)))
            d_kj = math.exp(log_dg - float(g.log_derivative(x_kj)))
            out.append({
                "k": self.items[k], "p_ik": float(g(x_ik)), "p_kj": float(g(x_kj)),
                "implied_p": float(g(x_ik + x_kj)), "d_ik": d_ik, "d_kj": d_kj,
                "local_M": max(d_ik, d_kj),
            })  # fmt: skip
        return sorted(out, key=lambda r: -r["local_M"])

    def to_rows(self) -> list[dict]:
        """One dict per ordered pair: i, j (names), p, p_low, p_high, observed, rate,
        implied_p, local_M, worst_k, n_paths, sensitivity, max_jacobian, max_jacobian_k,
        max_jacobian_l, fragile (and the bootstrap intervals when drawn). NaN -> None."""
        names = self.items
        boot = self.bootstrap
        rows = []
        for q in range(self.i.size):
            pk, pl = self.pairs[self.max_jacobian_pair[q]]
            row = {
                "i": names[self.i[q]],
                "j": names[self.j[q]],
                "p": _num(self.p[q]),
                "p_low": _num(self.p_low[q]),
                "p_high": _num(self.p_high[q]),
                "observed": int(self.observed[q]),
                "rate": _num(self.rate[q]),
                "implied_p": _num(self.implied_p[q]),
                "local_M": _num(self.local_M[q]),
                "worst_k": names[self.worst_k[q]] if self.worst_k[q] >= 0 else None,
                "n_paths": int(self.n_paths[q]),
                "sensitivity": _num(self.sensitivity[q]),
                "max_jacobian": _num(self.max_jacobian[q]),
                "max_jacobian_k": names[pk],
                "max_jacobian_l": names[pl],
                "fragile": bool(self.fragile[q]),
            }
            if boot is not None:
                row["p_boot_low"] = _num(boot.p_low[q])
                row["p_boot_high"] = _num(boot.p_high[q])
                if boot.sensitivity_low is not None:
                    row["sensitivity_low"] = _num(boot.sensitivity_low[q])
                    row["sensitivity_high"] = _num(boot.sensitivity_high[q])
                    row["local_M_low"] = _num(boot.local_M_low[q])
                    row["local_M_high"] = _num(boot.local_M_high[q])
                    row["fragile_share"] = _num(boot.fragile_share[q])
            rows.append(row)
        return rows

    def fragile_rows(self) -> list[dict]:
        """The rows of the fragile pairs, most sensitive first."""
        rows = [r for r in self.to_rows() if r["fragile"]]
        return sorted(rows, key=lambda r: -(r["sensitivity"] or 0.0))

    def to_csv(self, path) -> Path:
        """Write :meth:`to_rows` as CSV (empty cells for missing values)."""
        path = Path(path)
        rows = self.to_rows()
        with path.open("w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
        return path

    def summary(self) -> dict:
        """The fit and audit settings and counts, JSON-ready."""
        f = self.fit
        return {
            "items": list(f.items),
            "scores": [float(s) for s in np.asarray(f.scores)],
            "se": [float(s) for s in np.asarray(f.se)],
            "identification": "scores sum to 0" if f.reference is None
            else f"{f.reference} = 0",
            "link": f.link.name,
            "ties": f.ties,
            "n_ties": f.n_ties,
            "position": f.position,
            "position_se": f.position_se,
            "nu": f.nu,
            "prior": f.prior,
            "loglik": f.loglik,
            "converged": f.converged,
            "iterations": f.iterations,
            "n_comparisons": f.data.n_comparisons,
            "n_observed_pairs": int(self.pairs.shape[0]),
            "M": self.M,
            "threshold": self.threshold,
            "step": STEP,
            "level": self.level,
            "n_fragile": int(self.fragile.sum()),
            "n_ordered_pairs": int(self.i.size),
            "bootstrap": None if self.bootstrap is None else {
                "n_resamples": self.bootstrap.n_resamples,
                "seed": self.bootstrap.seed,
                "n_unconverged": self.bootstrap.n_unconverged,
            },
        }  # fmt: skip

    def to_json(self, path) -> Path:
        """Write ``{"summary": ..., "pairs": to_rows()}`` as JSON (NaN -> null)."""
        path = Path(path)
        payload = {"summary": self.summary(), "pairs": self.to_rows()}
        path.write_text(json.dumps(payload, indent=1, allow_nan=False), encoding="utf-8")
        return path

    def __repr__(self) -> str:
        return (
            f"Audit({len(self.items)} items, {self.i.size} ordered pairs, "
            f"{self.pairs.shape[0]} observed pairs, M={self.M:g}: {int(self.fragile.sum())} "
            f"fragile; largest local M {_fmt(np.nanmax(self.local_M, initial=0.0))}, "
            f"largest sensitivity {_fmt(np.max(self.sensitivity))})"
        )


def _num(x):
    x = float(x)
    return None if math.isnan(x) else x


def _fmt(x) -> str:
    return f"{float(x):.3g}"


# --- observed rates and Lemma 1 -----------------------------------------------------------


def _pair_rates(fit: Fit):
    """Observed pairs (k < l), rates of k over l and counts, as the fit used them."""
    k, l_, wk, wl, t = fit.data.pair_table()
    if fit.ties == "drop":
        t = np.zeros_like(t)
    n = wk + wl + t
    keep = n > 0
    k, l_, wk, t, n = k[keep], l_[keep], wk[keep], t[keep], n[keep]
    return np.stack([k, l_], 1), (wk + 0.5 * t) / n, n, wk + 0.5 * t


def _observed_scores(g: Link, pairs, rates, counts, n):
    """(n, n) matrix of g^-1(observed rate of i over j), NaN where i and j never met.

    A rate of exactly 0 or 1 has no finite score: it is replaced by the continuity-corrected
    (w + 1/2) / (n + 1), w the wins (ties half) of the pair's first item; the others are used
    as observed. Computed in score space, antisymmetric by Assumption 4.
    """
    wins = rates * counts
    extreme = (rates <= 0) | (rates >= 1)
    r = np.where(extreme, (wins + 0.5) / (counts + 1.0), rates)
    x = np.asarray(g.inverse(jnp.asarray(r)))
    out = np.full((n, n), np.nan)
    out[pairs[:, 0], pairs[:, 1]] = x
    out[pairs[:, 1], pairs[:, 0]] = -x
    return out, extreme


@partial(jax.jit, static_argnums=0)
def _lemma1_block(g: Link, x_rows, x_cols, rows):
    """Worst Lemma 1 path for pairs (i in rows, all j): local M, implied p, worst k, count.

    x_rows: (b, n) x_ik for the block's i; x_cols: (n, n) x_kj. Paths through k = i or
    k = j do not exist (their x is NaN on the diagonal).
    """
    x_ik = x_rows[:, None, :]  # (b, 1, k)
    x_kj = x_cols.T[None, :, :]  # (1, j, k)
    ok = jnp.isfinite(x_ik) & jnp.isfinite(x_kj)
    n = x_cols.shape[0]
    ok = ok & (jnp.arange(n)[None, None, :] != rows[:, None, None])
    ok = ok & (jnp.arange(n)[None, :, None] != jnp.arange(n)[None, None, :])
    xi = jnp.where(ok, x_ik, 0.0)
    xk = jnp.where(ok, x_kj, 0.0)
    x_ij = xi + xk
    log_dg = g.log_derivative(x_ij)
    log_m = jnp.maximum(log_dg - g.log_derivative(xi), log_dg - g.log_derivative(xk))
    log_m = jnp.where(ok, log_m, -jnp.inf)
    worst = jnp.argmax(log_m, axis=-1)
    best = jnp.take_along_axis(log_m, worst[..., None], -1)[..., 0]
    x_best = jnp.take_along_axis(x_ij, worst[..., None], -1)[..., 0]
    count = jnp.sum(ok, -1)
    has = count > 0
    return (
        jnp.where(has, jnp.exp(best), jnp.nan),
        jnp.where(has, g(x_best), jnp.nan),
        jnp.where(has, worst, -1),
        count,
    )


def _lemma1(g: Link, xr: np.ndarray):
    """Lemma 1 over all ordered pairs, as (n, n) arrays, in blocks of rows."""
    n = xr.shape[0]
    block = max(1, min(n, _BLOCK_ELEMENTS // max(n * n, 1)))
    x = jnp.asarray(xr)
    outs = []
    for start in range(0, n, block):
        rows = np.arange(start, start + block) % n  # fixed block shape: wrap, then trim
        res = _lemma1_block(g, x[rows], x, jnp.asarray(rows))
        outs.append([np.asarray(r)[: min(block, n - start)] for r in res])
    return [np.concatenate([o[k] for o in outs]) for k in range(4)]


# --- the implicit-function Jacobian -------------------------------------------------------


def _pair_index(cells_a, cells_b, pairs, n):
    """For each cell, the index of its unordered pair in ``pairs`` and the sign of its
    orientation (+1 when the cell's first item is the pair's k)."""
    lo, hi = np.minimum(cells_a, cells_b), np.maximum(cells_a, cells_b)
    keys = pairs[:, 0] * n + pairs[:, 1]
    q = np.searchsorted(keys, lo * n + hi)
    q = np.clip(q, 0, keys.size - 1)
    sign = np.where(cells_a == lo, 1.0, -1.0)
    return q, sign


def _dtheta(cfg: Config, cells, w, theta, q, sign, n_pairs: int, counts_c):
    """d theta / d r for every observed pair: (n + 2, Q), by the implicit function theorem.

    At the optimum grad F(theta; r) = 0, so d theta / d r = -H^-1 d(grad F)/dr. Moving pair
    (k, l)'s rate by dr moves n_c dr of each of its cells' counts from l's wins to k's, so
    d(grad F)/dr = -sum_c J_c^T n_c sign_c (u_c,first - u_c,second), u the per-outcome local
    gradients. One Cholesky solve with Q right-hand sides; no differentiation through the
    Newton iterations.
    """
    n = cfg.n
    free = free_mask(cfg)
    _, g, h, d1 = objective(cfg, cells, w, theta)
    _, h = masked(free, g, h)
    vloc = (counts_c * sign)[:, None] * (d1[:, 0, :] - d1[:, 1, :])  # (C, k)
    vx = vloc[:, 0]
    rhs = jnp.zeros((n + 2, n_pairs), theta.dtype)
    rhs = rhs.at[cells.a, q].add(vx).at[cells.b, q].add(-vx).at[n, q].add(cells.pos * vx)
    if vloc.shape[1] > 1:
        rhs = rhs.at[n + 1, q].add(vloc[:, 1])
    rhs = jnp.where(free[:, None], rhs, 0.0)
    chol = jnp.linalg.cholesky(h)
    return jax.scipy.linalg.cho_solve((chol, True), rhs), h


_dtheta_jit = jax.jit(_dtheta, static_argnums=(0, 6))


@partial(jax.jit, static_argnums=(0, 3))
def _max_jacobian_block(g: Link, scores, dscores, block: int, start):
    """For pairs (i in block, all j): max_q |g'(x_ij) (D_i - D_j)_q|, its signed value and q."""
    n = scores.shape[0]
    rows = (start + jnp.arange(block)) % n
    x = scores[rows][:, None] - scores[None, :]
    jac = g.derivative(x)[..., None] * (dscores[rows][:, None, :] - dscores[None, :, :])
    q = jnp.argmax(jnp.abs(jac), -1)
    val = jnp.take_along_axis(jac, q[..., None], -1)[..., 0]
    return jnp.abs(val), val, q


def _max_jacobian(g: Link, scores, dscores):
    n, nq = dscores.shape
    block = max(1, min(n, _BLOCK_ELEMENTS // max(n * nq, 1)))
    s, d = jnp.asarray(scores), jnp.asarray(dscores)
    outs = []
    for start in range(0, n, block):
        res = _max_jacobian_block(g, s, d, block, start)
        outs.append([np.asarray(r)[: min(block, n - start)] for r in res])
    return [np.concatenate([o[k] for o in outs]) for k in range(3)]


# --- the public entry point ---------------------------------------------------------------


def _offdiag(m: np.ndarray) -> np.ndarray:
    """Entries of an (n, n) array at the ordered pairs (i, j), i != j, row-major."""
    n = m.shape[0]
    return m[~np.eye(n, dtype=bool)]


def audit(
    fit: Fit,
    M: float = 10.0,
    threshold: float | None = None,
    level: float = 0.95,
    cov: str = "fisher",
    bootstrap: int = 0,
    seed: int = 0,
    bootstrap_sensitivities: bool | None = None,
    progress: bool = False,
) -> Audit:
    """Which preferences a fitted model predicts are fragile: one entry per ordered pair.

    For each ordered pair (i, j):

    - fitted p_ij = g(s_i - s_j) with the delta-method interval g(x -/+ z se(x)),
      x = s_i - s_j, se(x)^2 = c_ii + c_jj - 2 c_ij (``cov``: the fit's inverse Fisher or
      sandwich covariance);
    - Lemma 1 (Eq. (1)) through every k that met both i and j: implied
      p_ij = g(g^-1(p_ik) + g^-1(p_kj)) from the *observed* rates, with
      d_ik = g'(x_ik + x_kj) / g'(x_ik) and d_kj likewise (Eq. (2)), in score space (log g'),
      so rates near 0 and 1 lose nothing. A rate of exactly 0 or 1 has no finite score and is
      replaced by the continuity-corrected (w + 1/2) / (n + 1). local M = max(d_ik, d_kj)
      over the worst path;
    - dp_ij / dr_kl for every observed pair (k, l), r_kl the rate of k over l (ties half),
      through the whole fit by the implicit function theorem (:meth:`Audit.jacobian`);
    - fragile when max_kl |dp_ij / dr_kl| * 0.01 > ``threshold``: moving one observed rate by
      one percentage point moves p_ij by more than ``threshold`` (default M points, i.e.
      ``M * 0.01``). The verdict is the linearisation; refits agree to first order.

    Args:
        fit: a :class:`prefjax.Fit`.
        M: the sensitivity that makes a pair fragile (> 0).
        threshold: the change of p_ij (probability units) per percentage point of an
            observed rate beyond which a pair is fragile; default ``M * 0.01``.
        level: interval level in (0, 1).
        cov: ``"fisher"`` or ``"sandwich"``, the covariance of the delta-method intervals.
        bootstrap: number of resamples (0: none). Resampling draws the comparisons the fit
            used with replacement (multinomial counts over the cells, seeded) and refits
            every resample by Newton, vmapped, from the fitted scores.
        seed: the bootstrap's seed.
        bootstrap_sensitivities: also resample the sensitivities, local M and verdicts
            (costs n^2 x observed pairs per resample). Default: when there are at most 50
            items.
        progress: show a progress bar (tqdm if installed) for the bootstrap.

    Returns:
        An :class:`Audit`.

    Examples:
        >>> import prefjax
        >>> f = prefjax.fit(prefjax.Comparisons.example("baseball"))
        >>> a = prefjax.audit(f, M=10)
        >>> row = a.to_rows()[0]
        >>> row["i"], row["j"], row["observed"]
        ('Baltimore', 'Boston', 13)
    """
    v.require_x64("prefjax.audit")
    if not isinstance(fit, Fit):
        raise TypeError(f"fit must be a prefjax.Fit (from prefjax.fit); got {type(fit)}")
    M = v.check_positive_number("M", M)
    threshold = M * STEP if threshold is None else v.check_positive_number("threshold", threshold)
    level = float(level)
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1); got {level!r}")
    v.check_choice("cov", cov, ("fisher", "sandwich"))
    if isinstance(bootstrap, bool) or not isinstance(bootstrap, int | np.integer) or bootstrap < 0:
        raise ValueError(f"bootstrap must be an integer >= 0; got {bootstrap!r}")
    g = fit.link
    n = len(fit.items)
    scores = np.asarray(fit.scores)
    c = np.asarray(fit.cov if cov == "fisher" else fit.cov_sandwich)

    # Fitted p_ij and delta-method intervals, in score space.
    x = scores[:, None] - scores[None, :]
    var = np.diag(c)[:, None] + np.diag(c)[None, :] - 2 * c
    z = float(jax.scipy.special.ndtri(0.5 + level / 2))
    se = np.sqrt(np.clip(var, 0.0, None))
    p = np.asarray(g(jnp.asarray(x)))
    p_low = np.asarray(g(jnp.asarray(x - z * se)))
    p_high = np.asarray(g(jnp.asarray(x + z * se)))

    # Observed pairs, Lemma 1 paths.
    pairs, rates, counts, _ = _pair_rates(fit)
    xr, _ = _observed_scores(g, pairs, rates, counts, n)
    obs = np.zeros((n, n))
    obs[pairs[:, 0], pairs[:, 1]] = counts
    obs[pairs[:, 1], pairs[:, 0]] = counts
    rate_m = np.full((n, n), np.nan)
    rate_m[pairs[:, 0], pairs[:, 1]] = rates
    rate_m[pairs[:, 1], pairs[:, 0]] = 1 - rates
    local_m, implied, worst, n_paths = _lemma1(g, xr)

    # The implicit-function Jacobian.
    cfg, cells, w, theta, q, sign, counts_c = _jacobian_inputs(fit, pairs)
    dth, _ = _dtheta_jit(cfg, cells, w, jnp.asarray(theta), q, sign, pairs.shape[0], counts_c)
    dscores = np.asarray(dth)[:n]
    if fit.reference is None:
        dscores = dscores - dscores.mean(0)
    sens, jmax, jq = _max_jacobian(g, scores, dscores)
    fragile = sens * STEP > threshold

    boot = None
    if bootstrap:
        if bootstrap_sensitivities is None:
            bootstrap_sensitivities = n <= 50
        # The bootstrap's layout: dense data as the whole n x n grid (see padded_cells).
        _, cells_b, w_b, _, q_b, sign_b, _ = _jacobian_inputs(fit, pairs, dense=True)
        boot = _bootstrap(
            fit, cfg, cells_b, w_b, theta, pairs, q_b, sign_b, int(bootstrap), int(seed), level,
            bool(bootstrap_sensitivities), threshold, progress,
        )  # fmt: skip

    def od(m):
        return _offdiag(np.asarray(m))

    ii, jj = np.nonzero(~np.eye(n, dtype=bool))
    return Audit(
        fit=fit, M=M, threshold=threshold, level=level, i=ii, j=jj,
        p=od(p), p_low=od(p_low), p_high=od(p_high),
        observed=od(obs).astype(np.int64), rate=od(rate_m),
        implied_p=od(implied), local_M=od(local_m), worst_k=od(worst).astype(np.int64),
        n_paths=od(n_paths).astype(np.int64),
        sensitivity=od(sens), max_jacobian=od(jmax), max_jacobian_pair=od(jq).astype(np.int64),
        fragile=od(fragile), pairs=pairs, pair_rates=rates, pair_counts=counts,
        dscores=dscores, bootstrap=boot,
    )  # fmt: skip


def _jacobian_inputs(fit: Fit, pairs, dense: bool = False):
    cfg, _, _, theta = fit_config(fit)
    a, b, pos, w = prepare_cells(fit.data, cfg.position, fit.ties)
    cells, w_pad, slot = padded_cells(a, b, pos, w, cfg.n, dense)
    q, sign = _pair_index(a, b, pairs, cfg.n)
    size = cells.a.shape[0]

    def laid_out(x):  # empty cells: pair 0, weight 0 (they move nothing)
        out = np.zeros(size, x.dtype)
        out[slot] = x
        return jnp.asarray(out)

    return cfg, cells, w_pad, theta, laid_out(q), laid_out(sign), laid_out(w.sum(1))


# --- the bootstrap ------------------------------------------------------------------------


@partial(jax.jit, static_argnums=(0, 7, 8))
def _boot_chunk(cfg: Config, cells, w_chunk, theta, h0_inv, q, sign, n_pairs, sensitivities):
    """Refit a chunk of resamples (chord-Newton from the fitted theta with the fit's inverse
    Hessian); optionally each one's implicit-function d theta / d r."""
    th, done = solve_chord(cfg, cells, w_chunk, theta, h0_inv, BOOT_CHORD_STEPS)
    if not sensitivities:
        return th, done, jnp.zeros((th.shape[0], cfg.n, 1), theta.dtype)

    def one(w, t):
        return _dtheta(cfg, cells, w, t, q, sign, n_pairs, w.sum(1))[0][: cfg.n]

    return th, done, jax.vmap(one)(w_chunk, th)


@partial(jax.jit, static_argnums=(0, 6, 7))
def _boot_one(cfg: Config, cells, w, theta, q, sign, n_pairs, sensitivities):
    """The damped-Newton refit of one resample where the chord iteration did not converge."""
    s = solve(cfg, cells, w, theta)
    dth = jnp.zeros((cfg.n, 1), theta.dtype)
    if sensitivities:
        dth = _dtheta(cfg, cells, w, s.theta, q, sign, n_pairs, w.sum(1))[0][: cfg.n]
    return s.theta, s.done, dth


@partial(jax.jit, static_argnums=0)
def _hessian_inverse(cfg: Config, cells, w, theta):
    """Inverse of the (masked) Hessian of F at the fit: the chord method's fixed step."""
    _, g, h, _ = objective(cfg, cells, w, theta)
    return jnp.linalg.inv(masked(free_mask(cfg), g, h)[1])


def _progress_bar(total: int, enabled: bool):
    if not enabled:
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:  # no tqdm: silent
        return None
    return tqdm(total=total, desc="bootstrap", unit="resample")


def _bootstrap(fit, cfg, cells, w, theta, pairs, q, sign, n_boot, seed, level, sens, thr, prog):
    n = cfg.n
    # Resampled scores carry Monte-Carlo error ~ their standard error: stopping the chord
    # iteration at a 1e-6 step (its error a few percent of that) is far below it.
    cfg = cfg._replace(xtol=BOOT_XTOL)
    w_host = np.asarray(w)
    total = w_host.sum()
    flat = w_host.reshape(-1)
    probs = flat / total
    n_draw = int(round(total))
    rng = np.random.Generator(np.random.PCG64(seed))
    nq = pairs.shape[0]
    chunk = 32 if not sens else max(1, min(32, _BLOCK_ELEMENTS // max(n * n * nq, 1)))
    theta = jnp.asarray(theta)
    h0_inv = _hessian_inverse(cfg, cells, w, theta)
    draws, d_draws, undone = [], [], 0
    bar = _progress_bar(n_boot, prog)

    occurs = np.flatnonzero(probs > 0)  # dense layouts hold empty cells: skip them

    def draw():  # multinomial counts over (cell, outcome): resampled comparisons
        counts = np.zeros((chunk, probs.size))
        counts[:, occurs] = rng.multinomial(n_draw, probs[occurs], size=chunk)
        return counts

    # The next chunk is drawn on a worker thread while JAX (which releases the GIL) refits
    # the current one; one generator, used in order, so the draws depend only on the seed.
    pool = ThreadPoolExecutor(max_workers=1)
    pending = pool.submit(draw)
    for start in range(0, n_boot, chunk):
        m = min(chunk, n_boot - start)
        counts = pending.result()
        if start + chunk < n_boot:
            pending = pool.submit(draw)
        w_chunk = jnp.asarray(counts.reshape(chunk, *w_host.shape))
        th, done, dth = _boot_chunk(cfg, cells, w_chunk, theta, h0_inv, q, sign, nq, sens)
        th, done, dth = np.array(th), np.array(done), np.array(dth)
        for b in np.flatnonzero(~done[:m]):  # rare: refit by damped Newton
            th[b], done[b], dth[b] = _boot_one(cfg, cells, w_chunk[b], theta, q, sign, nq, sens)
        draws.append(np.asarray(th)[:m])
        undone += int(np.sum(~np.asarray(done)[:m]))
        if sens:
            d_draws.append((np.asarray(dth)[:m], counts[:m]))
        if bar is not None:
            bar.update(m)
    pool.shutdown()
    if bar is not None:
        bar.close()
    th = np.concatenate(draws)
    s = th[:, :n]
    s = s - (s.mean(1, keepdims=True) if fit.reference is None else s[:, [cfg.ref]])
    lo_q, hi_q = 100 * (1 - level) / 2, 100 * (1 + level) / 2
    g = fit.link
    # Percentiles of x_ij = s_i - s_j, mapped through the increasing g: those of p_ij (up to
    # the interpolation between two order statistics), one row of items at a time.
    x_lo, x_hi = np.empty((n, n)), np.empty((n, n))
    for i in range(n):
        x_lo[i], x_hi[i] = np.percentile(s[:, i, None] - s, [lo_q, hi_q], axis=0)
    p_lo, p_hi = np.asarray(g(jnp.asarray(x_lo))), np.asarray(g(jnp.asarray(x_hi)))
    out = dict(sensitivity_low=None, sensitivity_high=None, local_M_low=None,
               local_M_high=None, fragile_share=None)  # fmt: skip
    if sens:
        sens_d, lm_d = [], []
        dth_all = np.concatenate([d[0] for d in d_draws])
        counts_all = np.concatenate([d[1] for d in d_draws])
        for b in range(n_boot):
            sens_d.append(_max_jacobian(g, s[b], dth_all[b])[0])  # shift-free: differences
            lm_d.append(_resampled_local_m(fit, g, counts_all[b].reshape(w_host.shape)))
        sens_d, lm_d = np.stack(sens_d), np.stack(lm_d)
        out["sensitivity_low"], out["sensitivity_high"] = (
            _offdiag(v) for v in np.percentile(sens_d, [lo_q, hi_q], axis=0)
        )
        lm_lo, lm_hi = np.nanpercentile(np.where(np.isnan(lm_d), -np.inf, lm_d), [lo_q, hi_q], 0)
        out["local_M_low"] = _offdiag(np.where(np.isfinite(lm_lo), lm_lo, np.nan))
        out["local_M_high"] = _offdiag(np.where(np.isfinite(lm_hi), lm_hi, np.nan))
        out["fragile_share"] = _offdiag(np.mean(sens_d * STEP > thr, axis=0))
    return AuditBootstrap(
        n_resamples=n_boot, seed=seed, level=level, scores=s,
        p_low=_offdiag(p_lo), p_high=_offdiag(p_hi), n_unconverged=undone, **out,
    )  # fmt: skip


def _resampled_local_m(fit, g, wb):
    """Lemma 1's local M on one resample's observed rates."""
    n = len(fit.items)
    a, b, pos, w = prepare_cells(fit.data, fit.position is not None, fit.ties)
    wb = wb[padded_cells(a, b, pos, w, n, True)[2]]  # the resample's counts of the cells
    lo, hi = np.minimum(a, b), np.maximum(a, b)
    k_wins = np.where(a == lo, wb[:, 0], wb[:, 1]) + 0.5 * wb[:, 2]
    tot = wb.sum(1)
    key = lo * n + hi
    uniq, inv = np.unique(key, return_inverse=True)
    kw = np.bincount(inv, weights=k_wins, minlength=uniq.size)
    nn = np.bincount(inv, weights=tot, minlength=uniq.size)
    keep = nn > 0
    pr = np.stack([uniq // n, uniq % n], 1)[keep]
    xr, _ = _observed_scores(g, pr, kw[keep] / nn[keep], nn[keep], n)
    return _lemma1(g, xr)[0]
