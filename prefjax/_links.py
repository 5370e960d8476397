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
import numpy as np
from jax.scipy import special as jsp_special

from . import _numerics as nx
from . import _student_t as student
from ._assumptions import AssumptionCheck, AssumptionError, AssumptionReport, check_assumptions
from ._validate import check_float_dtype

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


def _has_leaves(params) -> bool:
    return bool(jax.tree.leaves(params))


def _param_tangent(g: Callable, x, params, t_params):
    """d g(x; theta) / d theta along t_params (forward mode), 0 for a link without params."""
    if not _has_leaves(params):
        return jnp.zeros_like(x)
    return jax.jvp(lambda th: g(x, th), (params,), (t_params,))[1]


def _with_jvp_params(g: Callable, dg: Callable) -> Callable:
    """g(x, theta) with d/dx from the closed form ``dg`` and d/d theta by autodiff of g."""
    f = jax.custom_jvp(g)

    @f.defjvp
    def _jvp(primals, tangents):
        (x, th), (tx, tth) = primals, tangents
        return g(x, th), tx * dg(x, th) + _param_tangent(g, x, th, tth)

    return f


def _inverse_with_jvp_params(inverse: Callable, g: Callable, derivative: Callable) -> Callable:
    """g^-1(p; theta), differentiated by the implicit function theorem in p and theta:

    dx = (dp - d_theta g(x; theta) . d theta) / g'(x; theta), x = g^-1(p; theta),

    from differentiating g(x; theta) = p. The primal is computed once (one root solve per
    point, never a derivative through its iterations).
    """
    inverse = jax.custom_jvp(inverse)

    @inverse.defjvp
    def _jvp(primals, tangents):
        (p, th), (tp, tth) = primals, tangents
        x = inverse(p, th)
        return x, (tp - _param_tangent(g, x, th, tth)) / derivative(x, th)

    return inverse


def _ignore_params(f: Callable) -> Callable:
    return lambda x, _params: f(x)


class _Family:
    """The parameter-free part of a link: its functions of (x, params), each jitted.

    Links built from one family (by :meth:`Link.with_params`) share it, so compiled
    programs keyed on a link are reused across parameter values.
    """

    __slots__ = ("name", "fn", "inverse", "derivative", "log_derivative", "log_cdf", "compose",
                 "positive", "__weakref__")  # fmt: skip

    def __init__(
        self, name, fn, inverse, derivative, log_derivative, log_cdf, compose, positive, fixed
    ):
        self.name = name
        # Each piece is jitted: eager calls run one compiled kernel instead of dozens of small
        # ops (the numeric inverse's loops especially); inside a user's jit they inline.
        self.fn = jax.jit(fn)
        self.inverse = jax.jit(inverse)
        self.derivative = jax.jit(derivative)
        if log_derivative is None:
            if fixed:  # where g' underflows (a heavy tail far out), from log g (see below)
                log_derivative = _ignore_params(
                    log_derivative_from(lambda x: fn(x, {}), lambda x: derivative(x, {}))
                )
            else:
                log_derivative = lambda x, th: jnp.log(derivative(x, th))  # noqa: E731
        self.log_derivative = jax.jit(log_derivative)
        self.log_cdf = jax.jit(log_cdf or (lambda x, th: jnp.log(self.fn(x, th))))
        # Lemma 1 as one differentiable function of (p_ik, p_kj). A link may supply a closed
        # form that needs fewer transcendentals (logistic: Eq. (3), rational); it must equal
        # g(g^-1(p_ik) + g^-1(p_kj)) and carry the chain rule as its JVP. The default for a
        # link without parameters carries its partials in log space (``log_space_compose``:
        # heavy tails stay finite down to 1e-300); with parameters, the plain chain rule (a
        # custom JVP closing over traced parameters could not be differentiated in them).
        if compose is None and fixed:
            composed = log_space_compose(
                lambda x: self.fn(x, {}),
                lambda p: self.inverse(p, {}),
                lambda x: self.log_derivative(x, {}),
                lambda x: self.derivative(x, {}),
            )
            compose = lambda a, b, _params: composed(a, b)  # noqa: E731
        self.compose = compose or (
            lambda a, b, th: self.fn(self.inverse(a, th) + self.inverse(b, th), th)
        )
        self.positive = frozenset(positive)


