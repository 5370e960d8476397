"""``prefjax audit DATA``: fit, audit, and write audit.csv, audit.json, heatmap.png, index.html."""

from __future__ import annotations

import argparse
import base64
import html
import sys
from pathlib import Path

from ._fragility import STEP
from ._links import LINKS


def add_parser(sub) -> argparse.ArgumentParser:
    """The ``audit`` subcommand's arguments (called by :mod:`prefjax.cli`)."""
    p = sub.add_parser(
        "audit",
        help="fit a paired-comparison model to DATA and audit which predictions are fragile",
        description="Fit scores to comparison data (battles model_a/model_b/winner, "
        "winner/loser pairs, home.team/away.team/home.wins/away.wins or i/j/wins_i/wins_j "
        "tables; CSV, JSONL or JSON), audit every pair (Lemma 1 paths, the implicit-function "
        "Jacobian, fragility verdicts) and write OUT/audit.csv, OUT/audit.json, "
        "OUT/heatmap.png and OUT/index.html (self-contained).",
    )
    p.add_argument("data", help="the data file, or 'baseball' for the shipped example")
    p.add_argument("--link", default="logistic", choices=sorted(LINKS), help="the link g")
    p.add_argument("--ties", default="half", choices=("half", "drop", "davidson"))
    p.add_argument("--position", action="store_true", help="fit a first/home position effect")
    p.add_argument("--prior", type=float, default=None, help="sd of a Gaussian prior on scores")
    p.add_argument("--reference", default=None, help="item at score 0 (default: scores sum to 0)")
    p.add_argument("--M", type=float, default=10.0, help="sensitivity of a fragile pair (10)")
    p.add_argument("--threshold", type=float, default=None,
                   help="change of p_ij per percentage point that makes a pair fragile "
                   "(default M / 100)")  # fmt: skip
    p.add_argument("--bootstrap", type=int, default=0, help="bootstrap resamples (default 0)")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    p.add_argument("--out", default="audit", help="output folder (default: audit)")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    return p


def run(args) -> int:
    """Run the ``audit`` subcommand; 0 on success, 2 with a message for bad input."""
    import jax

    jax.config.update("jax_enable_x64", True)  # the fit and audit are float64
    from . import _audit, _comparisons, _fit

    try:
        if args.data in _comparisons._EXAMPLES and not Path(args.data).exists():
            data_path = _comparisons.example_data(args.data)
        else:
            data_path = Path(args.data)
        data = _comparisons.Comparisons.read(data_path)
        fit = _fit.fit(data, link=LINKS[args.link], ties=args.ties, position=args.position,
                       prior=args.prior, reference=args.reference)  # fmt: skip
        audit = _audit.audit(fit, M=args.M, threshold=args.threshold, bootstrap=args.bootstrap,
                             seed=args.seed, progress=not args.quiet)  # fmt: skip
    except (ValueError, FileNotFoundError, TypeError) as exc:
        print(f"prefjax audit: error: {exc}", file=sys.stderr)
        return 2
    paths = write_report(audit, args.out, source=str(data_path))
    if not args.quiet:
        print(repr(fit))
        print(repr(audit))
        for p in paths.values():
            print(f"wrote {p}")
    return 0


def write_report(audit, out, source: str = "") -> dict[str, Path]:
    """Write audit.csv, audit.json, heatmap.png and index.html into ``out``."""
    from ._audit_plot import audit_heatmap

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = {
        "csv": audit.to_csv(out / "audit.csv"),
        "json": audit.to_json(out / "audit.json"),
        "png": out / "heatmap.png",
        "html": out / "index.html",
    }
    audit_heatmap(audit).savefig(paths["png"], dpi=110)
    paths["html"].write_text(render_html(audit, paths["png"], source), encoding="utf-8")
    return paths


def _cell(x, digits=3) -> str:
    if x is None:
        return "&ndash;"
    if isinstance(x, bool):
        return "yes" if x else ""
    if isinstance(x, float):
        return f"{x:.{digits}g}"
    return html.escape(str(x))


