"""Evaluate the claims, draw the figures, run the LLM sweep, write the report."""

from __future__ import annotations

import base64
import html
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import prefjax

from . import claims as claims_mod


def _listed(names: list[str]) -> str:
    """'a, b and c'."""
    *first, last = names
    return f"{', '.join(first)} and {last}" if first else last


FIGURES = {
    "fig1_logistic": "Figure 1: M-sensitive regions of p_ij^BT w.r.t. p_ik and p_kj (Bradley-Terry).",
    "fig1_links": f"Figure 1 for the {_listed(list(prefjax.LINKS))} links side by side.",
    "fig2": "Figure 2: Omega_M(p_omega, p_omega_uv) and Omega_M(p_omega, p_omega_vu) at alpha = 1.01, beta = 0.99.",
    "area_vs_k": "Section 3.2: Proposition 2's area against the tuple length K (scores linspace(1, -1, 8)).",
    "fig3": "Figure 3 on SmolLM2-135M-Instruct: learned p13 and p23 against the dataset's p23 (quick sweep).",
}


def _say(msg: str, progress: bool) -> None:
    if progress:
        print(msg, flush=True)


def evaluate_claims(progress: bool = True) -> list[claims_mod.ClaimResult]:
    import mpmath

    items = claims_mod.registry()
    results = []
    for k, (label, thunk) in enumerate(items, 1):
        t0 = time.perf_counter()
        with mpmath.workdps(40):  # references at 40 digits: the printed formulas cancel
            out = thunk()
        out = out if isinstance(out, list) else [out]
        results += out
        verdicts = ", ".join(f"{r.id}: {r.verdict}" for r in out)
        _say(
            f"[{k:2d}/{len(items)}] {label:22s} {verdicts} ({time.perf_counter() - t0:.1f} s)",
            progress,
        )
    return results


def draw_figures(fig_dir: Path, progress: bool = True) -> dict[str, Path]:
    import matplotlib

    matplotlib.use("Agg")
    import prefjax.plot

    fig_dir.mkdir(parents=True, exist_ok=True)
    makers = {
        "fig1_logistic": lambda: prefjax.plot.sensitive_regions(prefjax.logistic),
        "fig1_links": lambda: prefjax.plot.sensitive_regions(list(prefjax.LINKS.values()), n=300),
        "fig2": lambda: prefjax.plot.pl_regions(alpha=1.01, beta=0.99),
        "area_vs_k": lambda: prefjax.plot.area_vs_k(),
    }
    paths = {}
    for name, make in makers.items():
        t0 = time.perf_counter()
        path = fig_dir / f"{name}.png"
        make().savefig(path, dpi=110)
        paths[name] = path
        _say(f"  figure {name} ({time.perf_counter() - t0:.1f} s)", progress)
    return paths


def run_llm(out: Path, preset: str, model: str, progress: bool = True) -> dict:
    """The LLM sweep, through the ``llm-bridge`` command (prefjax never imports llm_bridge).

    Returns what ``llm-bridge analyze`` wrote (plain JSON), with the figure's path.
    """
    llm_dir = out / "llm"
    fig = out / "figures" / "fig3.png"
    analysis = llm_dir / "analysis.json"
    py = sys.executable
    steps = [
        [
            py,
            "-m",
            "llm_bridge.cli",
            "sweep",
            "--preset",
            preset,
            "--model",
            model,
            "--out",
            str(llm_dir),
        ],
        [py, "-m", "llm_bridge.cli", "plot", str(llm_dir), "--out", str(fig)],
        [py, "-m", "llm_bridge.cli", "analyze", str(llm_dir), "--json", str(analysis)],
    ]
    for cmd in steps:
        _say("  $ " + " ".join(cmd[1:]), progress)
        subprocess.run(cmd, check=True)
    data = json.loads(analysis.read_text())
    data["figure"] = str(fig)
    return data


SNAPSHOT = Path(__file__).resolve().parents[2] / "docs" / "cpu-full" / "analysis.json"
"""The cpu-full sweep's analysis committed under docs/ (a snapshot; absent in an installed
package), whose Section 4 claims join the report beside the quick sweep's."""


def empirical_claims(analysis: dict, source: str, suffix: str = "") -> list[claims_mod.ClaimResult]:
    """Section 4's observations, as ``llm-bridge analyze`` judged them, as claim rows."""
    out = []
    for c in analysis.get("claims", []):
        out.append(
            claims_mod.ClaimResult(
                id=c["id"] + suffix,
                where=c["where"] + (f" ({source})" if source else ""),
                statement=c["statement"],
                paper_value="observed (Figure 3)" if c["id"] != "sec4.dpo_optimum" else "assumed",
                computed_value=c["details"],
                verdict=c["verdict"],
                difference=None,
                tolerance=None,
                tolerance_rule="the thresholds stated in llm_bridge.report",
                computed_by=f"llm_bridge.report.section4_claims on {source}",
                details=json.dumps(c["computed"], allow_nan=True)[:2000],
            )
        )
    return out


