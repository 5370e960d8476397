"""The paired-comparison likelihood and its maximiser, for any link (used by ``fit`` and ``audit``).

Parameters theta = (s (n scores), h (position), log nu (Davidson's tie parameter), the link's
fitted shape parameters); data as aggregated cells (a, b, pos) with (C, 3) counts of (first
wins, second wins, tie). The link enters through :func:`outcome_log_probs` alone; the
objective, gradient and Hessian are forward-mode autodiff of it in each cell's local
coordinates, assembled into theta's by a weighted graph Laplacian. :func:`solve` is damped
Newton (Levenberg-Marquardt) as one ``lax.while_loop``; :func:`solve_chord` the chord method
for a batch of nearby data sets (the bootstrap); :func:`fit_kernel` the whole fit with its
covariances in one compiled program.
"""

from __future__ import annotations

from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ._comparisons import Comparisons
from ._link import Link
from ._links import logistic, probit

Array = jax.Array

CHORD_MAX_ITER = 60
#: Newton stops when max |step| <= XTOL * (1 + max |theta|): quadratic convergence makes the
#: final iterate accurate to a few ulps.
XTOL = 1e-10


# --- the one place where the link meets the data ---------------------------------------


def outcome_log_probs(g: Link, x, log_nu, ties: str):
    """Log-probabilities of (first wins, second wins, tie) at score difference x.

    This is the only function through which the link enters the fit: the likelihood, its
    gradient, Hessian, sandwich and implicit derivatives are all autodiff of it. Fitted link
    shape parameters (``fit_link=True``) enter through ``g`` itself: the solver rebuilds the
    link at each iterate's parameters, local coordinates beside x and log nu.

    - ``"half"`` and ``"drop"``: log g(x), log g(-x), and for a tie the half-and-half
      contribution (log g(x) + log g(-x)) / 2 (``"drop"`` gives ties zero weight).
    - ``"davidson"``: with log r = (log g(x) + log g(-x)) / 2 and D = log(1 + nu r):
      log g(x) - D, log g(-x) - D, log nu + log r - D.
    """
    lf, ls = g.log_cdf(x), g.log_cdf(-x)  # closed forms where the link has them
    log_r = 0.5 * (lf + ls)
    if ties == "davidson":
        d = jax.nn.softplus(log_nu + log_r)  # log(1 + nu r) without overflow
        return lf - d, ls - d, log_nu + log_r - d
    return lf, ls, log_r


# --- the solver ----------------------------------------------------------------------------


class Cells(NamedTuple):
    a: Array  # (C,) int, first item
    b: Array  # (C,) int, second item
    pos: Array  # (C,) 1.0 where a position effect applies to the cell
    grid: Array | None  # (n * n,) int: the cell at (first, second), C if none; None when
    # the cells are the n x n grid itself (dense data: no gather needed)


def _on_grid(cells: Cells, n: int, t):
    """Per-cell values t (C,) laid out as the (n, n) matrix T[first, second] (0 elsewhere).

    A gather, not a scatter: each (first, second) holds at most one cell, and gathers
    vectorise under ``jax.vmap`` where XLA's CPU scatter runs element by element (a 6x
    slower bootstrap). Row and column sums of T are the per-item sums over cells.
    """
    if cells.grid is None:  # dense layout: cell c is (c // n, c % n)
        return t.reshape(n, n)
    padded = jnp.concatenate([t, jnp.zeros((1,), t.dtype)])
    return padded[cells.grid].reshape(n, n)


class Config(NamedTuple):
    link: Link
    ties: str
    position: bool
    prior_precision: float  # 1 / prior sd^2, 0.0 without a prior
    n: int
    ref: int  # internal reference item (score fixed at 0 while solving)
    max_iter: int
    xtol: float = 1e-10  # see XTOL
    # Fitted link parameters (theta[n + 2:]), in the order of the link's pytree leaves:
    # True where the parameter is positive and fitted as its logarithm.
    link_log: tuple[bool, ...] = ()