@jax.tree_util.register_pytree_node_class
class Link:
    """A pairwise preference model g meeting Assumptions 2-5 of the paper.

    Calling a link gives g(x); ``.inverse(p)`` gives g^-1(p), ``.derivative(x)`` gives g'(x)
    and ``.log_derivative(x)`` gives log g'(x) without underflow far in the tails. All four
    are elementwise, differentiable, and work under ``jax.jit`` and ``jax.vmap``.

    A link may have shape parameters (``.params``, a dict of scalars): a family such as
    :data:`prefjax.student_t` (degrees of freedom) or one made by :func:`prefjax.link` with
    ``params=``. :meth:`with_params` gives the same family at other values. A link is a JAX
    pytree whose leaves are its parameters, so it passes through ``jax.jit``, ``jax.grad`` and
    ``jax.vmap``, and everything built on it (:func:`prefjax.compose`, the sensitivities,
    :func:`prefjax.fit`) is differentiable in the parameters.

    Build one with :func:`prefjax.link`; the built-ins are :data:`prefjax.logistic`,
    :data:`prefjax.probit` and :data:`prefjax.cauchit`, and the families
    :data:`prefjax.scaled_logistic` and :data:`prefjax.student_t`.

    Examples:
        >>> import prefjax
        >>> float(prefjax.logistic(0.0)), float(prefjax.logistic.inverse(0.5))
        (0.5, 0.0)
        >>> prefjax.student_t.with_params(df=3.0)
        Link('student_t', df=3)
    """

    __slots__ = ("_family", "_params", "__weakref__")

    def __init__(
        self,
        fn: Callable,
        inverse: Callable,
        derivative: Callable,
        log_derivative: Callable | None = None,
        name: str = "link",
        compose: Callable | None = None,
        params: dict | None = None,
        positive=(),
        log_cdf: Callable | None = None,
    ):
        """Without ``params`` the callables take x (p for the inverse, (p_ik, p_kj) for
        compose); with ``params`` (a dict name -> scalar) they take (x, params) and
        (p_ik, p_kj, params). ``positive``: the names of the parameters that must be > 0."""
        if params is None:
            fn, inverse, derivative = map(_ignore_params, (fn, inverse, derivative))
            log_derivative = log_derivative and _ignore_params(log_derivative)
            log_cdf = log_cdf and _ignore_params(log_cdf)
            if compose is not None:
                compose2 = compose
                compose = lambda a, b, _params: compose2(a, b)  # noqa: E731
            params = {}
        params = _check_params(name, params, positive)
        fixed = not _has_leaves(params)
        family = _Family(
            name, fn, inverse, derivative, log_derivative, log_cdf, compose, positive, fixed
        )
        self._family, self._params = family, params

    @classmethod
    def _of(cls, family: _Family, params) -> Link:
        out = object.__new__(cls)
        out._family, out._params = family, params
        return out

    # --- pytree: the parameters are the leaves --------------------------------------------

    def tree_flatten(self):
        return (self._params,), self._family

    @classmethod
    def tree_unflatten(cls, family, children):
        return cls._of(family, children[0])

    # --- identity: a family at concrete parameter values ------------------------------------

    def _key(self):
        """(family, parameter values) when the values are concrete, else None."""
        leaves, treedef = jax.tree.flatten(self._params)
        values = []
        for leaf in leaves:
            if isinstance(leaf, jax.core.Tracer):
                return None
            a = np.asarray(leaf)
            values.append((a.dtype.str, a.shape, a.tobytes()))
        return id(self._family), treedef, tuple(values)

    def __eq__(self, other):
        if self is other:
            return True
        if not isinstance(other, Link) or other._family is not self._family:
            return False
        key = self._key()
        return key is not None and key == other._key()

    def __hash__(self):
        key = self._key()
        return id(self) if key is None else hash(key)

    # --- the link ---------------------------------------------------------------------------

    @property
    def name(self) -> str:
        """The family's name (reports, plots)."""
        return self._family.name

    @property
    def params(self) -> dict:
        """The shape parameters, name -> value (an empty dict for a fixed link)."""
        return dict(self._params)

    @property
    def positive(self) -> frozenset:
        """The names of the parameters that must be positive (fitted on the log scale)."""
        return self._family.positive

    def with_params(self, params: dict | None = None, **kwargs) -> Link:
        """The same family at other parameter values (given as a dict, keywords, or both).

        Examples:
            >>> import prefjax
            >>> float(prefjax.scaled_logistic.with_params(scale=2.0)(2.0)) == float(
            ...     prefjax.logistic(1.0))
            True
        """
        new = {**(params or {}), **kwargs}
        unknown = sorted(set(new) - set(self._params))
        if unknown:
            have = ", ".join(repr(k) for k in self._params) or "none"
            raise ValueError(
                f"link {self.name!r} has no parameter {', '.join(map(repr, unknown))}; "
                f"its parameters: {have}"
            )
        merged = {**self._params, **new}
        return Link._of(self._family, _check_params(self.name, merged, self.positive))

    def __call__(self, x) -> Array:
        """g(x), the probability that an option with score difference x wins."""
        return self._family.fn(jnp.asarray(x, dtype=_float_dtype(x)), self._params)

    def inverse(self, p) -> Array:
        """g^-1(p), the score difference implied by probability p (Lemma 3: increasing)."""
        return self._family.inverse(jnp.asarray(p, dtype=_float_dtype(p)), self._params)

    def derivative(self, x) -> Array:
        """g'(x) (Assumption 5)."""
        return self._family.derivative(jnp.asarray(x, dtype=_float_dtype(x)), self._params)

    def log_derivative(self, x) -> Array:
        """log g'(x), finite where g'(x) underflows (score-space computations use it)."""
        return self._family.log_derivative(jnp.asarray(x, dtype=_float_dtype(x)), self._params)

    def log_cdf(self, x) -> Array:
        """log g(x), finite far in the lower tail where the built-ins know how (the fit's
        likelihood uses it)."""
        return self._family.log_cdf(jnp.asarray(x, dtype=_float_dtype(x)), self._params)

    def compose(self, p_ik, p_kj) -> Array:
        """Lemma 1 on arrays of equal dtype: g(g^-1(p_ik) + g^-1(p_kj)); no input checks.

        The checked public entry point is :func:`prefjax.compose`.
        """
        return self._family.compose(p_ik, p_kj, self._params)

    def __repr__(self) -> str:
        extra = "".join(f", {k}={_fmt_param(v)}" for k, v in self._params.items())
        return f"Link({self.name!r}{extra})"