def _table(rows, columns) -> str:
    head = "".join(f"<th>{html.escape(label)}</th>" for _, label in columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{_cell(r[key])}</td>" for key, _ in columns) + "</tr>" for r in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


PAIR_COLUMNS = [
    ("i", "i"), ("j", "j"), ("p", "fitted p_ij"), ("p_low", "low"), ("p_high", "high"),
    ("observed", "games"), ("rate", "observed rate"), ("sensitivity", "max |dp/dr|"),
    ("max_jacobian_k", "via pair k"), ("max_jacobian_l", "l"), ("local_M", "local M"),
    ("worst_k", "worst path k"), ("implied_p", "implied p (worst path)"),
]  # fmt: skip


def render_html(audit, png: Path, source: str = "") -> str:
    """A self-contained page: summary, scores, heatmap, fragile and most sensitive pairs."""
    s = audit.summary()
    rows = audit.to_rows()
    frag = audit.fragile_rows()
    by_sens = sorted(rows, key=lambda r: -(r["sensitivity"] or 0.0))[:15]
    by_m = sorted(rows, key=lambda r: -(r["local_M"] or 0.0))[:15]
    img = base64.b64encode(Path(png).read_bytes()).decode("ascii")
    f = audit.fit
    order = sorted(range(len(f.items)), key=lambda k: -s["scores"][k])
    score_rows = [{"item": f.items[k], "score": s["scores"][k], "se": s["se"][k]} for k in order]
    facts = [
        ("data", source), ("items", len(f.items)), ("comparisons", s["n_comparisons"]),
        ("ties", f"{s['n_ties']} ({f.ties})"), ("link", f.link.name),
        ("identification", s["identification"]), ("log-likelihood", f"{f.loglik:.6g}"),
        ("converged", f"{f.converged} ({f.iterations} Newton iterations)"),
    ]  # fmt: skip
    if f.position is not None:
        facts.append(("position effect h", f"{f.position:.4g} (se {f.position_se:.3g})"))
    if f.nu is not None:
        facts.append(("Davidson nu", f"{f.nu:.4g}"))
    if f.prior is not None:
        facts.append(("prior sd", f"{f.prior:g}"))
    facts.append(("verdict", f"fragile when one observed rate moved by 1 point moves p_ij by "
                             f"more than {100 * audit.threshold:.3g} points (M = {audit.M:g})"))  # fmt: skip
    if audit.bootstrap is not None:
        facts.append(("bootstrap", f"{audit.bootstrap.n_resamples} resamples, seed "
                                   f"{audit.bootstrap.seed}"))  # fmt: skip
    fact_html = "".join(f"<tr><th>{html.escape(k)}</th><td>{_cell(v)}</td></tr>" for k, v in facts)
    if frag:
        frag_html = f"<p>{len(frag)} of {len(rows)} ordered pairs are fragile.</p>" + _table(
            frag, PAIR_COLUMNS
        )
    else:
        frag_html = (
            f"<p>No pair is fragile at this threshold (largest sensitivity "
            f"{_cell(by_sens[0]['sensitivity'])}: one point of an observed rate moves no "
            f"p_ij by more than {_cell(100 * STEP * (by_sens[0]['sensitivity'] or 0))} "
            "points).</p>"
        )
    css = (
        "body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;"
        "color:#222}table{border-collapse:collapse;margin:.5em 0 1.5em;font-size:.85em}"
        "td,th{border:1px solid #ccc;padding:.2em .5em;text-align:left}"
        "thead th{background:#f3f3f3}img{max-width:100%}h1{font-size:1.5em}"
    )
    return "\n".join([
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        "<title>prefjax audit</title>",
        f"<style>{css}</style></head><body>",
        "<h1>Which predicted preferences are fragile?</h1>",
        "<p>Scores fitted by maximum likelihood; for each ordered pair (i, j): the fitted "
        "p_ij with its 95% interval, the largest sensitivity of p_ij to one observed pair's "
        "win rate through the whole fit (implicit function theorem), and Lemma 1 of Xu &amp; "
        "Kankanhalli through the worst item k that met both (its local M = max(d_ik, d_kj), "
        "Eq. (2), on the observed rates).</p>",
        f"<table>{fact_html}</table>",
        "<h2>Fragile pairs</h2>", frag_html,
        "<h2>Heatmap</h2>",
        f'<img alt="local M per pair, fragile pairs marked" src="data:image/png;base64,{img}">',
        "<h2>Most sensitive pairs (through the fit)</h2>", _table(by_sens, PAIR_COLUMNS),
        "<h2>Largest local M (Lemma 1 on observed rates)</h2>", _table(by_m, PAIR_COLUMNS),
        "<h2>Scores</h2>",
        _table(score_rows, [("item", "item"), ("score", "score"), ("se", "standard error")]),
        "<p>All pairs: audit.csv and audit.json beside this page.</p>",
        "</body></html>",
    ])  # fmt: skip
