"""No hang, no silent NaN, no internal JAX error: float32 (x64 off) at every public entry point,
half precision, subnormal inputs, the checked tier under jit."""

import os
import subprocess
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import mpmath as mp
import numpy as np
import pytest
from jax.experimental import checkify

import prefjax
from prefjax import _cache, _validate

from .references import MP_LINKS

ENTRY_POINTS = Path(__file__).with_name("float32_entry_points.py")
FLOAT32_LIMIT_S = 120  # the script takes ~15 s on a loaded 2-core machine; a hang is minutes


def test_every_public_entry_point_in_float32_ends_fast_and_clearly():
    """Each call (tests/prefjax/float32_entry_points.py walks __all__ of prefjax and its
    submodules) gives the float64 reference at float32 precision or the clear x64 error."""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2]), "JAX_ENABLE_X64": "0"}
    t0 = time.perf_counter()
    try:
        run = subprocess.run(
            [sys.executable, str(ENTRY_POINTS)],
            capture_output=True,
            text=True,
            timeout=FLOAT32_LIMIT_S,
            env=env,
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(
            f"the float32 entry points did not finish in {FLOAT32_LIMIT_S} s:\n{exc.stdout}"
        )
    assert run.returncode == 0, run.stdout + run.stderr
    assert time.perf_counter() - t0 < FLOAT32_LIMIT_S


def test_require_x64_says_how_to_enable_it():
    with jax.enable_x64(False):
        with pytest.raises(RuntimeError, match=r'jax.config.update\("jax_enable_x64", True\)'):
            _validate.require_x64("prefjax.region_area")
        t0 = time.perf_counter()
        with pytest.raises(RuntimeError, match=r"prefjax.region_area computes in float64"):
            prefjax.region_area(prefjax.logistic, 10)
        with pytest.raises(RuntimeError, match="enable_x64"):
            prefjax.plackett_luce.numeric_region_area(2, 1.5, 0.5)
        with pytest.raises(RuntimeError, match="run by prefjax.link unless check=False"):
            prefjax.link(lambda x: 0.5 * jax.nn.sigmoid(x) + 0.5 * jax.nn.sigmoid(3 * x))
        assert time.perf_counter() - t0 < 1.0  # at once, before any compilation
    _validate.require_x64("anything")  # x64 on (conftest): no error


# --- half precision ------------------------------------------------------------------------

PL, SV, BT = prefjax.plackett_luce, prefjax.score_view, prefjax.bradley_terry
HALF_CALLS = {
    "compose": lambda h: prefjax.compose(prefjax.logistic, h, 0.5),
    "sensitivity": lambda h: prefjax.sensitivity(prefjax.probit, h, 0.5),
    "score_sensitivity": lambda h: prefjax.score_sensitivity(prefjax.cauchit, h, 0.5),
    "is_m_sensitive": lambda h: prefjax.is_m_sensitive(prefjax.logistic, h, 0.5, 2.0),
    "Link.__call__": lambda h: prefjax.probit(h),
    "Link.inverse": lambda h: prefjax.probit.inverse(h),
    "Link.derivative": lambda h: prefjax.logistic.derivative(h),
    "Link.log_derivative": lambda h: prefjax.cauchit.log_derivative(h),
    "bradley_terry.compose": lambda h: BT.compose(h, 0.5),
    "bradley_terry.d_ik": lambda h: BT.d_ik(0.5, h),
    "bradley_terry.d_kj": lambda h: BT.d_kj(h, 0.5),
    "bradley_terry.gamma0": lambda h: BT.gamma0(h, 20.0),
    "bradley_terry.region_bounds": lambda h: BT.region_bounds(h, 20.0),
    "bradley_terry.region_area": lambda h: BT.region_area(h + 9),
    "plackett_luce.log_prob": lambda h: PL.log_prob(jnp.stack([h, h, h]), (0, 1)),
    "plackett_luce.sensitivity": lambda h: PL.sensitivity(jnp.stack([h, h, h]), (0, 1, 2), 0, 1),
    "plackett_luce.compose": lambda h: PL.compose(h, 0.3, 1.5, 0.5),
    "plackett_luce.d_uv": lambda h: PL.d_uv(h, 0.3, 1.5, 0.5),
    "plackett_luce.prob_from_ratios": lambda h: PL.prob_from_ratios(jnp.stack([h, h])),
    "plackett_luce.region_bounds": lambda h: PL.region_bounds(2.0, 1.5, 0.5, at=h),
    "score_view.random_utility_log_prob": lambda h: SV.random_utility_log_prob(
        jnp.stack([h, h]), (0, 1)
    ),
    "theorem2_table": lambda h: prefjax.theorem2_table(scores=jnp.stack([h] * 8), Ks=(3,)),
}


@pytest.mark.parametrize("dtype", [jnp.float16, jnp.bfloat16], ids=["float16", "bfloat16"])
@pytest.mark.parametrize("name", sorted(HALF_CALLS))
def test_half_precision_is_refused_with_a_type_error(name, dtype):
    h = jnp.asarray(0.25, dtype)
    with pytest.raises(TypeError, match=rf"dtype {jnp.dtype(dtype).name}; prefjax computes in"):
        HALF_CALLS[name](h)


# --- subnormal inputs ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "g, p", [("logistic", 5e-324), ("probit", 1e-310), ("cauchit", 2e-308 / 3)]
)
def test_subnormal_probabilities_are_refused_not_nan(g, p):
    link = prefjax.LINKS[g]
    for fn in (prefjax.sensitivity, prefjax.compose):
        with pytest.raises(ValueError, match=r"p_ik = .* is subnormal in float64"):
            fn(link, p, 0.3)
        with pytest.raises(ValueError, match=r"p_kj\[1\] = .* is subnormal"):
            fn(link, [0.3, 0.4], [0.2, p])


