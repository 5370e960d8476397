"""Argument checks shared by the public entry points (rankings of the K-tuple models too).

Two tiers (see STYLE.md): bad configuration, shapes and dtypes raise at call time; bad
*values* (probabilities outside (0, 1), NaN, subnormals) are checked eagerly when the inputs
are concrete, naming the argument, the value and its index. Under ``jax.jit`` the values are
tracers: the checks are skipped and the computations return NaN where an input is invalid,
unless the entry point is asked for ``checked=True``, which stages the same checks as
:func:`jax.experimental.checkify.check` (see :func:`check_in_jit`).

Precision: :func:`require_x64` (or the :func:`needs_x64` decorator) is the one check of the
entry points that compute in float64 only (areas, integrals, root finding, the assumption
checks, the K-tuple numerics, fitting); it raises at once, saying how to enable x64.
"""

from __future__ import annotations

import functools
import math
import operator
import warnings

import jax
import jax.numpy as jnp
import numpy as np


class PrecisionWarning(UserWarning):
    """float32 cannot resolve some inputs (x64 is disabled)."""


_warned_float32 = False


def x64_enabled() -> bool:
    """Whether JAX computes in float64 now (honours ``with jax.enable_x64(...)`` too)."""
    return jnp.result_type(float) == jnp.float64


def require_x64(where: str) -> None:
    """Raise a RuntimeError saying how to enable x64 if JAX computes in float32 now.

    ``where`` names the entry point (e.g. ``"prefjax.region_area"``). Entry points whose
    algorithms need float64 (tolerances near 1e-12, tails out to 1e-300, root finding) call it
    first, so that float32 fails at once instead of hanging or returning noise.
    """
    if not x64_enabled():
        raise RuntimeError(
            f"{where} computes in float64, and JAX's x64 mode is disabled (it would silently "
            'compute in float32). Enable it first: jax.config.update("jax_enable_x64", True), '
            "or run inside `with jax.enable_x64(True):`."
        )


def needs_x64(where: str):
    """Decorator: call :func:`require_x64` (``where``) before the function."""

    def decorate(fn):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            require_x64(where)
            return fn(*args, **kwargs)

        return wrapper

    return decorate


def check_float_dtype(name: str, x) -> None:
    """TypeError for half-precision floats (float16, bfloat16): too coarse for the links'
    tails, and JAX's autodiff of the mixed-precision kernels fails on them."""
    dtype = getattr(x, "dtype", None)
    if dtype is None or not jnp.issubdtype(dtype, jnp.floating):
        return
    if jnp.finfo(dtype).bits < 32:
        raise TypeError(
            f"{name} has dtype {jnp.dtype(dtype).name}; prefjax computes in float32 or float64 "
            "(half precision cannot resolve probabilities beyond ~1e-3 of 0 or 1). Convert "
            "it first with .astype(jnp.float32) (or jnp.float64, with x64 enabled)."
        )


def is_traced(*xs) -> bool:
    return any(isinstance(x, jax.core.Tracer) for x in xs)


def as_float_array(name: str, x) -> jax.Array:
    """``x`` as a floating JAX array (float64 when x64 is enabled); TypeError for non-numbers
    and for half-precision floats (:func:`check_float_dtype`)."""
    check_float_dtype(name, x)
    if isinstance(x, jax.Array | jax.core.Tracer):
        if not jnp.issubdtype(x.dtype, jnp.floating):
            x = x.astype(jnp.result_type(float))
        return x
    try:
        host = np.asarray(x)
    except Exception as exc:
        raise TypeError(
            f"{name} must be a number or an array of numbers; got {x!r}{tensor_hint(x)}"
        ) from exc
    if host.dtype == object or not (
        np.issubdtype(host.dtype, np.floating)
        or np.issubdtype(host.dtype, np.integer)
        or host.dtype == bool
    ):
        raise TypeError(f"{name} must be a number or an array of numbers; got {x!r}")
    _warn_if_float32_loses(name, host)
    return jnp.asarray(host, dtype=jnp.result_type(float))


