"""Benchmark: latency of a fresh process, with prefjax's compilation cache cold, warm and off.

Each measurement is a fresh Python process (x64 on, as the area functions need) that times,
one after the other:

    import jax                      alone
    import prefjax                  (on top of jax)
    first sensitivity               prefjax.sensitivity(logistic, 0.9, 0.3)
    first logistic area             prefjax.region_area(logistic, 10)
    first probit area               prefjax.region_area(probit, 10)
    warm logistic area              the same call again (compiled programs in memory)

under three settings: cache "cold" (a fresh, empty cache directory: XDG_CACHE_HOME points at a
temporary folder), "warm" (a second process on the same folder) and "off"
(PREFJAX_NO_COMPILATION_CACHE=1). Each setting is run ``--repeats`` times (the cold one on a
new folder each time) and the median is printed, with the ratios the targets are about:

    warm: import prefjax + first logistic area      target <= 2 s
    import prefjax (jax included) / import jax      target <= 1.3
    off / warm, for each first call                 reported

Run: .venv/bin/python bench/bench_latency.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CHILD = r"""
import json, sys, time
t0 = time.perf_counter()
import jax
t1 = time.perf_counter()
jax.config.update("jax_enable_x64", True)
import prefjax
t2 = time.perf_counter()
loaded = [m for m in ("scipy", "matplotlib", "torch") if m in sys.modules]
prefjax.sensitivity(prefjax.logistic, 0.9, 0.3).d_ik.block_until_ready()
t3 = time.perf_counter()
prefjax.region_area(prefjax.logistic, 10)
t4 = time.perf_counter()
prefjax.region_area(prefjax.probit, 10)
t5 = time.perf_counter()
prefjax.region_area(prefjax.logistic, 10)
t6 = time.perf_counter()
print(json.dumps({
    "import jax": t1 - t0, "import prefjax": t2 - t1, "first sensitivity": t3 - t2,
    "first logistic area": t4 - t3, "first probit area": t5 - t4,
    "warm logistic area": t6 - t5, "cache dir": prefjax._compilation_cache_dir,
    "loaded": loaded,
}))
"""

ROWS = [
    "import jax",
    "import prefjax",
    "first sensitivity",
    "first logistic area",
    "first probit area",
    "warm logistic area",
]


def child(env_extra: dict[str, str]) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("JAX_COMPILATION_CACHE")}
    env.pop("PREFJAX_NO_COMPILATION_CACHE", None)
    env.update(env_extra)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    out = subprocess.run(
        [sys.executable, "-c", CHILD], env=env, capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    runs: dict[str, list[dict]] = {"cold": [], "warm": [], "off": []}
    with tempfile.TemporaryDirectory() as scratch:
        for r in range(args.repeats):
            xdg = str(Path(scratch) / f"xdg{r}")
            runs["cold"].append(child({"XDG_CACHE_HOME": xdg}))
            runs["warm"].append(child({"XDG_CACHE_HOME": xdg}))
            runs["off"].append(child({"PREFJAX_NO_COMPILATION_CACHE": "1"}))
        entries = sum(1 for _ in (Path(scratch) / "xdg0" / "prefjax" / "jax").iterdir())
    med = {s: {k: statistics.median(run[k] for run in rs) for k in ROWS} for s, rs in runs.items()}
    assert runs["warm"][0]["cache dir"] and runs["off"][0]["cache dir"] is None
    print(f"fresh processes, median of {args.repeats}; seconds ({entries} cache entries)\n")
    print(f"{'':22s}{'cold':>9s}{'warm':>9s}{'off':>9s}{'off/warm':>10s}")
    for k in ROWS:
        c, w, o = med["cold"][k], med["warm"][k], med["off"][k]
        print(f"{k:22s}{c:9.3f}{w:9.3f}{o:9.3f}{o / w:10.2f}")
    w = med["warm"]
    total = w["import prefjax"] + w["first logistic area"]
    print(f"\nwarm: import prefjax + first logistic area = {total:.2f} s   (target <= 2 s)")
    ratio = statistics.median(
        (r["import jax"] + r["import prefjax"]) / r["import jax"] for r in runs["warm"]
    )
    print(f"(import jax + import prefjax) / import jax = {ratio:.2f}   (target <= 1.3)")
    print(
        f"loaded by import prefjax: {runs['warm'][0]['loaded'] or 'none of scipy, matplotlib, torch'}"
    )


if __name__ == "__main__":
    main()
