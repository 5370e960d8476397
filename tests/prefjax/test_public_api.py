"""Every public name of the spec imports, and __all__ lists exactly what __init__ exports."""

import importlib
import subprocess
import sys

import prefjax

SPEC_NAMES = [
    "Link",
    "logistic",
    "probit",
    "cauchit",
    "link",
    "check_assumptions",
    "AssumptionError",
    "compose",
    "sensitivity",
    "Sensitivity",
    "score_sensitivity",
    "ScoreSensitivity",
    "bradley_terry",
]


def test_spec_names_are_public():
    for name in SPEC_NAMES:
        assert name in prefjax.__all__, name
        assert getattr(prefjax, name) is not None


def test_all_is_importable():
    for name in prefjax.__all__:
        assert hasattr(prefjax, name), name
    assert sorted(prefjax.__all__) == prefjax.__all__ or len(set(prefjax.__all__)) == len(
        prefjax.__all__
    )


def test_bradley_terry_names():
    bt = importlib.import_module("prefjax.bradley_terry")
    for name in ["compose", "d_ik", "d_kj", "gamma0", "region_bounds", "region_area"]:
        assert callable(getattr(bt, name))


def test_import_needs_no_torch_and_no_x64():
    code = (
        "import sys, jax, prefjax; "
        "assert 'torch' not in sys.modules, 'prefjax imported torch'; "
        "assert not jax.config.jax_enable_x64, 'prefjax flipped x64'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
