"""Maximum-likelihood scores for paired comparisons under any link: ties, position, prior.

The model: item i has score s_i; in a cell where a met b (a shown first / at home),

    P(a wins) = g(x),  P(b wins) = g(-x),   x = s_a - s_b (+ h with a position effect),

with three tie rules: ``"half"`` (a tie is half a win each), ``"drop"`` (ties removed) and
``"davidson"`` (Davidson 1970, generalised to any symmetric link: with r(x) = sqrt(g(x) g(-x)),
P(a wins) = g(x) / (1 + nu r), P(tie) = nu r / (1 + nu r), nu >= 0 fitted on the log scale;
for the logistic link this is Davidson's pi_a / (pi_a + pi_b + nu sqrt(pi_a pi_b))).

The link enters through one function, ``_solver.outcome_log_probs``; every derivative is JAX
autodiff of it, so any :class:`prefjax.Link` (custom ones included) fits the same way.

The maximiser (``_solver``) is a damped Newton (Levenberg-Marquardt) iteration on the dense
Hessian, in float64, compiled once per (link, tie rule, position, prior) and shape; it works
on the aggregated cells (at most n (n - 1) of them, however many comparisons), prepared and
checked once per data set (here), and runs under ``jax.vmap`` for the bootstrap. ``fit_link=True`` adds
the link's shape parameters to the maximised parameters; ``_link_comparison.compare_links``
fits several links side by side.
"""

from __future__ import annotations

import warnings
import weakref
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from . import _validate as v
from ._comparisons import Comparisons
from ._link import Link
from ._links import get_link, logistic
from ._solver import (
    XTOL,
    Cells,
    Config,
    fit_kernel,
    free_mask,
    hessian_kernel,
    n_theta,
    padded_cells,
    prepare_cells,
)

Array = jax.Array

TIE_RULES = ("half", "drop", "davidson")
MAX_ITER = 100


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


# --- the public entry point ---------------------------------------------------------------


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
        th_base = fit_kernel(base, cells, w_pad, jnp.asarray(theta0[: n + 2]))[0]
        theta0[: n + 2] = np.asarray(th_base)
        h0 = hessian_kernel(cfg, cells, w_pad, jnp.asarray(theta0))
        if _unidentified(cfg, h0):
            name = _unidentified(cfg, h0)
            raise ValueError(
                f"the parameter {name!r} of link {cfg.link.name!r} is not identifiable jointly "
                "with the scores: the likelihood does not change when it moves and the scores "
                "move with it (a pure scale, absorbed by the scores' unit). Fix it (fit "
                "without fit_link) or fit another parameter"
            )
    theta, inv, sandwich, loglik, it, done, h = jax.device_get(
        fit_kernel(cfg, cells, w_pad, jnp.asarray(theta0))
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
    theta0 = np.zeros(n_theta(cfg))
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
    keep += list(range(n + 2, n_theta(cfg)))
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


def fit_config(f: Fit) -> tuple[Config, Cells, np.ndarray, np.ndarray]:
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
