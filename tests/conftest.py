"""Test-wide set-up: float64 everywhere (the library itself never flips this flag)."""

import jax

jax.config.update("jax_enable_x64", True)
