"""Several links fitted to the same comparisons, side by side by log-likelihood and AIC."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ._comparisons import Comparisons
from ._fit import Fit, fit
from ._link import Link
from ._links import get_link


class LinkComparison(NamedTuple):
    """Links fitted to the same comparisons, side by side (from :func:`prefjax.compare_links`).

    Attributes:
        rows: one dict per link, in the order given: ``link`` (name), ``params`` (the
            fitted link parameters, or the fixed ones), ``fitted_params`` (whether they were
            fitted), ``loglik``, ``n_params``, ``aic`` (2 n_params - 2 loglik), ``delta_aic``
            (to the smallest), ``converged``.
        fits: the :class:`Fit` of each link, in the same order.
    """

    rows: tuple[dict, ...]
    fits: tuple[Fit, ...]

    @property
    def best(self) -> str:
        """The name of the link with the smallest AIC."""
        return min(self.rows, key=lambda r: r["aic"])["link"]

    def __str__(self) -> str:
        head = f"{'link':18s} {'loglik':>12s} {'params':>6s} {'AIC':>12s} {'dAIC':>8s}  shape"
        lines = [head]
        for r in self.rows:
            shape = ", ".join(f"{k}={v:.4g}" for k, v in r["params"].items())
            if r["params"]:
                shape += " (fitted)" if r["fitted_params"] else " (fixed)"
            if not r["converged"]:
                shape += " [not converged]"
            lines.append(
                f"{r['link']:18s} {r['loglik']:12.4f} {r['n_params']:6d} {r['aic']:12.4f} "
                f"{r['delta_aic']:8.3f}  {shape}"
            )
        return "\n".join(lines)


def compare_links(comparisons: Comparisons, links=("logistic", "probit", "cauchit", "student_t"),
                  fit_link: bool = True, **fit_kwargs) -> LinkComparison:  # fmt: skip
    """Fit several links to the same comparisons and compare them by log-likelihood and AIC.

    Each link is fitted by :func:`prefjax.fit` (same ``ties``, ``position``, ``prior``, ...
    from ``fit_kwargs``); a family's shape parameters are fitted too (``fit_link``), except
    one that is not identifiable jointly with the scores (a pure scale such as
    :data:`prefjax.scaled_logistic`'s), which stays fixed. AIC = 2 n_params - 2 loglik
    counts the fitted link parameters, so a family must gain more than 1 in log-likelihood
    per parameter to win.

    Args:
        comparisons: a :class:`prefjax.Comparisons`.
        links: links or names (see :func:`prefjax.get_link`).
        fit_link: fit the shape parameters of the families among ``links``.
        **fit_kwargs: passed to :func:`prefjax.fit`.

    Returns:
        A :class:`LinkComparison` (``print`` it for the table; ``.best``, ``.rows``,
        ``.fits``).

    Examples:
        >>> import prefjax
        >>> data = prefjax.Comparisons.example("baseball")
        >>> table = prefjax.compare_links(data, ["logistic", "probit"])
        >>> [r["n_params"] for r in table.rows]
        [6, 6]
    """
    if "link" in fit_kwargs or "fit_link" in fit_kwargs:
        raise TypeError("compare_links takes the links as `links`, not link=")
    if isinstance(links, str | Link) or not hasattr(links, "__iter__"):
        raise TypeError(f"links must be a list of links or names; got {links!r}")
    fits, fitted = [], []
    for item in links:
        g = get_link(item, "links")
        fit_params = bool(fit_link and g.params)
        try:
            f = fit(comparisons, link=g, fit_link=fit_params, **fit_kwargs)
        except ValueError as exc:
            if not (fit_params and "not identifiable" in str(exc)):
                raise
            fit_params = False
            f = fit(comparisons, link=g, **fit_kwargs)
        fits.append(f)
        fitted.append(fit_params)
    if not fits:
        raise ValueError("links is empty")
    best = min(f.aic for f in fits)
    rows = tuple(
        {
            "link": f.link.name,
            "params": dict(f.link_params) if f.link_params else {
                k: float(np.asarray(v)) for k, v in f.link.params.items()
            },
            "fitted_params": fp,
            "loglik": f.loglik,
            "n_params": f.n_params,
            "aic": f.aic,
            "delta_aic": f.aic - best,
            "converged": f.converged,
        }
        for f, fp in zip(fits, fitted, strict=True)
    )  # fmt: skip
    return LinkComparison(rows, tuple(fits))
