"""prefjax: how robust are preference models? Sensitivities of implied preferences in JAX.

Under a pairwise model g (Bradley-Terry, Thurstone-Mosteller, any link), the preference
p_ij implied by p_ik and p_kj is g(g^-1(p_ik) + g^-1(p_kj)) (Lemma 1 of Xu & Kankanhalli,
"Strong Preferences Affect the Robustness of Value Alignment"); prefjax computes it, its
derivatives, the regions where they exceed M, and the paper's theorems, for any link.

The library never enables JAX's x64 mode; do it yourself for work near 0 and 1:
``jax.config.update("jax_enable_x64", True)``. ``import prefjax`` loads neither matplotlib
nor scipy nor torch; :mod:`prefjax.plot` is loaded on first use. It switches on JAX's
persistent compilation cache (``~/.cache/prefjax/jax``) unless you configured one yourself or
set ``PREFJAX_NO_COMPILATION_CACHE=1``.
"""

import importlib as _importlib

from . import _cache
from . import bradley_terry as bradley_terry
from . import plackett_luce as plackett_luce
from . import score_view as score_view
from ._assumptions import AssumptionCheck as AssumptionCheck
from ._assumptions import AssumptionError as AssumptionError
from ._assumptions import AssumptionReport as AssumptionReport
from ._assumptions import check_assumptions as check_assumptions
from ._audit import Audit as Audit
from ._audit import AuditBootstrap as AuditBootstrap
from ._audit import audit as audit
from ._comparisons import Comparisons as Comparisons
from ._comparisons import example_data as example_data
from ._fit import ConvergenceWarning as ConvergenceWarning
from ._fit import Fit as Fit
from ._fit import fit as fit
from ._link import Link as Link
from ._link_comparison import LinkComparison as LinkComparison
from ._link_comparison import compare_links as compare_links
from ._links import LINK_FAMILIES as LINK_FAMILIES
from ._links import LINKS as LINKS
from ._links import cauchit as cauchit
from ._links import get_link as get_link
from ._links import link as link
from ._links import logistic as logistic
from ._links import probit as probit
from ._links import scaled_logistic as scaled_logistic
from ._links import student_t as student_t
from ._regions import is_m_sensitive as is_m_sensitive
from ._regions import region_area as region_area
from ._results import AreaEstimate as AreaEstimate
from ._results import RegionBounds as RegionBounds
from ._sensitivity import ScoreSensitivity as ScoreSensitivity
from ._sensitivity import Sensitivity as Sensitivity
from ._sensitivity import compose as compose
from ._sensitivity import score_sensitivity as score_sensitivity
from ._sensitivity import sensitivity as sensitivity
from ._theorem1 import Theorem1Witness as Theorem1Witness
from ._theorem1 import theorem1_witness as theorem1_witness
from ._theorem2 import theorem2_table as theorem2_table
from ._validate import PrecisionWarning as PrecisionWarning

__version__ = "0.1.0"

# JAX's persistent compilation cache in ~/.cache/prefjax/jax unless you configured your own or
# set PREFJAX_NO_COMPILATION_CACHE=1 (see prefjax/_cache.py and docs/getting-started.md).
_compilation_cache_dir = _cache.enable_compilation_cache()

_LAZY_MODULES = ("plot",)  # figures: loaded on first use of prefjax.plot

__all__ = [
    "AreaEstimate",
    "AssumptionCheck",
    "AssumptionError",
    "AssumptionReport",
    "Audit",
    "AuditBootstrap",
    "Comparisons",
    "ConvergenceWarning",
    "Fit",
    "LINKS",
    "LINK_FAMILIES",
    "Link",
    "LinkComparison",
    "PrecisionWarning",
    "RegionBounds",
    "ScoreSensitivity",
    "Sensitivity",
    "Theorem1Witness",
    "audit",
    "bradley_terry",
    "cauchit",
    "check_assumptions",
    "compare_links",
    "compose",
    "example_data",
    "fit",
    "get_link",
    "is_m_sensitive",
    "link",
    "logistic",
    "plackett_luce",
    "plot",
    "probit",
    "region_area",
    "score_sensitivity",
    "score_view",
    "scaled_logistic",
    "sensitivity",
    "student_t",
    "theorem1_witness",
    "theorem2_table",
]


def __getattr__(name: str):
    if name in _LAZY_MODULES:
        return _importlib.import_module(f"{__name__}.{name}")  # also sets it as an attribute
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted({*globals(), *_LAZY_MODULES})
