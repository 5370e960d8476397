"""The hostile sweep (issue 14): every public entry point over the whole legal range.

Each case must end in time with a result that is correct within its stated error (against an
independent reference: mpmath at 50+ digits, Proposition 1 / 2, the paper's closed forms) or
with a clear error (ValueError, TypeError or prefjax's own, naming the argument). A NaN, an
infinity where a finite value exists, a hang or an error bar that does not cover the true
error fails the case.

Inputs: p from the smallest normal float64 (2.2e-308) to 1 - 2^-53 (log-uniform towards both
ends) and their images in score space; M from 1 + 1e-12 to 1e300; rtol from 1e-20 to 0.5;
n from 1 to 1e7; the built-in links and custom ones (a mixture, a scaled logistic, a
Student-t(3) written with ``betainc``, and a link given a wrong inverse). Subnormal p
(5e-324 up to 2.2e-308) are the float-policy work's (issue 13) and are swept separately.

hypothesis runs derandomized (the same cases every run) with a deadline per case; the file
takes about two and a half minutes on two busy cores (user time ~2 min). Set HOSTILE_LOG=path to write the figures (cases
tried, failures, worst relative error per function) as JSON; ``-s`` prints them.

Tolerances: pointwise results are held to the condition-number bound of
:func:`tests.prefjax.checks.assert_matches_reference` (64 ulps times the problem's condition
number, plus the smallest normal float64 for values that underflow); areas to their own
error bar (``abs(value - truth) <= error``), and "quad" also to 1e-8 relative where its
error bar claims that much (the contract of ``region_area``).
"""

from __future__ import annotations

import json
import math
import os
import signal
import warnings
from collections import defaultdict
from datetime import timedelta

import jax
import jax.numpy as jnp
import mpmath as mp
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jax.scipy.special import betainc

import prefjax
from prefjax import bradley_terry as bt
from prefjax import plackett_luce as pl
from prefjax import score_view as sv

from .checks import EPS, TINY, ULPS, assert_matches_reference
from .conftest import MIXTURE
from .references import (
    MP_LINKS,
    MpLink,
    at_400_digits,
    mp_cauchit_area,
    mp_logistic_area,
    mp_probit_area,
    rel_err,
)

pytestmark = pytest.mark.slow

# --- bookkeeping: the figures of the closing note ------------------------------------

STATS: dict[str, dict] = defaultdict(lambda: {"cases": 0, "errors": 0, "failures": 0, "worst": 0.0})
CLEAR_ERRORS = (ValueError, TypeError, prefjax.AssumptionError)


def record(fn: str, rel: float | None = None, error: bool = False) -> None:
    s = STATS[fn]
    s["cases"] += 1
    s["errors"] += int(error)
    if rel is not None and math.isfinite(rel):
        s["worst"] = max(s["worst"], rel)


@pytest.fixture(scope="module", autouse=True)
def _report():
    yield
    table = {k: dict(v) for k, v in sorted(STATS.items())}
    total = sum(v["cases"] for v in table.values())
    print(f"\nhostile sweep: {total} cases")
    for name, v in table.items():
        print(
            f"  {name:32s} {v['cases']:5d} cases, {v['errors']:4d} clear errors, "
            f"worst relative error {v['worst']:.2e}"
        )
    if os.environ.get("HOSTILE_LOG"):
        with open(os.environ["HOSTILE_LOG"], "w") as fh:
            json.dump({"total": total, "functions": table}, fh, indent=1)


HANG_S = 240  # a test (all its cases) still running after this is a hang


@pytest.fixture(autouse=True)
def _no_hang():
    """Fail a test that runs past HANG_S (SIGALRM; the loops are Python, so it lands)."""
    if not hasattr(signal, "SIGALRM"):
        yield
        return

    def hang(signum, frame):
        raise TimeoutError(f"still running after {HANG_S} s: a hang")

    previous = signal.signal(signal.SIGALRM, hang)
    signal.alarm(HANG_S)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def clear_error(exc: BaseException, *names: str) -> bool:
    """An allowed error type whose message names one of the arguments."""
    return isinstance(exc, CLEAR_ERRORS) and any(n in str(exc) for n in names)


def fast(n: int, seconds: float = 20.0):
    return settings(
        max_examples=n,
        derandomize=True,
        database=None,
        deadline=timedelta(seconds=seconds),
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    )


# --- inputs ---------------------------------------------------------------------------------

