"""The audit's quantities: observed rates, Lemma 1 through every k, the implicit-function
Jacobian of the fitted preferences with respect to the observed rates.

Used by :func:`prefjax.audit` (``_audit``) and its bootstrap (``_audit_bootstrap``), which
turn them into per-pair verdicts and intervals.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from ._fit import Fit, fit_config
from ._link import Link
from ._solver import (
    Config,
    free_mask,
    masked,
    objective,
    outcome_gradients,
    padded_cells,
    prepare_cells,
)

#: One percentage point: the move of an observed rate the fragility verdict is about.
STEP = 0.01
BLOCK_ELEMENTS = 4_000_000  # size of the (pairs x observed pairs) blocks held at once


# --- observed rates and Lemma 1 -----------------------------------------------------------


def pair_rates(fit: Fit):
    """Observed pairs (k < l), rates of k over l and counts, as the fit used them."""
    k, l_, wk, wl, t = fit.data.pair_table()
    if fit.ties == "drop":
        t = np.zeros_like(t)
    n = wk + wl + t
    keep = n > 0
    k, l_, wk, t, n = k[keep], l_[keep], wk[keep], t[keep], n[keep]
    return np.stack([k, l_], 1), (wk + 0.5 * t) / n, n, wk + 0.5 * t


def observed_scores(g: Link, pairs, rates, counts, n):
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


def lemma1(g: Link, xr: np.ndarray):
    """Lemma 1 over all ordered pairs, as (n, n) arrays, in blocks of rows."""
    n = xr.shape[0]
    block = max(1, min(n, BLOCK_ELEMENTS // max(n * n, 1)))
    x = jnp.asarray(xr)
    outs = []
    for start in range(0, n, block):
        rows = np.arange(start, start + block) % n  # fixed block shape: wrap, then trim
        res = _lemma1_block(g, x[rows], x, jnp.asarray(rows))
        outs.append([np.asarray(r)[: min(block, n - start)] for r in res])
    return [np.concatenate([o[k] for o in outs]) for k in range(4)]


# --- the implicit-function Jacobian -------------------------------------------------------


def pair_index(cells_a, cells_b, pairs, n):
    """For each cell, the index of its unordered pair in ``pairs`` and the sign of its
    orientation (+1 when the cell's first item is the pair's k)."""
    lo, hi = np.minimum(cells_a, cells_b), np.maximum(cells_a, cells_b)
    keys = pairs[:, 0] * n + pairs[:, 1]
    q = np.searchsorted(keys, lo * n + hi)
    q = np.clip(q, 0, keys.size - 1)
    sign = np.where(cells_a == lo, 1.0, -1.0)
    return q, sign


def dtheta(cfg: Config, cells, w, theta, q, sign, n_pairs: int, counts_c):
    """d theta / d r for every observed pair: (n + 2, Q), by the implicit function theorem.

    At the optimum grad F(theta; r) = 0, so d theta / d r = -H^-1 d(grad F)/dr. Moving pair
    (k, l)'s rate by dr moves n_c dr of each of its cells' counts from l's wins to k's, so
    d(grad F)/dr = -sum_c J_c^T n_c sign_c (u_c,first - u_c,second), u the per-outcome local
    gradients. One Cholesky solve with Q right-hand sides; no differentiation through the
    Newton iterations.
    """
    n = cfg.n
    free = free_mask(cfg)
    _, g, h = objective(cfg, cells, w, theta)
    d1 = outcome_gradients(cfg, cells, theta)
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


dtheta_jit = jax.jit(dtheta, static_argnums=(0, 6))


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


def max_jacobian(g: Link, scores, dscores):
    n, nq = dscores.shape
    block = max(1, min(n, BLOCK_ELEMENTS // max(n * nq, 1)))
    s, d = jnp.asarray(scores), jnp.asarray(dscores)
    outs = []
    for start in range(0, n, block):
        res = _max_jacobian_block(g, s, d, block, start)
        outs.append([np.asarray(r)[: min(block, n - start)] for r in res])
    return [np.concatenate([o[k] for o in outs]) for k in range(3)]


def offdiag(m: np.ndarray) -> np.ndarray:
    """Entries of an (n, n) array at the ordered pairs (i, j), i != j, row-major."""
    n = m.shape[0]
    return m[~np.eye(n, dtype=bool)]


def jacobian_inputs(fit: Fit, pairs, dense: bool = False):
    cfg, _, _, theta = fit_config(fit)
    a, b, pos, w = prepare_cells(fit.data, cfg.position, fit.ties)
    cells, w_pad, slot = padded_cells(a, b, pos, w, cfg.n, dense)
    q, sign = pair_index(a, b, pairs, cfg.n)
    size = cells.a.shape[0]

    def laid_out(x):  # empty cells: pair 0, weight 0 (they move nothing)
        out = np.zeros(size, x.dtype)
        out[slot] = x
        return jnp.asarray(out)

    return cfg, cells, w_pad, theta, laid_out(q), laid_out(sign), laid_out(w.sum(1))