def _warn_if_float32_loses(name: str, host: np.ndarray) -> None:
    """Tell the user once when float32 (x64 disabled) cannot resolve their probabilities."""
    global _warned_float32
    if _warned_float32 or x64_enabled() or host.dtype != np.float64:
        return
    p64 = host
    p32 = p64.astype(np.float32).astype(np.float64)
    inside = (p64 > 0) & (p64 < 1)
    q64 = np.minimum(p64, 1 - p64)
    q32 = np.minimum(p32, 1 - p32)
    with np.errstate(divide="ignore", invalid="ignore"):
        lost = inside & ((q32 <= 0) | (np.abs(q32 - q64) > 1e-3 * q64))
    if np.any(lost):
        i = _first_index(lost)
        _warned_float32 = True
        warnings.warn(
            f"{name}{_fmt_index(i)} = {p64[i]!r} cannot be resolved in float32 (it becomes "
            f"{p32[i]!r}); JAX's x64 mode is disabled. Enable it with "
            "jax.config.update('jax_enable_x64', True), or pass scores (g^-1 values) to the "
            "score-space functions such as prefjax.score_sensitivity. (Shown once.)",
            PrecisionWarning,
            stacklevel=4,
        )


def broadcast_shapes(**arrays) -> tuple[int, ...]:
    """The common shape, or a ValueError naming the arguments and their shapes."""
    shapes = {k: tuple(jnp.shape(v)) for k, v in arrays.items()}
    try:
        return jnp.broadcast_shapes(*shapes.values())
    except ValueError:
        desc = " and ".join(f"{k} with shape {s}" for k, s in shapes.items())
        raise ValueError(f"{desc} do not broadcast together") from None


def in_open_unit_interval(p) -> jax.Array:
    """0 < p < 1, False for NaN."""
    return (p > 0) & (p < 1)


def raise_for_bad_probabilities(**arrays) -> None:
    """Raise a ValueError naming the first argument with a value outside (0, 1), if any."""
    for name, p in arrays.items():
        host = np.asarray(p)
        bad = ~((host > 0) & (host < 1))
        if np.any(bad):
            i = _first_index(bad)
            v = host[i]
            what = (
                "is NaN"
                if math.isnan(float(v))
                else f"= {float(v)!r} is outside the open interval (0, 1)"
            )
            hint = ""
            if not x64_enabled() and float(v) in (0.0, 1.0):
                hint = (
                    " (in float32, since JAX's x64 mode is disabled: probabilities closer "
                    "than ~6e-8 to 1 round to 1; enable x64 or use score space)"
                )
            raise ValueError(f"{name}{_fmt_index(i)} {what}{hint}")
    raise_for_subnormal(**arrays)


def raise_for_subnormal(**arrays) -> None:
    """Raise a ValueError naming the first subnormal value (0 < |p| < the dtype's smallest
    normal number), if any: XLA flushes subnormals to zero, so a computation on one would
    silently give NaN or 0 (concrete inputs only)."""
    for name, p in arrays.items():
        if is_traced(p):
            continue
        host = np.asarray(p)
        if not np.issubdtype(host.dtype, np.floating):
            continue
        tiny = np.finfo(host.dtype).tiny
        bad = (host != 0) & (np.abs(host) < tiny)
        if np.any(bad):
            i = _first_index(bad)
            hint = (
                "Enable x64 (float64 holds probabilities down to 2.2e-308) or pass"
                if host.dtype == np.float32
                else "Pass"
            )
            raise ValueError(
                f"{name}{_fmt_index(i)} = {float(host[i])!r} is subnormal in {host.dtype} "
                f"(below its smallest normal number, {float(tiny)!r}); XLA flushes subnormals "
                f"to zero, so it cannot be computed with. {hint} its score "
                "g^-1(p) to prefjax.score_sensitivity."
            )


def check_in_jit(**arrays) -> None:
    """Stage the checks of :func:`raise_for_bad_probabilities` as
    :func:`jax.experimental.checkify.check` (for ``checked=True`` under ``jax.jit``).

    The function that calls it must be run through :func:`jax.experimental.checkify.checkify`
    (which then reports the first failed check with the value and its flat index).
    """
    from jax.experimental import checkify  # only on request: not loaded by ``import prefjax``

    for name, p in arrays.items():
        p = jnp.asarray(p)
        tiny = jnp.finfo(p.dtype).tiny
        bad = ~in_open_unit_interval(p) | (p < tiny)  # p < tiny: a subnormal (or 0)
        i = jnp.argmax(bad.ravel())
        checkify.check(
            ~jnp.any(bad),
            f"{name} = {{value}} (flat index {{index}}) is outside the open interval (0, 1), "
            "NaN, or subnormal",
            value=p.ravel()[i],
            index=i,
        )


