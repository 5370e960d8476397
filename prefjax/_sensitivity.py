"""Lemma 1 and its derivatives: p_ij implied by p_ik and p_kj, in probability and score space."""

from __future__ import annotations

import warnings
from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from . import _validate as v
from ._link import Link
from ._links import as_link

Array = jax.Array


class Sensitivity(NamedTuple):
    """The implied preference and its partial derivatives (Lemma 1, Eq. (2)).

    Attributes:
        p_ij: g(g^-1(p_ik) + g^-1(p_kj)).
        d_ik: dp_ij / dp_ik = g'(g^-1(p_ik) + g^-1(p_kj)) / g'(g^-1(p_ik)) (> 0).
        d_kj: dp_ij / dp_kj = g'(g^-1(p_ik) + g^-1(p_kj)) / g'(g^-1(p_kj)) (> 0).
    """

    p_ij: Array
    d_ik: Array
    d_kj: Array


class ScoreSensitivity(NamedTuple):
    """Lemma 1 in score space, for probabilities too close to 0 or 1 to represent.

    Attributes:
        x_ij: the implied score difference x_ik + x_kj (so that p_ij = g(x_ij)).
        p_ij: g(x_ij) (rounds to 0 or 1 where float64 cannot hold it; ``x_ij`` does not).
        log_d_ik: log(dp_ij / dp_ik) = log g'(x_ij) - log g'(x_ik).
        log_d_kj: log(dp_ij / dp_kj) = log g'(x_ij) - log g'(x_kj).
    """

    x_ij: Array
    p_ij: Array
    log_d_ik: Array
    log_d_kj: Array


@partial(jax.jit, static_argnums=0)
def _compose_kernel(g: Link, p_ik, p_kj):
    p_ij = g.compose(p_ik, p_kj)
    ok = v.in_open_unit_interval(p_ik) & v.in_open_unit_interval(p_kj)
    return jnp.where(ok, p_ij, jnp.nan), jnp.all(ok)


@partial(jax.jit, static_argnums=0)
def sensitivity_kernel(g: Link, p_ik, p_kj):
    p_ik, p_kj = jnp.broadcast_arrays(p_ik, p_kj)
    # Forward-mode autodiff of Lemma 1: linearize once (the primal, e.g. a numeric inverse,
    # is computed once), then push the two unit tangents through the linear map. The chain
    # rule's factors come from the links' JVPs: dx/dp = 1 / g'(x) for the inverse (the
    # inverse-function theorem) and g'(x_ik + x_kj) for g; their products are Eq. (2).
    p_ij, jvp = jax.linearize(g.compose, p_ik, p_kj)
    one, zero = jnp.ones_like(p_ik), jnp.zeros_like(p_ik)
    d_ik, d_kj = jvp(one, zero), jvp(zero, one)
    ok = v.in_open_unit_interval(p_ik) & v.in_open_unit_interval(p_kj)
    nan = jnp.nan
    out = Sensitivity(jnp.where(ok, p_ij, nan), jnp.where(ok, d_ik, nan), jnp.where(ok, d_kj, nan))
    return out, jnp.all(ok)


@partial(jax.jit, static_argnums=(0, 3))
def m_sensitive_kernel(g: Link, p_ik, p_kj, wrt_ik: bool, M):
    """|dp_ij/dp_ik| > M (or dp_ij/dp_kj), jitted and unchecked: the sampling estimators'
    indicator of Omega_M. NaN (an invalid input) compares False."""
    s, _ = sensitivity_kernel(g, p_ik, p_kj)
    d = s.d_ik if wrt_ik else s.d_kj
    return jnp.abs(d) > M


def _prepare(g, p_ik, p_kj):
    g = as_link(g)
    p_ik = v.as_float_array("p_ik", p_ik)
    p_kj = v.as_float_array("p_kj", p_kj)
    v.broadcast_shapes(p_ik=p_ik, p_kj=p_kj)
    return g, p_ik, p_kj


