"""JAX's persistent compilation cache, switched on by ``import prefjax`` (fast first calls).

A first ``region_area`` compiles a few dozen XLA programs (seconds); with the cache a fresh
process reads them from disk instead. ``import prefjax`` calls :func:`enable_compilation_cache`,
which does nothing when

* the environment variable ``PREFJAX_NO_COMPILATION_CACHE`` is set (to anything but ``""`` or
  ``"0"``), or
* the user has configured JAX's cache already (``jax_compilation_cache_dir``, e.g. through
  ``JAX_COMPILATION_CACHE_DIR``), or disabled it (``jax_enable_compilation_cache=False``).

Otherwise the cache lives in ``$XDG_CACHE_HOME/prefjax/jax`` (``~/.cache/prefjax/jax`` when
``XDG_CACHE_HOME`` is unset), and programs that take at least :data:`MIN_COMPILE_TIME_S` to
compile are written to it (JAX's default threshold, 1 s, would skip almost all of prefjax's
programs), unless the user set ``jax_persistent_cache_min_compile_time_secs`` themselves. The
setting is JAX's, for the whole process: the user's own programs are cached there too. The
cache is trusted code: JAX's warning applies, do not point it at a directory others can
write. Imports only the standard library and jax.
"""

from __future__ import annotations

import os
from pathlib import Path

import jax

ENV_OFF = "PREFJAX_NO_COMPILATION_CACHE"
MIN_COMPILE_TIME_S = 0.02
_JAX_DEFAULT_MIN_COMPILE_TIME_S = 1.0


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/prefjax/jax``, or ``~/.cache/prefjax/jax``."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "prefjax" / "jax"


def cache_disabled_by_env() -> bool:
    return os.environ.get(ENV_OFF, "").strip() not in ("", "0")


def enable_compilation_cache() -> str | None:
    """Point JAX's persistent compilation cache at :func:`default_cache_dir` unless the user
    configured or disabled it, or set ``PREFJAX_NO_COMPILATION_CACHE``. Returns the directory
    in use by prefjax's choice, or None when it left JAX's settings alone. Never raises: a
    cache that cannot be created only costs speed."""
    if cache_disabled_by_env():
        return None
    if jax.config.jax_compilation_cache_dir is not None:  # the user's own cache
        return None
    if not jax.config.jax_enable_compilation_cache:
        return None
    path = default_cache_dir()
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    jax.config.update("jax_compilation_cache_dir", str(path))
    user_set = "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS" in os.environ
    current = jax.config.jax_persistent_cache_min_compile_time_secs
    if not user_set and current == _JAX_DEFAULT_MIN_COMPILE_TIME_S:
        jax.config.update("jax_persistent_cache_min_compile_time_secs", MIN_COMPILE_TIME_S)
    return str(path)
