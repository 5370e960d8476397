"""pytest set-up for the tests and the doctests: float64 everywhere.

The library itself never flips this flag (STYLE.md: precision is explicit).
"""

import jax

jax.config.update("jax_enable_x64", True)