def test_the_score_of_a_subnormal_probability_is_analysed_exactly():
    """What the refusal points to: score_sensitivity at x = logit(5e-324), against mpmath."""
    mp.mp.dps = 50
    x_ik = float(mp.log(mp.mpf(5e-324)) - mp.log1p(-mp.mpf(5e-324)))
    x_kj = float(mp.log(mp.mpf(0.3)) - mp.log1p(-mp.mpf(0.3)))
    s = prefjax.score_sensitivity(prefjax.logistic, x_ik, x_kj)
    ref = MP_LINKS["logistic"]
    x_ij = mp.mpf(x_ik) + mp.mpf(x_kj)
    want = mp.log(ref.dg(x_ij)) - mp.log(ref.dg(mp.mpf(x_ik)))
    assert abs(float(s.log_d_ik) - float(want)) < 1e-12 * max(1.0, abs(float(want)))


# --- float32: factors of Eq. (2) beyond the dtype's range ----------------------------------


def test_float32_cauchit_far_tail_is_repaired_from_log_derivatives():
    """cauchit at p_ik = 1e-20: g'(x_ik) ~ 3e-40 flushes to 0 in float32 (d_ik was 0 * inf =
    NaN); now d_ik and d_kj match mpmath at 50 digits to float32 precision."""
    mp.mp.dps = 50
    ref = MP_LINKS["cauchit"]
    with jax.enable_x64(False):
        s = prefjax.sensitivity(prefjax.cauchit, 1e-20, 0.5)
    assert s.d_ik.dtype == jnp.float32
    a = mp.mpf(float(np.float32(1e-20)))
    x_ik, x_kj = ref.inv(a), ref.inv(mp.mpf(0.5))
    x_ij = x_ik + x_kj
    d_ik = ref.dg(x_ij) / ref.dg(x_ik)
    d_kj = ref.dg(x_ij) / ref.dg(x_kj)
    assert abs(float(s.d_ik) / float(d_ik) - 1) < 1e-6
    # d_kj ~ 9.87e-40 is subnormal in float32: 2^-149 absolute resolution
    assert abs(float(s.d_kj) - float(d_kj)) <= 2.0**-149 + 1e-6 * float(d_kj)
    assert abs(float(s.p_ij) / float(ref.g(x_ij)) - 1) < 1e-6


