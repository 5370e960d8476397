"""The :class:`Link` type: a pairwise link g as a JAX pytree whose leaves are its parameters.

Also the custom-derivative wrappers every link is built from: g with a closed-form g'
(:func:`with_jvp`), g^-1 differentiated by the inverse-function theorem
(:func:`inverse_with_jvp`), and their forms with shape parameters, which differentiate in the
parameters too (implicit function theorem on g(x; theta) = p).
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from ._log_space import log_derivative_from, log_space_compose
from ._validate import check_float_dtype

Array = jax.Array


def with_jvp(f: Callable, df: Callable) -> Callable:
    """``f`` with its derivative given in closed form by ``df`` (forward and reverse mode)."""
    f = jax.custom_jvp(f)

    @f.defjvp
    def _jvp(primals, tangents):
        (x,), (t,) = primals, tangents
        return f(x), t * df(x)

    return f


def inverse_with_jvp(inverse: Callable, derivative: Callable) -> Callable:
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


def _has_leaves(params) -> bool:
    return bool(jax.tree.leaves(params))


def _param_tangent(g: Callable, x, params, t_params):
    """d g(x; theta) / d theta along t_params (forward mode), 0 for a link without params."""
    if not _has_leaves(params):
        return jnp.zeros_like(x)
    return jax.jvp(lambda th: g(x, th), (params,), (t_params,))[1]


def with_jvp_params(g: Callable, dg: Callable) -> Callable:
    """g(x, theta) with d/dx from the closed form ``dg`` and d/d theta by autodiff of g."""
    f = jax.custom_jvp(g)

    @f.defjvp
    def _jvp(primals, tangents):
        (x, th), (tx, tth) = primals, tangents
        return g(x, th), tx * dg(x, th) + _param_tangent(g, x, th, tth)

    return f


def inverse_with_jvp_params(inverse: Callable, g: Callable, derivative: Callable) -> Callable:
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


def ignore_params(f: Callable) -> Callable:
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
                log_derivative = ignore_params(
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
            fn, inverse, derivative = map(ignore_params, (fn, inverse, derivative))
            log_derivative = log_derivative and ignore_params(log_derivative)
            log_cdf = log_cdf and ignore_params(log_cdf)
            if compose is not None:
                compose2 = compose
                compose = lambda a, b, _params: compose2(a, b)  # noqa: E731
            params = {}
        params = check_params(name, params, positive)
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
        return Link._of(self._family, check_params(self.name, merged, self.positive))

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


def check_params(name: str, params, positive) -> dict:
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