SMALLEST_NORMAL = TINY
ONE_MINUS = 1.0 - 2.0**-53  # the largest float64 below 1

probabilities = st.one_of(
    st.floats(-307.6, -0.31).map(lambda e: 10.0**e),  # towards 0, down to 2.5e-308
    st.floats(-15.95, -0.31).map(lambda e: 1.0 - 10.0**e),  # towards 1
    st.floats(1e-3, 1 - 1e-3),
    st.sampled_from([SMALLEST_NORMAL, 1e-300, 1e-160, 0.5, 1 - 1e-16, ONE_MINUS]),
)
subnormals = st.one_of(
    st.floats(-323.3, -307.7).map(lambda e: 10.0**e), st.sampled_from([5e-324, 1e-320])
)
thresholds = st.one_of(  # M - 1 from 1e-12 to 1e300
    st.floats(-12.0, 300.0).map(lambda e: 1.0 + 10.0**e),
    st.sampled_from([1.0 + 1e-12, 1.5, 2.0, 10.0, 1e4, 1e13, 1e16, 1e150, 1e300]),
)
rtols = st.floats(-20.0, math.log10(0.5)).map(lambda e: 10.0**e)


def _t3(x):
    """Student-t with 3 degrees of freedom, written with the regularized incomplete beta."""
    lower = 0.5 * betainc(1.5, 0.5, 3.0 / (3.0 + x * x))
    return jnp.where(x < 0, lower, 1.0 - lower)


def _t3_pdf(x):
    a = jnp.abs(x)
    # 6 sqrt(3) / (pi (3 + x^2)^2), as (3 + x^2)^-2 = a^-4 (1 + 3/a^2)^-2 beyond |x| = 1
    big = a > 1.0
    inv = 1.0 / jnp.where(big, a, 1.0)
    tail = 6 * jnp.sqrt(3.0) / jnp.pi * (inv * inv) ** 2 / (1.0 + 3.0 * inv * inv) ** 2
    core = 6 * jnp.sqrt(3.0) / (jnp.pi * (3.0 + x * x) ** 2)
    return jnp.where(big, tail, core)


STUDENT_T3 = prefjax.link(_t3, derivative=_t3_pdf, name="student_t3")
SCALED = prefjax.link(lambda x: jax.nn.sigmoid(2.0 * x), name="scaled_logistic")

MP_T3 = MpLink(
    "student_t3",
    at_400_digits(
        lambda x: (
            mp.mpf(1) / 2 + (x / (mp.sqrt(3) * (1 + x * x / 3)) + mp.atan(x / mp.sqrt(3))) / mp.pi
        )
    ),
    lambda x: 6 * mp.sqrt(3) / (mp.pi * (3 + x * x) ** 2),
)
MP_SCALED = MpLink(
    "scaled_logistic",
    lambda x: 1 / (1 + mp.exp(-2 * x)),
    lambda x: 2 * mp.exp(-2 * x) / (1 + mp.exp(-2 * x)) ** 2,
    inv=lambda p: mp.log(p / (1 - p)) / 2,
)

LINK_PAIRS = {
    "logistic": (prefjax.logistic, MP_LINKS["logistic"]),
    "probit": (prefjax.probit, MP_LINKS["probit"]),
    "cauchit": (prefjax.cauchit, MP_LINKS["cauchit"]),
    "mixture": (MIXTURE, MP_LINKS["mixture"]),
    "scaled_logistic": (SCALED, MP_SCALED),
    "student_t3": (STUDENT_T3, MP_T3),
}
link_names = st.sampled_from(sorted(LINK_PAIRS))


# --- Lemma 1: compose, sensitivity, is_m_sensitive -------------------------------------------

CUSTOM_LINKS = ("mixture", "scaled_logistic", "student_t3")


def assert_within_the_links_own_accuracy(g, ref, p_ik, p_kj, s):
    """A custom link is only as accurate as its g (JAX's betainc: ~3e-14 relative at
    x = -1e50): the results may be off by a few times g's own relative error, measured
    against mpmath at the three scores involved."""
    xs = (ref.inv(p_ik), ref.inv(p_kj))
    xs = (*xs, xs[0] + xs[1])
    own = max(rel_err(g(float(x)), min(ref.g(x), 1 - ref.g(x)) if x < 0 else ref.g(x)) for x in xs)
    tol = ULPS * EPS + 16 * own
    assert rel_err(s.p_ij, ref.compose(p_ik, p_kj)) <= tol, (p_ik, p_kj, s, own)
    for got, want in ((s.d_ik, ref.d_ik(p_ik, p_kj)), (s.d_kj, ref.d_kj(p_ik, p_kj))):
        assert rel_err(got, want) <= 1e3 * tol or abs(mp.mpf(float(got)) - want) <= TINY


