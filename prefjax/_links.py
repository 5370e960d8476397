"""Pairwise links g: the built-ins and :func:`link` for any JAX-traceable callable.

A *link* (the paper's "pairwise preference model", Section 2.2) maps a score difference
x = s_i - s_j to the probability p_ij = g(x) that o_i is preferred to o_j. It must satisfy
Assumptions 2-5: strictly increasing, g(-inf) = 0 and g(+inf) = 1, g(x) + g(-x) = 1, and
continuously differentiable.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable

import jax
import jax.numpy as jnp
from jax.scipy import special as jsp_special

from . import _numerics as nx
from ._assumptions import check_assumptions

Array = jax.Array


def _with_jvp(f: Callable, df: Callable) -> Callable:
    """``f`` with its derivative given in closed form by ``df`` (forward and reverse mode)."""
    f = jax.custom_jvp(f)

    @f.defjvp
    def _jvp(primals, tangents):
        (x,), (t,) = primals, tangents
        return f(x), t * df(x)

    return f


def _inverse_with_jvp(inverse: Callable, derivative: Callable) -> Callable:
    """``inverse`` differentiated by the inverse-function theorem: (g^-1)'(p) = 1 / g'(g^-1(p)).

    The primal x = g^-1(p) is computed once and reused for the tangent, so a numerically
    inverted link costs one root solve per point, never a derivative through its iterations.
    """
    inverse = jax.custom_jvp(inverse)

    @inverse.defjvp
    def _jvp(primals, tangents):
        (p,), (t,) = primals, tangents
        x = inverse(p)
        return x, t / derivative(x)

    return inverse


def _dlog(log_derivative: Callable, x):
    """(log g')'(x) by forward-mode autodiff, elementwise."""
    return jax.jvp(log_derivative, (x,), (jnp.ones_like(x),))[1]


def _signed_exp(sign, log_abs):
    """sign * exp(log_abs), 0 where sign is 0 (even where log_abs is +-inf or NaN)."""
    return jnp.where(sign == 0, 0.0, sign * jnp.exp(jnp.where(sign == 0, 0.0, log_abs)))


_LOG_FD_STEP = 2.0**-14  # relative step of the log-space central difference below


def log_derivative_from(fn: Callable, derivative: Callable) -> Callable:
    """log g'(x) for a link given by g and g': log(g'(x)), and where g'(x) underflows (a heavy
    tail far out: a Student-t(3) g' at x = -1e100 is 1e-400) a central difference of log g,
    log g'(x) = log g(x) + log((log g)'(x)), in the lower tail (g' is even, Assumption 4).

    The difference has step h = 2^-14 |x|: its truncation is ~1e-8 relative in g' for power
    tails and its rounding ~eps |log g| / (h (log g)') ~ 1e-9: finite and close where
    log(g') is -inf.
    """

    @jax.custom_jvp
    def fallback(x):
        y = -jnp.abs(x)
        h = _LOG_FD_STEP * jnp.maximum(jnp.abs(y), 1.0)
        # One-sided towards 0 where g(y - h) underflows; -inf where g(y) itself does.
        lo = jnp.where(fn(y - h) > 0, y - h, y)
        slope = (jnp.log(fn(y + h)) - jnp.log(fn(lo))) / (y + h - lo)
        gy = fn(y)
        out = jnp.where(gy > 0, jnp.log(jnp.where(gy > 0, gy, 1.0)) + jnp.log(slope), -jnp.inf)
        return jnp.where(jnp.isnan(out), -jnp.inf, out)

    @fallback.defjvp
    def _fallback_jvp(primals, tangents):
        # Its derivative (L', for the Hessian) by the same central difference: autodiff would
        # go through g' (underflowed: 0) and lose (log g)' from the slope.
        (x,), (t,) = primals, tangents
        h = _LOG_FD_STEP * jnp.maximum(jnp.abs(x), 1.0)
        slope = (fallback(x + h) - fallback(x - h)) / (2.0 * h)
        return fallback(x), t * jnp.where(jnp.isfinite(slope), slope, 0.0)

    def log_derivative(x):
        direct = jnp.log(derivative(x))
        ok = jnp.isfinite(direct) & (direct > -700.0)
        # The difference costs three more g evaluations: only when some entry needs it.
        return jax.lax.cond(jnp.all(ok), lambda: direct, lambda: jnp.where(ok, direct, fallback(x)))

    return log_derivative


def log_space_compose(
    fn: Callable, inverse: Callable, log_derivative: Callable, derivative: Callable
) -> Callable:
    """Lemma 1, g(g^-1(a) + g^-1(b)), with its first and second derivatives in log space.

    The chain rule multiplies g'(x_ij) by (g^-1)'(a) = 1 / g'(x_a): for a heavy tail both
    factors leave float64 (cauchit at a = 1e-160: g'(x_a) = 3e-321 and 1/g'(x_a) = inf), and
    their product, Eq. (2), is NaN where it is ~1. Here the partials are
    exp(log g'(x_ij) - log g'(x_a)) and their own derivatives (the Hessian)
    d/da = r (L'(x_ij) - L'(x_a)) / g'(x_a), d/db = r L'(x_ij) / g'(x_b) (L = log g'),
    each one exp of a sum of logs, exact where L'(x_ij) - L'(x_a) = 0 (b = 1/2). Where both
    g' are normal floats the partial itself is their plain quotient (2 ulps; the exp of a
    difference of logs ~700 would cost eps * 700).
    """
    normal = 2.0**-1000  # g' above this: the quotient neither under- nor overflows

    def parts(a, b):
        xa, xb = inverse(a), inverse(b)
        x = xa + xb
        return xa, xb, x, log_derivative(x) - log_derivative(xa)

    @jax.custom_jvp
    def ratio(a, b):
        """dp_ij / da = g'(x_a + x_b) / g'(x_a)."""
        xa, xb, x, log_r = parts(a, b)
        da, dx = derivative(xa), derivative(x)
        plain = (da > normal) & (dx > normal)
        quotient = dx / jnp.where(plain, da, 1.0)
        # x_b = 0: exactly 1, even where both g' underflow. A log g'(x_ij) of -inf (a custom
        # g that itself underflows there) says nothing of the partial's size: NaN, never a
        # silent 0 (prefjax.sensitivity turns it into an error naming the input).
        lost = ~jnp.isfinite(log_derivative(x)) & jnp.isfinite(log_derivative(xa))
        logs = jnp.where(lost, jnp.nan, jnp.exp(log_r))
        return jnp.where(xb == 0, 1.0, jnp.where(plain, quotient, logs))

    @ratio.defjvp
    def _ratio_jvp(primals, tangents):
        (a, b), (ta, tb) = primals, tangents
        xa, xb, x, log_r = parts(a, b)
        r = ratio(a, b)
        log_r = jnp.where(xb == 0, 0.0, log_r)
        dl_x, dl_a = _dlog(log_derivative, x), _dlog(log_derivative, xa)
        diff = jnp.where(xb == 0, 0.0, dl_x - dl_a)
        d_a = _signed_exp(jnp.sign(diff), log_r + jnp.log(jnp.abs(diff)) - log_derivative(xa))
        d_b = _signed_exp(jnp.sign(dl_x), log_r + jnp.log(jnp.abs(dl_x)) - log_derivative(xb))
        return r, ta * d_a + tb * d_b

    @jax.custom_jvp
    def compose(a, b):
        return fn(inverse(a) + inverse(b))

    @compose.defjvp
    def _compose_jvp(primals, tangents):
        (a, b), (ta, tb) = primals, tangents
        return compose(a, b), ta * ratio(a, b) + tb * ratio(b, a)

    return compose


class Link:
    """A pairwise preference model g meeting Assumptions 2-5 of the paper.

    Calling a link gives g(x); ``.inverse(p)`` gives g^-1(p), ``.derivative(x)`` gives g'(x)
    and ``.log_derivative(x)`` gives log g'(x) without underflow far in the tails. All four
    are elementwise, differentiable, and work under ``jax.jit`` and ``jax.vmap``.

    Build one with :func:`prefjax.link`; the built-ins are :data:`prefjax.logistic`,
    :data:`prefjax.probit` and :data:`prefjax.cauchit`.

    Examples:
        >>> import prefjax
        >>> float(prefjax.logistic(0.0)), float(prefjax.logistic.inverse(0.5))
        (0.5, 0.0)
    """

    __slots__ = (
        "name",
        "_fn",
        "_inverse",
        "_derivative",
        "_log_derivative",
        "_compose",
        "__weakref__",
    )

    def __init__(
        self,
        fn: Callable,
        inverse: Callable,
        derivative: Callable,
        log_derivative: Callable | None = None,
        name: str = "link",
        compose: Callable | None = None,
    ):
        self.name = name
        # Each piece is jitted: eager calls run one compiled kernel instead of dozens of small
        # ops (the numeric inverse's loops especially); inside a user's jit they inline.
        self._fn = jax.jit(fn)
        self._inverse = jax.jit(inverse)
        self._derivative = jax.jit(derivative)
        self._log_derivative = jax.jit(log_derivative or log_derivative_from(fn, derivative))
        # Lemma 1 as one differentiable function of (p_ik, p_kj). A link may supply a closed
        # form that needs fewer transcendentals (logistic: Eq. (3), rational); it must equal
        # g(g^-1(p_ik) + g^-1(p_kj)) and carry the chain rule as its JVP.
        self._compose = compose or log_space_compose(
            self._fn, self._inverse, self._log_derivative, self._derivative
        )

    def __call__(self, x) -> Array:
        """g(x), the probability that an option with score difference x wins."""
        return self._fn(jnp.asarray(x, dtype=_float_dtype(x)))

    def inverse(self, p) -> Array:
        """g^-1(p), the score difference implied by probability p (Lemma 3: increasing)."""
        return self._inverse(jnp.asarray(p, dtype=_float_dtype(p)))

    def derivative(self, x) -> Array:
        """g'(x) (Assumption 5)."""
        return self._derivative(jnp.asarray(x, dtype=_float_dtype(x)))

    def log_derivative(self, x) -> Array:
        """log g'(x), finite where g'(x) underflows (score-space computations use it)."""
        return self._log_derivative(jnp.asarray(x, dtype=_float_dtype(x)))

    def compose(self, p_ik, p_kj) -> Array:
        """Lemma 1 on arrays of equal dtype: g(g^-1(p_ik) + g^-1(p_kj)); no input checks.

        The checked public entry point is :func:`prefjax.compose`.
        """
        return self._compose(p_ik, p_kj)

    def __repr__(self) -> str:
        return f"Link({self.name!r})"


def _float_dtype(x):
    """The float dtype to compute in: the input's if it is floating, else JAX's default."""
    dtype = getattr(x, "dtype", None)
    if dtype is not None and jnp.issubdtype(dtype, jnp.floating):
        return dtype
    return jnp.result_type(float)


# --- built-in links --------------------------------------------------------------------


@jax.custom_jvp
def _logistic_compose(a, b):
    """Eq. (3), p_ij = a b / (a b + (1 - a)(1 - b)): Lemma 1 for the logistic link, rational.

    Both terms of the denominator are positive, so it is accurate to a few ulps at every
    corner of the unit square, and costs no transcendental function.
    """
    return logistic_odds_compose(a, b)


def logistic_odds_compose(a, b):
    """Eq. (3) as 1 / (1 + r), r = ((1 - a)/a) ((1 - b)/b): the odds' product never passes
    through the subnormal range where a b does (a = 0.9, b = 2.2e-308: a b = 2e-308 is
    flushed to 0 on XLA's CPU, p_ij = 2e-307 is not); r = inf gives 0, the correct rounding."""
    return 1.0 / (1.0 + ((1.0 - a) / a) * ((1.0 - b) / b))


@_logistic_compose.defjvp
def _logistic_compose_jvp(primals, tangents):
    (a, b), (ta, tb) = primals, tangents
    ab, cc = a * b, (1.0 - a) * (1.0 - b)
    den = ab + cc
    # Chain rule of Eq. (2): g'(x_ij) * (g^-1)'(a) = [ab cc / den^2] / [a (1 - a)], which
    # simplifies to b (1 - b) / den^2 (Eq. (4)); symmetrically a (1 - a) / den^2 for b.
    return logistic_odds_compose(a, b), (ta * (b * (1.0 - b)) + tb * (a * (1.0 - a))) / (den * den)


logistic = Link(
    fn=nx.logistic,
    inverse=nx.logit,
    derivative=lambda x: jnp.exp(nx.logistic_log_derivative(x)),
    log_derivative=nx.logistic_log_derivative,
    name="logistic",
    compose=_logistic_compose,
)


@jax.custom_jvp
def _probit_compose(a, b):
    return nx.normal_cdf(jsp_special.ndtri(a) + jsp_special.ndtri(b))


@_probit_compose.defjvp
def _probit_compose_jvp(primals, tangents):
    (a, b), (ta, tb) = primals, tangents
    xa, xb = jsp_special.ndtri(a), jsp_special.ndtri(b)
    x = xa + xb
    # Chain rule of Eq. (2): phi(x) / phi(xa) = exp((xa^2 - x^2) / 2) = exp(-xb (2 xa + xb) / 2):
    # one exp per partial instead of three pdfs, and no over/underflow of the ratio's parts.
    return nx.normal_cdf(x), ta * jnp.exp(-0.5 * xb * (xa + x)) + tb * jnp.exp(-0.5 * xa * (x + xb))


probit = Link(
    fn=_with_jvp(nx.normal_cdf, nx.normal_pdf),
    inverse=_inverse_with_jvp(jsp_special.ndtri, nx.normal_pdf),
    derivative=nx.normal_pdf,
    log_derivative=nx.normal_log_pdf,
    name="probit",
    compose=_probit_compose,
)


def _cauchy_pdf(x):
    """1 / (pi (1 + x^2)) to a few ulps: as w^2 / (pi (1 + w^2)) with w = 1/|x| beyond |x| = 1
    (no overflow of x^2; exp of the log pdf would cost eps |log pdf|, 8e-14 at x = 1e77)."""
    a = jnp.abs(x)
    big = a > 1.0
    w = 1.0 / jnp.where(big, a, 1.0)
    return jnp.where(big, w * w / (jnp.pi * (1.0 + w * w)), 1.0 / (jnp.pi * (1.0 + x * x)))


cauchit = Link(
    fn=_with_jvp(nx.cauchy_cdf, _cauchy_pdf),
    inverse=_inverse_with_jvp(nx.cauchy_quantile, _cauchy_pdf),
    derivative=_cauchy_pdf,
    log_derivative=nx.cauchy_log_pdf,
    name="cauchit",
    # (the default compose, log_space_compose: Eq. (2) from log g', finite at 1e-300)
)

LINKS: dict[str, Link] = {
    "logistic": logistic,
    "probit": probit,
    "cauchit": cauchit,
}
"""The built-in links by name. Everything that takes a link by name reads this mapping (the
reproduce claims and figures, ``llm_bridge.convert``, :func:`get_link`): a new built-in link is
its definition above and one entry here."""


# --- numeric inversion -----------------------------------------------------------------

_MAX_BRACKET_STEPS = 600  # 4**600 overflows float64: the bracket always closes before this
_MAX_NEWTON_STEPS = 100


def _value_and_derivative(g: Callable, x):
    """(g(x), g'(x)) in one forward-mode pass, for an elementwise g."""
    return jax.jvp(g, (x,), (jnp.ones_like(x),))


def numeric_inverse(g: Callable, p) -> Array:
    """Solve g(x) = p elementwise by bracketing plus safeguarded Newton.

    By symmetry (Assumption 4) only the lower tail is solved: with q = min(p, 1 - p) we find
    y >= 0 with g(-y) = q, then return -y for p <= 1/2 and y otherwise. Working in the lower
    tail keeps relative precision at p = 1 - 1e-12, where g(x) itself rounds to 1. Newton runs
    on log g(-y) - log q, which is concave for log-concave tails and well scaled for q = 1e-300;
    a step that leaves the bracket is replaced by bisection, so it converges for any
    increasing g. Accurate to a few ulps in float64 (relative to max(|x|, 1): near p = 1/2,
    g's own rounding limits how well any inverse can resolve x). Values outside (0, 1) give NaN, except
    0 and 1, which give -inf and +inf (the limits of Assumption 3).
    """
    p = jnp.asarray(p)
    dtype = p.dtype
    eps = jnp.finfo(dtype).eps
    tiny = jnp.finfo(dtype).tiny
    q_raw = jnp.minimum(p, 1.0 - p)
    valid = (q_raw > 0) & (p < 1)  # NaN compares False
    q = jnp.where(valid, q_raw, 0.25)
    log_q = jnp.log(q)

    def lower(y):
        return g(-y)

    # 1. Bracket: g(-lo) >= q > g(-hi); grow hi geometrically.
    def bracket_cond(state):
        _, _, active, it = state
        return jnp.any(active) & (it < _MAX_BRACKET_STEPS)

    def bracket_body(state):
        lo, hi, active, it = state
        still = active & (lower(hi) > q) & jnp.isfinite(hi)
        lo = jnp.where(still, hi, lo)
        hi = jnp.where(still, hi * 4.0, hi)
        return lo, hi, still, it + 1

    zeros = jnp.zeros_like(q)
    lo, hi, _, _ = jax.lax.while_loop(
        bracket_cond, bracket_body, (zeros, jnp.ones_like(q), jnp.ones(q.shape, bool), 0)
    )

    # 2. Safeguarded Newton on f(y) = log g(-y) - log q, decreasing in y.
    def newton_cond(state):
        _, _, _, done, it = state
        return jnp.any(~done) & (it < _MAX_NEWTON_STEPS)

    def newton_body(state):
        lo, hi, y, done, it = state
        gv, dgv = _value_and_derivative(g, -y)
        f = jnp.log(gv) - log_q
        lo = jnp.where(f > 0, y, lo)
        hi = jnp.where(f < 0, y, hi)
        # Newton: y - f / f'(y) with f'(y) = -g'(-y) / g(-y).
        y_newton = y + f * gv / dgv
        outside = ~jnp.isfinite(y_newton) | (y_newton <= lo) | (y_newton >= hi)
        y_next = jnp.where(outside, 0.5 * (lo + hi), y_newton)
        scale = jnp.maximum(jnp.abs(y), tiny)
        converged = (
            (f == 0) | (jnp.abs(y_next - y) <= 2 * eps * scale) | (hi - lo <= 2 * eps * scale)
        )
        y_next = jnp.where(done | (f == 0), y, y_next)
        return lo, hi, y_next, done | converged, it + 1

    _, _, y, _, _ = jax.lax.while_loop(newton_cond, newton_body, (lo, hi, hi, ~valid, 0))
    y = jnp.where(q == 0.5, 0.0, y)  # g(0) = 1/2 by symmetry: exact, not an iterate
    x = jnp.where(p <= 0.5, -y, y)
    x = jnp.where(valid, x, jnp.nan)
    x = jnp.where(p == 0, -jnp.inf, x)
    return jnp.where(p == 1, jnp.inf, x)


# --- user-defined links ----------------------------------------------------------------


def link(
    g: Callable,
    inverse: Callable | None = None,
    name: str | None = None,
    check: bool = True,
    derivative: Callable | None = None,
) -> Link:
    """Make a :class:`Link` from any elementwise, JAX-traceable callable ``g``.

    Args:
        g: x -> g(x), elementwise on arrays, traceable by JAX.
        inverse: p -> g^-1(p). If omitted, g is inverted numerically (bracketing plus
            safeguarded Newton, a few ulps in float64; see :func:`numeric_inverse`). Either
            way the derivative of the inverse comes from the inverse-function theorem,
            (g^-1)'(p) = 1 / g'(g^-1(p)), never from differentiating through iterations.
        name: a label for reports and plots; defaults to ``g.__name__``.
        check: run :func:`prefjax.check_assumptions` and raise
            :class:`prefjax.AssumptionError` naming the first failed assumption. With
            ``check=False`` the link must still meet the assumptions: the numerics rely on
            symmetry (Assumption 4) to work in the lower tail, where values keep precision.
        derivative: x -> g'(x); defaults to forward-mode autodiff of ``g``.

    Returns:
        A :class:`Link`. Passing a :class:`Link` returns it unchanged.

    Examples:
        >>> import jax, prefjax
        >>> mix = prefjax.link(lambda x: 0.5 * jax.nn.sigmoid(x) + 0.5 * jax.nn.sigmoid(3 * x),
        ...                    name="mixture")
        >>> round(float(mix(mix.inverse(0.9))), 12)
        0.9
    """
    if isinstance(g, Link):
        return g
    if not callable(g):
        raise TypeError(f"g must be a prefjax.Link or a callable x -> g(x); got {g!r}")
    if inverse is not None and not callable(inverse):
        raise TypeError(f"inverse must be a callable p -> g^-1(p) or None; got {inverse!r}")
    if name is None:
        name = getattr(g, "__name__", None) or type(g).__name__
        if name == "<lambda>":
            name = "custom"

    if derivative is None:

        def derivative(x):
            # g' is even (Assumption 4); differentiating in the lower tail keeps relative
            # precision where a user's g(x) rounds towards 1 (e.g. sigma' = s (1 - s)).
            return _value_and_derivative(g, -jnp.abs(x))[1]

    fn = _with_jvp(g, derivative)  # g' from ``derivative``; never re-derived per call
    raw_inverse = inverse if inverse is not None else (lambda p: numeric_inverse(g, p))
    result = Link(
        fn=fn,
        inverse=_inverse_with_jvp(raw_inverse, derivative),
        derivative=derivative,
        name=name,
    )
    if check:
        check_assumptions(result).raise_if_failed()
    return result


_wrapped: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def as_link(g, argname: str = "g") -> Link:
    """The :class:`Link` for ``g``: itself, or a bare callable wrapped (and checked) once."""
    if isinstance(g, Link):
        return g
    if not callable(g):
        raise TypeError(f"{argname} must be a prefjax.Link or a callable x -> g(x); got {g!r}")
    try:
        cached = _wrapped.get(g)
    except TypeError:  # not weak-referenceable: wrap every time
        return link(g)
    if cached is None:
        cached = _wrapped[g] = link(g)
    return cached


def get_link(g, argname: str = "g") -> Link:
    """The :class:`Link` for a name in :data:`LINKS`, a :class:`Link`, or a bare callable.

    Args:
        g: "logistic", "probit", "cauchit" (the keys of :data:`prefjax.LINKS`), a
            :class:`prefjax.Link`, or a callable x -> g(x) (wrapped by :func:`link` and
            checked, once per callable).
        argname: the argument's name in error messages.

    Examples:
        >>> import prefjax
        >>> prefjax.get_link("probit") is prefjax.probit
        True
    """
    if isinstance(g, str):
        if g not in LINKS:
            valid = ", ".join(repr(name) for name in LINKS)
            raise ValueError(f"unknown {argname} {g!r}; valid link names are {valid}")
        return LINKS[g]
    return as_link(g, argname)
