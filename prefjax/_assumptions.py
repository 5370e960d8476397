"""Numerical evidence for Assumptions 2-5 of the paper, for any link.

A link is read by its attributes (called for g(x), ``.derivative`` for g', ``.name``), so this
module imports nothing of prefjax but `_validate` (its float64 check): :func:`prefjax.link` calls
it to check what it builds.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ._validate import needs_x64


class AssumptionError(ValueError):
    """A link fails one of the paper's Assumptions 2-5; ``.report`` holds the evidence."""

    def __init__(self, message: str, report: AssumptionReport):
        super().__init__(message)
        self.report = report


class AssumptionCheck(NamedTuple):
    """One assumption's verdict.

    Attributes:
        number: the assumption's number in the paper (2, 3, 4 or 5).
        name: what it says, in a few words.
        passed: whether the numerical evidence supports it.
        evidence: where it was checked and, for a failure, where and by how much it fails.
    """

    number: int
    name: str
    passed: bool
    evidence: str


class AssumptionReport(NamedTuple):
    """The result of :func:`check_assumptions`: one :class:`AssumptionCheck` per assumption."""

    link_name: str
    checks: tuple[AssumptionCheck, ...]

    @property
    def ok(self) -> bool:
        return all(c.passed for c in self.checks)

    @property
    def failed(self) -> tuple[AssumptionCheck, ...]:
        return tuple(c for c in self.checks if not c.passed)

    def raise_if_failed(self) -> None:
        if self.ok:
            return
        first = self.failed[0]
        names = ", ".join(f"Assumption {c.number} ({c.name})" for c in self.failed)
        raise AssumptionError(
            f"link {self.link_name!r} fails {names}: {first.evidence}. "
            "Pass check=False to prefjax.link to use it anyway.",
            self,
        )

    def __str__(self) -> str:
        lines = [f"Assumptions for link {self.link_name!r}:"]
        for c in self.checks:
            mark = "ok  " if c.passed else "FAIL"
            lines.append(f"  [{mark}] {c.number}. {c.name}: {c.evidence}")
        return "\n".join(lines)


def _grids(dtype):
    """Score-space points: a fine core grid plus log-spaced tails out to 1e300 (or float max)."""
    max_exp = 300 if dtype == jnp.float64 else 37
    core = np.linspace(-40.0, 40.0, 160_001)  # spacing 5e-4
    tail = np.logspace(-3, max_exp, 2_000)
    return core.astype(dtype), tail.astype(dtype)


