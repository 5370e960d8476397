"""Every ```python block of README.md and docs/**/*.md runs as written.

All pages run in one fresh interpreter (JAX imported and kernels compiled once), each page in
a namespace of its own in which its blocks run in order, as a reader pastes them, from a
temporary directory, with matplotlib's non-interactive backend. A block that cannot run here
is marked on the line just before its fence with ``<!-- skip: reason -->`` (it needs
llm_bridge's torch stack, a model download or a GPU, or it is a fragment with placeholders);
that marker is the one convention. The audit how-to pages are run (and what they print
checked) by tests/prefjax/test_audit_docs.py, so not here again.
"""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGES = sorted([ROOT / "README.md", *(ROOT / "docs").rglob("*.md")])
BLOCK = re.compile(r"(?P<before>[^\n]*)\n```python[^\n]*\n(?P<code>.*?)```", re.S)
SKIP = re.compile(r"<!--\s*skip\b")
TIMEOUT_S = 600

RUNNER = """
import os, sys, traceback
failures = []
for page, blocks in PAGES:
    ns = {"__name__": "__main__"}
    for i, code in enumerate(blocks):
        try:
            exec(compile(code, f"{page} block {i + 1}", "exec"), ns)
        except BaseException:
            failures.append(traceback.format_exc(limit=-4))
            break
    import matplotlib.pyplot as plt
    plt.close("all")
sys.stderr.write("\\n".join(failures))
sys.exit(1 if failures else 0)
"""


def blocks(page: Path) -> tuple[list[str], list[str]]:
    """(runnable blocks, skipped blocks) of a page, in order."""
    run, skipped = [], []
    for m in BLOCK.finditer("\n" + page.read_text()):
        (skipped if SKIP.search(m["before"]) else run).append(m["code"])
    return run, skipped


# Pages whose blocks another test already runs (and checks what they print): not run twice.
RUN_ELSEWHERE = {
    "docs/howto/audit-dataset.md": "tests/prefjax/test_audit_docs.py",
    "docs/howto/audit-leaderboard.md": "tests/prefjax/test_audit_docs.py",
}
RUNNABLE = [
    (name, run)
    for name, run in ((p.relative_to(ROOT).as_posix(), blocks(p)[0]) for p in PAGES)
    if run and name not in RUN_ELSEWHERE
]


def test_the_pages_with_python_are_collected():
    names = {name for name, _ in RUNNABLE} | set(RUN_ELSEWHERE)
    assert {"README.md", "docs/howto/own-link.md", "docs/getting-started.md"} <= names
    skipped = {p.relative_to(ROOT).as_posix() for p in PAGES if blocks(p)[1]}
    assert skipped == {"docs/llm_training.md"}  # marked, with its reason (torch and a download)


@pytest.mark.slow
def test_every_page_runs(tmp_path):
    script = f"PAGES = {RUNNABLE!r}\n{RUNNER}"
    env = dict(os.environ, MPLBACKEND="Agg", PYTHONPATH=str(ROOT))
    proc = subprocess.run(
        [sys.executable, "-c", script],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
