"""Benchmark: areas of M-sensitive regions (logistic link), methods side by side.

For M = 2, 10, 100, 10^4 and the logistic link, against Proposition 1:
  * prefjax "quad"                     (first call, then best of 3 warm calls)
  * scipy.integrate.dblquad on the indicator |Eq. (4)| > M (a generic integrator's answer)
  * uniform Monte Carlo, 10^6 samples   (prefjax "mc")
  * importance sampling, 10^6 samples   (prefjax "is")
Targets (issue 3): "quad" >= 10x faster than dblquad and >= 1000x more accurate;
"is" >= 100x more accurate than uniform MC at equal samples for M >= 100. Accuracy of the
sampling methods is compared by their standard errors (a realized error is one draw of a
random variable; the standard error is what "more accurate" means), and the realized errors
are printed too.

Run: .venv/bin/python bench/bench_area.py [--dblquad-limit 50]
"""

from __future__ import annotations

import argparse
import time

import jax

jax.config.update("jax_enable_x64", True)

import numpy as np  # noqa: E402
from scipy import integrate  # noqa: E402

import prefjax  # noqa: E402
from prefjax import bradley_terry as bt  # noqa: E402
from prefjax._results import MC_SIGMAS  # noqa: E402


def timed(fn, repeats=1):
    best, out = np.inf, None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return out, best


def dblquad_area(M, limit):
    """The indicator of Omega_M integrated by scipy's dblquad (QUADPACK on each axis)."""

    def indicator(a, b):  # dblquad passes (inner, outer)
        d = b * (1 - b) / (a + b - 2 * a * b - 1) ** 2
        return 1.0 if d > M else 0.0

    opts = {"limit": limit}
    value, _ = integrate.nquad(indicator, [[0, 1], [0, 1]], opts=[opts, opts])
    return value


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dblquad-limit", type=int, default=50, help="QUADPACK subintervals")
    parser.add_argument("--n", type=int, default=1_000_000, help="Monte Carlo samples")
    args = parser.parse_args()

    header = (
        f"{'M':>7} | {'quad err':>9} {'1st s':>6} {'warm s':>7} | {'dblquad err':>11} {'s':>6} |"
        f" {'t ratio':>8} {'err ratio':>9} | {'MC se':>8} {'IS se':>8} {'se ratio':>8}"
        f" | {'MC err':>7} {'IS err':>8}"
    )
    print(header)
    print("-" * len(header))
    for M in (2.0, 10.0, 100.0, 1e4):
        truth = float(bt.region_area(M))
        first, t_first = timed(lambda M=M: prefjax.region_area(prefjax.logistic, M))
        quad, t_quad = timed(lambda M=M: prefjax.region_area(prefjax.logistic, M), repeats=3)
        dbl, t_dbl = timed(lambda M=M: dblquad_area(M, args.dblquad_limit))
        mc = prefjax.region_area(prefjax.logistic, M, method="mc", n=args.n, seed=0)
        is_ = prefjax.region_area(prefjax.logistic, M, method="is", n=args.n, seed=0)
        err_quad = max(abs(quad.value - truth) / truth, np.finfo(float).eps)
        err_dbl = abs(dbl - truth) / truth
        # standard errors (relative): MC's from the binomial variance at the true area
        se_mc = np.sqrt(truth * (1 - truth) / args.n) / truth
        se_is = is_.error / MC_SIGMAS / truth
        print(
            f"{M:7g} | {err_quad:9.1e} {t_first:6.2f} {t_quad:7.3f} | {err_dbl:11.1e} {t_dbl:6.2f} |"
            f" {t_dbl / t_quad:8.1f} {err_dbl / err_quad:9.1e} | {se_mc:8.1e} {se_is:8.1e}"
            f" {se_mc / se_is:8.1f} | {abs(mc.value - truth) / truth:7.1e}"
            f" {abs(is_.value - truth) / truth:8.1e}"
        )
    print(
        "quad err: relative error vs Proposition 1 (floored at machine epsilon);"
        " t ratio = dblquad time / quad warm time; err ratio = dblquad err / quad err;"
        " se = relative standard error at n samples."
    )


if __name__ == "__main__":
    main()
