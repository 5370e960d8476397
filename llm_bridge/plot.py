"""Figure 3 of the paper from a sweep's results: learned p13 and p23 against the dataset's p23.

One panel per order (o1 > o2 > o3). In each, against the dataset's p23 (x axis):

* the learned p13^L and p23^L, mean over seeds, with a band of one standard deviation (sample
  standard deviation over the seeds; no band with one seed), as in the paper;
* the p13 that Bradley-Terry implies from the dataset's own (p12, p23) (Eq. (3), dashed), and
  from each model's learned (p12^L, p23^L) (crosses): where the crosses leave the learned p13,
  the model is not a Bradley-Terry model of what it learned;
* dotted (when the sweep's reference probes are given), DPO's optimum (``llm_bridge.theory``):
  the p23 and p13 the model would express at the population minimum of the DPO loss, from the
  untrained model's own preferences; where the points fall short of it, training stopped early;
* shaded, the p23 values where the dataset's point (p12, p23) lies in the M-sensitive region
  Omega_M(p13, p12), |dp13/dp12| > M (Definition 4; prefjax): there a deviation of p12 by
  epsilon moves the implied p13 by more than M epsilon.

matplotlib draws (its object API; no global pyplot state); prefjax numbers come through
``llm_bridge.convert``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from . import theory
from ._io import atomic_write
from .convert import analyze, implied_p13, learned_from_row, m_sensitive_mask
from .report import default_method
from .results import RunRow

__all__ = ["figure3", "save_figure3"]


def _spans(x: np.ndarray, mask: np.ndarray) -> list[tuple[float, float]]:
    """Contiguous stretches of ``x`` where ``mask`` holds, as (start, end)."""
    spans, start = [], None
    for k, inside in enumerate(mask):
        if inside and start is None:
            start = k
        if start is not None and (not inside or k == len(mask) - 1):
            end = k if inside else k - 1
            spans.append((float(x[start]), float(x[end])))
            start = None
    return spans


def _mean_sd(values: list[float]) -> tuple[float, float]:
    arr = np.asarray(values, dtype=float)
    return float(arr.mean()), float(arr.std(ddof=1)) if arr.size > 1 else 0.0


def figure3(
    rows: Sequence[RunRow],
    *,
    method: str | None = None,
    M: float = 10.0,
    link: str = "logistic",
    title: str | None = None,
    references: Mapping[tuple[str, ...], Mapping[str, Any]] | None = None,
    beta: float | None = None,
):
    """Draw Figure 3 from sweep rows (``results.read_rows``); returns a matplotlib ``Figure``.

    With ``references`` (the untrained model's probes per order, ``results.read_references``)
    and ``beta`` (the DPO temperature of the training), each panel also draws where DPO's
    optimum puts the learned p23 and p13 (``theory``, Eq. (1) and (2); dotted): the curve the
    measured points would follow if training reached the population optimum.

    Args:
        rows: finished runs of a sweep.
        method: the probe whose numbers are drawn; default "likelihood" if every run has it.
        M: the threshold of the shaded M-sensitive region.
        link: the pairwise model of the implied-p13 curves and the region (default
            Bradley-Terry).
        title: the figure's title; default names the model, method and seeds.
        references, beta: see above; without them no optimum curves are drawn.
    """
    from matplotlib.figure import Figure

    if not rows:
        raise ValueError("no finished runs to plot")
    method = method or default_method(rows)
    by_order: dict[tuple[str, ...], list] = {}
    for row in rows:
        lp = learned_from_row(row, method)
        a = analyze(lp, link=link, M=M)
        by_order.setdefault(tuple(row.order), []).append((row, lp, a))
    orders = sorted(by_order)
    cols = min(3, len(orders))
    nrows = -(-len(orders) // cols)
    fig = Figure(figsize=(max(4.6 * cols, 7.5), 4.0 * nrows + 1.0), layout="constrained")
    axes = np.atleast_1d(fig.subplots(nrows, cols, sharex=True, sharey=True, squeeze=False))
    grid = np.linspace(0.0, 1.0, 401)[1:-1]
    for ax in axes.flat[len(orders) :]:
        ax.set_visible(False)
    for ax, order in zip(axes.flat, orders, strict=False):
        runs = by_order[order]
        p12_data = float(np.mean([r.p12_data for r, _, _ in runs]))
        for k, (lo, hi) in enumerate(_spans(grid, m_sensitive_mask(p12_data, grid, M, link))):
            label = f"$\\Omega_{{{M:g}}}$: $|\\partial p_{{13}}/\\partial p_{{12}}| > {M:g}$"
            ax.axvspan(lo, hi, color="tab:red", alpha=0.12, lw=0, label=label if k == 0 else None)
        ax.plot(
            grid,
            implied_p13(p12_data, grid, link),
            ls="--",
            color="0.35",
            lw=1.2,
            label=f"BT-implied $p_{{13}}$ from data ($p_{{12}}$={p12_data:g})",
        )
        ref = (references or {}).get(order, {}).get("likelihood")
        if ref is not None and beta is not None:
            q12 = theory.logit(min(p12_data, 1.0 - 2.0**-53))
            for pair, data_logit, color in (
                ("p23", theory.logit(grid), "tab:orange"),
                ("p13", q12 + theory.logit(grid), "tab:blue"),
            ):
                contexts = ref[pair].details["log_odds"].values()
                curve, _ = theory.dpo_optimum_averaged(contexts, data_logit, beta)
                label = f"DPO optimum $p_{{{pair[1:]}}}^L$ ($\\beta'$ = {beta:g})"
                ax.plot(grid, curve, ls=":", lw=1.6, color=color, label=label)
        xs = sorted({r.p23_data for r, _, _ in runs})
        series = {"p13": [], "p23": [], "bt": []}
        for x in xs:
            at = [(lp, a) for r, lp, a in runs if r.p23_data == x]
            series["p13"].append(_mean_sd([lp.p13.p for lp, _ in at]))
            series["p23"].append(_mean_sd([lp.p23.p for lp, _ in at]))
            series["bt"].append(_mean_sd([a.p13_implied for _, a in at]))
        x = np.asarray(xs)
        for key, color, label in (
            ("p13", "tab:blue", "learned $p_{13}^L$"),
            ("p23", "tab:orange", "learned $p_{23}^L$"),
        ):
            mean = np.array([m for m, _ in series[key]])
            sd = np.array([s for _, s in series[key]])
            ax.plot(x, mean, "o-", color=color, ms=4, lw=1.6, label=label)
            if np.any(sd > 0):
                ax.fill_between(x, mean - sd, mean + sd, color=color, alpha=0.2, lw=0)
        ax.plot(
            x,
            [m for m, _ in series["bt"]],
            "x",
            color="tab:blue",
            ms=7,
            label="BT-implied $p_{13}$ from learned $p_{12}^L, p_{23}^L$",
        )
        ax.set_title(" > ".join(order), fontsize=10)
        ax.set_xlim(0, 1)
        ax.set_ylim(-0.03, 1.03)
        ax.grid(alpha=0.3)
    for ax in axes[-1]:
        ax.set_xlabel("dataset $p_{23}^D$")
    for ax in axes[:, 0]:
        ax.set_ylabel("learned preference probability")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    ncols = 2 if cols == 1 else 3  # one panel is too narrow for three legend columns
    fig.legend(handles, labels, loc="outside lower center", ncols=ncols, fontsize=8, frameon=False)
    seeds = len({r.seed for r in rows})
    model = rows[0].model
    fig.suptitle(
        title or f"{model}: learned preferences after DPO ({method} probe, {seeds} seed(s))",
        fontsize=11,
    )
    return fig


def save_figure3(
    rows: Sequence[RunRow], path: str | os.PathLike, *, dpi: int = 120, **kwargs: Any
) -> Path:
    """``figure3(rows, **kwargs)`` written to ``path`` (format from its suffix), atomically."""
    import io

    fig = figure3(rows, **kwargs)
    buf = io.BytesIO()
    fmt = Path(path).suffix.lstrip(".") or "png"
    fig.savefig(buf, format=fmt, dpi=dpi, bbox_inches="tight")  # nothing clipped at the edges
    return atomic_write(path, buf.getvalue())
