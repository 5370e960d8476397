"""M-sensitive regions (Definitions 3-4) and their areas, for any link.

Omega_M(p_ij, p_ik) = {(p_ik, p_kj) in (0, 1)^2 : |dp_ij/dp_ik| > M}. Four estimators of its
area are offered: an adaptive quadrature with root-found boundaries (``"quad"``), the naive
midpoint grid (``"grid"``), uniform Monte Carlo (``"mc"``) and defensive importance sampling
towards the corners (``"is"``), each returning an :class:`AreaEstimate` with an error bar.
"""

from __future__ import annotations

import math
import warnings
from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from . import _validate as v
from ._links import Link, as_link
from ._sensitivity import _sensitivity_kernel

WRT = ("ik", "kj")
METHODS = ("quad", "grid", "mc", "is")

# Monte Carlo error bars are this many standard errors: they cover the true area in 99.7% of
# seeded runs (for a normal sampling distribution), the contract the tests check.
MC_SIGMAS = 3.0


class AreaEstimate(NamedTuple):
    """An estimate of A(Omega_M) (Definition 4).

    Attributes:
        value: the estimated area, in [0, 1].
        error: an error bar: |value - truth| <= error with high confidence (quadrature: the
            Gauss-Kronrod estimate plus a rounding floor; grid: twice the change between two
            resolutions plus the boundary cells; Monte Carlo: three standard errors).
        method: "quad", "grid", "mc" or "is".
        n_evals: how many times the sensitivity was evaluated.
    """

    value: float
    error: float
    method: str
    n_evals: int


def is_m_sensitive(g, p_ik, p_kj, M, wrt: str = "ik"):
    """Whether p_ij is M-sensitive to p_ik (or p_kj) at (p_ik, p_kj) (Definition 3).

    |dp_ij/dp_ik| > M, with dp_ij/dp_ik from :func:`prefjax.sensitivity` (Eq. (2)).

    Args:
        g: a :class:`prefjax.Link` or a bare callable.
        p_ik, p_kj: probabilities in (0, 1); arrays broadcast.
        M: the threshold, > 0.
        wrt: "ik" or "kj", the probability the derivative is taken with respect to.

    Returns:
        A boolean array with the broadcast shape.

    Example:
        >>> import prefjax
        >>> bool(prefjax.is_m_sensitive(prefjax.logistic, 0.99, 0.02, 20))  # Example 1
        True
    """
    from ._sensitivity import sensitivity

    M = v.check_positive_number("M", M)
    v.check_choice("wrt", wrt, WRT)
    s = sensitivity(g, p_ik, p_kj)
    return jnp.abs(s.d_ik if wrt == "ik" else s.d_kj) > M


