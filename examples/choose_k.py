"""Choose the tuple length K for collecting rankings: how small do the M-sensitive regions get?

Section 3.2 of Xu & Kankanhalli: a K-tuple Plackett-Luce model is less sensitive than the
pairwise (Bradley-Terry) one, and more so as K grows. Given the scores of your options (e.g.
fitted by a Plackett-Luce or Bradley-Terry model), this prints, for each K, alpha and beta of
Eq. (10), Proposition 2's area of the region where |dp_omega/dp_omega_uv| > M, its ratio to the
pairwise area (Proposition 1), optionally the score-based area (the region when the scores of
the pair move), and the smallest K whose area is below a target.

Run:  python examples/choose_k.py --M 10 --target 1e-5 [--score-view]
"""

from __future__ import annotations

import argparse

import jax

jax.config.update("jax_enable_x64", True)  # areas reach 1e-9 and below

import numpy as np  # noqa: E402

from prefjax import bradley_terry as bt  # noqa: E402
from prefjax import plackett_luce as pl  # noqa: E402

# Replace with your own scores (any order; the ranking used is by decreasing score).
SCORES = np.array([1.2, 0.9, 0.4, 0.1, -0.3, -0.8, -1.5])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--M", type=float, default=10.0, help="sensitivity threshold, > 1")
    parser.add_argument("--target", type=float, default=1e-5, help="largest acceptable area")
    parser.add_argument("--score-view", action="store_true", help="also the score-based area")
    args = parser.parse_args(argv)

    r = pl.robustness_vs_k(SCORES, M=args.M)  # the pair (u, v) = the two top-ranked options
    pairwise = float(bt.region_area(args.M))
    order = tuple(int(i) for i in np.argsort(-SCORES, kind="stable"))
    print(f"M = {args.M:g}; pairwise area (Proposition 1) = {pairwise:.3e}")
    print(f"{'K':>3} {'alpha':>8} {'beta':>10} {'area':>11} {'area/pair':>10} {'score view':>11}")
    chosen = None
    for k, alpha, beta, area in zip(r.K, r.alpha, r.beta, r.area, strict=True):
        k, area = int(k), float(area)
        sv = ""
        if args.score_view and k >= 3:
            sv = f"{sv.score_view_area(SCORES, order[:k], 0, 1, args.M).value:11.3e}"
        print(
            f"{k:>3} {float(alpha):8.3f} {float(beta):10.3e} {area:11.3e} "
            f"{area / pairwise:10.2e} {sv}"
        )
        if chosen is None and area <= args.target:
            chosen = k
    if chosen is None:
        print(f"no K <= {len(SCORES)} brings the area below {args.target:g}")
        return 0
    print(f"smallest K with area <= {args.target:g}: K = {chosen}")
    return chosen


if __name__ == "__main__":
    main()