def run(
    out: str | os.PathLike = "report",
    *,
    llm: bool = True,
    preset: str = "quick",
    model: str = "smollm2",
    progress: bool = True,
) -> dict:
    """Recompute the paper's claims and write ``out/claims.json``, ``report.md``, ``index.html``.

    Args:
        out: output folder (created).
        llm: run the LLM sweep (``llm-bridge sweep``) and Figure 3; ``False`` skips it.
        preset: the sweep preset, "quick" or "cpu-full" (CPU) or "paper" (GPUs).
        model: the model the sweep trains.
        progress: print progress.

    Returns:
        A summary: counts of agreeing and differing claims, the files written, the time taken.
    """
    t_start = time.perf_counter()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    _say(f"prefjax reproduce -> {out}/", progress)
    _say("Claims:", progress)
    results = evaluate_claims(progress)
    _say("Figures:", progress)
    figures = draw_figures(out / "figures", progress)
    llm_part = None
    if llm:
        _say(f"LLM sweep (preset {preset}, model {model}):", progress)
        llm_part = run_llm(out, preset, model, progress)
        figures["fig3"] = Path(llm_part["figure"])
        results += empirical_claims(llm_part, f"the {preset} sweep of {model}")
    if SNAPSHOT.is_file():
        snapshot = json.loads(SNAPSHOT.read_text(encoding="utf-8"))
        results += empirical_claims(snapshot, "the cpu-full snapshot in docs/", ".cpu_full")
    elapsed = time.perf_counter() - t_start
    meta = {
        "generated": time.strftime("%Y-%m-%d %H:%M:%S"),
        "seconds": round(elapsed, 1),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "llm": bool(llm),
        "preset": preset if llm else None,
    }
    write_claims_json(out / "claims.json", results, meta)
    write_markdown(out / "report.md", results, figures, llm_part, meta)
    write_html(out / "index.html", results, figures, llm_part, meta)
    n_diff = sum(r.verdict == "differs" for r in results)
    n_agree = sum(r.verdict == "agrees" for r in results)
    summary = {
        "claims": len(results),
        "agrees": n_agree,
        "differs": n_diff,
        "empirical": {
            v: sum(r.verdict == v for r in results)
            for v in sorted({r.verdict for r in results} - {"agrees", "differs"})
        },
        "files": [str(out / f) for f in ("index.html", "report.md", "claims.json")],
        "seconds": round(time.perf_counter() - t_start, 1),
    }
    empirical = "".join(f", {n} {v}" for v, n in summary["empirical"].items())
    _say(
        f"{summary['claims']} claims: {summary['agrees']} agree, {summary['differs']} differ"
        f"{empirical}. "
        f"Wrote {', '.join(summary['files'])} in {summary['seconds']:.0f} s.",
        progress,
    )
    return summary


# --- writers ----------------------------------------------------------------------------


def write_claims_json(path: Path, results, meta) -> None:
    payload = {"meta": meta, "claims": [r.as_dict() for r in results]}
    _atomic_write(path, json.dumps(payload, indent=2, ensure_ascii=False) + "\n")