def region_area(
    g,
    M,
    wrt: str = "ik",
    method: str = "quad",
    *,
    n: int | None = None,
    seed: int = 0,
    rtol: float = 1e-10,
) -> AreaEstimate:
    """The area A(Omega_M(p_ij, p_ik)) of the M-sensitive region (Definition 4), any link.

    By Lemma 1, p_ij is symmetric in (p_ik, p_kj), so Omega_M(p_ij, p_kj) is the mirror image
    of Omega_M(p_ij, p_ik) in the diagonal and both have the same area; ``wrt`` is accepted for
    symmetry with :func:`is_m_sensitive` and used by the sampling methods.

    Methods:
        ``"quad"`` (default): the area is int_0^1 l(p_kj) dp_kj, where l(p_kj) is the length of
        {p_ik : |dp_ij/dp_ik| > M}. The set's end points are found in score space
        (u = g^-1(p_ik), c = g^-1(p_kj)) as roots of log g'(u + c) - log g'(u) = log M, located
        on a 512-point grid that spans p_ik in (3e-20, 1 - 3e-20), the grid's maximum refined
        by golden-section search (so narrow bumps are not missed), each root bisected to
        machine precision. The outer integral uses the region's point symmetry
        (p_ik, p_kj) -> (1 - p_ik, 1 - p_kj) (g' is even), the substitution
        p_kj = 1 - s^2 (which removes the square-root behaviour at p_kj -> 1), and vectorized
        adaptive Gauss-Kronrod (7/15 points) until the estimated error is below
        ``rtol * value``. ``error`` is the summed |K15 - G7| of the final intervals.
        Accuracy: relative 1e-12 against Proposition 1 for logistic links (tested to 1e-8).
        ``n`` is unused.
        ``"grid"``: midpoint rule on an n x n grid (default n = 1000); error = twice the
        difference to the n/2 grid plus the area of the boundary cells (never below two
        cells: a region thinner than a cell is invisible to a grid).
        ``"mc"``: n uniform points (default 10^6); error = 3 standard errors.
        ``"is"``: n points (default 10^6) from a defensive mixture: half uniform, half a
        product of U-shaped densities a (2 min(x, 1 - x))^(a - 1) with a = 1 / (1 + log10 M),
        which put mass polynomially close to the corners where the region lives for large M;
        weights are bounded by 2. Relative error about 1% at M = 10^4 with 10^6 samples, where
        uniform Monte Carlo sees no point of the region at all. Error = 3 standard errors.

    Args:
        g: a :class:`prefjax.Link` or a bare callable.
        M: the threshold, > 0. Proposition 1 needs M > 1; for M <= 1 a warning says so and
            the area is computed numerically all the same.
        wrt: "ik" or "kj".
        method: "quad", "grid", "mc" or "is".
        n: grid size per axis ("grid") or number of samples ("mc", "is").
        seed: an int, for "mc" and "is".
        rtol: relative error target of "quad".

    Returns:
        :class:`AreaEstimate` ``(value, error, method, n_evals)``.

    Example:
        >>> import prefjax
        >>> from prefjax import bradley_terry as bt
        >>> est = prefjax.region_area(prefjax.logistic, 10.0)
        >>> abs(est.value - float(bt.region_area(10.0))) < 1e-12
        True
    """
    g = as_link(g)
    M = v.check_positive_number("M", M)
    v.check_choice("wrt", wrt, WRT)
    v.check_choice("method", method, METHODS)
    if not isinstance(seed, int | np.integer) or isinstance(seed, bool):
        raise TypeError(f"seed must be an int; got {seed!r}")
    if M <= 1:
        warnings.warn(
            f"M = {M} <= 1: Proposition 1 (and the paper's analysis) needs M > 1; the area is "
            "computed numerically all the same.",
            stacklevel=2,
        )
    if method == "quad":
        return _area_quad(g, M, rtol=v.check_positive_number("rtol", rtol))
    if method == "grid":
        n = 1000 if n is None else _check_n(n, method, minimum=8)
        return _area_grid(g, M, wrt, n)
    n = 1_000_000 if n is None else _check_n(n, method, minimum=100)
    if method == "mc":
        return _area_mc(g, M, wrt, n, int(seed))
    return _area_is(g, M, wrt, n, int(seed))


def _check_n(n, method, minimum):
    if isinstance(n, bool) or not isinstance(n, int | np.integer):
        raise TypeError(f"n must be an int; got {n!r}")
    if n < minimum:
        raise ValueError(f"n = {n} is too small for method {method!r}; use n >= {minimum}")
    return int(n)


# --- "quad": root-found boundaries, adaptive Gauss-Kronrod over the other variable ------

_T_MAX = 45.0  # grid spans p_ik = sigma(t) for t in [-45, 45]: (2.9e-20, 1 - 2.9e-20)
_N_GRID = 512
_MAX_ROOTS = 4  # sign changes handled per slice (links seen so far have 1 or 2); more raises
_BISECT = 64  # closes a grid cell to ~1e-19 of its width
_GOLDEN = 60
_SLICE_CHUNK = 256  # slices per compiled call