@fast(120)
@given(name=link_names, p_ik=probabilities, p_kj=probabilities)
def test_sensitivity_and_compose(name, p_ik, p_kj):
    g, ref = LINK_PAIRS[name]
    try:
        s = prefjax.sensitivity(g, p_ik, p_kj)
    except CLEAR_ERRORS as exc:  # a custom g that underflows at x_ij
        assert name in CUSTOM_LINKS and clear_error(exc, "p_ik"), exc
        record("sensitivity", error=True)
        return
    p_ij = prefjax.compose(g, p_ik, p_kj)
    for got in (*s, p_ij):
        assert np.isfinite(got), (name, p_ik, p_kj, s)
    try:
        assert_matches_reference(ref, p_ik, p_kj, s)
    except AssertionError:
        if name not in CUSTOM_LINKS:
            raise
        assert_within_the_links_own_accuracy(g, ref, p_ik, p_kj, s)
    assert float(p_ij) == float(s.p_ij)
    want = ref.d_ik(p_ik, p_kj)
    # (relative errors recorded where the value is far from the underflow floor)
    record("sensitivity", rel_err(s.d_ik, want) if want > 1e-280 else None)
    record("compose", rel_err(p_ij, ref.compose(p_ik, p_kj)) if 1e-280 < p_ij < 0.5 else None)


@fast(60)
@given(name=link_names, p_ik=probabilities, p_kj=probabilities, M=thresholds)
def test_is_m_sensitive(name, p_ik, p_kj, M):
    g, ref = LINK_PAIRS[name]
    try:
        got = bool(prefjax.is_m_sensitive(g, p_ik, p_kj, M))
    except CLEAR_ERRORS as exc:  # a custom link whose g underflows at x_ij: refused, named
        assert name in CUSTOM_LINKS and clear_error(exc, "p_ik"), exc
        record("is_m_sensitive", error=True)
        return
    d = ref.d_ik(p_ik, p_kj)
    record("is_m_sensitive")
    # Decided exactly except within the sensitivity's own rounding of M.
    if abs(d / M - 1) > 1e-9:
        assert got == (d > M), (name, p_ik, p_kj, M, float(d))


@fast(40, 60)
@given(name=st.sampled_from(["logistic", "probit", "cauchit", "student_t3"]), p=subnormals)
def test_subnormal_probabilities_are_exact_or_refused(name, p):
    """Subnormal p: an exact result or a clear error naming p_ik, never NaN."""
    g, ref = LINK_PAIRS[name]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            s = prefjax.sensitivity(g, p, 0.5)
    except CLEAR_ERRORS as exc:
        record("sensitivity (subnormal p)", error=True)
        assert clear_error(exc, "p_ik")
        return
    record("sensitivity (subnormal p)")
    if not (np.isfinite(s.d_ik) and abs(float(s.p_ij) - p) <= TINY):
        STATS["sensitivity (subnormal p)"]["failures"] += 1
        pytest.fail(f"subnormal p = {p!r} for {name}: {s} is neither exact nor refused")