@needs_x64("prefjax.check_assumptions (run by prefjax.link unless check=False)")
def check_assumptions(g) -> AssumptionReport:
    """Check Assumptions 2-5 numerically for the link ``g`` and report the evidence.

    * 2, strictly increasing: g never decreases on a grid of 160,001 points in [-40, 40] and
      2,000 log-spaced points out to |x| = 1e300, nor is g' negative there, and g strictly
      increases wherever its values are resolvable (between 1e-8 and 1 - 1e-8); decreases
      smaller than 8 ulps are taken as rounding.
    * 3, limits: g(-x) -> 0 and g(x) -> 1 along x = 10^k (tolerance 1e-12 at the far end).
    * 4, symmetry: max |g(x) + g(-x) - 1| over both grids, tolerance 64 ulps.
    * 5, continuously differentiable: g' is finite everywhere on the grids, matches central
      differences, and has no jumps (the largest step of g' between neighbours shrinks in
      proportion when the grid is refined tenfold, as it does for a continuous g').

    Numerical evidence is not a proof; the report says what was checked.

    Args:
        g: a :class:`prefjax.Link` (or any callable with a ``derivative`` method and a
            ``name``), or a bare callable, differentiated by forward-mode autodiff.

    Returns:
        An :class:`AssumptionReport`; ``.ok``, ``.failed``, ``.raise_if_failed()``.

    Examples:
        >>> import prefjax
        >>> prefjax.check_assumptions(prefjax.probit).ok
        True
    """
    if callable(getattr(g, "derivative", None)) and isinstance(getattr(g, "name", None), str):
        fn, dfn, name = g, g.derivative, g.name  # a Link, read by its attributes
    elif callable(g):

        def dfn(x):
            return jax.jvp(g, (x,), (jnp.ones_like(x),))[1]

        fn, name = g, getattr(g, "__name__", "custom")
    else:
        raise TypeError(f"g must be a prefjax.Link or a callable x -> g(x); got {g!r}")

    dtype = jnp.result_type(float)
    eps = float(jnp.finfo(dtype).eps)
    core, tail = _grids(dtype)
    fine = np.linspace(-10.0, 10.0, 200_001).astype(dtype)
    h = 1e-5
    parts = [core, tail, -tail, fine, core + h, core - h]
    # One compiled evaluation of (g, g') on all points: one compile instead of one per op.
    both = jax.jit(lambda x: (fn(x), dfn(x)))
    with jax.ensure_compile_time_eval():
        try:
            gx, dgx = (
                np.asarray(a, dtype=np.float64) for a in both(jnp.asarray(np.concatenate(parts)))
            )
        except Exception as exc:  # a callable that JAX cannot trace, or that raises
            raise TypeError(
                f"link {name!r} could not be evaluated on a JAX array: {exc}. A link must be an "
                "elementwise function written with jax.numpy."
            ) from exc
    splits = np.cumsum([p.size for p in parts])[:-1]
    g_core, g_tail_pos, g_tail_neg, _, g_plus, g_minus = np.split(gx, splits)
    dg_core, dg_tail_pos, dg_tail_neg, dg_fine, _, _ = np.split(dgx, splits)
    dg_tail = np.concatenate([dg_tail_pos, dg_tail_neg])
    fd = (g_plus - g_minus) / (2 * h)

    checks = [
        _check_increasing(core, g_core, tail, g_tail_neg, g_tail_pos, dg_core, dg_tail, eps),
        _check_limits(tail, g_tail_neg, g_tail_pos),
        _check_symmetry(core, g_core, tail, g_tail_neg, g_tail_pos, eps),
        _check_differentiable(core, tail, dg_core, dg_tail, fd, fine, dg_fine),
    ]
    return AssumptionReport(name, tuple(checks))


def _check_increasing(core, g_core, tail, g_tail_neg, g_tail_pos, dg_core, dg_tail, eps):
    name = "strictly increasing"
    xs = np.concatenate([-tail[::-1], core, tail])
    gs = np.concatenate([g_tail_neg[::-1], g_core, g_tail_pos])
    order = np.argsort(xs, kind="stable")
    xs, gs = xs[order], gs[order]
    diffs = np.diff(gs)
    if np.any(~np.isfinite(gs)):
        i = int(np.argmax(~np.isfinite(gs)))
        return AssumptionCheck(2, name, False, f"g({xs[i]:.6g}) = {gs[i]} is not finite")
    # A decrease beyond rounding (8 ulps of 1) is a real one; sloppy tails stay below it.
    if np.any(diffs < -8 * eps):
        i = int(np.argmin(diffs))
        return AssumptionCheck(
            2,
            name,
            False,
            f"g decreases by {-diffs[i]:.3g} between x = {xs[i]:.6g} and x = {xs[i + 1]:.6g}",
        )
    # Strictness where any reasonably written g resolves its increments.
    # Neighbours closer than 1e-9 relative (the core grid and the tails both hold x = -1e-3,
    # rounded apart by 2e-15) are one point: no g resolves an increment that small.
    resolvable = (gs[:-1] > 1e-8) & (gs[1:] < 1 - 1e-8)
    apart = np.diff(xs) > 1e-9 * np.maximum(1.0, np.abs(xs[:-1]))
    flat = resolvable & (diffs == 0) & apart
    if np.any(flat):
        i = int(np.argmax(flat))
        return AssumptionCheck(
            2,
            name,
            False,
            f"g is constant ({gs[i]:.6g}) between x = {xs[i]:.6g} and x = {xs[i + 1]:.6g}",
        )
    dg = np.concatenate([dg_core, dg_tail])
    dx = np.concatenate([core, tail, -tail])
    if np.any(dg < 0):  # NaN compares False: a NaN g' is Assumption 5's to report
        i = int(np.argmin(np.where(dg < 0, dg, np.inf)))
        return AssumptionCheck(
            2, name, False, f"g' is negative somewhere: g'({dx[i]:.6g}) = {dg[i]:.3g}"
        )
    return AssumptionCheck(
        2, name, True, f"increasing at {xs.size} points in [-1e300, 1e300], g' >= 0"
    )


