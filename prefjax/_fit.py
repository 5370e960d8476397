"""Maximum-likelihood scores for paired comparisons under any link: ties, position, prior.

The model: item i has score s_i; in a cell where a met b (a shown first / at home),

    P(a wins) = g(x),  P(b wins) = g(-x),   x = s_a - s_b (+ h with a position effect),

with three tie rules: ``"half"`` (a tie is half a win each), ``"drop"`` (ties removed) and
``"davidson"`` (Davidson 1970, generalised to any symmetric link: with r(x) = sqrt(g(x) g(-x)),
P(a wins) = g(x) / (1 + nu r), P(tie) = nu r / (1 + nu r), nu >= 0 fitted on the log scale;
for the logistic link this is Davidson's pi_a / (pi_a + pi_b + nu sqrt(pi_a pi_b))).

The link enters through one function, :func:`outcome_log_probs`; every derivative is JAX
autodiff of it, so any :class:`prefjax.Link` (custom ones included) fits the same way.

The maximiser is a damped Newton (Levenberg-Marquardt) iteration on the dense Hessian, in
float64, compiled once per (link, tie rule, position, prior) and shape; it works on the
aggregated cells (at most n (n - 1) of them, however many comparisons), prepared and checked
once per data set, and runs under ``jax.vmap`` for the bootstrap. ``fit_link=True`` adds
the link's shape parameters to the maximised parameters; :func:`compare_links` fits several
links side by side.
"""

from __future__ import annotations

import warnings
import weakref
from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from . import _validate as v
from ._comparisons import Comparisons
from ._links import Link, get_link, logistic, probit

Array = jax.Array

TIE_RULES = ("half", "drop", "davidson")
MAX_ITER = 100
CHORD_MAX_ITER = 60
#: Newton stops when max |step| <= XTOL * (1 + max |theta|): quadratic convergence makes the
#: final iterate accurate to a few ulps.
XTOL = 1e-10


class ConvergenceWarning(RuntimeWarning):
    """A fit stopped at its iteration limit before converging (see ``Fit.converged``)."""


class Fit(NamedTuple):
    """A fitted paired-comparison model (returned by :func:`prefjax.fit`).

    Scores are identified by ``reference``: None means they sum to 0; an item name means that
    item's score is 0. ``cov`` and ``cov_sandwich`` are the covariances of ``scores`` under
    that identification (a singular matrix, as the constraint makes it).

    Attributes:
        items: item names, in score order.
        scores: (n,) fitted scores s (on the link's scale: log-abilities for the logistic).
        cov: (n, n) inverse observed Fisher information (Laplace posterior covariance with a
            prior).
        cov_sandwich: (n, n) sandwich covariance H^-1 B H^-1, B = sum over comparisons of
            the outer products of their score vectors (robust to a misspecified link).
        position: the position (home / shown-first) effect h, or None.
        position_se: its standard error (inverse Fisher), or None.
        nu: Davidson's tie parameter, or None unless ``ties="davidson"``.
        loglik: the log-likelihood at the fit (the prior excluded; with ``ties="half"`` a
            tie counts as half a win each).
        iterations: Newton iterations used.
        converged: whether the iteration met its tolerance (a warning is issued otherwise).
        link: the :class:`prefjax.Link` fitted.
        ties: the tie rule used (``"half"``, ``"drop"`` or ``"davidson"``), and what it did
            is recorded in ``n_ties`` below.
        n_ties: ties in the data (dropped with ``"drop"``, halved with ``"half"``).
        reference: the item at score 0, or None (scores sum to 0).
        prior: the prior's standard deviation, or None.
        data: the :class:`prefjax.Comparisons` fitted.
        param_cov: inverse Fisher over all fitted parameters: the scores, then h (if
            fitted), then log nu (if fitted), then the link parameters (if fitted; on the
            log scale for positive ones, in sorted name order).
        link_params: with ``fit_link=True``, the fitted link parameters (name -> value);
            else None (the link's own, fixed, are ``link.params``).
        link_params_se: their standard errors (inverse Fisher; delta method from the log
            scale for positive ones), or None.
    """

    items: tuple[str, ...]
    scores: Array
    cov: Array
    cov_sandwich: Array
    position: float | None
    position_se: float | None
    nu: float | None
    loglik: float
    iterations: int
    converged: bool
    link: Link
    ties: str
    n_ties: int
    reference: str | None
    prior: float | None
    data: Comparisons
    param_cov: Array
    link_params: dict | None = None
    link_params_se: dict | None = None

    @property
    def n_params(self) -> int:
        """Free parameters: n - 1 scores (one is fixed by the identification), the position
        effect, Davidson's nu and the fitted link parameters, where present."""
        extra = (self.position is not None) + (self.nu is not None)
        return len(self.items) - 1 + extra + len(self.link_params or {})

    @property
    def aic(self) -> float:
        """Akaike's information criterion, 2 n_params - 2 loglik (smaller is better)."""
        return 2.0 * self.n_params - 2.0 * self.loglik

    @property
    def se(self) -> Array:
        """Standard errors of the scores (square roots of ``cov``'s diagonal)."""
        return jnp.sqrt(jnp.clip(jnp.diag(self.cov), 0.0))

    def prob(self, i, j) -> Array:
        """p_ij = g(s_i - s_j), at a neutral position (items by name or index)."""
        a, b = self.data.index(i), self.data.index(j)
        return self.link(self.scores[a] - self.scores[b])

    def __repr__(self) -> str:
        head = (
            f"Fit({len(self.items)} items, link={self.link.name!r}, ties={self.ties!r}, "
            f"loglik={self.loglik:.6g}, converged={self.converged}, "
            f"iterations={self.iterations}"
        )
        if self.position is not None:
            head += f", position={self.position:.4g}"
        if self.nu is not None:
            head += f", nu={self.nu:.4g}"
        for k, val in (self.link_params or {}).items():
            head += f", {k}={val:.4g} (se {self.link_params_se[k]:.2g})"
        order = np.argsort(-np.asarray(self.scores))
        top = ", ".join(f"{self.items[k]}={float(self.scores[k]):.3g}" for k in order[:5])
        more = ", ..." if len(self.items) > 5 else ""
        return head + f"; scores: {top}{more})"


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