def n_theta(cfg: Config) -> int:
    """theta = (s (n), h, log nu, fitted link parameters)."""
    return cfg.n + 2 + len(cfg.link_log)


def _link_at(cfg: Config, phi) -> Link:
    """cfg.link with its parameters at the fitted coordinates ``phi`` (logs where positive)."""
    if not cfg.link_log:
        return cfg.link
    values = [jnp.exp(u) if log else u for u, log in zip(phi, cfg.link_log, strict=True)]
    return jax.tree.unflatten(jax.tree.structure(cfg.link), values)


def _local_parts(cfg: Config, z):
    """The columns of z (C, k), the scalar log-probabilities of the three outcomes as a
    function of them, and unit tangents: what both passes below differentiate."""
    k = z.shape[1]
    cols = tuple(z[:, m] for m in range(k))
    dav = cfg.ties == "davidson"

    def lp(*c):  # elementwise over the cells: XLA fuses the whole forward-mode pass
        log_nu = c[1] if dav else 0.0
        g = _link_at(cfg, c[1 + dav :])
        return outcome_log_probs(g, c[0], log_nu, cfg.ties)

    def unit(m):
        return tuple(jnp.full_like(cols[0], float(q == m)) for q in range(k))

    return cols, lp, unit


def _cell_terms(cfg: Config, z, w, order: int = 2):
    """Per cell: phi_c = sum_o w_co log P_o(z_c), its gradient (C, k) and Hessian (C, k, k)
    in local coordinates z (C, k); the Hessian is None when ``order == 1``.

    Forward-mode autodiff of the weighted sum: one scalar per cell and tangent. Carrying
    the three outcomes apart ((C, 3, k, k) arrays, summed afterwards) cost 1.4x more in a fit
    and 7x more under the bootstrap's ``vmap`` (measured on 200 items, XLA CPU): the
    per-outcome arrays are materialised, the weighted sum is not.
    """
    cols, lp, unit = _local_parts(cfg, z)
    k = len(cols)

    def phi(*c):
        lf, ls, lt = lp(*c)
        return w[:, 0] * lf + w[:, 1] * ls + w[:, 2] * lt

    def d1(m):
        return lambda *c: jax.jvp(phi, c, unit(m))[1]

    f, first0 = jax.jvp(phi, cols, unit(0))
    first = jnp.stack([first0, *(d1(m)(*cols) for m in range(1, k))], -1)
    if order == 1:
        return f, first, None
    second = [[jax.jvp(d1(m), cols, unit(q))[1] for q in range(k)] for m in range(k)]
    return f, first, jnp.stack([jnp.stack(row, -1) for row in second], -2)


def outcome_gradients(cfg: Config, cells: Cells, theta):
    """Per cell and outcome, the gradient of log P in local coordinates: (C, 3, k).

    What the sandwich's meat (sum over single comparisons of u u^T) and the implicit
    derivatives with respect to the observed rates need; computed once at the solution.
    """
    cols, lp, unit = _local_parts(cfg, _local_z(cfg, cells, theta))
    first = [jnp.stack(jax.jvp(lp, cols, unit(m))[1], -1) for m in range(len(cols))]
    return jnp.stack(first, -1)


def _global_slots(k: int, davidson: bool):
    """(theta slot offset from n, local index) of each global parameter: h enters through x
    (local 0, times pos), log nu and the link parameters have their own local coordinates."""
    slots = [(0, None)]  # h
    if davidson:
        slots.append((1, 1))
    slots += [(2 + j, 1 + davidson + j) for j in range(k - 1 - davidson)]
    return slots