# Gauss-Kronrod 7/15 nodes and weights on [-1, 1] (QUADPACK's qk15).
_XGK = np.array([
    0.991455371120812639206854697526329, 0.949107912342758524526189684047851,
    0.864864423359769072789712788640926, 0.741531185599394439863864773280788,
    0.586087235467691130294144845693013, 0.405845151377397166906606412076961,
    0.207784955007898467600689403773245, 0.000000000000000000000000000000000,
])  # fmt: skip
_WGK = np.array([
    0.022935322010529224963732008058970, 0.063092092629978553290700663189204,
    0.104790010322250183839876322541518, 0.140653259715525918745189590510238,
    0.169004726639267902826583426598550, 0.190350578064785409913256402421014,
    0.204432940075298892414161999234649, 0.209482141084727828012999174891714,
])  # fmt: skip
_WG = np.array([
    0.129484966168869693270611432679082, 0.279705391489276667901467771423780,
    0.381830050505118944950369775488975, 0.417959183673469387755102040816327,
])  # fmt: skip
_NODES = np.concatenate([-_XGK[:-1], _XGK[::-1]])  # 15 nodes, ascending
_WK = np.concatenate([_WGK[:-1], _WGK[::-1]])
_WG15 = np.zeros(15)
_WG15[[1, 3, 5, 7, 9, 11, 13]] = np.concatenate([_WG[:-1], _WG[::-1]])


def _interval_length(g: Link, a, b):
    """g(b) - g(a) without cancellation: through the lower tail when both are above 0."""
    upper = a >= 0
    return jnp.where(upper, g(-a) - g(-b), g(b) - g(a))


@partial(jax.jit, static_argnums=0)
def _slice_lengths(g: Link, c, log_m, u_grid):
    """For each score c = g^-1(p_kj), the probability length of {u : D(u, c) > M}.

    D(u, c) = g'(u + c) / g'(u) = |dp_ij/dp_ik| at p_ik = g(u) (Eq. (2)). Returns the
    lengths and, per slice, whether more sign changes were seen than are handled.
    """

    def F(u, c):
        return g.log_derivative(u + c) - g.log_derivative(u) - log_m

    m, n = c.shape[0], u_grid.shape[0]
    U = jnp.broadcast_to(u_grid, (m, n))
    Fg = F(U, c[:, None])  # (m, N)
    Fg = jnp.where(jnp.isnan(Fg), -jnp.inf, Fg)

    # Refine the grid maximum by golden-section search: a bump narrower than the grid
    # spacing is found here even when no grid point lies inside it.
    k = jnp.argmax(Fg, axis=1)
    lo = u_grid[jnp.clip(k - 1, 0, n - 1)]
    hi = u_grid[jnp.clip(k + 1, 0, n - 1)]
    phi = 0.6180339887498949

    def golden(_, state):
        lo, hi = state
        x1, x2 = hi - phi * (hi - lo), lo + phi * (hi - lo)
        left = F(x1, c) > F(x2, c)
        return jnp.where(left, lo, x1), jnp.where(left, x2, hi)

    lo, hi = jax.lax.fori_loop(0, _GOLDEN, golden, (lo, hi))
    u_max = 0.5 * (lo + hi)
    F_max = F(u_max, c)
    interior = (k > 0) & (k < n - 1) & (F_max > Fg[jnp.arange(m), k])

    # Cells between neighbours; the two cells around k are split at u_max.
    left_u, right_u = U[:, :-1], U[:, 1:]
    left_F, right_F = Fg[:, :-1], Fg[:, 1:]
    col = jnp.arange(n - 1)[None, :]
    before = interior[:, None] & (col == (k - 1)[:, None])
    after = interior[:, None] & (col == k[:, None])
    right_u = jnp.where(before, u_max[:, None], right_u)
    right_F = jnp.where(before, F_max[:, None], right_F)
    left_u = jnp.where(after, u_max[:, None], left_u)
    left_F = jnp.where(after, F_max[:, None], left_F)

    change = (left_F > 0) != (right_F > 0)
    overflow = jnp.sum(change, axis=1) > _MAX_ROOTS
    order = jnp.argsort(~change, axis=1, stable=True)[:, :_MAX_ROOTS]  # changes first, in order
    take = lambda a: jnp.take_along_axis(a, order, axis=1)  # noqa: E731
    valid = take(change)
    a, b, Fa = take(left_u), take(right_u), take(left_F)
    entering = Fa <= 0  # F goes from <= 0 to > 0: the root opens an interval of the set

    def bisect(_, state):
        a, b = state
        mid = 0.5 * (a + b)
        pos = F(mid, c[:, None]) > 0
        go_left = pos == entering  # the root lies in [a, mid]
        return jnp.where(go_left, a, mid), jnp.where(go_left, mid, b)

    a, b = jax.lax.fori_loop(0, _BISECT, bisect, (a, b))
    roots = jnp.where(valid, 0.5 * (a + b), jnp.nan)

    start_inside = Fg[:, 0] > 0
    end_inside = Fg[:, -1] > 0
    bounds = jnp.concatenate(
        [
            jnp.where(start_inside, -jnp.inf, jnp.nan)[:, None],
            roots,
            jnp.where(end_inside, jnp.inf, jnp.nan)[:, None],
        ],
        axis=1,
    )
    bounds = jnp.sort(bounds, axis=1)  # -inf, roots ascending, +inf, NaN padding last
    pairs = bounds.reshape(m, -1, 2)
    lengths = _interval_length(g, pairs[..., 0], pairs[..., 1])
    return jnp.sum(jnp.where(jnp.isnan(lengths), 0.0, lengths), axis=1), overflow


