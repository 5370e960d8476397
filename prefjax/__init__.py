"""prefjax: how robust are preference models? Sensitivities of implied preferences in JAX.

Under a pairwise model g (Bradley-Terry, Thurstone-Mosteller, any link), the preference
p_ij implied by p_ik and p_kj is g(g^-1(p_ik) + g^-1(p_kj)) (Lemma 1 of Xu & Kankanhalli,
"Strong Preferences Affect the Robustness of Value Alignment"); prefjax computes it, its
derivatives, the regions where they exceed M, and the paper's theorems, for any link.

The library never enables JAX's x64 mode; do it yourself for work near 0 and 1:
``jax.config.update("jax_enable_x64", True)``.
"""

from . import bradley_terry as bradley_terry
from . import plackett_luce as plackett_luce
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
from ._links import Link as Link
from ._links import cauchit as cauchit
from ._links import link as link
from ._links import logistic as logistic
from ._links import probit as probit
from ._regions import AreaEstimate as AreaEstimate
from ._regions import is_m_sensitive as is_m_sensitive
from ._regions import region_area as region_area
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

__all__ = [
    "AssumptionCheck",
    "AssumptionError",
    "AssumptionReport",
    "AreaEstimate",
    "Audit",
    "AuditBootstrap",
    "Comparisons",
    "ConvergenceWarning",
    "Fit",
    "Link",
    "PrecisionWarning",
    "ScoreSensitivity",
    "Sensitivity",
    "audit",
    "bradley_terry",
    "cauchit",
    "check_assumptions",
    "compose",
    "example_data",
    "fit",
    "is_m_sensitive",
    "link",
    "logistic",
    "plackett_luce",
    "probit",
    "region_area",
    "score_sensitivity",
    "sensitivity",
    "Theorem1Witness",
    "theorem1_witness",
    "theorem2_table",
]