def _assemble(cells: Cells, n: int, a_loc, davidson: bool, p: int):
    """Sum over cells of J_c^T A_c J_c, J_c mapping theta = (s, h, log nu, link params) to z_c.

    ``a_loc`` is (C, k, k) in local coordinates z_c = (x_c[, log nu], link params...) with
    x_c = s_a - s_b + h pos_c, so the score block is a weighted graph Laplacian: one gather
    of the cells into an n x n matrix, symmetrised, instead of k^2 scatters per cell. Slots of
    theta no cell depends on (log nu without Davidson's model) get zero rows.
    """
    k = a_loc.shape[1]
    pos = cells.pos
    w = _on_grid(cells, n, a_loc[:, 0, 0])
    lap = w + w.T
    h_ss = jnp.diag(lap.sum(1)) - lap

    def seg(t):  # sum over cells with first == i, minus those with second == i
        m = _on_grid(cells, n, t)
        return m.sum(1) - m.sum(0)

    slots = _global_slots(k, davidson)

    def aj(loc):  # A_c J_c e_slot: (C, k)
        return a_loc[:, :, 0] * pos[:, None] if loc is None else a_loc[:, :, loc]

    def jt(loc, v):  # e_slot^T J_c^T v_c summed over cells
        return jnp.sum(pos * v[:, 0]) if loc is None else jnp.sum(v[:, loc])

    cols = {off: aj(loc) for off, loc in slots}
    g = p - n
    cross = [jnp.zeros(n, a_loc.dtype)] * g
    small = [[jnp.zeros((), a_loc.dtype)] * g for _ in range(g)]
    for off, _ in slots:
        cross[off] = seg(cols[off][:, 0])
        for off2, loc2 in slots:
            small[off2][off] = jt(loc2, cols[off])
    top = jnp.concatenate([h_ss, jnp.stack(cross, 1)], axis=1)
    bottom = jnp.concatenate([jnp.stack(cross, 0), jnp.stack([jnp.stack(r) for r in small])], 1)
    return jnp.concatenate([top, bottom], axis=0)


def _spread(cells: Cells, n: int, g_loc, davidson: bool, p: int):
    """Sum over cells of J_c^T g_c: local gradients (C, k) to theta's gradient (p,)."""
    m = _on_grid(cells, n, g_loc[:, 0])
    grad_s = m.sum(1) - m.sum(0)
    rest = [jnp.zeros((), g_loc.dtype)] * (p - n)
    for off, loc in _global_slots(g_loc.shape[1], davidson):
        rest[off] = jnp.sum(cells.pos * g_loc[:, 0]) if loc is None else jnp.sum(g_loc[:, loc])
    return jnp.concatenate([grad_s, jnp.stack(rest)])


def _local_z(cfg: Config, cells: Cells, theta):
    n = cfg.n
    if cells.grid is None:  # dense layout: x = s_a - s_b as an outer difference, no gather
        s = theta[:n]
        x = (s[:, None] - s[None, :]).reshape(-1) + theta[n] * cells.pos
    else:
        x = theta[cells.a] - theta[cells.b] + theta[n] * cells.pos
    glob = ([n + 1] if cfg.ties == "davidson" else []) + list(range(n + 2, n_theta(cfg)))
    if not glob:
        return x[:, None]
    return jnp.stack([x, *(jnp.broadcast_to(theta[q], x.shape) for q in glob)], -1)


def free_mask(cfg: Config):
    free = np.ones(n_theta(cfg), bool)
    free[cfg.ref] = False
    free[cfg.n] = cfg.position
    free[cfg.n + 1] = cfg.ties == "davidson"
    return jnp.asarray(free)


def _prior_penalty(cfg: Config, theta):
    s = theta[: cfg.n]
    c = s - jnp.mean(s)
    return 0.5 * cfg.prior_precision * jnp.sum(c * c), c


def objective(cfg: Config, cells: Cells, w, theta):
    """F = -loglik + prior penalty over theta = (s, h, log nu, link params): (F, grad, Hessian)."""
    n = cfg.n
    f, g_loc, h_loc = _cell_terms(cfg, _local_z(cfg, cells, theta), w)
    dav, p = cfg.ties == "davidson", theta.shape[0]
    f = -jnp.sum(f)
    g = -_spread(cells, n, g_loc, dav, p)
    h = -_assemble(cells, n, h_loc, dav, p)
    if cfg.prior_precision > 0:
        pen, c = _prior_penalty(cfg, theta)
        f = f + pen
        g = g.at[:n].add(cfg.prior_precision * c)
        centering = jnp.eye(n) - jnp.full((n, n), 1.0 / n)
        h = h.at[:n, :n].add(cfg.prior_precision * centering)
    return f, g, h


