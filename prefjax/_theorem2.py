"""Theorem 2 for any link and K: pairwise M-sensitive areas against the K-tuple areas."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np

from . import _kmodels as km
from . import _validate as vd
from . import bradley_terry as bt
from . import plackett_luce as pl
from . import score_view as sv
from ._link import Link
from ._links import as_link, logistic, probit
from ._regions import region_area

# The K-tuple random-utility model whose pairwise margin is each built-in link.

COLUMNS = (
    "link",
    "M",
    "K",
    "pairwise_area",
    "alpha",
    "beta",
    "paper_area",
    "paper_area_numeric",
    "score_model",
    "score_area",
    "holds_paper",
    "holds_score",
)


class Theorem2Table(list):
    """A list of row dicts (keys :data:`COLUMNS`) that prints as an aligned table."""

    def __str__(self) -> str:
        def fmt(x):
            if isinstance(x, bool | np.bool_):
                return "yes" if x else "NO"
            if x is None:
                return "-"
            if isinstance(x, float):
                return "nan" if math.isnan(x) else f"{x:.6g}"
            return str(x)

        cells = [list(COLUMNS)] + [[fmt(row[c]) for c in COLUMNS] for row in self]
        widths = [max(len(r[i]) for r in cells) for i in range(len(COLUMNS))]
        lines = ["  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)) for r in cells]
        return "\n".join(lines)

    __repr__ = __str__


def _pairwise_area(g: Link, M: float, rtol: float) -> float:
    """A(Omega_M(p_ij, p_ik)): Proposition 1 for the logistic link, else the region machinery."""
    if g.name == "logistic" and M > 1:
        return float(bt.region_area(M))
    return float(region_area(g, M, rtol=rtol).value)


@vd.needs_x64("prefjax.theorem2_table")
def theorem2_table(
    links: Iterable = None,
    Ms: Sequence[float] = (2.0, 10.0),
    Ks: Iterable[int] = range(3, 9),
    *,
    scores=None,
    u: int = 0,
    v: int = 1,
    score_view=("plackett_luce",),
    rtol: float = 1e-8,
) -> Theorem2Table:
    """Theorem 2, row by row: A(Omega_M(p_ij, p_ik)) of each link against the K-tuple areas.

    Theorem 2 states A(Omega_M(p_ij^BT, p_ik^BT)) > A(Omega_M(p_omega^(K), p_omega_uv^(K))) for
    all M > 1 and K > 2, the right-hand side by Proposition 2. Each row compares, for one link,
    M and K:

    * ``pairwise_area``: the link's pairwise area (Proposition 1 for the logistic link, the
      region machinery :func:`prefjax.region_area` otherwise);
    * ``paper_area``: Proposition 2, beta^2 / (6 alpha M^2), with alpha, beta (Eq. (10)) of the
      Plackett-Luce model at ``scores`` for omega = (0, ..., K-1) and positions (u, v), and
      ``paper_area_numeric``: the same region's area by :func:`prefjax.plackett_luce.numeric_region_area`;
    * ``score_area``: the score-based view (:func:`prefjax.score_view.score_view_area`) for the
      K-tuple model whose pairwise margin is the link (``score_model``: Plackett-Luce for the
      logistic link, the K-tuple probit model for the probit link; None for other links), with
      the scores of omega[u] and omega[v] varying and the others fixed at ``scores``;
    * ``holds_paper`` / ``holds_score``: whether pairwise_area exceeds the K-tuple area.

    The paper's proof bounds the pairwise area below by 1/(5 M^2) > 1/(6 M^2) >= beta^2 /
    (6 alpha M^2) (Appendix B.3), a bound that holds for K = 2 (alpha = beta = 1) as well.

    Cost: the paper's view is instant. Each score-view area is a 2-D integral: a few seconds
    for Plackett-Luce (plus a compilation per K), about half a minute to a minute and a half
    for the K-tuple probit model (every point costs three recursions), which is therefore only
    computed when asked for (``score_view=True`` or ``("plackett_luce", "probit")``).

    Args:
        links: links (default: ``(prefjax.logistic, prefjax.probit)``).
        Ms: thresholds, > 0 (Theorem 2 needs M > 1).
        Ks: tuple lengths, >= 2 (Theorem 2: K > 2; the score view needs K >= 3).
        scores: (N,) scores with N >= max(Ks); default all equal (zeros).
        u, v: positions of the pair, 0 <= u < v < min(Ks).
        score_view: which K-tuple models get score-based areas: a tuple of "plackett_luce"
            and/or "probit", True (both) or False (none).
        rtol: relative error target of the numeric areas.

    Returns:
        :class:`Theorem2Table`, a list of dicts that prints as a table.

    Examples:
        >>> import prefjax
        >>> t = prefjax.theorem2_table([prefjax.logistic], Ms=[2.0], Ks=[3], score_view=False)
        >>> row = t[0]
        >>> row["K"], row["alpha"], row["beta"]   # equal scores: alpha = 1 + 1, beta = 1/2
        (3, 2.0, 0.5)
        >>> round(row["pairwise_area"], 6), round(row["paper_area"], 6), row["holds_paper"]
        (0.073919, 0.005208, True)
    """
    links = [logistic, probit] if links is None else [as_link(g, "links") for g in links]
    Ms = [vd.check_positive_number("M", M) for M in Ms]
    Ks = [vd.as_index("Ks", k) for k in Ks]
    if not Ks or min(Ks) < 2:
        raise ValueError(f"Ks must be tuple lengths >= 2; got {Ks}")
    rtol = vd.check_positive_number("rtol", rtol)
    k_max = max(Ks)
    if scores is None:
        scores = np.zeros(k_max)
    scores = np.asarray(vd.check_scores(scores), dtype=np.float64)
    if scores.ndim != 1 or scores.shape[0] < k_max:
        raise ValueError(
            f"scores must be one vector of at least max(Ks) = {k_max} scores; got shape "
            f"{scores.shape}"
        )
    u, v_ = vd.check_positions(u, v, min(Ks))
    if score_view is True:
        score_view = ("plackett_luce", "probit")
    elif score_view is False or score_view is None:
        score_view = ()
    score_view = tuple(
        vd.check_choice("score_view", m, ("plackett_luce", "probit")) for m in score_view
    )

    rows = Theorem2Table()
    for g in links:
        model = km.LINK_MODELS.get(g.name)
        for M in Ms:
            pairwise = _pairwise_area(g, M, rtol)
            for k in Ks:
                omega = tuple(range(k))
                ab = pl.alpha_beta(scores, omega, u, v_)
                alpha, beta = float(ab.alpha), float(ab.beta)
                paper = float(pl.region_area(M, alpha, beta))
                numeric = pl.numeric_region_area(M, alpha, beta, rtol=rtol).value
                score_area = None
                if model in score_view and k >= 3:
                    score_area = sv.score_view_area(scores, omega, u, v_, M, model=model).value
                rows.append(
                    {
                        "link": g.name,
                        "M": M,
                        "K": k,
                        "pairwise_area": pairwise,
                        "alpha": alpha,
                        "beta": beta,
                        "paper_area": paper,
                        "paper_area_numeric": numeric,
                        "score_model": model if score_area is not None else None,
                        "score_area": score_area,
                        "holds_paper": bool(pairwise > paper),
                        "holds_score": None if score_area is None else bool(pairwise > score_area),
                    }
                )
    return rows
