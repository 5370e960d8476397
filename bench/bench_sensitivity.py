"""Benchmark: prefjax.sensitivity against hand-written closed forms, side by side.

10^7 random points, float64, CPU, one process. Prints the time of each and the ratios
(a) logistic autodiff / NumPy Eq. (4)          target <= 1.0
(b) probit autodiff / NumPy+SciPy closed form  target <= 1.0
(c) numerically inverted custom link / probit  reported
Each timing is the best of several repeats after a warm-up call (compilation excluded).
prefjax gets its inputs as JAX arrays and NumPy as NumPy arrays, each as its own programs
hold them; the cost of converting NumPy inputs (a copy) is printed separately. A like-for-like
line also times NumPy computing everything ``sensitivity`` returns (p_ij, d_ik and d_kj).

Allocation matters at this size: each 80 MB result buffer is fresh memory. NumPy asks the
kernel for transparent huge pages (madvise) and pays ~2,000 page faults per call; XLA's CPU
allocator does not ask, and pays ~60,000 for the three results of ``sensitivity``. The script
therefore measures twice, in two processes: with the default allocator, and with glibc's
``GLIBC_TUNABLES=glibc.malloc.hugetlb=1``, which gives XLA's buffers huge pages too (the
like-for-like setting; users with large arrays can set it the same way).

Run: .venv/bin/python bench/bench_sensitivity.py [--n 10000000] [--repeats 5]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from scipy import special  # noqa: E402

import prefjax  # noqa: E402


def best_time(fn, repeats):
    fn()  # warm-up (compilation, page faults)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def numpy_eq4(a, b):
    """Eq. (4), exactly as the paper writes it."""
    return b * (1 - b) / (a + b - 2 * a * b - 1) ** 2


def numpy_all_three(a, b):
    """Eq. (3), Eq. (4) and its p_kj counterpart: what ``sensitivity`` returns."""
    den = a + b - 2 * a * b - 1
    return 1 / (1 + (1 - a) * (1 - b) / a / b), b * (1 - b) / den**2, a * (1 - a) / den**2


def numpy_probit(a, b):
    """Closed-form probit dp_ij/dp_ik = phi(x_ik + x_kj) / phi(x_ik), with x = Phi^-1(p)."""
    xa, xb = special.ndtri(a), special.ndtri(b)
    x = xa + xb
    return np.exp(-0.5 * (x * x - xa * xa))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--once", action="store_true", help="measure in this process only")
    args = parser.parse_args()
    if not args.once:
        tunable = "glibc.malloc.hugetlb=1"
        for label, extra in (("default allocator", {}), (tunable, {"GLIBC_TUNABLES": tunable})):
            print(f"=== {label}", flush=True)
            cmd = [
                sys.executable,
                __file__,
                "--once",
                "--n",
                str(args.n),
                "--repeats",
                str(args.repeats),
            ]
            subprocess.run(cmd, env={**os.environ, **extra}, check=True)
        return

    rng = np.random.default_rng(0)
    a = rng.uniform(1e-6, 1 - 1e-6, args.n)
    b = rng.uniform(1e-6, 1 - 1e-6, args.n)
    mixture = prefjax.link(
        lambda x: 0.5 * jax.nn.sigmoid(x) + 0.5 * jax.nn.sigmoid(x / 3.0), name="mixture"
    )

    ja, jb = jnp.asarray(a), jnp.asarray(b)

    def run(g):
        return lambda: jax.block_until_ready(prefjax.sensitivity(g, ja, jb))

    t_np = best_time(lambda: numpy_eq4(a, b), args.repeats)
    t_logistic = best_time(run(prefjax.logistic), args.repeats)
    t_sp = best_time(lambda: numpy_probit(a, b), args.repeats)
    t_probit = best_time(run(prefjax.probit), args.repeats)
    t_mix = best_time(run(mixture), max(1, args.repeats // 2))
    t_np_all = best_time(lambda: numpy_all_three(a, b), args.repeats)
    t_convert = best_time(
        lambda: jax.block_until_ready((jnp.asarray(a), jnp.asarray(b))), args.repeats
    )

    # Sanity: the timed functions compute the same numbers.
    s = prefjax.sensitivity(prefjax.logistic, a[:1000], b[:1000])
    assert np.allclose(np.asarray(s.d_ik), numpy_eq4(a[:1000], b[:1000]), rtol=1e-9)
    s = prefjax.sensitivity(prefjax.probit, a[:1000], b[:1000])
    assert np.allclose(np.asarray(s.d_ik), numpy_probit(a[:1000], b[:1000]), rtol=1e-9)

    print(f"n = {args.n:,} points, float64, devices: {jax.devices()}")
    print(f"  NumPy Eq. (4)                   {t_np * 1e3:9.1f} ms")
    print(f"  prefjax.sensitivity(logistic)   {t_logistic * 1e3:9.1f} ms  (p_ij, d_ik, d_kj)")
    print(f"  NumPy+SciPy probit closed form  {t_sp * 1e3:9.1f} ms")
    print(f"  prefjax.sensitivity(probit)     {t_probit * 1e3:9.1f} ms")
    print(f"  prefjax.sensitivity(mixture)    {t_mix * 1e3:9.1f} ms  (numeric inverse)")
    print(f"  NumPy Eqs. (3), (4), (4') all three {t_np_all * 1e3:7.1f} ms")
    print(f"  converting the NumPy inputs to JAX  {t_convert * 1e3:7.1f} ms (not in the ratios)")
    print(f"(a) logistic / NumPy Eq. (4)       = {t_logistic / t_np:.2f}  (target <= 1.0)")
    print(f"    logistic / NumPy all three     = {t_logistic / t_np_all:.2f}  (like for like)")
    print(f"(b) probit / NumPy+SciPy           = {t_probit / t_sp:.2f}  (target <= 1.0)")
    print(f"(c) numeric-inverse mixture/probit = {t_mix / t_probit:.2f}  (reported)")


if __name__ == "__main__":
    main()