def _fmt_param(value) -> str:
    if isinstance(value, jax.core.Tracer):
        return "<traced>"
    a = np.asarray(value)
    return f"{float(a):.6g}" if a.ndim == 0 else f"array{a.shape}"


def _check_params(name: str, params, positive) -> dict:
    """The parameters as a dict of float arrays; concrete values checked finite (and > 0
    where ``positive`` says)."""
    if not isinstance(params, dict):
        raise TypeError(
            f"params of link {name!r} must be a dict name -> value; got {type(params).__name__}"
        )
    missing = sorted(set(positive) - set(params))
    if missing:
        raise ValueError(f"positive names unknown parameters of link {name!r}: {missing}")
    out = {}
    for key, value in params.items():
        if not isinstance(key, str):
            raise TypeError(f"parameter names of link {name!r} must be strings; got {key!r}")
        if isinstance(value, jax.core.Tracer) or value is None or type(value) is object:
            out[key] = value  # traced (or a placeholder of a JAX transformation)
            continue
        try:
            if isinstance(value, jax.Array) or np.ndim(value) > 0:
                a = jnp.asarray(value, dtype=_float_dtype(value))
            else:  # a Python or NumPy scalar: kept a Python float (JAX's weak type)
                a = float(value)
            host = np.asarray(a, dtype=float)
        except (TypeError, ValueError) as exc:
            raise TypeError(
                f"parameter {key!r} of link {name!r} must be a number; got {value!r}"
            ) from exc
        if not np.all(np.isfinite(host)):
            raise ValueError(f"parameter {key!r} of link {name!r} must be finite; got {value!r}")
        if key in positive and not np.all(host > 0):
            raise ValueError(f"parameter {key!r} of link {name!r} must be > 0; got {value!r}")
        out[key] = a
    return out