class _Cells(NamedTuple):
    a: Array  # (C,) int, first item
    b: Array  # (C,) int, second item
    pos: Array  # (C,) 1.0 where a position effect applies to the cell
    grid: Array | None  # (n * n,) int: the cell at (first, second), C if none; None when
    # the cells are the n x n grid itself (dense data: no gather needed)


def _on_grid(cells: _Cells, n: int, t):
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


def _n_local(cfg: Config) -> int:
    """Local coordinates per cell: x, log nu under Davidson's model, the fitted link params."""
    return 1 + (cfg.ties == "davidson") + len(cfg.link_log)


def _n_theta(cfg: Config) -> int:
    """theta = (s (n), h, log nu, fitted link parameters)."""
    return cfg.n + 2 + len(cfg.link_log)


def _link_at(cfg: Config, phi) -> Link:
    """cfg.link with its parameters at the fitted coordinates ``phi`` (logs where positive)."""
    if not cfg.link_log:
        return cfg.link
    values = [jnp.exp(u) if log else u for u, log in zip(phi, cfg.link_log, strict=True)]
    return jax.tree.unflatten(jax.tree.structure(cfg.link), values)


def _local_derivatives(cfg: Config, z, order: int = 2):
    """Per cell and outcome: log P, its gradient and Hessian in local coordinates z (C, k).

    Returns (lp (C, 3), d1 (C, 3, k), d2 (C, 3, k, k)), forward-mode autodiff of
    :func:`outcome_log_probs`; everything the solver, covariance and implicit derivatives
    need is a weighted sum of these.
    """

    k = z.shape[1]
    cols = tuple(z[:, m] for m in range(k))
    dav = cfg.ties == "davidson"

    def lp(*c):  # elementwise over the cells: XLA fuses the whole forward-mode pass
        log_nu = c[1] if dav else 0.0
        g = _link_at(cfg, c[1 + dav :])
        return jnp.stack(outcome_log_probs(g, c[0], log_nu, cfg.ties), -1)

    def unit(m):
        return tuple(jnp.full_like(cols[0], float(q == m)) for q in range(k))

    def d1(m):
        return lambda *c: jax.jvp(lp, c, unit(m))[1]

    first = [d1(m)(*cols) for m in range(k)]
    if order == 1:
        return lp(*cols), jnp.stack(first, -1), None
    second = [[jax.jvp(d1(m), cols, unit(q))[1] for q in range(k)] for m in range(k)]
    d2 = jnp.stack([jnp.stack(row, -1) for row in second], -2)
    return lp(*cols), jnp.stack(first, -1), d2


def _global_slots(k: int, davidson: bool):
    """(theta slot offset from n, local index) of each global parameter: h enters through x
    (local 0, times pos), log nu and the link parameters have their own local coordinates."""
    slots = [(0, None)]  # h
    if davidson:
        slots.append((1, 1))
    slots += [(2 + j, 1 + davidson + j) for j in range(k - 1 - davidson)]
    return slots


def _assemble(cells: _Cells, n: int, a_loc, davidson: bool, p: int):
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


