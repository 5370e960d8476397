"""Pairwise links g: the built-ins, the families, :func:`link` for any JAX-traceable callable,
and the one mapping from name to link (:data:`LINKS`, :data:`LINK_FAMILIES`, :func:`get_link`).

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
from ._link import (
    Link,
    check_params,
    ignore_params,
    inverse_with_jvp,
    inverse_with_jvp_params,
    with_jvp,
    with_jvp_params,
)
from ._numeric_inverse import numeric_inverse, value_and_derivative

Array = jax.Array


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
    fn=with_jvp(nx.normal_cdf, nx.normal_pdf),
    inverse=inverse_with_jvp(jsp_special.ndtri, nx.normal_pdf),
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
    fn=with_jvp(nx.cauchy_cdf, _cauchy_pdf),
    inverse=inverse_with_jvp(nx.cauchy_quantile, _cauchy_pdf),
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
        g2 = ignore_params(g)
        inv2 = inverse and ignore_params(inverse)
        d2 = derivative and ignore_params(derivative)
    else:
        g2 = _keywords(g)
        inv2 = inverse and _keywords(inverse)
        d2 = derivative and _keywords(derivative)
    params = check_params(name, {} if params is None else params, positive)

    if d2 is None:

        def d2(x, th):
            # g' is even (Assumption 4); differentiating in the lower tail keeps relative
            # precision where a user's g(x) rounds towards 1 (e.g. sigma' = s (1 - s)).
            return value_and_derivative(lambda y: g2(y, th), -jnp.abs(x))[1]

    fn = with_jvp_params(g2, d2)  # g' from ``derivative``; never re-derived per call
    raw_inverse = inv2 if inv2 is not None else (lambda p, th: numeric_inverse(
        lambda x: g2(x, th), p))  # fmt: skip
    result = Link(
        fn=fn,
        inverse=inverse_with_jvp_params(raw_inverse, g2, d2),
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
    fn=with_jvp_params(_t_cdf, _t_pdf),
    inverse=inverse_with_jvp_params(
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