def _float_dtype(x):
    """The float dtype to compute in: the input's if it is floating, else JAX's default.
    TypeError for float16 and bfloat16."""
    check_float_dtype("the link's argument", x)
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


@jax.custom_jvp
def log_sigmoid(x):
    """log sigma(x) = min(x, 0) - log1p(exp(-|x|)): exact in both tails, one exp."""
    return jnp.minimum(x, 0.0) - jnp.log1p(jnp.exp(-jnp.abs(x)))


@log_sigmoid.defjvp
def _log_sigmoid_jvp(primals, tangents):
    (x,), (t,) = primals, tangents
    # d/dx log sigma(x) = sigma(-x); its own derivative -sigma'(x) comes from nx.logistic's
    # closed-form JVP, so the fit's Newton Hessian costs no transcendental beyond exp(-|x|).
    return log_sigmoid(x), t * nx.logistic(-x)


logistic = Link(
    fn=nx.logistic,
    inverse=nx.logit,
    derivative=lambda x: jnp.exp(nx.logistic_log_derivative(x)),
    log_derivative=nx.logistic_log_derivative,
    name="logistic",
    compose=_logistic_compose,
    log_cdf=log_sigmoid,
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
    log_cdf=jsp_special.log_ndtr,  # asymptotic series below -20, where Phi underflows
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
    params: dict | None = None,
    positive=(),
) -> Link:
    """Make a :class:`Link` from any elementwise, JAX-traceable callable ``g``.

    Args:
        g: x -> g(x), elementwise on arrays, traceable by JAX; with ``params``,
            (x, **params) -> g(x; params).
        inverse: p -> g^-1(p) (with ``params``: (p, **params) -> g^-1(p; params)). If omitted,
            g is inverted numerically (bracketing plus safeguarded Newton, a few ulps in
            float64; see :func:`numeric_inverse`). Either way the derivative of the inverse
            comes from the inverse-function theorem, (g^-1)'(p) = 1 / g'(g^-1(p)) (and, in
            the parameters, d g^-1 / d theta = -(d g / d theta) / g'), never from
            differentiating through iterations. With ``check``, a given inverse must invert
            g: g(inverse(p)) = p at p = 1e-6, 0.01, 0.1, ..., 1 - 1e-6 (relative to
            min(p, 1 - p), tolerance max(1e-6, 1e4 eps)), else an
            :class:`prefjax.AssumptionError` names the worst point.
        name: a label for reports and plots; defaults to ``g.__name__``.
        check: run :func:`prefjax.check_assumptions` (at the given parameter values) and
            raise :class:`prefjax.AssumptionError` naming the first failed assumption. With
            ``check=False`` the link must still meet the assumptions: the numerics rely on
            symmetry (Assumption 4) to work in the lower tail, where values keep precision.
        derivative: x -> g'(x) (with ``params``: (x, **params)); defaults to forward-mode
            autodiff of ``g``.
        params: shape parameters, a dict name -> scalar (their starting values): the link
            becomes a family, :meth:`Link.with_params` sets other values, and
            :func:`prefjax.fit` can fit them (``fit_link=True``). Pass the parameters as
            arguments, never as closed-over JAX values: differentiating a closure's captured
            tracer through the link's custom derivatives fails inside JAX.
        positive: names of parameters that must be > 0 (fitted on the log scale).

    Returns:
        A :class:`Link`. Passing a :class:`Link` returns it unchanged.

    Examples:
        >>> import jax, prefjax
        >>> mix = prefjax.link(lambda x: 0.5 * jax.nn.sigmoid(x) + 0.5 * jax.nn.sigmoid(3 * x),
        ...                    name="mixture")
        >>> round(float(mix(mix.inverse(0.9))), 12)
        0.9
        >>> steep = prefjax.link(lambda x, s: jax.nn.sigmoid(s * x), params={"s": 1.0},
        ...                      positive=("s",), name="steep")
        >>> d = jax.grad(lambda s: steep.with_params(s=s).inverse(0.9))(2.0)
        >>> round(float(d), 6)  # d/ds logit(0.9) / s = -logit(0.9) / s^2
        -0.549306
    """
    if isinstance(g, Link):
        return g
    if not callable(g):
        raise TypeError(f"g must be a prefjax.Link or a callable x -> g(x); got {g!r}")
    if inverse is not None and not callable(inverse):
        raise TypeError(f"inverse must be a callable p -> g^-1(p) or None; got {inverse!r}")
    if derivative is not None and not callable(derivative):
        raise TypeError(f"derivative must be a callable x -> g'(x) or None; got {derivative!r}")
    if name is None:
        name = getattr(g, "__name__", None) or type(g).__name__
        if name == "<lambda>":
            name = "custom"
    if isinstance(positive, str):
        positive = (positive,)
    positive = tuple(positive)

    if params is None:
        if positive:
            raise ValueError("positive names parameters, but the link has no params")
        g2 = _ignore_params(g)
        inv2 = inverse and _ignore_params(inverse)
        d2 = derivative and _ignore_params(derivative)
    else:
        g2 = _keywords(g)
        inv2 = inverse and _keywords(inverse)
        d2 = derivative and _keywords(derivative)
    params = _check_params(name, {} if params is None else params, positive)

    if d2 is None:

        def d2(x, th):
            # g' is even (Assumption 4); differentiating in the lower tail keeps relative
            # precision where a user's g(x) rounds towards 1 (e.g. sigma' = s (1 - s)).
            return _value_and_derivative(lambda y: g2(y, th), -jnp.abs(x))[1]

    fn = _with_jvp_params(g2, d2)  # g' from ``derivative``; never re-derived per call
    raw_inverse = inv2 if inv2 is not None else (lambda p, th: numeric_inverse(
        lambda x: g2(x, th), p))  # fmt: skip
    result = Link(
        fn=fn,
        inverse=_inverse_with_jvp_params(raw_inverse, g2, d2),
        derivative=d2,
        name=name,
        params=params,
        positive=positive,
    )
    if check:
        report = check_assumptions(result)
        report.raise_if_failed()
        if inverse is not None:
            _check_inverse(result, report)
    return result