def _spread(cells: _Cells, n: int, g_loc, davidson: bool, p: int):
    """Sum over cells of J_c^T g_c: local gradients (C, k) to theta's gradient (p,)."""
    m = _on_grid(cells, n, g_loc[:, 0])
    grad_s = m.sum(1) - m.sum(0)
    rest = [jnp.zeros((), g_loc.dtype)] * (p - n)
    for off, loc in _global_slots(g_loc.shape[1], davidson):
        rest[off] = jnp.sum(cells.pos * g_loc[:, 0]) if loc is None else jnp.sum(g_loc[:, loc])
    return jnp.concatenate([grad_s, jnp.stack(rest)])


def _local_z(cfg: Config, cells: _Cells, theta):
    n = cfg.n
    if cells.grid is None:  # dense layout: x = s_a - s_b as an outer difference, no gather
        s = theta[:n]
        x = (s[:, None] - s[None, :]).reshape(-1) + theta[n] * cells.pos
    else:
        x = theta[cells.a] - theta[cells.b] + theta[n] * cells.pos
    glob = ([n + 1] if cfg.ties == "davidson" else []) + list(range(n + 2, _n_theta(cfg)))
    if not glob:
        return x[:, None]
    return jnp.stack([x, *(jnp.broadcast_to(theta[q], x.shape) for q in glob)], -1)


def free_mask(cfg: Config):
    free = np.ones(_n_theta(cfg), bool)
    free[cfg.ref] = False
    free[cfg.n] = cfg.position
    free[cfg.n + 1] = cfg.ties == "davidson"
    return jnp.asarray(free)


def _prior_penalty(cfg: Config, theta):
    s = theta[: cfg.n]
    c = s - jnp.mean(s)
    return 0.5 * cfg.prior_precision * jnp.sum(c * c), c


def objective(cfg: Config, cells: _Cells, w, theta):
    """F = -loglik + prior penalty over theta = (s, h, log nu): (F, grad, Hessian, d1).

    ``d1`` (C, 3, k), the per-outcome local gradients, is returned for the sandwich.
    """
    n = cfg.n
    lp, d1, d2 = _local_derivatives(cfg, _local_z(cfg, cells, theta))
    f = -jnp.sum(w * lp)
    # Weighted sums over the 3 outcomes as fused elementwise sums (an einsum over these
    # tiny axes lowers to a slow small-matrix product on CPU).
    dav, p = cfg.ties == "davidson", theta.shape[0]
    g = -_spread(cells, n, jnp.sum(w[:, :, None] * d1, axis=1), dav, p)
    h = -_assemble(cells, n, jnp.sum(w[:, :, None, None] * d2, axis=1), dav, p)
    if cfg.prior_precision > 0:
        pen, c = _prior_penalty(cfg, theta)
        f = f + pen
        g = g.at[:n].add(cfg.prior_precision * c)
        centering = jnp.eye(n) - jnp.full((n, n), 1.0 / n)
        h = h.at[:n, :n].add(cfg.prior_precision * centering)
    return f, g, h, d1


def _gradient(cfg: Config, cells: _Cells, w, theta):
    """grad F alone (first-order forward mode: a third of the objective's work)."""
    _, d1, _ = _local_derivatives(cfg, _local_z(cfg, cells, theta), order=1)
    dav, p = cfg.ties == "davidson", theta.shape[0]
    g = -_spread(cells, cfg.n, jnp.sum(w[:, :, None] * d1, axis=1), dav, p)
    if cfg.prior_precision > 0:
        g = g.at[: cfg.n].add(cfg.prior_precision * _prior_penalty(cfg, theta)[1])
    return g


def solve_chord(cfg: Config, cells: _Cells, ws, theta0, h0_inv, steps: int | None = None):
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
    d1: Array  # per-outcome local gradients at theta (for the sandwich)
    cand: Array  # the next point to evaluate
    lam: Array  # Levenberg-Marquardt damping
    it: Array
    small: Array  # the step to cand is below tolerance
    done: Array


def solve(cfg: Config, cells: _Cells, w, theta0) -> _State:
    """Damped Newton (Levenberg-Marquardt) from theta0, as one ``lax.while_loop``."""
    cond, body, init = _newton(cfg, cells, w, theta0)
    return jax.lax.while_loop(cond, body, init)


def _newton(cfg: Config, cells: _Cells, w, theta0):
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
        f1, g1, h1, d1 = objective(cfg, cells, w, s.cand)
        g1, h1 = masked(free, g1, h1)
        ok = jnp.isfinite(f1) & (f1 <= s.f + 1e-13 * jnp.abs(s.f))
        ok = ok | ~jnp.isfinite(s.f)  # the first evaluation (theta0) is always accepted
        theta = jnp.where(ok, s.cand, s.theta)
        f, g, h = jnp.where(ok, f1, s.f), jnp.where(ok, g1, s.g), jnp.where(ok, h1, s.h)
        d1 = jnp.where(ok, d1, s.d1)
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
        return _State(theta, f, g, h, d1, theta + step, lam, s.it + 1, small, done)

    k = _n_local(cfg)
    c = cells.a.shape[0]
    zero_p = jnp.zeros(p, dtype)
    init = _State(
        theta0, jnp.asarray(jnp.inf, dtype), zero_p, eye, jnp.zeros((c, 3, k), dtype),
        theta0, jnp.zeros((), dtype), jnp.zeros((), jnp.int32), jnp.asarray(False),
        jnp.asarray(False),
    )  # fmt: skip
    return cond, body, init