@fast(80)
@given(
    name=link_names,
    x_ik=st.one_of(st.floats(-1e6, 1e6), st.floats(-300.0, 300.0).map(lambda e: 10.0**e)),
    x_kj=st.one_of(st.floats(-1e6, 1e6), st.floats(-300.0, 300.0).map(lambda e: -(10.0**e))),
)
def test_score_sensitivity(name, x_ik, x_kj):
    g, ref = LINK_PAIRS[name]
    if name in ("mixture", "student_t3", "scaled_logistic") and max(abs(x_ik), abs(x_kj)) > 1e5:
        x_ik, x_kj = (
            math.copysign(min(abs(x_ik), 1e5), x_ik),
            math.copysign(min(abs(x_kj), 1e5), x_kj),
        )
    try:
        s = prefjax.score_sensitivity(g, x_ik, x_kj)
    except CLEAR_ERRORS as exc:  # a custom g that underflows at these scores
        assert name in CUSTOM_LINKS and clear_error(exc, "x_kj", "x_ik"), exc
        record("score_sensitivity", error=True)
        return
    for f in s:
        assert np.isfinite(f) or (f in (0.0, 1.0)), (name, x_ik, x_kj, s)
    assert float(s.x_ij) == x_ik + x_kj
    with mp.workdps(60):
        x_ij = mp.mpf(x_ik) + mp.mpf(x_kj)
        want = mp.log(ref.dg(x_ij)) - mp.log(ref.dg(mp.mpf(x_ik)))
        dlog = lambda x: abs(mp.diff(lambda t: mp.log(ref.dg(t)), x))  # noqa: E731
        # The only rounding: x_ij = x_ik + x_kj, and log g' evaluated to a few ulps.
        kappa = dlog(x_ij) * abs(x_ij) + abs(mp.log(ref.dg(x_ij))) + abs(mp.log(ref.dg(x_ik)))
    err = abs(mp.mpf(float(s.log_d_ik)) - want)
    tol = ULPS * EPS * (1 + kappa)
    if name == "student_t3":  # g' of a custom link: log(g') or log g's central difference
        tol += 1e-7 * (1 + abs(want))
    assert err <= tol, (name, x_ik, x_kj, float(s.log_d_ik), float(want))
    record("score_sensitivity", float(err / max(abs(want), 1)))


# --- region_area, every method ---------------------------------------------------------------

_AREA_REFS = {"logistic": mp_logistic_area, "probit": mp_probit_area, "cauchit": mp_cauchit_area}
_REF_CACHE: dict = {}


def area_reference(name: str, M: float):
    key = (name, M)
    if key not in _REF_CACHE:
        with mp.workdps(40):
            _REF_CACHE[key] = _AREA_REFS[name](M)
    return _REF_CACHE[key]


def check_area(fn: str, est, truth) -> None:
    assert math.isfinite(est.value) and math.isfinite(est.error) and est.error >= 0, est
    err = abs(mp.mpf(est.value) - truth)
    assert err <= est.error, (fn, est, float(truth), float(err))  # the bar covers the truth
    rel = float(err / truth) if truth > 0 else 0.0
    record(fn, rel if truth > 1e-290 and est.value > 0 else None)


def quad_M(name):
    top = {"logistic": 300.0, "probit": 300.0, "cauchit": 60.0}[name]
    return st.one_of(
        st.floats(-12.0, top).map(lambda e: 1.0 + 10.0**e),
        st.sampled_from([1.0 + 1e-12, 2.0, 10.0, 1e13, 1e16, 10.0**top]),
    )


@pytest.mark.parametrize("name", ["logistic", "probit", "cauchit"])
def test_region_area_quad(name):
    @fast(8 if name == "logistic" else 5, 120)
    @given(M=quad_M(name), rtol=rtols)
    def run(M, rtol):
        truth = area_reference(name, M)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # rtol raised to its floor
            est = prefjax.region_area(prefjax.get_link(name), M, rtol=rtol)
        check_area(f"region_area quad ({name})", est, truth)
        if est.error <= 1e-9 * truth and truth > 1e-300:
            assert abs(est.value - float(truth)) <= max(1e-8, rtol) * float(truth)

    run()


@pytest.mark.parametrize("method", ["grid", "mc", "is"])
def test_region_area_sampling_methods(method):
    sizes = {"grid": st.integers(8, 400), "mc": st.integers(100, 100_000)}
    sizes["is"] = sizes["mc"]

    @fast(5, 120)
    @given(M=thresholds, n=sizes[method], seed=st.integers(0, 2**31 - 1))
    def run(M, n, seed):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            est = prefjax.region_area(prefjax.logistic, M, method=method, n=n, seed=seed)
        check_area(f"region_area {method}", est, area_reference("logistic", M))

    run()


@pytest.mark.parametrize("bad", [0, 1, 7, 99, 16385, 10**7, 1e7, True, "10"])
@pytest.mark.parametrize("method", ["grid", "mc", "is"])
def test_region_area_n_out_of_range_is_refused_at_once(method, bad):
    small = {"grid": 8, "mc": 100, "is": 100}[method]
    if isinstance(bad, int) and not isinstance(bad, bool) and small <= bad <= 10**9:
        if method == "grid" and bad > 16384:
            with pytest.raises(ValueError, match="n = "):
                prefjax.region_area(prefjax.logistic, 10.0, method=method, n=bad)
        return  # legal: run by the sweeps above (sizes that finish in seconds)
    with pytest.raises(CLEAR_ERRORS, match="n"):
        prefjax.region_area(prefjax.logistic, 10.0, method=method, n=bad)
    record(f"region_area {method}", error=True)