def _keywords(f: Callable) -> Callable:
    """(x, params) -> f(x, **params): the user's signature for a link with parameters."""
    return lambda x, th: f(x, **th)


#: Where a user's ``inverse=`` is checked: g(inverse(p)) = p.
INVERSE_CHECK_POINTS = (1e-6, 0.01, 0.1, 0.3, 0.5, 0.7, 0.9, 0.99, 1 - 1e-6)


def _check_inverse(g: Link, report: AssumptionReport) -> None:
    """Raise AssumptionError unless g(g.inverse(p)) = p at INVERSE_CHECK_POINTS."""
    dtype = jnp.result_type(float)
    eps = float(jnp.finfo(dtype).eps)
    p = np.asarray(INVERSE_CHECK_POINTS, dtype=dtype)
    with jax.ensure_compile_time_eval():
        try:
            x = np.asarray(g.inverse(jnp.asarray(p)), dtype=np.float64)
            back = np.asarray(g(jnp.asarray(x, dtype)), dtype=np.float64)
        except Exception as exc:  # an inverse JAX cannot trace, or that raises
            raise TypeError(
                f"the inverse of link {g.name!r} could not be evaluated on a JAX array: {exc}"
            ) from exc
    tol = max(1e-6, 1e4 * eps)
    err = np.abs(back - p) / np.minimum(p, 1 - p)
    err = np.where(np.isfinite(err), err, np.inf)
    k = int(np.argmax(err))
    if err[k] <= tol:
        return
    check = AssumptionCheck(
        0, "inverse inverts g", False,
        f"g(inverse({p[k]:.6g})) = {back[k]:.6g}: inverse({p[k]:.6g}) = {x[k]:.6g} is not "
        f"g^-1({p[k]:.6g}) (relative error {err[k]:.3g} > {tol:.1g}, the worst of "
        f"p = {', '.join(f'{q:g}' for q in INVERSE_CHECK_POINTS)})",
    )  # fmt: skip
    raise AssumptionError(
        f"link {g.name!r}: the given inverse does not invert g: {check.evidence}. Omit "
        "inverse= to invert g numerically, or pass check=False to use it anyway.",
        AssumptionReport(report.link_name, (*report.checks, check)),
    )


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