@partial(jax.jit, static_argnums=0)
def _fit_kernel(cfg: Config, cells: _Cells, w, theta0):
    """Solve, then the covariances and log-likelihood at the solution, in one program."""
    s = solve(cfg, cells, w, theta0)
    free = free_mask(cfg)
    both = free[:, None] & free[None, :]
    inv = jnp.where(both, jnp.linalg.inv(s.h), 0.0)
    # Sandwich meat: sum over single comparisons of u u^T, u = d log P(outcome) / d theta,
    # by cells: B = sum_c J_c^T (sum_o w_co u_co u_co^T) J_c (u_co in local coordinates).
    meat = jnp.einsum("co,cok,col->ckl", w, s.d1, s.d1)
    meat = _assemble(cells, cfg.n, meat, cfg.ties == "davidson", theta0.shape[0])
    sandwich = inv @ jnp.where(both, meat, 0.0) @ inv
    loglik = -s.f
    if cfg.prior_precision > 0:
        loglik = loglik + _prior_penalty(cfg, s.theta)[0]
    # iterations = Newton steps (each evaluated but the last, which is below tolerance)
    return s.theta, inv, sandwich, loglik, s.it, s.done, s.h


# --- the public entry point ---------------------------------------------------------------


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
    cells = _Cells(
        jnp.asarray(a_all, jnp.int32), jnp.asarray(b_all, jnp.int32), jnp.asarray(pos_all), grid
    )
    return cells, jnp.asarray(w_all), slot


def _reach(n: int, src, dst, start: int) -> np.ndarray:
    """Items reachable from ``start`` along edges src -> dst (vectorised BFS)."""
    seen = np.zeros(n, bool)
    seen[start] = True
    while True:
        new = np.zeros(n, bool)
        new[dst[seen[src]]] = True
        new &= ~seen
        if not new.any():
            return seen
        seen |= new


def _check_estimable(data: Comparisons, a, b, w, ties: str, prior) -> None:
    """The errors of an unidentified or infinite maximum, naming the items involved."""
    n = data.n_items
    names = data.items
    und_src = np.concatenate([a, b])
    und_dst = np.concatenate([b, a])
    met = w.sum(1) > 0
    reached = _reach(n, und_src[np.tile(met, 2)], und_dst[np.tile(met, 2)], 0)
    if not reached.all():
        parts = data.components() if ties != "drop" else _parts_of(data, a, b, met)
        desc = "; ".join(
            "{" + ", ".join(p[:8]) + (", ..." if len(p) > 8 else "") + "}" for p in parts[:6]
        )
        raise ValueError(
            f"the comparison graph falls into {len(parts)} disconnected parts, between which "
            f"no score difference is estimable: {desc}. Fit each part on its own "
            "(Comparisons.subset(part))."
        )
    if prior is not None:
        return
    # Ford (1957): a finite maximum exists iff every item beats (directly or through a chain
    # of wins) every other. A tie counts as a win both ways, except when ties are dropped.
    tie_edge = w[:, 2] > 0
    src = np.concatenate([a[w[:, 0] > 0], b[w[:, 1] > 0], a[tie_edge], b[tie_edge]])
    dst = np.concatenate([b[w[:, 0] > 0], a[w[:, 1] > 0], b[tie_edge], a[tie_edge]])
    if _reach(n, src, dst, 0).all() and _reach(n, dst, src, 0).all():
        return
    won = np.zeros(n, bool)
    lost = np.zeros(n, bool)
    won[src] = True
    lost[dst] = True
    never_lost = [names[k] for k in np.flatnonzero(~lost)]
    never_won = [names[k] for k in np.flatnonzero(~won)]
    fix = (
        " The maximum-likelihood score is infinite. Pass prior=SD (a Gaussian prior on the "
        "scores with that standard deviation, e.g. prior=2.0) for finite scores"
    )
    if never_lost or never_won:
        parts = []
        if never_lost:
            parts.append(f"never lost: {', '.join(never_lost[:10])}")
        if never_won:
            parts.append(f"never won: {', '.join(never_won[:10])}")
        raise ValueError("some items " + "; ".join(parts) + "." + fix + ".")
    group = _dominant_group(n, src, dst)
    raise ValueError(
        f"the items {{{', '.join(names[k] for k in group[:10])}}} never lost to any item "
        f"outside that group (the win graph is not strongly connected).{fix}, or compare "
        "them with the rest."
    )