def test_float32_derivative_outside_the_range_warns_not_nan():
    with jax.enable_x64(False):
        with pytest.warns(prefjax.PrecisionWarning, match="outside the range of float32"):
            s = prefjax.sensitivity(prefjax.cauchit, 1e-30, 0.5)
    assert float(s.d_kj) == 0.0 and float(s.d_ik) == pytest.approx(1.0, rel=1e-6)


# --- the checked tier under jit ------------------------------------------------------------


def test_jit_without_checks_gives_nan_and_checked_reports_the_value():
    g = prefjax.logistic
    assert np.isnan(jax.jit(lambda p: prefjax.sensitivity(g, p, 0.3).d_ik)(1.5))
    f = checkify.checkify(jax.jit(lambda p: prefjax.sensitivity(g, p, 0.3, checked=True)))
    err, _ = f(1.5)
    with pytest.raises(Exception, match=r"p_ik = 1.5 \(flat index 0\) is outside"):
        err.throw()
    err, _ = f(jnp.array([0.2, 0.5, 1.5]))
    assert "flat index 2" in err.get()
    err, s = f(0.4)
    err.throw()  # valid: no error
    np.testing.assert_allclose(s.d_ik, prefjax.sensitivity(g, 0.4, 0.3).d_ik, rtol=1e-15)
    c = checkify.checkify(jax.jit(lambda q: prefjax.compose(g, 0.3, q, checked=True)))
    err, _ = c(jnp.nan)
    assert "p_kj = nan" in err.get()


# --- the compilation cache -----------------------------------------------------------------


def test_import_enables_the_compilation_cache_in_xdg_cache_home(tmp_path):
    code = (
        "import jax, prefjax; "
        "jax.config.update('jax_enable_x64', True); "
        "print(jax.config.jax_compilation_cache_dir); "
        "print(jax.config.jax_persistent_cache_min_compile_time_secs); "
        "prefjax.sensitivity(prefjax.probit, 0.9, 0.3)"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("JAX_")}
    env.pop("PREFJAX_NO_COMPILATION_CACHE")
    env.update(XDG_CACHE_HOME=str(tmp_path), PYTHONPATH=str(Path(__file__).parents[2]))
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    cache = tmp_path / "prefjax" / "jax"
    assert out.stdout.split() == [str(cache), str(_cache.MIN_COMPILE_TIME_S)]
    assert any(cache.iterdir()), "no compiled program was written"


def test_the_compilation_cache_is_left_alone_when_off_or_configured(monkeypatch, tmp_path):
    assert os.environ["PREFJAX_NO_COMPILATION_CACHE"] == "1"  # conftest: tests never write
    assert _cache.enable_compilation_cache() is None
    assert jax.config.jax_compilation_cache_dir is None
    monkeypatch.setenv("PREFJAX_NO_COMPILATION_CACHE", "0")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert _cache.default_cache_dir() == tmp_path / "prefjax" / "jax"
    with _restore_config("jax_enable_compilation_cache", False):
        assert _cache.enable_compilation_cache() is None
    with _restore_config("jax_compilation_cache_dir", str(tmp_path / "mine")):
        assert _cache.enable_compilation_cache() is None  # the user's own cache
        assert jax.config.jax_compilation_cache_dir == str(tmp_path / "mine")
    assert not (tmp_path / "prefjax").exists()


class _restore_config:
    """Set a jax.config option for a block, then put the old value back."""

    def __init__(self, name, value):
        self.name, self.value = name, value

    def __enter__(self):
        self.old = getattr(jax.config, self.name)
        jax.config.update(self.name, self.value)

    def __exit__(self, *exc):
        jax.config.update(self.name, self.old)
