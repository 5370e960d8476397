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
from pathlib import Path
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from . import _validate as v
from ._audit_bootstrap import AuditBootstrap, bootstrap_audit
from ._fit import Fit
from ._fragility import (
    STEP,
    dtheta_jit,
    jacobian_inputs,
    lemma1,
    max_jacobian,
    observed_scores,
    offdiag,
    pair_rates,
)


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
        xr, _ = observed_scores(
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


# --- the public entry point ---------------------------------------------------------------


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
    pairs, rates, counts, _ = pair_rates(fit)
    xr, _ = observed_scores(g, pairs, rates, counts, n)
    obs = np.zeros((n, n))
    obs[pairs[:, 0], pairs[:, 1]] = counts
    obs[pairs[:, 1], pairs[:, 0]] = counts
    rate_m = np.full((n, n), np.nan)
    rate_m[pairs[:, 0], pairs[:, 1]] = rates
    rate_m[pairs[:, 1], pairs[:, 0]] = 1 - rates
    local_m, implied, worst, n_paths = lemma1(g, xr)

    # The implicit-function Jacobian.
    cfg, cells, w, theta, q, sign, counts_c = jacobian_inputs(fit, pairs)
    dth, _ = dtheta_jit(cfg, cells, w, jnp.asarray(theta), q, sign, pairs.shape[0], counts_c)
    dscores = np.asarray(dth)[:n]
    if fit.reference is None:
        dscores = dscores - dscores.mean(0)
    sens, jmax, jq = max_jacobian(g, scores, dscores)
    fragile = sens * STEP > threshold

    boot = None
    if bootstrap:
        if bootstrap_sensitivities is None:
            bootstrap_sensitivities = n <= 50
        # The bootstrap's layout: dense data as the whole n x n grid (see padded_cells).
        _, cells_b, w_b, _, q_b, sign_b, _ = jacobian_inputs(fit, pairs, dense=True)
        boot = bootstrap_audit(
            fit, cfg, cells_b, w_b, theta, pairs, q_b, sign_b, int(bootstrap), int(seed), level,
            bool(bootstrap_sensitivities), threshold, progress,
        )  # fmt: skip

    def od(m):
        return offdiag(np.asarray(m))

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
