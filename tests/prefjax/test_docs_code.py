"""Every ```python block of README.md and docs/**/*.md runs as written.

The blocks of one page run in order in one fresh interpreter (one namespace per page, as a
reader pastes them), from a temporary directory, with matplotlib's non-interactive backend.
A block that cannot run here is marked on the line just before its fence with
``<!-- skip: reason -->`` (it needs llm_bridge's torch stack or a GPU, or it is a fragment
with placeholders); the marker is the one convention, and the reason is shown on failure of
the rest.
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
PAGE_TIMEOUT_S = 300


def blocks(page: Path) -> tuple[list[str], list[str]]:
    """(runnable blocks, skip reasons) of a page, in order."""
    run, skipped = [], []
    for m in BLOCK.finditer("\n" + page.read_text()):
        (skipped if SKIP.search(m["before"]) else run).append(m["code"])
    return run, skipped


RUNNABLE = [p for p in PAGES if blocks(p)[0]]


def test_every_page_with_python_is_collected():
    names = {p.relative_to(ROOT).as_posix() for p in RUNNABLE}
    assert "README.md" in names and "docs/howto/own-link.md" in names


@pytest.mark.slow
@pytest.mark.parametrize("page", RUNNABLE, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_page_runs(page, tmp_path):
    run, _ = blocks(page)
    script = ["ns = {}"]
    for i, code in enumerate(run):
        label = f"{page.relative_to(ROOT)} block {i + 1}"
        script.append(f"exec(compile({code!r}, {label!r}, 'exec'), ns)")
    env = dict(os.environ, MPLBACKEND="Agg", PYTHONPATH=str(ROOT))
    proc = subprocess.run(
        [sys.executable, "-c", "\n".join(script)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=PAGE_TIMEOUT_S,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
