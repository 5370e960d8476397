"""prefjax: sensitivity of preference models, in JAX."""