def check_finite(**arrays) -> None:
    """Raise a ValueError naming the first non-finite value, if any (concrete inputs only)."""
    for name, x in arrays.items():
        if is_traced(x):
            continue
        host = np.asarray(x)
        bad = ~np.isfinite(host)
        if np.any(bad):
            i = _first_index(bad)
            raise ValueError(f"{name}{_fmt_index(i)} = {float(host[i])!r} is not finite")


def tensor_hint(x) -> str:
    """A hint for array-likes NumPy cannot read: a tensor that requires grad (PyTorch's, found
    by duck typing: prefjax never imports torch) must be detached first."""
    if getattr(x, "requires_grad", False) and callable(getattr(x, "detach", None)):
        return " (a tensor that requires grad: call .detach() first, e.g. x.detach().cpu().numpy())"
    return ""


def refuse_bool_or_str(name: str, x) -> None:
    """TypeError for a boolean or string (or an array of them) where a number is expected:
    NumPy would read ``True`` as 1 and JAX would fail with a message that names no argument."""
    dtype = getattr(x, "dtype", None)
    if isinstance(x, bool | np.bool_ | str | bytes) or (
        dtype is not None and np.dtype(dtype).kind in "bUSO"
    ):
        raise TypeError(f"{name} must be a number or an array of numbers; got {x!r}")


def check_positive_number(name: str, value, *, allow_inf: bool = False) -> float:
    """A Python float > 0, or ValueError/TypeError naming the argument.

    Booleans and strings are refused (``True`` is not the threshold 1, ``"10"`` not 10).
    """
    if isinstance(value, bool | np.bool_ | str | bytes):
        raise TypeError(f"{name} must be a positive number, not {type(value).__name__} {value!r}")
    if not isinstance(value, int | float | np.floating | np.integer):
        try:
            host = np.asarray(value)
            if host.size != 1 or not (
                np.issubdtype(host.dtype, np.floating) or np.issubdtype(host.dtype, np.integer)
            ):
                raise TypeError
            value = float(host.item())
        except Exception:
            raise TypeError(
                f"{name} must be a positive number; got {value!r}{tensor_hint(value)}"
            ) from None
    value = float(value)
    if math.isnan(value):
        raise ValueError(f"{name} must be a positive number; got NaN")
    if value <= 0 or (math.isinf(value) and not allow_inf):
        raise ValueError(f"{name} must be a finite number > 0; got {value!r}")
    return value


def check_choice(name: str, value, choices) -> str:
    if value not in choices:
        valid = ", ".join(repr(c) for c in choices)
        raise ValueError(f"unknown {name} {value!r}; valid values are {valid}")
    return value


def check_n(n, method: str, minimum: int, maximum: int | None = None) -> int:
    """A grid size or sample count of an area method: an int in [``minimum``, ``maximum``]
    (the maximum keeps one call within minutes, not hours)."""
    if isinstance(n, bool | np.bool_) or not isinstance(n, int | np.integer):
        raise TypeError(f"n must be an int, not {type(n).__name__} {n!r}")
    if n < minimum:
        raise ValueError(f"n = {n} is too small for method {method!r}; use n >= {minimum}")
    if maximum is not None and n > maximum:
        raise ValueError(
            f"n = {n} is too large for method {method!r} (it would run for hours); use "
            f"n <= {maximum}"
        )
    return int(n)


# --- rankings of the K-tuple models ------------------------------------------------------


def as_index(name: str, x) -> int:
    """A concrete Python int (a position, a size: it fixes the program's shape)."""
    if isinstance(x, jax.core.Tracer):
        raise TypeError(
            f"{name} must be a concrete int (it fixes the program's shape); got a tracer"
        )
    if isinstance(x, bool | np.bool_):
        raise TypeError(f"{name} must be an int; got {x!r}")
    try:
        return operator.index(x)
    except TypeError:
        if isinstance(x, np.ndarray | jax.Array) and np.ndim(x) == 0:
            host = np.asarray(x)
            if np.issubdtype(host.dtype, np.integer):
                return int(host)
        raise TypeError(f"{name} must be an int; got {x!r}") from None