def _parts_of(data, a, b, met):
    keep = met
    sub = Comparisons(
        data.items, a[keep], b[keep], np.ones(keep.sum()), np.zeros(keep.sum()),
        np.zeros(keep.sum()), False,
    )  # fmt: skip
    return sub.components()


def _dominant_group(n, src, dst):
    """A set of items closed under 'beaten by': nobody outside it ever beat anyone inside."""
    for start in range(n):
        down = _reach(n, dst, src, start)  # who beat start, transitively
        up = _reach(n, src, dst, start)
        scc = down & up
        if down.sum() == scc.sum():  # nobody outside start's class beat it: a source class
            return list(np.flatnonzero(scc))
    return list(range(n))


def fit(
    comparisons: Comparisons,
    link=logistic,
    ties: str = "half",
    position: bool = False,
    prior: float | None = None,
    reference=None,
    max_iter: int = MAX_ITER,
    fit_link: bool = False,
) -> Fit:
    """Maximum-likelihood scores of a paired-comparison model with any link.

    Maximises sum over comparisons of log P(outcome), P(a beats b) = g(s_a - s_b [+ h]),
    (``prior``: minus sum_i (s_i - mean s)^2 / (2 prior^2), a Gaussian prior on the scores
    about their mean), by damped Newton in float64, jit-compiled, on the aggregated cells.
    Ties follow ``ties`` (see the module docstring: half a win, dropped, or Davidson's model
    generalised to g).

    Args:
        comparisons: a :class:`prefjax.Comparisons`.
        link: a :class:`prefjax.Link` or a callable g (wrapped by :func:`prefjax.link`).
        ties: ``"half"``, ``"drop"`` or ``"davidson"``.
        position: fit a position effect h: P(first / home wins) = g(s_first - s_second + h).
            Needs data that records who was first (battles, home/away tables).
        prior: None (plain maximum likelihood) or the standard deviation of a Gaussian prior
            on the scores, which keeps them finite when an item never lost or never won.
        reference: None (scores sum to 0) or the item (name or index) whose score is 0.
        max_iter: Newton iteration limit; reaching it gives ``converged=False`` and a
            :class:`ConvergenceWarning`, never an exception or NaN.
        fit_link: also fit the link's shape parameters (a family such as
            :data:`prefjax.student_t`, or :func:`prefjax.link` with ``params=``), jointly
            with the scores by maximum likelihood, starting from the link's current values
            (positive parameters on the log scale). ``Fit.link`` is then the fitted link,
            ``Fit.link_params`` / ``link_params_se`` the values and their standard errors
            (inverse Fisher, delta method from the log scale). A parameter the scores can
            absorb (a pure scale, as in :data:`prefjax.scaled_logistic`) is not identifiable
            and raises ValueError.

    Returns:
        A :class:`Fit`.

    Raises:
        RuntimeError: JAX's x64 mode is off (the fit never runs silently in float32).
        ValueError: a disconnected comparison graph (naming the parts); without a prior,
            an item that never lost or never won, or a group that never lost to the rest (the
            maximum is at infinity); a bad argument.

    Examples:
        >>> import prefjax
        >>> data = prefjax.Comparisons.example("baseball")
        >>> f = prefjax.fit(data, reference="Baltimore")
        >>> round(float(f.scores[f.items.index("Milwaukee")]), 2)
        1.58
    """
    v.require_x64("prefjax.fit")
    if not isinstance(comparisons, Comparisons):
        raise TypeError(f"comparisons must be a prefjax.Comparisons; got {type(comparisons)}")
    g = get_link(link, "link")
    v.check_choice("ties", ties, TIE_RULES)
    if not isinstance(position, bool | np.bool_):
        raise TypeError(f"position must be True or False; got {position!r}")
    if position and not comparisons.positional:
        raise ValueError(
            "position=True needs data that records who was shown first / played at home "
            "(battles, or a home/away table); these comparisons carry no order"
        )
    if prior is not None:
        prior = v.check_positive_number("prior", prior)
    if isinstance(max_iter, bool) or not isinstance(max_iter, int) or max_iter < 1:
        raise ValueError(f"max_iter must be an integer >= 1; got {max_iter!r}")
    if not isinstance(fit_link, bool | np.bool_):
        raise TypeError(f"fit_link must be True or False; got {fit_link!r}")
    link_log = ()
    if fit_link:
        link_log = _link_coordinates(g)
    data = comparisons
    n = data.n_items
    if n < 2:
        raise ValueError(f"comparisons must involve at least 2 items; got {n}")
    ref_index = None if reference is None else data.index(reference)
    cells, w_pad, w, rates = _prepared(data, bool(position), ties, prior is None)
    cfg = Config(
        g, ties, bool(position), 0.0 if prior is None else 1.0 / prior**2, n,
        0 if ref_index is None else ref_index, max_iter, XTOL, link_log,
    )  # fmt: skip
    theta0 = _initial_theta(cfg, w, rates)
    if link_log:
        # Start from the scores fitted at the link's current parameters, and refuse a
        # parameter the likelihood cannot see there (a pure scale).
        base = cfg._replace(link_log=())
        th_base = _fit_kernel(base, cells, w_pad, jnp.asarray(theta0[: n + 2]))[0]
        theta0[: n + 2] = np.asarray(th_base)
        h0 = _hessian_kernel(cfg, cells, w_pad, jnp.asarray(theta0))
        if _unidentified(cfg, h0):
            name = _unidentified(cfg, h0)
            raise ValueError(
                f"the parameter {name!r} of link {cfg.link.name!r} is not identifiable jointly "
                "with the scores: the likelihood does not change when it moves and the scores "
                "move with it (a pure scale, absorbed by the scores' unit). Fix it (fit "
                "without fit_link) or fit another parameter"
            )
    theta, inv, sandwich, loglik, it, done, h = jax.device_get(
        _fit_kernel(cfg, cells, w_pad, jnp.asarray(theta0))
    )
    edge = _unidentified(cfg, h) if link_log else None
    if edge:
        k = _link_names(cfg).index(edge)
        u = float(theta[n + 2 + k])
        value = np.exp(u) if cfg.link_log[k] else u
        warnings.warn(
            f"prefjax.fit: the likelihood keeps increasing as the link parameter {edge!r} "
            f"runs to the edge of its range ({edge} = {value:.4g} at the last iterate): the "
            f"data prefer the family's limit (for student_t, df -> infinity: probit). "
            "Fit.converged is False, and its standard error is not finite",
            ConvergenceWarning,
            stacklevel=2,
        )
        done = False
    fit_ = _make_fit(data, cfg, theta, inv, sandwich, loglik, it, done, ref_index, prior)
    if edge:
        fit_ = fit_._replace(link_params_se={k: float("nan") for k in fit_.link_params})
    return fit_