def _gradient(cfg: Config, cells: Cells, w, theta):
    """grad F alone (first-order forward mode: a third of the objective's work)."""
    _, g_loc, _ = _cell_terms(cfg, _local_z(cfg, cells, theta), w, order=1)
    g = -_spread(cells, cfg.n, g_loc, cfg.ties == "davidson", theta.shape[0])
    if cfg.prior_precision > 0:
        g = g.at[: cfg.n].add(cfg.prior_precision * _prior_penalty(cfg, theta)[1])
    return g


def solve_chord(cfg: Config, cells: Cells, ws, theta0, h0_inv, steps: int | None = None):
    """Newton's chord method for a batch of data sets ws (B, C, 3) close to the one the fit
    came from (bootstrap resamples): theta_b <- theta_b - H0^-1 grad F_b(theta_b), with the
    fit's Hessian H0 fixed (``h0_inv``, its inverse; fixed parameters masked).

    Converges linearly at the rate ||I - H0^-1 H_b||, a few percent for a resample of a large
    data set; each step costs one gradient per resample and one (B, P) x (P, P) product: no
    Hessian, no factorisation. Returns (thetas, converged); the caller refits by
    :func:`solve` where a resample did not converge. ``steps``: that many steps, unrolled
    (no while loop), instead of iterating to tolerance.
    """
    free = free_mask(cfg)
    grads = jax.vmap(lambda w, t: _gradient(cfg, cells, w, t))
    thetas = jnp.broadcast_to(theta0, (ws.shape[0], theta0.shape[0]))
    if steps is not None:
        # A fixed number of chord steps, unrolled: XLA's CPU while loop costs several times
        # its body here. Converged where the last step is below tolerance.
        th = thetas
        for _ in range(steps):
            step = jnp.where(free, -(jnp.where(free, grads(ws, th), 0.0) @ h0_inv), 0.0)
            th = th + step
        small = jnp.max(jnp.abs(step), 1) <= cfg.xtol * (1.0 + jnp.max(jnp.abs(th), 1))
        ok = jnp.all(jnp.isfinite(th), axis=1)
        thetas, done0 = th, small | ~ok  # the loop below continues the others (small data)
    else:
        done0 = jnp.zeros(ws.shape[0], bool)

    def cond(state):
        _, it, done = state
        return (~jnp.all(done)) & (it < CHORD_MAX_ITER)

    def body(state):
        th, it, done = state
        g = jnp.where(free, grads(ws, th), 0.0)
        step = jnp.where(free & ~done[:, None], -(g @ h0_inv), 0.0)  # converged: stay
        finite = jnp.all(jnp.isfinite(step), axis=1)
        step = jnp.where(finite[:, None], step, 0.0)
        small = jnp.max(jnp.abs(step), 1) <= cfg.xtol * (1.0 + jnp.max(jnp.abs(th), 1))
        return th + step, it + 1, done | (small & finite) | ~finite

    th, _, done = jax.lax.while_loop(cond, body, (thetas, 0, done0))
    if steps is not None:
        return th, done & jnp.all(jnp.isfinite(th), axis=1)
    finite = jnp.all(jnp.isfinite(grads(ws, th)), axis=1)
    return th, done & finite & jnp.all(jnp.isfinite(th), axis=1)


def masked(free, g, h):
    """Gradient and Hessian with the fixed parameters' rows/columns replaced by identity."""
    g = jnp.where(free, g, 0.0)
    both = free[:, None] & free[None, :]
    h = jnp.where(both, h, 0.0) + jnp.diag(jnp.where(free, 0.0, 1.0))
    return g, h


#: Links whose log g is concave: the Hessian of -loglik is positive semi-definite everywhere,
#: so the solver needs no fallback for an indefinite one (a ``lax.cond`` that costs a third
#: of an iteration on CPU).
_LOG_CONCAVE = (logistic, probit)


