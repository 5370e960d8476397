"""pytest set-up for the tests and the doctests: float64 everywhere, no compilation cache.

The library itself never flips this flag (STYLE.md: precision is explicit).
"""

import os

import jax

# Tests never write into the user's compilation cache (prefjax enables one on import unless
# this is set); subprocesses inherit it.
os.environ["PREFJAX_NO_COMPILATION_CACHE"] = "1"

jax.config.update("jax_enable_x64", True)