def _check_limits(tail, g_tail_neg, g_tail_pos):
    name = "limits 0 at -inf and 1 at +inf"
    far = -1  # the largest |x| on the tail grid
    low, high = g_tail_neg[far], g_tail_pos[far]
    tol = 1e-12
    where = f"x = +-{tail[far]:.3g}"
    if not (low < tol and 1 - high < tol):
        return AssumptionCheck(
            3,
            name,
            False,
            f"g(-x) = {low:.6g} and g(x) = {high:.6g} at {where}; expected limits 0 and 1",
        )
    return AssumptionCheck(
        3, name, True, f"g(-x) = {low:.3g}, 1 - g(x) = {1 - high:.3g} at {where}"
    )


def _check_symmetry(core, g_core, tail, g_tail_neg, g_tail_pos, eps):
    name = "symmetric, g(x) + g(-x) = 1"
    err_core = np.abs(g_core + g_core[::-1] - 1.0)  # core grid is symmetric about 0
    err_tail = np.abs(g_tail_pos + g_tail_neg - 1.0)
    errs = np.concatenate([err_core, err_tail])
    xs = np.concatenate([np.abs(core), tail])
    tol = 64 * eps
    i = int(np.argmax(errs))
    if errs[i] > tol:
        return AssumptionCheck(
            4,
            name,
            False,
            f"|g(x) + g(-x) - 1| = {errs[i]:.3g} at x = {xs[i]:.6g} (tolerance {tol:.2g})",
        )
    return AssumptionCheck(
        4, name, True, f"max |g(x) + g(-x) - 1| = {errs[i]:.2g} (tolerance {tol:.2g})"
    )


def _check_differentiable(core, tail, dg_core, dg_tail, fd, fine, dg_fine):
    name = "continuously differentiable"
    dg = np.concatenate([dg_core, dg_tail])
    if np.any(~np.isfinite(dg)):
        xs = np.concatenate([core, tail, -tail])
        bad = ~np.isfinite(dg)
        i = int(np.argmax(bad))
        return AssumptionCheck(
            5,
            name,
            False,
            f"g'({xs[i]:.6g}) = {dg[i]} is not finite ({int(bad.sum())} of {dg.size} grid "
            f"points, |x| from {np.abs(xs[bad]).min():.3g} to {np.abs(xs[bad]).max():.3g})",
        )
    scale = max(float(np.max(dg_core)), 1e-300)
    fd_err = np.abs(fd - dg_core)
    i = int(np.argmax(fd_err))
    if fd_err[i] > 1e-4 * scale:
        return AssumptionCheck(
            5,
            name,
            False,
            f"g'({core[i]:.6g}) = {dg_core[i]:.6g} but central differences give {fd[i]:.6g}",
        )
    # Jumps of g': the largest neighbour step at spacing 1e-4 vs 1e-3. For a continuous g'
    # the ratio is about 1/10; a jump keeps it near 1.
    step_fine = np.abs(np.diff(dg_fine))
    step_coarse = np.abs(np.diff(dg_fine[::10]))
    j = int(np.argmax(step_fine))
    if step_fine[j] > 1e-6 * scale and step_fine[j] > 0.5 * step_coarse.max():
        return AssumptionCheck(
            5,
            name,
            False,
            f"g' jumps by {step_fine[j]:.3g} near x = {fine[j]:.6g} "
            f"(a tenfold finer grid does not shrink the step)",
        )
    return AssumptionCheck(
        5,
        name,
        True,
        f"g' finite, matches central differences to {fd_err[i] / scale:.1g} (relative), no jumps",
    )