def compose(g, p_ik, p_kj, *, checked: bool = False) -> Array:
    """The preference p_ij implied by p_ik and p_kj under the pairwise model g (Lemma 1, Eq. (1)).

    p_ij = g(g^-1(p_ik) + g^-1(p_kj))

    Args:
        g: a :class:`prefjax.Link` or a bare callable (wrapped by :func:`prefjax.link`).
        p_ik, p_kj: probabilities in the open interval (0, 1); arrays broadcast. float32
            or float64 (half precision is refused).
        checked: under ``jax.jit``, stage the value checks as
            :func:`jax.experimental.checkify.check` (run the jitted function through
            :func:`jax.experimental.checkify.checkify`); without it invalid entries give NaN
            there. Concrete inputs are always checked.

    Returns:
        p_ij, with the broadcast shape.

    Raises:
        ValueError: (concrete inputs) a probability outside (0, 1), NaN or subnormal, naming
            the argument, value and index; a p_ij the dtype cannot compute (float32 far in a
            tail); shapes that do not broadcast. Under ``jax.jit`` invalid entries give NaN
            instead (two tiers), unless ``checked=True``.
        TypeError: float16 or bfloat16 inputs.

    Examples:
        >>> import prefjax
        >>> round(float(prefjax.compose(prefjax.logistic, 0.9801, 0.02)), 4)  # Example 1
        0.5013
    """
    g, p_ik, p_kj = _prepare(g, p_ik, p_kj)
    p_ij, ok = _compose_kernel(g, p_ik, p_kj)
    if not _checked_concrete(ok, checked, p_ik, p_kj, p_ij):
        return p_ij
    if not bool(_all_finite(p_ij)):
        v.raise_for_subnormal(p_ik=p_ik, p_kj=p_kj)
        _raise_unrepresentable("compose", g, p_ik, p_kj, ~np.isfinite(np.asarray(p_ij)))
    return p_ij


def _checked_concrete(ok, checked: bool, p_ik, p_kj, *results) -> bool:
    """The two tiers of checks: under jit (``ok`` traced) NaN marks invalid inputs, or, with
    ``checked``, checkify checks are staged; eagerly, invalid inputs raise. True when the
    results are concrete values for the caller to inspect further (False under jit, or under
    grad/jvp, where the inputs were checked but the results are tracers)."""
    if v.is_traced(ok):
        if checked:
            v.check_in_jit(p_ik=p_ik, p_kj=p_kj)
        return False
    if not bool(ok):
        v.raise_for_bad_probabilities(p_ik=p_ik, p_kj=p_kj)
    return not v.is_traced(*results)


@jax.jit
def _all_finite(p_ij):
    return jnp.all(jnp.isfinite(p_ij))


@jax.jit
def _all_represented(out: Sensitivity):
    """Every entry finite and both derivatives > 0 (as Eq. (2) is): one reduction on the
    device, so the eager tier copies nothing to the host when all is well."""
    p, d_ik, d_kj = out
    return jnp.all(
        jnp.isfinite(p) & jnp.isfinite(d_ik) & jnp.isfinite(d_kj) & (d_ik > 0) & (d_kj > 0)
    )


def _raise_unrepresentable(where: str, g: Link, p_ik, p_kj, mask) -> None:
    a, b = (np.broadcast_to(np.asarray(x), mask.shape) for x in (p_ik, p_kj))
    i = v.first_index(mask)
    idx = v.fmt_index(i)
    raise ValueError(
        f"prefjax.{where} with the {g.name} link cannot be computed in {a.dtype} at "
        f"p_ik{idx} = {float(a[i])!r}, p_kj{idx} = {float(b[i])!r} (the link's inverse or "
        f"derivative leaves the range of {a.dtype} there). {v.precision_hint(a.dtype)}"
    )