def test_region_area_custom_links_quad_against_is():
    """No closed form for these: "quad" and "is" (independent methods) agree within the sum of
    their error bars."""
    for g, M in ((MIXTURE, 30.0),):  # (each custom link compiles its own kernels: ~15 s)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            q = prefjax.region_area(g, M)
            s = prefjax.region_area(g, M, method="is", n=20_000)
        assert abs(q.value - s.value) <= q.error + s.error, (g, q, s)
        record("region_area quad (custom)", abs(q.value - s.value) / q.value)


# --- bradley_terry: closed forms against mpmath ----------------------------------------------


@fast(80)
@given(a=probabilities, b=probabilities, M=thresholds)
def test_bradley_terry(a, b, M):
    A, B = mp.mpf(a), mp.mpf(b)
    den = A * B + (1 - A) * (1 - B)
    checks = {
        "bradley_terry.compose": (bt.compose(a, b), A * B / den),
        "bradley_terry.d_ik": (bt.d_ik(a, b), B * (1 - B) / den**2),
        "bradley_terry.d_kj": (bt.d_kj(a, b), A * (1 - A) / den**2),
    }
    for fn, (got, want) in checks.items():
        assert np.isfinite(got), (fn, a, b, got)
        # Eq. (3)-(4) are rational in a, b: a few ulps of relative error, with the
        # absolute floor of subnormal results.
        assert abs(mp.mpf(float(got)) - want) <= ULPS * EPS * want + TINY, (fn, a, b)
        record(fn, rel_err(got, want) if want > TINY else None)
    area = bt.region_area(M)
    truth = mp_logistic_area(M)
    assert abs(mp.mpf(float(area)) - truth) <= ULPS * EPS * truth + 2.0**-1074, (M, area)
    record("bradley_terry.region_area", rel_err(area, truth) if truth > TINY else None)
    bounds = bt.region_bounds(b, M)
    with mp.workdps(60):
        lim = 1 / (1 + mp.mpf(M))
        g0 = 1 - (mp.sqrt((1 / B - 1) / M) - 1) / (1 / B - 2) if B != mp.mpf(1) / 2 else None
    if g0 is not None and (B < lim or B > 1 - lim) and abs(B - lim) > 1e-9 * lim:
        edge = bounds.low if B < lim else bounds.high
        assert np.isfinite(edge)
        assert abs(mp.mpf(float(edge)) - g0) <= 1e-10 * max(g0, 1 - g0) + 1e4 * EPS * g0
        record("bradley_terry.region_bounds", rel_err(edge, g0) if g0 > TINY else None)
    else:
        record("bradley_terry.region_bounds")


@pytest.mark.parametrize("bad", [True, "10", np.bool_(True), 0.0, -1.0, math.nan, math.inf])
def test_m_must_be_a_number_everywhere(bad):
    calls = {
        "region_area": lambda M: prefjax.region_area(prefjax.logistic, M),
        "is_m_sensitive": lambda M: prefjax.is_m_sensitive(prefjax.logistic, 0.5, 0.5, M),
        "theorem1_witness": lambda M: prefjax.theorem1_witness(prefjax.logistic, M),
        "bradley_terry.region_area": bt.region_area,
        "bradley_terry.region_bounds": lambda M: bt.region_bounds(0.3, M),
        "plackett_luce.region_area": lambda M: pl.region_area(M, 1.5, 0.5),
        "plackett_luce.numeric_region_area": lambda M: pl.numeric_region_area(M, 1.5, 0.5),
        "plackett_luce.robustness_vs_k": lambda M: pl.robustness_vs_k([1.0, 0.0, -1.0], M=M),
    }
    for fn, call in calls.items():
        if fn == "bradley_terry.region_area" and isinstance(bad, float) and bad == math.inf:
            continue  # the area at M = inf is 0: a legal limit of an array function
        with pytest.raises(CLEAR_ERRORS) as info:
            call(bad)
        assert "M" in str(info.value), (fn, bad, info.value)
        record(fn, error=True)


