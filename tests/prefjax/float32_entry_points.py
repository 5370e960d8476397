"""Every public entry point of prefjax with JAX's default float32 (x64 off); run as a script.

Each call must end at once with either a result that matches the float64 reference (the same
call under ``jax.enable_x64(True)``) at float32 precision, or a clear prefjax error that says
how to enable x64 (or, for inputs float32 cannot hold, what to do instead): never a hang, a
NaN or an internal JAX error. Prints one line per call and exits 1 if any call misbehaves.
Used by tests/prefjax/test_reliability.py in a fresh subprocess (conftest enables x64).
"""

from __future__ import annotations

import inspect
import sys
import time

import jax
import numpy as np

# float32 eps is 1.2e-7; the float32 results below are a few ulps from the truth and the
# inputs' own rounding (1e-20 -> 9.99999968e-21) moves them by < 1e-7 relative.
RTOL = 2e-5
ATOL = 1e-44  # subnormal float32 results (cauchit's d_kj ~ 1e-39) hold fewer digits

X64 = "x64"  # expect the clear "needs float64" RuntimeError
VALUE = "value"  # expect a result matching the float64 reference


def value(rtol: float):
    """Expect a result matching the float64 reference to ``rtol`` (ill-conditioned cases)."""
    return ("value", rtol)


def refuse(match: str):
    """Expect a ValueError whose message contains ``match``."""
    return ("refuse", match)


def _bind(f, *args):
    return lambda: f(*args)


def _mix(x):
    return 0.5 * jax.nn.sigmoid(x) + 0.5 * jax.nn.sigmoid(3.0 * x)


def cases(prefjax):
    """(qualified name, thunk, expectation): every public callable at least once."""
    pj, bt, pl, sv = prefjax, prefjax.bradley_terry, prefjax.plackett_luce, prefjax.score_view
    lg, pr, ca = pj.logistic, pj.probit, pj.cauchit
    scores = [0.3, -0.2, 1.1, 0.0]
    out = [
        ("compose", lambda: pj.compose(lg, 0.9801, 0.02), VALUE),
        ("compose", lambda: pj.compose(pr, 0.3, 0.6), VALUE),
        ("compose", lambda: pj.compose(ca, 1e-20, 0.5), VALUE),
        ("compose", lambda: pj.compose(lg, 1 - 1e-9, 0.5), refuse("enable x64")),
        ("sensitivity", lambda: pj.sensitivity(lg, 0.99, 0.02), VALUE),
        ("sensitivity", lambda: pj.sensitivity(pr, 0.3, 0.6), VALUE),
        # probit's d ~ exp(-x_kj (x_ik + x_ij) / 2) amplifies x's rounding by ~x^2 = 130
        ("sensitivity", lambda: pj.sensitivity(pr, [0.3, 1e-30], [0.6, 0.999]), value(2e-4)),
        ("sensitivity", lambda: pj.sensitivity(ca, 1e-20, 0.5), VALUE),  # 0 * inf before
        ("sensitivity", lambda: pj.sensitivity(pr, 1e-45, 0.5), refuse("subnormal")),
        ("sensitivity", lambda: pj.sensitivity(lg, 5e-324, 0.3), refuse("enable x64")),  # -> 0
        ("score_sensitivity", lambda: pj.score_sensitivity(lg, 80.0, -79.0), VALUE),
        ("score_sensitivity", lambda: pj.score_sensitivity(pr, 30.0, -2.0), VALUE),
        ("is_m_sensitive", lambda: pj.is_m_sensitive(lg, 0.99, 0.02, 20), VALUE),
        ("get_link", lambda: pj.get_link("probit").name, VALUE),
        ("link", lambda: pj.link(_mix, name="mixture"), X64),  # its checks need float64
        ("link", lambda: pj.link(_mix, check=False).inverse(0.9), VALUE),
        ("check_assumptions", lambda: pj.check_assumptions(lg), X64),
        ("region_area", lambda: pj.region_area(lg, 10), X64),
        ("region_area", lambda: pj.region_area(pr, 10, method="mc", n=1000), X64),
        ("theorem1_witness", lambda: pj.theorem1_witness(lg, 10.0), X64),
        ("theorem2_table", lambda: pj.theorem2_table(Ms=(10.0,), Ks=(3,)), X64),
        ("example_data", lambda: pj.example_data().name, VALUE),
        ("fit", lambda: pj.fit(pj.Comparisons.from_pairs([(0, 1), (1, 2), (2, 0)])), X64),
        ("audit", lambda: pj.audit(_FIT[0]), X64),
        (
            "compare_links",
            lambda: pj.compare_links(
                pj.Comparisons.from_pairs([(0, 1), (1, 2), (2, 0)]), [pj.logistic, pj.probit]
            ),
            X64,
        ),
        ("bradley_terry.compose", lambda: bt.compose(0.9801, 0.02), VALUE),
        ("bradley_terry.d_ik", lambda: bt.d_ik(0.99, 0.02), VALUE),
        ("bradley_terry.d_kj", lambda: bt.d_kj(0.99, 0.02), VALUE),
        ("bradley_terry.gamma0", lambda: bt.gamma0(0.02, 20.0), VALUE),
        ("bradley_terry.region_bounds", lambda: bt.region_bounds(0.02, 20.0), VALUE),
        ("bradley_terry.region_area", lambda: bt.region_area(10.0), VALUE),
        ("plackett_luce.reorder", lambda: pl.reorder((0, 1, 2), 0, 1), VALUE),
        ("plackett_luce.numeric_region_area", lambda: pl.numeric_region_area(2, 1.5, 0.5), X64),
        ("plot.sensitive_regions", lambda: prefjax.plot.sensitive_regions(lg), X64),
        ("plot.pl_regions", lambda: prefjax.plot.pl_regions(), X64),
        ("plot.area_vs_k", lambda: prefjax.plot.area_vs_k(), X64),
    ]
    for name in ("log_prob", "prob", "ratios"):
        out.append((f"plackett_luce.{name}", _bind(getattr(pl, name), scores, (0, 1, 2)), X64))
    for name in ("ratio", "alpha_beta", "sensitivity"):
        out.append(
            (f"plackett_luce.{name}", _bind(getattr(pl, name), scores, (0, 1, 2), 0, 1), X64)
        )
    for name in ("compose", "d_uv", "d_vu"):
        out.append((f"plackett_luce.{name}", _bind(getattr(pl, name), 0.2, 0.3, 1.5, 0.5), X64))
    out += [
        ("plackett_luce.prob_from_ratios", lambda: pl.prob_from_ratios([1.0, 2.0]), X64),
        ("plackett_luce.region_area", lambda: pl.region_area(2.0, 1.5, 0.5), X64),
        ("plackett_luce.region_bounds", lambda: pl.region_bounds(2.0, 1.5, 0.5, at=0.3), X64),
        ("plackett_luce.robustness_vs_k", lambda: pl.robustness_vs_k(scores), X64),
        (
            "score_view.random_utility_log_prob",
            lambda: sv.random_utility_log_prob(scores, (0, 1)),
            X64,
        ),
        ("score_view.random_utility_prob", lambda: sv.random_utility_prob(scores, (0, 1)), X64),
        (
            "score_view.implied_sensitivity",
            lambda: sv.implied_sensitivity(scores, (0, 1), (0, 1), (0, 1)),
            X64,
        ),
        (
            "score_view.score_view_sensitivity",
            lambda: sv.score_view_sensitivity(scores, (0, 1, 2), 0, 1),
            X64,
        ),
        (
            "score_view.implied_area",
            lambda: sv.implied_area(scores, (0, 1), (0, 1), (0, 1), 2.0),
            X64,
        ),
        (
            "score_view.score_view_area",
            lambda: sv.score_view_area(scores, (0, 1, 2), 0, 1, 2.0),
            X64,
        ),
    ]
    for g in (lg, pr, ca):
        for method in ("__call__", "inverse", "derivative", "log_derivative"):
            arg = 0.3 if method == "inverse" else 1.7
            out.append((f"{g.name}.{method}", _bind(getattr(g, method), arg), VALUE))
    return out


