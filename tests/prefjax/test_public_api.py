"""Every public name of the spec imports, and __all__ lists exactly what __init__ exports."""

import importlib
import inspect
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
PUBLIC_MODULES = ["bradley_terry", "plackett_luce", "score_view", "plot"]
NOT_EXPORTED = {"cli", "reproduce"}  # entry points, loaded only when run


def test_spec_names_are_public():
    for name in SPEC_NAMES:
        assert name in prefjax.__all__, name
        assert getattr(prefjax, name) is not None


def test_all_lists_exactly_the_exports_once():
    assert len(set(prefjax.__all__)) == len(prefjax.__all__), "__all__ repeats a name"
    for name in prefjax.__all__:
        assert hasattr(prefjax, name), name
    exported = {
        name
        for name, value in vars(prefjax).items()
        if not name.startswith("_") and not (inspect.ismodule(value) and name in NOT_EXPORTED)
    }
    assert exported - set(prefjax.__all__) == set(), "exported but not in __all__"
    assert set(prefjax.__all__) - exported <= {"plot"}, "in __all__ but not exported"


def test_public_modules_are_attributes_and_their_names_resolve():
    for mod_name in PUBLIC_MODULES:
        assert mod_name in prefjax.__all__, mod_name
        module = getattr(prefjax, mod_name)
        assert module is importlib.import_module(f"prefjax.{mod_name}")
        assert len(set(module.__all__)) == len(module.__all__), mod_name
        for name in module.__all__:
            obj = getattr(module, name)
            assert obj.__doc__, f"prefjax.{mod_name}.{name} has no docstring"


def test_links_mapping_names_the_built_in_links():
    assert prefjax.LINKS == {
        "logistic": prefjax.logistic,
        "probit": prefjax.probit,
        "cauchit": prefjax.cauchit,
    }
    for name, g in prefjax.LINKS.items():
        assert g.name == name and prefjax.get_link(name) is g
    assert prefjax.get_link(prefjax.probit) is prefjax.probit


def test_bradley_terry_names():
    bt = importlib.import_module("prefjax.bradley_terry")
    for name in ["compose", "d_ik", "d_kj", "gamma0", "region_bounds", "region_area"]:
        assert callable(getattr(bt, name))


def test_import_needs_no_torch_matplotlib_scipy_and_no_x64():
    code = (
        "import sys, jax, prefjax; "
        "assert not jax.config.jax_enable_x64, 'prefjax flipped x64'; "
        "loaded = [m for m in ('torch', 'matplotlib', 'scipy') if m in sys.modules]; "
        "assert not loaded, f'prefjax imported {loaded}'; "
        "assert callable(prefjax.plot.sensitive_regions); "
        "assert 'matplotlib' not in sys.modules, 'prefjax.plot imported matplotlib'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
