"""The ``prefjax`` command. ``prefjax reproduce --out report/`` rebuilds the reproduction report;
``prefjax audit DATA --out DIR`` audits comparison data."""

from __future__ import annotations

import argparse
import sys

from . import _audit_report


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="prefjax", description="Sensitivity of preference models (Xu & Kankanhalli), in JAX."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    rep = sub.add_parser(
        "reproduce",
        help="recompute every checkable claim of the paper and write a report",
        description="Recompute the paper's claims, redraw Figures 1-3 and write "
        "OUT/index.html (self-contained), OUT/report.md and OUT/claims.json.",
    )
    rep.add_argument("--out", default="report", help="output folder (default: report)")
    rep.add_argument("--no-llm", action="store_true", help="skip the LLM sweep and Figure 3")
    rep.add_argument(
        "--preset", default="quick", choices=("quick", "cpu-full", "paper"),
        help="LLM sweep preset: quick (CPU, 8 runs, ~20 min), cpu-full (CPU, 42 runs, hours) "
        "or paper (GPUs, the paper's 378 runs)",
    )  # fmt: skip
    rep.add_argument("--model", default="smollm2", help="model for the sweep (default: smollm2)")
    rep.add_argument("--quiet", action="store_true", help="no progress output")
    _audit_report.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "reproduce":
        import jax

        jax.config.update("jax_enable_x64", True)  # the claims are checked in float64
        from .reproduce import run

        summary = run(
            args.out, llm=not args.no_llm, preset=args.preset, model=args.model,
            progress=not args.quiet,
        )  # fmt: skip
        return 0 if summary["claims"] else 1
    if args.command == "audit":
        return _audit_report.run(args)
    return 2


if __name__ == "__main__":
    sys.exit(main())