def _resolve(g: Link, p_ik, p_kj, out: Sensitivity) -> Sensitivity:
    """The eager tier's last step: entries where Eq. (2)'s factors under- or overflowed in the
    direct kernel (0 * inf = NaN: cauchit at p = 1e-20 in float32, g'(x_ik) ~ 1e-40) are
    recomputed in score space, the ratio g'(x_ij) / g'(x_ik) as exp(log g'(x_ij) -
    log g'(x_ik)), the exponential taken in float64 on the host and rounded once to the dtype
    (subnormal results kept). A derivative whose true value lies outside the dtype's range
    comes back as 0 or inf with a PrecisionWarning; an entry still undefined raises."""
    if bool(_all_represented(out)):
        return out
    p, d_ik, d_kj = (np.asarray(a) for a in out)
    good = np.isfinite(p) & np.isfinite(d_ik) & np.isfinite(d_kj) & (d_ik > 0) & (d_kj > 0)
    if np.all(good):
        return out
    v.raise_for_subnormal(p_ik=p_ik, p_kj=p_kj)
    a, b = jnp.broadcast_arrays(p_ik, p_kj)
    s = _score_kernel(g, g.inverse(a), g.inverse(b))
    p2, l_ik, l_kj = (np.asarray(x) for x in (s.p_ij, s.log_d_ik, s.log_d_kj))
    still = ~good & ~(np.isfinite(p2) & np.isfinite(l_ik) & np.isfinite(l_kj))
    if np.any(still):
        _raise_unrepresentable("sensitivity", g, a, b, still)
    dtype = d_ik.dtype
    with np.errstate(over="ignore", under="ignore"):
        e_ik = np.exp(l_ik.astype(np.float64)).astype(dtype)
        e_kj = np.exp(l_kj.astype(np.float64)).astype(dtype)
    lost = ~good & ((e_ik == 0) | (e_kj == 0) | np.isinf(e_ik) | np.isinf(e_kj))
    if np.any(lost):
        i = v.first_index(lost)
        warnings.warn(
            f"prefjax.sensitivity: at p_ik{v.fmt_index(i)} a derivative lies outside the range "
            f"of {dtype} (log d_ik = {float(l_ik[i]):.6g}, log d_kj = {float(l_kj[i]):.6g}) and "
            f"is returned as 0 or inf. {v.precision_hint(dtype)}",
            v.PrecisionWarning,
            stacklevel=3,
        )
    return Sensitivity(
        jnp.asarray(np.where(np.isfinite(p), p, p2)),
        jnp.asarray(np.where(good, d_ik, e_ik)),
        jnp.asarray(np.where(good, d_kj, e_kj)),
    )


def sensitivity(g, p_ik, p_kj, *, checked: bool = False) -> Sensitivity:
    """p_ij and its partial derivatives w.r.t. p_ik and p_kj, by autodiff (Lemma 1, Eq. (2)).

    dp_ij/dp_ik = g'(g^-1(p_ik) + g^-1(p_kj)) / g'(g^-1(p_ik))   (Eq. (2): A1 * A2)

    and symmetrically for p_kj. For the logistic link these equal the closed form Eq. (4).
    Broadcasts over arrays and works inside ``jax.jit`` / ``jax.vmap``.

    Precision: in float64, inputs as close as 1e-300 to 0 and 1e-16 to 1 are exact inputs and
    the results keep nearly full relative precision: the partials are quotients of g' where
    both g' are normal floats and exp(log g'(x_ij) - log g'(x)) where one leaves the normal
    range (heavy tails: cauchit's g' at p = 1e-160 is 3e-321), which costs eps |log g'|
    (~1e-13 relative); so are their derivatives (``jax.hessian`` of ``g.compose``). A
    partial below ~1e-300 may come out as 0 (XLA's CPU flushes subnormals), and a custom
    link is as accurate as its g (JAX's ``betainc``: ~3e-14 relative far in the tails). In float32 (JAX's default) 1 - 1e-8
    already rounds to 1; you are warned once. For probabilities beyond what float64 holds,
    use :func:`score_sensitivity`. Where a factor of Eq. (2) under- or overflows the dtype
    (cauchit at p = 1e-20 in float32), the entry is recomputed from log-derivatives; a
    derivative outside the dtype's range comes back as 0 or inf with a
    :class:`prefjax.PrecisionWarning`. Subnormal inputs (5e-324) are refused: XLA flushes
    them to zero.

    Two tiers: concrete inputs are checked (and repaired as above); under ``jax.jit`` the
    values are tracers, so invalid entries give NaN, unless ``checked=True``, which stages
    the checks as :func:`jax.experimental.checkify.check`::

        f = checkify.checkify(jax.jit(lambda p: prefjax.sensitivity(g, p, 0.3, checked=True)))
        err, s = f(1.5); err.throw()   # raises: p_ik = 1.5 ... outside (0, 1)

    Args:
        g: a :class:`prefjax.Link` or a bare callable.
        p_ik, p_kj: probabilities in (0, 1); arrays broadcast. float32 or float64.
        checked: under ``jax.jit``, stage the value checks for
            :func:`jax.experimental.checkify.checkify` (see above).

    Returns:
        ``Sensitivity(p_ij, d_ik, d_kj)``.

    Raises:
        ValueError: as :func:`compose`. Under ``jax.jit``: NaN where an input is invalid,
            unless ``checked=True``.
        TypeError: float16 or bfloat16 inputs.

    Examples:
        >>> import prefjax
        >>> s = prefjax.sensitivity(prefjax.logistic, 0.99, 0.02)  # Example 1's point
        >>> bool(s.d_ik > 20)   # it lies in Omega_20(p_ij, p_ik)
        True
    """
    g, p_ik, p_kj = _prepare(g, p_ik, p_kj)
    out, ok = sensitivity_kernel(g, p_ik, p_kj)
    if not _checked_concrete(ok, checked, p_ik, p_kj, *out):
        return out
    return _resolve(g, p_ik, p_kj, out)