# --- link families: links with shape parameters ------------------------------------------


def _scaled_logistic_log_derivative(x, th):
    return nx.logistic_log_derivative(x / th["scale"]) - jnp.log(th["scale"])


scaled_logistic = Link(
    fn=lambda x, th: nx.logistic(x / th["scale"]),
    inverse=lambda p, th: th["scale"] * nx.logit(p),
    derivative=lambda x, th: jnp.exp(_scaled_logistic_log_derivative(x, th)),
    log_derivative=_scaled_logistic_log_derivative,
    name="scaled_logistic",
    # Eq. (3) holds at every scale: g(g^-1(a) + g^-1(b)) = sigma(logit a + logit b).
    compose=lambda a, b, th: _logistic_compose(a, b),
    params={"scale": 1.0},
    positive=("scale",),
    log_cdf=lambda x, th: log_sigmoid(x / th["scale"]),
)
"""g(x) = 1 / (1 + exp(-x / scale)): the logistic link of the logistic distribution with
that scale (default 1). A pure scale: with free scores it is not identifiable (the scores
absorb it), so :func:`prefjax.fit` refuses to fit it; its use is to set a link's scale."""


def _t_cdf(x, th):
    return student.cdf(x, th["df"])


def _t_pdf(x, th):
    return jnp.exp(student.log_pdf(x, th["df"]))


student_t = Link(
    fn=_with_jvp_params(_t_cdf, _t_pdf),
    inverse=_inverse_with_jvp_params(
        lambda p, th: numeric_inverse(lambda x: _t_cdf(x, th), p), _t_cdf, _t_pdf
    ),
    derivative=_t_pdf,
    log_derivative=lambda x, th: student.log_pdf(x, th["df"]),
    name="student_t",
    params={"df": 5.0},
    positive=("df",),
)
"""g(x) = F_t(x; df), Student's t distribution function with df degrees of freedom (default
5; unit scale): df = 1 is :data:`cauchit`, df -> infinity tends to :data:`probit`. Accurate
to ~1e-12 (relative, both tails) for 0.3 <= df <= 1000 (see ``_student_t``); differentiable in
x and df."""

LINK_FAMILIES: dict[str, Link] = {
    "scaled_logistic": scaled_logistic,
    "student_t": student_t,
}
"""The built-in link families (links with shape parameters) by name, at their default
parameters; :func:`get_link` reads them beside :data:`LINKS`. They are kept apart from
:data:`LINKS`, which lists the paper's fixed links (the reproduce claims and Figure 1 run
over it)."""


def get_link(g, argname: str = "g") -> Link:
    """The :class:`Link` for a name in :data:`LINKS`, a :class:`Link`, or a bare callable.

    Args:
        g: "logistic", "probit", "cauchit" (the keys of :data:`prefjax.LINKS`),
            "scaled_logistic", "student_t" (:data:`prefjax.LINK_FAMILIES`, at their default
            parameters), a
            :class:`prefjax.Link`, or a callable x -> g(x) (wrapped by :func:`link` and
            checked, once per callable).
        argname: the argument's name in error messages.

    Examples:
        >>> import prefjax
        >>> prefjax.get_link("probit") is prefjax.probit
        True
    """
    if isinstance(g, str):
        known = {**LINKS, **LINK_FAMILIES}
        if g not in known:
            valid = ", ".join(repr(name) for name in known)
            raise ValueError(f"unknown {argname} {g!r}; valid link names are {valid}")
        return known[g]
    return as_link(g, argname)