class _State(NamedTuple):
    theta: Array  # the accepted iterate
    f: Array
    g: Array
    h: Array
    cand: Array  # the next point to evaluate
    lam: Array  # Levenberg-Marquardt damping
    it: Array
    small: Array  # the step to cand is below tolerance
    done: Array


def solve(cfg: Config, cells: Cells, w, theta0) -> _State:
    """Damped Newton (Levenberg-Marquardt) from theta0, as one ``lax.while_loop``."""
    cond, body, init = _newton(cfg, cells, w, theta0)
    return jax.lax.while_loop(cond, body, init)


def _newton(cfg: Config, cells: Cells, w, theta0):
    """Damped Newton (Levenberg-Marquardt) from theta0: (cond, body, init) of its loop.

    Each iteration evaluates F at the candidate; it is accepted when F does not increase (a
    failed Cholesky gives NaN and is rejected), after which lam shrinks tenfold, else lam
    grows tenfold. The next candidate solves (H + lam I) d = -g by Cholesky. One copy of the
    objective in the program (it dominates compile time); pure JAX, jit- and vmap-able.
    """
    free = free_mask(cfg)
    dtype = theta0.dtype
    p = theta0.shape[0]
    eye = jnp.eye(p, dtype=dtype)

    def cond(s: _State):
        return (~s.done) & (s.it < cfg.max_iter)

    def body(s: _State):
        f1, g1, h1 = objective(cfg, cells, w, s.cand)
        g1, h1 = masked(free, g1, h1)
        ok = jnp.isfinite(f1) & (f1 <= s.f + 1e-13 * jnp.abs(s.f))
        ok = ok | ~jnp.isfinite(s.f)  # the first evaluation (theta0) is always accepted
        theta = jnp.where(ok, s.cand, s.theta)
        f, g, h = jnp.where(ok, f1, s.f), jnp.where(ok, g1, s.g), jnp.where(ok, h1, s.h)
        scale = jnp.maximum(jnp.mean(jnp.abs(jnp.diag(h))), 1e-12)
        lam_down = jnp.where(s.lam * 0.1 < 1e-10 * scale, 0.0, s.lam * 0.1)
        lam = jnp.where(ok, lam_down, jnp.maximum(s.lam * 10.0, 1e-8 * scale))

        def solve(lam):
            chol = jnp.linalg.cholesky(h + lam * eye)
            return jnp.where(free, -jax.scipy.linalg.cho_solve((chol, True), g), 0.0)

        def shifted(_):
            # H + lam I not positive definite (an indefinite Hessian far from the maximum):
            # damp by Gershgorin's bound on its smallest eigenvalue, which makes it so.
            off = jnp.sum(jnp.abs(h), 1) - jnp.abs(jnp.diag(h))
            shift = jnp.maximum(jnp.max(off - jnp.diag(h)), 0.0) + 1e-8 * scale
            lam2 = jnp.maximum(lam, shift)
            return solve(lam2), lam2

        step = solve(lam)
        if cfg.link_log or cfg.link not in _LOG_CONCAVE:  # H may be indefinite
            step, lam = jax.lax.cond(
                jnp.all(jnp.isfinite(step)), lambda _: (step, lam), shifted, None
            )
        step = jnp.where(jnp.isfinite(step), step, 0.0)
        small = jnp.max(jnp.abs(step)) <= cfg.xtol * (1.0 + jnp.max(jnp.abs(theta)))
        # A full Newton step this small leaves an error of order step^2: take it and stop
        # (f, g, H stay those of the last evaluated point, O(step) away).
        done = ok & (lam == 0.0) & small
        theta = jnp.where(done, theta + step, theta)
        return _State(theta, f, g, h, theta + step, lam, s.it + 1, small, done)

    zero_p = jnp.zeros(p, dtype)
    init = _State(
        theta0, jnp.asarray(jnp.inf, dtype), zero_p, eye, theta0, jnp.zeros((), dtype),
        jnp.zeros((), jnp.int32), jnp.asarray(False), jnp.asarray(False),
    )  # fmt: skip
    return cond, body, init