@partial(jax.jit, static_argnums=0)
def _hessian_kernel(cfg: Config, cells: _Cells, w, theta):
    _, g, h, _ = objective(cfg, cells, w, theta)
    return masked(free_mask(cfg), g, h)[1]


def _link_coordinates(g: Link) -> tuple[bool, ...]:
    """For fit_link: per pytree leaf of g's parameters, whether it is fitted on the log scale."""
    if not g.params:
        raise ValueError(
            f"fit_link=True fits the link's shape parameters, but link {g.name!r} has none; "
            "use a family (prefjax.student_t, or prefjax.link(..., params={...}))"
        )
    names = sorted(g.params)  # a dict's pytree leaves come in sorted key order
    for k in names:
        if np.ndim(g.params[k]) != 0:
            raise ValueError(f"fit_link fits scalar parameters; {k!r} of {g.name!r} is not one")
    return tuple(k in g.positive for k in names)


def _link_names(cfg: Config) -> list[str]:
    return sorted(cfg.link.params)


def _unidentified(cfg: Config, h) -> str | None:
    """The first fitted link parameter without curvature the scores cannot absorb (its
    Schur complement in the Hessian, relative to its own diagonal entry, <= 1e-8), or None."""
    h = np.asarray(h)
    idx = np.flatnonzero(np.asarray(free_mask(cfg)))
    m = len(cfg.link_log)
    hf = h[np.ix_(idx, idx)]
    r = hf.shape[0] - m  # the link parameters are the last m free coordinates
    a, b, c = hf[:r, :r], hf[:r, r:], hf[r:, r:]
    try:
        schur = c - b.T @ np.linalg.solve(a, b)
    except np.linalg.LinAlgError:
        schur = np.zeros_like(c)
    for j, name in enumerate(_link_names(cfg)):
        if not schur[j, j] > 1e-8 * abs(c[j, j]) or not np.isfinite(schur[j, j]):
            return name
    return None