@partial(jax.jit, static_argnums=0)
def _score_kernel(g: Link, x_ik, x_kj):
    x_ik, x_kj = jnp.broadcast_arrays(x_ik, x_kj)
    x_ij = x_ik + x_kj
    log_dg = g.log_derivative(x_ij)
    return ScoreSensitivity(
        x_ij, g(x_ij), log_dg - g.log_derivative(x_ik), log_dg - g.log_derivative(x_kj)
    )


def score_sensitivity(g, x_ik, x_kj) -> ScoreSensitivity:
    """Lemma 1 with inputs given as scores x = g^-1(p), for probabilities float64 cannot hold.

    With x_ik = g^-1(p_ik) and x_kj = g^-1(p_kj), p_ij = g(x_ik + x_kj) and

    log(dp_ij/dp_ik) = log g'(x_ik + x_kj) - log g'(x_ik)

    computed from ``g.log_derivative``, so it stays finite where g' underflows (logistic:
    x = 800, i.e. p = 1 - 1e-348). A custom link's log g' is log(g'), or log g's central
    difference where g' underflows; where g itself underflows (a mixture of logistics at
    |x| > ~2100) no finite value exists and a ValueError names the argument.

    Args:
        g: a :class:`prefjax.Link` or a bare callable.
        x_ik, x_kj: finite score differences; arrays broadcast.

    Returns:
        ``ScoreSensitivity(x_ij, p_ij, log_d_ik, log_d_kj)``.

    Raises:
        ValueError: (concrete inputs) a score that is not finite, or a log-derivative that
            the link cannot resolve there (see above), naming the argument.

    Examples:
        >>> import prefjax
        >>> s = prefjax.score_sensitivity(prefjax.logistic, 800.0, -790.0)
        >>> float(s.x_ij), round(float(s.log_d_ik), 6)   # d_ik = e^790 * sigma'(10) / ...
        (10.0, 789.999909)
    """
    g = as_link(g)
    x_ik = v.as_float_array("x_ik", x_ik)
    x_kj = v.as_float_array("x_kj", x_kj)
    v.broadcast_shapes(x_ik=x_ik, x_kj=x_kj)
    v.check_finite(x_ik=x_ik, x_kj=x_kj)
    out = _score_kernel(g, x_ik, x_kj)
    if not v.is_traced(out.log_d_ik):
        for name, x, log_d in (("x_kj", x_kj, out.log_d_ik), ("x_ik", x_ik, out.log_d_kj)):
            if not bool(jnp.all(jnp.isfinite(log_d))):
                # A custom link whose g itself underflows there (its log g' is then -inf):
                # no finite number can be given, so say where instead of returning -inf/NaN.
                raise ValueError(
                    f"link {g.name!r} cannot resolve log g' at these scores ({name} = "
                    f"{x!r} gives log(dp_ij/dp_..) = {log_d!r}): g(-|x|) underflows float64 "
                    "there; pass a Link with a log_derivative in closed form"
                )
    return out