def test_tensor_requiring_grad_gets_the_detach_hint():
    class Tensor:  # duck-typed: prefjax never imports torch
        requires_grad = True

        def detach(self):
            return self

        def __array__(self, *args, **kwargs):
            raise RuntimeError("Can't call numpy() on Tensor that requires grad.")

    for call in (
        lambda: prefjax.sensitivity(prefjax.logistic, Tensor(), 0.5),
        lambda: prefjax.region_area(prefjax.logistic, Tensor()),
    ):
        with pytest.raises(TypeError, match=r"\.detach\(\)"):
            call()
        record("tensor inputs", error=True)


# --- Theorem 1 ---------------------------------------------------------------------------------


@fast(24, 60)
@given(name=st.sampled_from(["logistic", "probit", "cauchit", "mixture"]), M=thresholds)
def test_theorem1_witness(name, M):
    g, ref = LINK_PAIRS[name]
    try:
        w = prefjax.theorem1_witness(g, M)
    except CLEAR_ERRORS as exc:
        assert clear_error(exc, "g'", "M", "delta")
        record("theorem1_witness", error=True)
        return
    # x0: g' falls below g'(delta)/M there (Lemma 2), checked at 60 digits.
    with mp.workdps(60):
        eps_ = ref.dg(mp.mpf(w.delta)) / M
        assert ref.dg(mp.mpf(w.x0) * (1 + 1e-9) + 1e-300) <= eps_ * (1 + 1e-8)
    ratio = w.verify(200)
    assert np.isfinite(ratio) and ratio >= 1 - 1e-9, (name, M, ratio)
    record("theorem1_witness")


# --- Plackett-Luce and the score view --------------------------------------------------------

score_vectors = st.lists(
    st.one_of(st.floats(-30.0, 30.0), st.sampled_from([-700.0, 700.0, 1e6, -1e6])),
    min_size=3,
    max_size=5,
)


def mp_pl_log_prob(scores, omega):
    with mp.workdps(60):
        s = [mp.mpf(scores[o]) for o in omega]
        # -log(1 + sum_{m>l} exp(s_m - s_l)) by log1p: 1 + e^-700 would round at 60 digits
        return -sum(mp.log1p(sum(mp.exp(t - s[i]) for t in s[i + 1 :])) for i in range(len(s) - 1))


@fast(60)
@given(scores=score_vectors, data=st.data())
def test_plackett_luce(scores, data):
    n = len(scores)
    k = data.draw(st.integers(2, n))
    omega = tuple(data.draw(st.permutations(range(n)))[:k])
    lp = pl.log_prob(scores, omega)
    want = mp_pl_log_prob(scores, omega)
    assert np.isfinite(lp)
    # log p is a sum of K - 1 softplus terms of differences of scores up to 1e6: the
    # differences carry eps |s| each.
    tol = ULPS * EPS * (1 + abs(want) + 2 * k * max(abs(x) for x in scores))
    assert abs(mp.mpf(float(lp)) - want) <= tol, (scores, omega, lp, want)
    record("plackett_luce.log_prob", float(abs(mp.mpf(float(lp)) - want) / max(abs(want), 1)))
    u, v = sorted(data.draw(st.lists(st.integers(0, k - 1), min_size=2, max_size=2, unique=True)))
    try:
        s = pl.sensitivity(scores, omega, u, v)
    except CLEAR_ERRORS as exc:  # probabilities beyond float64
        assert clear_error(exc, "scores"), exc
        record("plackett_luce.sensitivity", error=True)
        return
    ab = pl.alpha_beta(scores, omega, u, v)
    for x in (*s, *ab):
        assert np.all(np.isfinite(x)), (scores, omega, u, v, s, ab)
    record("plackett_luce.sensitivity")


@fast(60)
@given(
    M=thresholds,
    alpha=st.floats(-3.0, 3.0).map(lambda e: 10.0**e),
    beta=st.floats(-3.0, 0.0).map(lambda e: 10.0**e),
    x=st.floats(1e-300, 1.0),
    y=st.floats(1e-300, 1.0),
)
def test_plackett_luce_closed_forms(M, alpha, beta, x, y):
    with mp.workdps(60):
        a, b, X, Y, MM = (mp.mpf(t) for t in (alpha, beta, x, y, M))
        den = a * X + Y
        want = {
            "plackett_luce.compose": (pl.compose(x, y, alpha, beta), b * X / den),
            "plackett_luce.d_uv": (pl.d_uv(x, y, alpha, beta), b * Y / den**2),
            "plackett_luce.d_vu": (pl.d_vu(x, y, alpha, beta), -b * X / den**2),
            "plackett_luce.region_area": (pl.region_area(M, alpha, beta), b**2 / (6 * a * MM**2)),
        }
    for fn, (got, w) in want.items():
        if abs(w) > 1e300 or abs(w) < TINY:
            record(fn)
            continue  # outside float64: inf or an underflow is the right rounding
        assert np.isfinite(got), (fn, M, alpha, beta, x, y, got)
        assert rel_err(got, w) <= ULPS * EPS, (fn, M, alpha, beta, x, y, got, w)
        record(fn, rel_err(got, w))