_PREPARED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _prepared(data: Comparisons, position: bool, ties: str, check: bool):
    """The solver's cells and counts for ``data``, checked (estimability), computed once per
    data set and options: (cells, padded counts, counts, items' win rates).

    A Comparisons is immutable, so repeated fits of one data set (other links, priors,
    references, the bootstrap's full-data fit) reuse the aggregation and the checks.
    """
    key = (position, ties, check)
    per_data = _PREPARED.setdefault(data, {})
    if key not in per_data:
        a, b, pos, w = prepare_cells(data, position, ties)
        if ties == "davidson" and not (w[:, 2].sum() > 0):
            raise ValueError("ties='davidson' fits a tie parameter, but the data has no ties")
        if ties == "drop" and not (w[:, :2].sum() > 0):
            raise ValueError("ties='drop' leaves no comparisons: every comparison is a tie")
        _check_estimable(data, a, b, w, ties, None if check else 1.0)
        cells, w_pad, _ = padded_cells(a, b, pos, w, data.n_items)
        n = data.n_items
        wins = np.bincount(a, w[:, 0] + w[:, 2] / 2, n) + np.bincount(b, w[:, 1] + w[:, 2] / 2, n)
        total = np.bincount(a, w.sum(1), n) + np.bincount(b, w.sum(1), n)
        rates = (wins + 0.5) / (total + 1.0)  # continuity-corrected: inside (0, 1)
        per_data[key] = (cells, w_pad, w, rates)
    return per_data[key]


def _initial_theta(cfg: Config, w, rates):
    """The start: s_i = g^-1(win rate of i) (centred), nu from the tie rate, the link's
    parameters. Closer than 0 by a Newton step or two on unbalanced data."""
    n = cfg.n
    theta0 = np.zeros(_n_theta(cfg))
    s0 = np.asarray(cfg.link.inverse(jnp.asarray(rates)), dtype=float)
    if np.all(np.isfinite(s0)):
        theta0[:n] = s0 - s0[cfg.ref]
    t = w[:, 2].sum() / max(w.sum(), 1.0)
    if t > 0:
        theta0[n + 1] = np.log(2 * t / (1 - t)) if t < 1 else 0.0  # nu at equal scores
    for j, name in enumerate(_link_names(cfg) if cfg.link_log else []):
        value = float(np.asarray(cfg.link.params[name]))
        theta0[n + 2 + j] = np.log(value) if cfg.link_log[j] else value
    return theta0


def _make_fit(data, cfg, theta, inv, sandwich, loglik, it, done, ref_index, prior) -> Fit:
    n = cfg.n
    scores, full, sand = theta[:n].copy(), np.array(inv), np.array(sandwich)
    if ref_index is None:  # scores sum to 0: T = I - 11^T/n on the score block of T C T^T
        scores -= scores.mean()
        for c in (full, sand):  # centring by means: O(n^2), no matrix product
            c[:n] -= c[:n].mean(0)
            c[:, :n] -= c[:, :n].mean(1, keepdims=True)
    keep = [*range(n)] + ([n] if cfg.position else []) + ([n + 1] if cfg.ties == "davidson" else [])
    keep += list(range(n + 2, _n_theta(cfg)))
    link, link_params, link_se = cfg.link, None, None
    if cfg.link_log:
        phi = theta[n + 2 :]
        names = _link_names(cfg)
        values = [
            float(np.exp(u)) if log else float(u) for u, log in zip(phi, cfg.link_log, strict=True)
        ]
        link_params = dict(zip(names, values, strict=True))
        se_phi = np.sqrt(np.clip(np.diag(full)[n + 2 :], 0.0, None))
        link_se = {
            k: float(val * se if log else se)  # delta method from the log scale
            for k, val, se, log in zip(names, values, se_phi, cfg.link_log, strict=True)
        }
        link = cfg.link.with_params(link_params)
    converged = bool(done)
    if not converged:
        warnings.warn(
            f"prefjax.fit did not converge in {int(it)} iterations (max_iter={cfg.max_iter}); "
            "the returned scores are the last iterate (Fit.converged is False)",
            ConvergenceWarning,
            stacklevel=3,
        )
    return Fit(
        items=data.items,
        scores=jnp.asarray(scores),
        cov=jnp.asarray(full[:n, :n]),
        cov_sandwich=jnp.asarray(sand[:n, :n]),
        position=float(theta[n]) if cfg.position else None,
        position_se=float(np.sqrt(max(full[n, n], 0.0))) if cfg.position else None,
        nu=float(np.exp(theta[n + 1])) if cfg.ties == "davidson" else None,
        loglik=float(loglik),
        iterations=int(it),
        converged=converged,
        link=link,
        ties=cfg.ties,
        n_ties=data.n_ties,
        reference=None if ref_index is None else data.items[ref_index],
        prior=prior,
        data=data,
        param_cov=jnp.asarray(full[np.ix_(keep, keep)]),
        link_params=link_params,
        link_params_se=link_se,
    )


def fit_config(f: Fit) -> tuple[Config, _Cells, np.ndarray, np.ndarray]:
    """The solver's configuration, cells, counts and full theta for a finished fit."""
    data = f.data
    n = data.n_items
    ref = 0 if f.reference is None else data.index(f.reference)
    cfg = Config(
        f.link, f.ties, f.position is not None,
        0.0 if f.prior is None else 1.0 / f.prior**2, n, ref, MAX_ITER,
    )  # fmt: skip
    a, b, pos, w = prepare_cells(data, cfg.position, f.ties)
    cells, _, _ = padded_cells(a, b, pos, w, n)
    theta = np.zeros(n + 2)
    s = np.asarray(f.scores)
    theta[:n] = s - s[ref]  # the solver's identification: the internal reference at 0
    theta[n] = 0.0 if f.position is None else f.position
    theta[n + 1] = 0.0 if f.nu is None else np.log(f.nu)  # unused unless Davidson
    return cfg, cells, w, theta