@partial(jax.jit, static_argnums=0)
def fit_kernel(cfg: Config, cells: Cells, w, theta0):
    """Solve, then the covariances and log-likelihood at the solution, in one program."""
    s = solve(cfg, cells, w, theta0)
    free = free_mask(cfg)
    both = free[:, None] & free[None, :]
    inv = jnp.where(both, jnp.linalg.inv(s.h), 0.0)
    # Sandwich meat: sum over single comparisons of u u^T, u = d log P(outcome) / d theta,
    # by cells: B = sum_c J_c^T (sum_o w_co u_co u_co^T) J_c (u_co in local coordinates),
    # as a fused elementwise sum (an einsum lowers to a batch of tiny matrix products).
    d1 = outcome_gradients(cfg, cells, s.theta)
    meat = jnp.sum(w[:, :, None, None] * d1[:, :, :, None] * d1[:, :, None, :], axis=1)
    meat = _assemble(cells, cfg.n, meat, cfg.ties == "davidson", theta0.shape[0])
    sandwich = inv @ jnp.where(both, meat, 0.0) @ inv
    loglik = -s.f
    if cfg.prior_precision > 0:
        loglik = loglik + _prior_penalty(cfg, s.theta)[0]
    # iterations = Newton steps (each evaluated but the last, which is below tolerance)
    return s.theta, inv, sandwich, loglik, s.it, s.done, s.h


@partial(jax.jit, static_argnums=0)
def hessian_kernel(cfg: Config, cells: Cells, w, theta):
    _, g, h = objective(cfg, cells, w, theta)
    return masked(free_mask(cfg), g, h)[1]


# --- the data as the solver holds it -------------------------------------------------------


def prepare_cells(data: Comparisons, position: bool, ties: str):
    """Cells and their (C, 3) counts: merged over orientation unless a position is fitted."""
    if position:
        a, b = data.first, data.second
        w = np.stack([data.wins_first, data.wins_second, data.ties], -1)
        pos = np.ones(a.shape[0])
    else:
        a, b, wa, wb, t = data.pair_table()
        w = np.stack([wa, wb, t], -1)
        pos = np.zeros(a.shape[0])
    if ties == "drop":
        w = w.copy()
        w[:, 2] = 0.0
    return a, b, pos, w


def padded_cells(a, b, pos, w, n, dense: bool = False):
    """The cells as the solver holds them: ``(cells, w, slot)``, ``slot`` the position of
    each input cell.

    ``dense`` (for the vmapped bootstrap) lays data that fills at least a third of the n x n
    grid out as the whole grid, so that per-item sums are reshapes (gathers are slow under
    ``jax.vmap`` on CPU); otherwise (a single fit: 1.7x faster on a full 200-item board,
    whose unordered pairs fill half the grid) the cells are padded with empty ones to a size
    bucket, so that data sets of similar size share one compiled program. An empty cell has
    zero counts and contributes nothing.
    """
    c = a.shape[0]
    if dense and 3 * c >= n * n:
        slot = a * n + b
        size = n * n
        grid = None
        a_all, b_all = np.divmod(np.arange(size), n)
    else:
        step = 1 << max(0, (c - 1).bit_length() - 4)  # buckets 1/16 apart: <= 6% padding
        size = max(16, -(-c // step) * step)
        slot = np.arange(c)
        g = np.full(n * n, size, np.int64)
        g[a * n + b] = slot
        grid = jnp.asarray(g, jnp.int32)
        a_all, b_all = np.zeros(size, np.int64), np.zeros(size, np.int64)
        a_all[slot], b_all[slot] = a, b
    pos_all = np.zeros(size)
    pos_all[slot] = pos
    w_all = np.zeros((size, 3))
    w_all[slot] = w
    cells = Cells(
        jnp.asarray(a_all, jnp.int32), jnp.asarray(b_all, jnp.int32), jnp.asarray(pos_all), grid
    )
    return cells, jnp.asarray(w_all), slot