def test_plackett_luce_numeric_area_against_proposition_2():
    for M, a, b, rtol in ((2.0, 1.5, 0.5, 1e-12), (1e4, 2.0, 0.3, 1e-20), (1e150, 1.0, 1.0, 0.5)):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            try:
                est = pl.numeric_region_area(M, a, b, rtol=rtol)
            except CLEAR_ERRORS as exc:
                assert clear_error(exc, "M", "rtol")
                record("plackett_luce.numeric_region_area", error=True)
                continue
        truth = mp.mpf(b) ** 2 / (6 * mp.mpf(a) * mp.mpf(M) ** 2)
        check_area("plackett_luce.numeric_region_area", est, truth)


@fast(40)
@given(
    s=st.lists(st.floats(-30.0, 30.0), min_size=3, max_size=3),
)
def test_score_view_bradley_terry_limit(s):
    """K = 2 with Lemma 1's coordinates is Bradley-Terry's Eq. (4), at 60 digits."""
    view = sv.implied_sensitivity(s, (0, 1), ((0, 2), (2, 1)), (0, 2))
    with mp.workdps(60):
        sig = lambda x: 1 / (1 + mp.exp(-x))  # noqa: E731
        a, b = sig(mp.mpf(s[0]) - s[2]), sig(mp.mpf(s[2]) - s[1])
        want = b * (1 - b) / (a * b + (1 - a) * (1 - b)) ** 2
    assert np.isfinite(view.d_a)
    # Through scores: d_a carries the rounding of the score differences (|s| ~ 30).
    assert rel_err(view.d_a, want) <= ULPS * EPS * (1 + 4 * 30), (s, view, want)
    record("score_view.implied_sensitivity", rel_err(view.d_a, want))
    sv_ = sv.score_view_sensitivity(s, (0, 1, 2), 0, 1)
    assert all(np.all(np.isfinite(x)) for x in sv_ if isinstance(x, jax.Array | float))
    record("score_view.score_view_sensitivity")


# --- links and their checks ------------------------------------------------------------------


def test_check_assumptions_on_custom_links():
    for g in (STUDENT_T3, SCALED, MIXTURE):
        report = prefjax.check_assumptions(g)
        assert report.ok, str(report)
        record("check_assumptions")

    def nan_tails(x):
        return jnp.where(jnp.abs(x) > 1e299, jnp.nan, _t3_pdf(x))

    bad = prefjax.link(_t3, derivative=nan_tails, name="nan_tails", check=False)
    report = prefjax.check_assumptions(bad)
    (failed,) = report.failed
    assert failed.number == 5 and "nan" in failed.evidence and "e+299" in failed.evidence
    record("check_assumptions")


def test_a_wrong_inverse_is_refused():
    record("link", error=True)
    with pytest.raises(prefjax.AssumptionError, match="inverse"):
        prefjax.link(jax.nn.sigmoid, inverse=lambda p: 2.0 * jnp.log(p / (1 - p)))


@pytest.mark.parametrize(
    "args",
    [
        (42,),
        ("logistic",),
        (jax.nn.sigmoid, 3.0),
        (lambda x: jnp.sign(x) * 0.5 + 0.5,),  # a step: not differentiable
        (lambda x: 0.5 + 0.0 * x,),  # constant
    ],
)
def test_link_refuses_what_is_not_a_link(args):
    with pytest.raises(CLEAR_ERRORS):
        prefjax.link(*args)
    record("link", error=True)


# --- the issue's own cases, one by one ---------------------------------------------------------


def test_tiny_rtol_is_raised_to_the_floor_not_looped_on():
    with pytest.warns(RuntimeWarning, match="rtol = 1e-20 is below"):
        est = prefjax.region_area(prefjax.logistic, 10.0, rtol=1e-20)
    check_area("region_area quad (logistic)", est, mp_logistic_area(10.0))