# --- comparing links ----------------------------------------------------------------------


class LinkComparison(NamedTuple):
    """Links fitted to the same comparisons, side by side (from :func:`prefjax.compare_links`).

    Attributes:
        rows: one dict per link, in the order given: ``link`` (name), ``params`` (the
            fitted link parameters, or the fixed ones), ``fitted_params`` (whether they were
            fitted), ``loglik``, ``n_params``, ``aic`` (2 n_params - 2 loglik), ``delta_aic``
            (to the smallest), ``converged``.
        fits: the :class:`Fit` of each link, in the same order.
    """

    rows: tuple[dict, ...]
    fits: tuple[Fit, ...]

    @property
    def best(self) -> str:
        """The name of the link with the smallest AIC."""
        return min(self.rows, key=lambda r: r["aic"])["link"]

    def __str__(self) -> str:
        head = f"{'link':18s} {'loglik':>12s} {'params':>6s} {'AIC':>12s} {'dAIC':>8s}  shape"
        lines = [head]
        for r in self.rows:
            shape = ", ".join(f"{k}={v:.4g}" for k, v in r["params"].items())
            if r["params"]:
                shape += " (fitted)" if r["fitted_params"] else " (fixed)"
            if not r["converged"]:
                shape += " [not converged]"
            lines.append(
                f"{r['link']:18s} {r['loglik']:12.4f} {r['n_params']:6d} {r['aic']:12.4f} "
                f"{r['delta_aic']:8.3f}  {shape}"
            )
        return "\n".join(lines)


def compare_links(comparisons: Comparisons, links=("logistic", "probit", "cauchit", "student_t"),
                  fit_link: bool = True, **fit_kwargs) -> LinkComparison:  # fmt: skip
    """Fit several links to the same comparisons and compare them by log-likelihood and AIC.

    Each link is fitted by :func:`prefjax.fit` (same ``ties``, ``position``, ``prior``, ...
    from ``fit_kwargs``); a family's shape parameters are fitted too (``fit_link``), except
    one that is not identifiable jointly with the scores (a pure scale such as
    :data:`prefjax.scaled_logistic`'s), which stays fixed. AIC = 2 n_params - 2 loglik
    counts the fitted link parameters, so a family must gain more than 1 in log-likelihood
    per parameter to win.

    Args:
        comparisons: a :class:`prefjax.Comparisons`.
        links: links or names (see :func:`prefjax.get_link`).
        fit_link: fit the shape parameters of the families among ``links``.
        **fit_kwargs: passed to :func:`prefjax.fit`.

    Returns:
        A :class:`LinkComparison` (``print`` it for the table; ``.best``, ``.rows``,
        ``.fits``).

    Examples:
        >>> import prefjax
        >>> data = prefjax.Comparisons.example("baseball")
        >>> table = prefjax.compare_links(data, ["logistic", "probit"])
        >>> [r["n_params"] for r in table.rows]
        [6, 6]
    """
    if "link" in fit_kwargs or "fit_link" in fit_kwargs:
        raise TypeError("compare_links takes the links as `links`, not link=")
    if isinstance(links, str | Link) or not hasattr(links, "__iter__"):
        raise TypeError(f"links must be a list of links or names; got {links!r}")
    fits, fitted = [], []
    for item in links:
        g = get_link(item, "links")
        fit_params = bool(fit_link and g.params)
        try:
            f = fit(comparisons, link=g, fit_link=fit_params, **fit_kwargs)
        except ValueError as exc:
            if not (fit_params and "not identifiable" in str(exc)):
                raise
            fit_params = False
            f = fit(comparisons, link=g, **fit_kwargs)
        fits.append(f)
        fitted.append(fit_params)
    if not fits:
        raise ValueError("links is empty")
    best = min(f.aic for f in fits)
    rows = tuple(
        {
            "link": f.link.name,
            "params": dict(f.link_params) if f.link_params else {
                k: float(np.asarray(v)) for k, v in f.link.params.items()
            },
            "fitted_params": fp,
            "loglik": f.loglik,
            "n_params": f.n_params,
            "aic": f.aic,
            "delta_aic": f.aic - best,
            "converged": f.converged,
        }
        for f, fp in zip(fits, fitted, strict=True)
    )  # fmt: skip
    return LinkComparison(rows, tuple(fits))
