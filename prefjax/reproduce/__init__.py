"""``prefjax reproduce``: the paper's claims recomputed, its figures redrawn, one report.

The registry of claims is :mod:`prefjax.reproduce.claims`; :func:`run` evaluates it, draws the
figures and writes ``claims.json``, ``report.md`` and a self-contained ``index.html``.
"""

from ._run import run as run

__all__ = ["run"]