NOT_CALLED = {
    # name: why it is not in the table (classes are built by the functions that return them)
    "plot.audit_heatmap": "draws an Audit (which prefjax.audit builds only in float64)",
}

_FIT: list = []


def public_callables(prefjax) -> set[str]:
    names = set()
    for prefix, mod in [("", prefjax)] + [
        (f"{m}.", getattr(prefjax, m))
        for m in ("bradley_terry", "plackett_luce", "score_view", "plot")
    ]:
        for name in mod.__all__:
            obj = getattr(mod, name)
            if inspect.isfunction(obj):
                names.add(prefix + name)
    return names


def leaves(x):
    if isinstance(x, str | bool | int):
        return [x]
    return [np.asarray(leaf) for leaf in jax.tree_util.tree_leaves(x)]


def check(name, thunk, expect) -> str | None:
    """None if the call behaved, else what went wrong."""
    try:
        got = thunk()
    except RuntimeError as exc:
        if expect == X64 and "jax_enable_x64" in str(exc) and "prefjax" in str(exc):
            return None
        return f"unexpected RuntimeError: {exc}"
    except ValueError as exc:
        if isinstance(expect, tuple) and expect[0] == "refuse" and expect[1] in str(exc):
            return None
        return f"unexpected ValueError: {exc}"
    except Exception as exc:
        return f"unexpected {type(exc).__name__}: {exc}"
    if expect != VALUE and expect[0] != "value":
        return f"expected {expect}, got a result {got!r}"
    rtol = RTOL if expect == VALUE else expect[1]
    with jax.enable_x64(True):
        want = thunk()
    for g, w in zip(leaves(got), leaves(want), strict=True):
        if isinstance(g, str | bool | int):
            if g != w:
                return f"{g!r} != reference {w!r}"
            continue
        if g.dtype.kind == "f":
            if not np.all(np.isfinite(g)):
                return f"non-finite result {g!r} (float64: {w!r})"
            if g.dtype != np.float32:
                return f"computed in {g.dtype}, not float32"
            if not np.allclose(g, w, rtol=rtol, atol=ATOL):
                return f"{g!r} differs from the float64 reference {w!r}"
        elif not np.array_equal(g, w):
            return f"{g!r} != reference {w!r}"
    return None


def main() -> int:
    t0 = time.perf_counter()
    import prefjax

    assert not jax.config.jax_enable_x64
    with jax.enable_x64(True):
        _FIT.append(prefjax.fit(prefjax.Comparisons.from_pairs([(0, 1), (1, 2), (2, 0), (0, 2)])))
    table = cases(prefjax)
    missing = public_callables(prefjax) - {n for n, _, _ in table} - set(NOT_CALLED)
    missing -= {"logistic", "probit", "cauchit"}
    failures = [f"not covered: {sorted(missing)}"] if missing else []
    for name, thunk, expect in table:
        t = time.perf_counter()
        problem = check(name, thunk, expect)
        status = "ok" if problem is None else f"FAIL {problem}"
        print(f"{time.perf_counter() - t:7.2f}s  {name}: {status}", flush=True)
        if problem is not None:
            failures.append(f"{name}: {problem}")
    print(f"total {time.perf_counter() - t0:.1f}s, {len(table)} calls")
    for f in failures:
        print("FAILED", f)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