def _atomic_write(path: Path, text: str) -> None:
    """Temporary file in the same directory, fsync'ed, renamed over ``path``: a crash leaves
    the old report or the new one."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.6g}"
    return str(v)


def _paper(r) -> str:
    return r.paper_text if r.paper_text is not None else _fmt(r.paper_value)


def _intro(results, meta) -> list[str]:
    analytic = [r for r in results if r.verdict in ("agrees", "differs")]
    n_diff = sum(r.verdict == "differs" for r in analytic)
    empirical = [r for r in results if r not in analytic]
    words = sorted({r.verdict for r in empirical})
    tally = ", ".join(f"{sum(r.verdict == w for r in empirical)} {w}" for w in words)
    return [
        "Every numbered, checkable claim of Xu & Kankanhalli, *Strong Preferences Affect the "
        "Robustness of Value Alignment*, recomputed with prefjax against an independent "
        f"computation. {len(analytic)} analytic claims: {len(analytic) - n_diff} agree, "
        f"{n_diff} differ. A stated number agrees when it matches to the precision printed (half "
        "a unit in its last digit); a stated formula agrees when it matches a numerical "
        "computation at several points to the tolerance given."
        + (
            f" {len(empirical)} empirical claims of Section 4, judged on the LLM sweeps run "
            f"here with their own verdict words: {tally}."
            if empirical
            else ""
        ),
        f"Generated {meta['generated']} in {meta['seconds']:.0f} s (Python {meta['python']}, "
        f"{meta['platform']}).",
    ]


def write_markdown(path: Path, results, figures, llm_part, meta) -> None:
    lines = ["# Reproduction report", "", *(p + "\n" for p in _intro(results, meta))]
    lines += [
        "## Claims",
        "",
        "| id | paper | computed | verdict | difference / tolerance |",
        "|---|---|---|---|---|",
    ]
    for r in results:
        diff = "" if r.difference is None else f"{r.difference:.3g} / {r.tolerance:.3g}"
        lines.append(
            f"| `{r.id}` | {_paper(r)} | {_fmt(r.computed_value)} | **{r.verdict}** | {diff} |"
        )
    lines += ["", "## Details", ""]
    for r in results:
        lines += [
            f"### `{r.id}` ({r.where}): {r.verdict}",
            "",
            f"*Paper:* {r.statement}",
            "",
            f"*Computed by* `{r.computed_by}`; rule: {r.tolerance_rule}. {r.details}",
            "",
        ]
    lines += ["## Figures", ""]
    for name, p in figures.items():
        lines += [f"![{FIGURES[name]}](figures/{Path(p).name})", "", f"*{FIGURES[name]}*", ""]
    if llm_part:
        lines += ["## The LLM experiment", "", *_llm_lines(llm_part)]
    _atomic_write(path, "\n".join(lines) + "\n")


def _llm_lines(llm_part) -> list[str]:
    lines = [llm_part.get("summary", ""), ""]
    rows = llm_part.get("rows", [])
    if rows:
        keys = list(rows[0])
        lines += ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
        lines += ["| " + " | ".join(_fmt(row[k]) for k in keys) + " |" for row in rows]
    return lines


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;max-width:1100px;margin:2em auto;
padding:0 1em;color:#222;line-height:1.45}
table{border-collapse:collapse;width:100%;font-size:0.9em}
td,th{border:1px solid #ccc;padding:4px 6px;vertical-align:top;text-align:left}
th{background:#f3f3f3} .agrees{background:#e6f4e6} .differs{background:#fbe3e3}
.reproduced{background:#e6f4e6} .not-reproduced{background:#fbe3e3}
.inconclusive{background:#fdf5dc} .not-run{background:#eeeeee}
code{font-size:0.92em} figure{margin:1.5em 0} img{max-width:100%}
details{margin:0.3em 0} summary{cursor:pointer}
"""


def _css_class(verdict: str) -> str:
    return {
        "reproduced at this scale": "reproduced",
        "not reproduced": "not-reproduced",
        "not run here": "not-run",
    }.get(verdict, verdict)


def write_html(path: Path, results, figures, llm_part, meta) -> None:
    e = html.escape
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        "<title>prefjax: reproduction of Xu &amp; Kankanhalli</title>",
        f"<style>{_CSS}</style></head><body>",
        "<h1>Reproduction report</h1>",
        *(f"<p>{e(p)}</p>" for p in _intro(results, meta)),
        "<h2>Claims</h2>",
        "<table><tr><th>id</th><th>where</th><th>paper</th><th>computed</th><th>verdict</th>"
        "<th>difference / tolerance</th></tr>",
    ]
    for r in results:
        diff = "" if r.difference is None else f"{r.difference:.3g} / {r.tolerance:.3g}"
        parts.append(
            f'<tr class="{_css_class(r.verdict)}"><td><code>{e(r.id)}</code></td><td>{e(r.where)}</td>'
            f"<td>{e(_paper(r))}</td><td>{e(_fmt(r.computed_value))}</td>"
            f"<td><b>{e(r.verdict)}</b></td><td>{e(diff)}</td></tr>"
        )
    parts.append("</table><h2>Details</h2>")
    for r in results:
        parts.append(
            f"<details><summary><code>{e(r.id)}</code>: {e(r.verdict)}</summary>"
            f"<p><i>Paper:</i> {e(r.statement)}</p><p><i>Computed by</i> <code>{e(r.computed_by)}"
            f"</code>; rule: {e(r.tolerance_rule)}. {e(r.details)}</p></details>"
        )
    parts.append("<h2>Figures</h2>")
    for name, p in figures.items():
        data = base64.b64encode(Path(p).read_bytes()).decode("ascii")
        parts.append(
            f'<figure><img alt="{e(FIGURES[name])}" src="data:image/png;base64,{data}">'
            f"<figcaption>{e(FIGURES[name])}</figcaption></figure>"
        )
    if llm_part:
        parts.append("<h2>The LLM experiment</h2>")
        parts.append(f"<p>{e(llm_part.get('summary', ''))}</p>")
        rows = llm_part.get("rows", [])
        if rows:
            keys = list(rows[0])
            parts.append("<table><tr>" + "".join(f"<th>{e(k)}</th>" for k in keys) + "</tr>")
            for row in rows:
                parts.append(
                    "<tr>" + "".join(f"<td>{e(_fmt(row[k]))}</td>" for k in keys) + "</tr>"
                )
            parts.append("</table>")
    parts.append("</body></html>")
    _atomic_write(path, "\n".join(parts) + "\n")
