"""Argument checks shared by the public entry points.

Two tiers (see STYLE.md): bad configuration or shapes raise at call time; bad *values*
(probabilities outside (0, 1), NaN) are checked eagerly when the inputs are concrete, naming
the argument, the value and its index. Under ``jax.jit`` the values are tracers: the checks
are skipped and the computations return NaN where an input is invalid.
"""

from __future__ import annotations

import math
import warnings

import jax
import jax.numpy as jnp
import numpy as np


class PrecisionWarning(UserWarning):
    """float32 cannot resolve some inputs (x64 is disabled)."""


_warned_float32 = False


def _x64_enabled() -> bool:
    """Whether JAX computes in float64 now (honours ``with jax.enable_x64(...)`` too)."""
    return jnp.result_type(float) == jnp.float64


def is_traced(*xs) -> bool:
    return any(isinstance(x, jax.core.Tracer) for x in xs)


def as_float_array(name: str, x) -> jax.Array:
    """``x`` as a floating JAX array (float64 when x64 is enabled); TypeError for non-numbers."""
    if isinstance(x, jax.Array | jax.core.Tracer):
        if not jnp.issubdtype(x.dtype, jnp.floating):
            x = x.astype(jnp.result_type(float))
        return x
    try:
        host = np.asarray(x)
    except Exception as exc:
        raise TypeError(f"{name} must be a number or an array of numbers; got {x!r}") from exc
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
    if _warned_float32 or _x64_enabled() or host.dtype != np.float64:
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
            if not _x64_enabled() and float(v) in (0.0, 1.0):
                hint = (
                    " (in float32, since JAX's x64 mode is disabled: probabilities closer "
                    "than ~6e-8 to 1 round to 1; enable x64 or use score space)"
                )
            raise ValueError(f"{name}{_fmt_index(i)} {what}{hint}")


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


def check_positive_number(name: str, value, *, allow_inf: bool = False) -> float:
    """A Python float > 0, or ValueError/TypeError naming the argument."""
    if isinstance(value, bool) or not isinstance(value, int | float | np.floating | np.integer):
        try:
            value = float(np.asarray(value).item())
        except Exception:
            raise TypeError(f"{name} must be a positive number; got {value!r}") from None
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


def _first_index(mask: np.ndarray):
    flat = int(np.argmax(mask.ravel()))
    return np.unravel_index(flat, mask.shape) if mask.ndim else ()


def _fmt_index(i) -> str:
    if i == ():
        return ""
    return "[" + ", ".join(str(int(k)) for k in i) + "]"