def _score_grid(g: Link):
    """Scores u = g^-1(p_ik) at p_ik = sigma(t), t evenly spaced in [-45, 45] (N even).

    The upper half is the mirror image of the lower (Lemma 4), so only p_ik <= 1/2 is
    inverted and no value near 1 is rounded.
    """
    t = np.linspace(-_T_MAX, 0.0, _N_GRID // 2, endpoint=False)
    u_lower = np.asarray(g.inverse(jnp.asarray(1.0 / (1.0 + np.exp(-t)))))
    return jnp.asarray(np.concatenate([u_lower, -u_lower[::-1]]))


def _area_quad(g: Link, M: float, rtol: float, atol: float = 1e-300, max_rounds: int = 60):
    u_grid = _score_grid(g)
    log_m = jnp.asarray(math.log(M))
    n_evals = 0

    def integrand(s):
        """l(p_kj) * dp_kj/ds at p_kj = 1 - s^2, for s in (0, 1/sqrt(2))."""
        nonlocal n_evals
        # Fixed-size chunks: jit compiles one shape per link, whatever the round's size.
        pad = -s.size % _SLICE_CHUNK
        s_pad = np.concatenate([s, np.full(pad, 0.5)])
        c = -g.inverse(jnp.asarray(s_pad * s_pad))  # g^-1(1 - s^2) = -g^-1(s^2): exact
        parts = [
            _slice_lengths(g, c[i : i + _SLICE_CHUNK], log_m, u_grid)
            for i in range(0, s_pad.size, _SLICE_CHUNK)
        ]
        lengths = np.concatenate([np.asarray(p[0]) for p in parts])[: s.size]
        overflow = np.concatenate([np.asarray(p[1]) for p in parts])[: s.size]
        if overflow.any():
            raise RuntimeError(
                f"the sensitivity of link {g.name!r} crosses M = {M} more than {_MAX_ROOTS} "
                "times along one slice; method='quad' does not handle such links, use 'grid'"
            )
        n_evals += int(s.size) * (_N_GRID + _GOLDEN * 2 + _BISECT * _MAX_ROOTS)
        return lengths * 2 * s

    # Where the region's slices end (for logistic: p_kj = M/(M+1)) the integrand has a kink;
    # locate it to ~1e-12 of its position by 64-point scans and make it a breakpoint.
    s_top = math.sqrt(0.5)
    scan = np.geomspace(1e-12, s_top, 64)  # the edge is at s ~ M^-1/2 for logistic
    inside = integrand(scan) > 0
    edge = []
    if inside.any() and not inside.all():
        last = int(np.flatnonzero(inside).max())
        if inside[: last + 1].all():  # one stretch next to s = 0: a single edge to refine
            lo, hi = scan[last], scan[last + 1]  # invariant: inside at lo, outside at hi
            for _ in range(6):
                scan = np.linspace(lo, hi, 66)[1:-1]
                inside = integrand(scan) > 0
                k = int(np.flatnonzero(inside).max()) if inside.any() else -1
                lo = scan[k] if k >= 0 else lo
                hi = scan[k + 1] if k + 1 < scan.size else hi
            edge = [0.5 * (lo + hi)]

    # Vectorized adaptive Gauss-Kronrod: every round evaluates all open intervals at once.
    edges = np.unique(np.concatenate([np.linspace(0.0, s_top, 9), edge]))
    open_a, open_b = edges[:-1], edges[1:]
    done_value, done_error = 0.0, 0.0
    for _ in range(max_rounds):
        half = 0.5 * (open_b - open_a)
        mid = 0.5 * (open_b + open_a)
        s = (mid[:, None] + half[:, None] * _NODES[None, :]).ravel()
        f = integrand(s).reshape(-1, 15)
        k15 = half * (f @ _WK)
        g7 = half * (f @ _WG15)
        err = np.abs(k15 - g7)
        total = done_value + k15.sum()
        budget = max(rtol * abs(total), atol)
        if done_error + err.sum() <= budget:
            done_value, done_error = total, done_error + err.sum()
            break
        # Accept intervals whose error is small for their width; split the rest.
        share = budget * (open_b - open_a) / math.sqrt(0.5)
        accept = err <= 0.5 * share
        done_value += k15[accept].sum()
        done_error += err[accept].sum()
        a, b = open_a[~accept], open_b[~accept]
        mids = 0.5 * (a + b)
        open_a, open_b = np.concatenate([a, mids]), np.concatenate([mids, b])
    else:
        done_value, done_error = total, done_error + err.sum()
        warnings.warn(f"method='quad' stopped after {max_rounds} rounds", stacklevel=3)
    # Rounding floor: each slice length is exact to a few ulps, so is their weighted sum.
    done_error += 64 * np.finfo(float).eps * abs(done_value)
    # Point symmetry: the half p_kj < 1/2 has the same area.
    return AreaEstimate(2.0 * done_value, 2.0 * done_error, "quad", n_evals)


# --- sampling methods ------------------------------------------------------------------

_CHUNK = 1 << 20


@partial(jax.jit, static_argnums=(0, 3))
def _indicator(g: Link, p_ik, p_kj, wrt_ik: bool, M):
    s, _ = _sensitivity_kernel(g, p_ik, p_kj)
    d = s.d_ik if wrt_ik else s.d_kj
    return jnp.abs(d) > M  # NaN (invalid) compares False


def _grid_mask(g, M, wrt, n):
    centers = jnp.asarray((np.arange(n) + 0.5) / n)
    rows = max(1, _CHUNK // n)
    parts = [
        _indicator(g, centers[start : start + rows, None], centers[None, :], wrt == "ik", M)
        for start in range(0, n, rows)
    ]
    return np.asarray(jnp.concatenate(parts, axis=0))


def _area_grid(g, M, wrt, n):
    """Midpoint rule; the error bar is twice the change from the n/2 grid plus the area of
    the cells on the region's boundary (where a cell may be half in, half out), and never less
    than two cells: the grid cannot see a region thinner than one cell."""
    fine = _grid_mask(g, M, wrt, n)
    coarse = _grid_mask(g, M, wrt, n // 2).mean()
    edge = np.zeros_like(fine)
    edge[:-1] |= fine[:-1] != fine[1:]
    edge[1:] |= fine[:-1] != fine[1:]
    edge[:, :-1] |= fine[:, :-1] != fine[:, 1:]
    edge[:, 1:] |= fine[:, :-1] != fine[:, 1:]
    value = float(fine.mean())
    error = 2.0 * abs(value - coarse) + max(edge.sum(), 2) / n**2
    return AreaEstimate(value, error, "grid", n * n + (n // 2) ** 2)


def _area_mc(g, M, wrt, n, seed):
    key = jax.random.key(seed)
    hits = 0
    tiny = float(jnp.finfo(jnp.result_type(float)).tiny)
    for start in range(0, n, _CHUNK):
        size = min(_CHUNK, n - start)
        key, sub = jax.random.split(key)
        u = jax.random.uniform(sub, (2, size), minval=tiny, maxval=1.0)
        hits += int(jnp.sum(_indicator(g, u[0], u[1], wrt == "ik", M)))
    p = hits / n
    return AreaEstimate(p, MC_SIGMAS * math.sqrt(max(p * (1 - p), 1.0 / n) / n), "mc", n)


_IS_DEFENSIVE = 0.1  # share of uniform draws in the main stage: weights stay <= 10


@partial(jax.jit, static_argnums=(0, 3))
def _is_draw(g: Link, key, log_m, size: int, a, box, defensive):
    """Draws from a defensive mixture and their weighted indicators.

    Mixture: ``defensive`` uniform on the square, the rest a product over the two coordinates
    of: a side (next to 0 or next to 1) with probability 1/2 each, and a distance to that end
    drawn either from the U-shaped density a (2 d)^(a - 1) on (0, 1/2) (``box = 0``: the pilot)
    or uniformly on (0, box) (the main stage). Drawing the distance d = min(x, 1 - x) keeps x
    and 1 - x exact, so the scores u = g^-1(x) keep precision next to 1 as well as next to 0.
    Returns the weights 1/q (q the mixture density), the near-end distances and the
    indicators of |dp_ij/dp_ik| > M and |dp_ij/dp_kj| > M.
    """
    k_mix, k_u, k_v, k_side = jax.random.split(key, 4)
    tiny = jnp.finfo(jnp.result_type(float)).tiny
    use_mix = jax.random.bernoulli(k_mix, 1.0 - defensive, (size,))
    unif = jax.random.uniform(k_u, (2, size))
    v = jax.random.uniform(k_v, (2, size), minval=tiny)
    pilot = box <= 0
    d_mix = jnp.where(pilot, 0.5 * jnp.exp(jnp.log(v) / a), v * box)
    upper = jnp.where(use_mix, jax.random.bernoulli(k_side, 0.5, (2, size)), unif > 0.5)
    near = jnp.maximum(jnp.where(use_mix, d_mix, jnp.minimum(unif, 1.0 - unif)), tiny)
    # Scores from the nearer end (Lemma 4: g^-1(1 - q) = -g^-1(q)).
    u_near = g.inverse(near)
    u = jnp.where(upper, -u_near, u_near)
    log_d = g.log_derivative(u[0] + u[1]) - g.log_derivative(u)  # (2, size): wrt ik, kj
    # Density of the non-uniform component per coordinate (both sides together).
    log_q_pilot = jnp.log(a) + (a - 1.0) * jnp.log(2.0 * near)
    log_q_box = jnp.where(near < box, -jnp.log(2.0 * jnp.where(pilot, 1.0, box)), -jnp.inf)
    log_q = jnp.sum(jnp.where(pilot, log_q_pilot, log_q_box), axis=0)
    w = 1.0 / (defensive + (1.0 - defensive) * jnp.exp(log_q))
    return w, near, log_d > log_m


def _area_is(g, M, wrt, n, seed):
    """Two stages: a pilot (n/10 draws, U-shaped towards the corners) finds how far from the
    ends the region reaches in each coordinate; the main stage draws uniformly within twice
    that reach of the ends (plus 10% uniform draws), so that the weights barely vary over the
    region. The estimate and its error come from the main stage alone."""
    row = 0 if wrt == "ik" else 1
    key_pilot, key = jax.random.split(jax.random.key(seed))
    log_m = jnp.asarray(math.log(M))
    a = jnp.asarray(1.0 / (1.0 + max(math.log10(M), 0.0)))
    n_pilot = max(n // 10, 100)
    _, near, hit = _is_draw(g, key_pilot, log_m, n_pilot, a, jnp.asarray(0.0), jnp.asarray(0.5))
    hits = np.asarray(hit[row])
    near = np.asarray(near)
    reach = near[:, hits].max(axis=1) if hits.any() else np.full(2, 0.25)
    box = jnp.asarray(np.minimum(2.0 * reach, 0.5)[:, None])  # (2, 1): per coordinate
    n_main = n - n_pilot
    total, total_sq = 0.0, 0.0
    for start in range(0, n_main, _CHUNK):
        size = min(_CHUNK, n_main - start)
        key, sub = jax.random.split(key)
        w, _, hit = _is_draw(g, sub, log_m, size, a, box, jnp.asarray(_IS_DEFENSIVE))
        contrib = jnp.where(hit[row], w, 0.0)
        total += float(jnp.sum(contrib))
        total_sq += float(jnp.sum(contrib * contrib))
    mean = total / n_main
    var = max(total_sq / n_main - mean * mean, 0.0)
    return AreaEstimate(mean, MC_SIGMAS * math.sqrt(var / n_main) + 1.0 / n_main**2, "is", n)