def check_ranking(name: str, omega, n: int | None = None, min_k: int = 2) -> tuple[int, ...]:
    """A tuple of distinct ints in [0, n); K >= min_k."""
    if isinstance(omega, jax.core.Tracer):
        raise TypeError(
            f"{name} must be a concrete sequence of option indices (it is static under jit); "
            "got a tracer"
        )
    if isinstance(omega, np.ndarray | jax.Array):
        if np.ndim(omega) != 1:
            raise ValueError(f"{name} must be one-dimensional; got shape {np.shape(omega)}")
        omega = np.asarray(omega).tolist()
    try:
        items = list(omega)
    except TypeError:
        raise TypeError(f"{name} must be a sequence of option indices; got {omega!r}") from None
    out = tuple(as_index(f"{name}[{i}]", o) for i, o in enumerate(items))
    if len(out) < min_k:
        raise ValueError(f"{name} must rank at least {min_k} options; got K = {len(out)}: {out}")
    seen: dict[int, int] = {}
    for i, o in enumerate(out):
        if o < 0 or (n is not None and o >= n):
            where = f"0 <= index < {n}" if n is not None else "index >= 0"
            raise ValueError(f"{name}[{i}] = {o} is out of range ({where} for N = {n} options)")
        if o in seen:
            raise ValueError(
                f"{name} repeats option {o} (positions {seen[o]} and {i}); a ranking lists "
                "distinct options"
            )
        seen[o] = i
    return out


def check_scores(scores, min_n: int = 2) -> jax.Array:
    """An array (..., N) of finite option scores, N >= min_n."""
    scores = as_float_array("scores", scores)
    if scores.ndim < 1:
        raise ValueError("scores must be an array (..., N) of option scores; got a scalar")
    if scores.shape[-1] < min_n:
        raise ValueError(f"scores must have at least {min_n} options; got N = {scores.shape[-1]}")
    check_finite(scores=scores)
    return scores


def check_positions(u, v, k: int) -> tuple[int, int]:
    """Two positions 0 <= u < v < k of a ranking."""
    u, v = as_index("u", u), as_index("v", v)
    if not u < v:
        raise ValueError(f"positions must satisfy u < v; got u = {u}, v = {v}")
    if u < 0 or v >= k:
        raise ValueError(f"positions must satisfy 0 <= u < v < K = {k}; got u = {u}, v = {v}")
    return u, v


def check_rest(rest, omega: tuple[int, ...], u: int, v: int, n: int | None = None):
    """Lemma 5's omega'_uv: K - 2 distinct options other than omega[u] and omega[v]."""
    rest = check_ranking("rest", rest, n, min_k=0)
    if len(rest) != len(omega) - 2:
        raise ValueError(
            f"rest must list K - 2 = {len(omega) - 2} options; got {len(rest)}: {rest}"
        )
    a, b = omega[u], omega[v]
    if a in rest or b in rest:
        raise ValueError(f"rest must not contain omega[u] = {a} or omega[v] = {b}; got {rest}")
    return rest


def precision_hint(dtype) -> str:
    """What to do when ``dtype`` cannot represent a result: enable x64, or use score space."""
    if np.dtype(dtype) == np.float32:
        return (
            'Enable x64 (jax.config.update("jax_enable_x64", True)) or pass scores '
            "g^-1(p) to prefjax.score_sensitivity."
        )
    return "Pass scores g^-1(p) to prefjax.score_sensitivity."


def first_index(mask) -> tuple[int, ...]:
    """The index of the first True entry of a boolean host array (``()`` for a scalar)."""
    return _first_index(np.asarray(mask))


def fmt_index(i) -> str:
    """``[i, j]`` for an index tuple, ``""`` for a scalar's."""
    return _fmt_index(i)


def _first_index(mask: np.ndarray):
    flat = int(np.argmax(mask.ravel()))
    return np.unravel_index(flat, mask.shape) if mask.ndim else ()


def _fmt_index(i) -> str:
    if i == ():
        return ""
    return "[" + ", ".join(str(int(k)) for k in i) + "]"