def test_adaptive_quadrature_is_capped_with_an_honest_error():
    from prefjax import _quadrature as qd

    rng = np.random.default_rng(0)
    noise = lambda x: 1.0 + 1e-6 * rng.standard_normal(x.shape)  # noqa: E731  (never converges)
    with pytest.warns(RuntimeWarning, match="stopped after"):
        value, error, n = qd.adaptive_gk(noise, [0.0], [1.0], rtol=1e-15, max_evals=20_000)
    assert n <= 20_000 and abs(value - 1.0) <= error


@pytest.mark.parametrize("M", [1e14, 1e17])
def test_cauchit_at_large_M_is_fast_and_covered(M):
    est = prefjax.region_area(prefjax.cauchit, M)
    check_area("region_area quad (cauchit)", est, mp_cauchit_area(M))


@pytest.mark.parametrize("method", ["quad", "grid", "mc", "is"])
@pytest.mark.parametrize("M", [1e15, 1e300])  # (1e13, 1e16: in the sweep's list)
def test_large_M_every_method_covers_proposition_1(method, M):
    n = {"quad": None, "grid": 200, "mc": 10_000, "is": 10_000}[method]
    est = prefjax.region_area(prefjax.logistic, M, method=method, n=n)
    check_area(f"region_area {method}", est, mp_logistic_area(M))
    if method == "quad" and M <= 1e16:  # ~1e-13 relative, Proposition 1
        assert rel_err(est.value, mp_logistic_area(M)) <= 1e-12


def test_heavy_tails_at_1e_300_in_log_space():
    for p in (1e-155, 1e-160, 1e-300):
        s = prefjax.sensitivity(prefjax.cauchit, p, 0.5)
        assert rel_err(s.d_ik, MP_LINKS["cauchit"].d_ik(p, 0.5)) <= ULPS * EPS
        s = prefjax.sensitivity(STUDENT_T3, p, 0.5)
        want = MP_T3.d_kj(p, 0.5)  # ~p^(4/3); d_ik is exactly 1 (x_kj = 0)
        assert float(s.d_ik) == 1.0
        assert rel_err(s.d_kj, want) <= 1e-7 or abs(mp.mpf(float(s.d_kj)) - want) <= TINY


def mp_hessian(ref, p_ik, p_kj):
    """The Hessian of p_ij(p_ik, p_kj) at 60 digits: Eq. (2)'s partials differentiated by the
    chain rule, d/dp = (1/g'(x)) d/dx, with L' = (log g')' from mpmath's own derivative."""
    with mp.workdps(60):
        xa, xb = ref.inv(p_ik), ref.inv(p_kj)
        x = xa + xb
        # (a relative step: at x = -1e100 an absolute one would not move log g')
        dL = lambda t: mp.diff(lambda u: mp.log(ref.dg(u)), t, h=max(1, abs(t)) * 1e-20)  # noqa: E731
        d_ik, d_kj = ref.dg(x) / ref.dg(xa), ref.dg(x) / ref.dg(xb)
        return [
            [(dL(x) - dL(xa)) * d_ik / ref.dg(xa), dL(x) * d_ik / ref.dg(xb)],
            [dL(x) * d_kj / ref.dg(xa), (dL(x) - dL(xb)) * d_kj / ref.dg(xb)],
        ]


def test_hessian_of_lemma_1_in_log_space():
    """jax.hessian of g.compose at (1e-300, 1/2) against mpmath: finite, symmetric, right."""
    sig = prefjax.link(jax.nn.sigmoid, name="sigmoid")
    for g, ref in ((sig, MP_LINKS["logistic"]), (STUDENT_T3, MP_T3)):
        h = np.array(jax.hessian(g.compose, argnums=(0, 1))(1e-300, 0.5), dtype=float)
        want = mp_hessian(ref, 1e-300, 0.5)
        assert np.all(np.isfinite(h)), h
        assert abs(h[0, 1] - h[1, 0]) <= 1e-12 * abs(h[0, 1]), h  # symmetric to rounding
        for got, w in zip(h.ravel(), [w for row in want for w in row], strict=True):
            # log-space partials: eps |log g'| ~ 1e-13; the t3's L' by central differences
            # of log g (its g' underflows at x ~ -1e100): ~1e-8
            assert abs(mp.mpf(got) - w) <= 1e-7 * abs(w) + TINY, (g, h, want)


def test_student_t_with_betainc_passes_the_assumption_grid():
    report = prefjax.check_assumptions(STUDENT_T3)  # near-duplicate grid points at x = -1e-3
    assert report.ok, str(report)
