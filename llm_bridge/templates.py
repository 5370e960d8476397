"""The paper's question and answer templates (Appendix C.2), stored as data in ``templates.json``.

A template holds the placeholders ``<A>`` and ``<B>``. In a question they are the two options in
the order shown; in an answer ``<A>`` is the option the answer prefers and ``<B>`` the other one.
The paper's list has a few typesetting slips; the mended text and the list of what was mended
(``CORRECTIONS``) live in the JSON file, so the data can be read and diffed without Python.

Filling is verbatim substitution, as in the paper: no article is added and no letter is
capitalised (``"<A> appeals to me more than <B>."`` gives ``"dog appeals to me more than bird."``).
"""

from __future__ import annotations

import hashlib
import json
import re
from importlib import resources

__all__ = [
    "ANSWER_TEMPLATES",
    "CORRECTIONS",
    "PROBE_QUESTION",
    "QUESTION_TEMPLATES",
    "TEMPLATES_SHA256",
    "fill",
]

_PLACEHOLDER = re.compile(r"<A>|<B>")


def _load() -> tuple[dict, str]:
    raw = resources.files("llm_bridge").joinpath("templates.json").read_bytes()
    return json.loads(raw), hashlib.sha256(raw).hexdigest()


_DATA, TEMPLATES_SHA256 = _load()

QUESTION_TEMPLATES: tuple[str, ...] = tuple(_DATA["question_templates"])
"""The 20 training questions; each names both options (``<A>`` shown first, ``<B>`` second)."""

ANSWER_TEMPLATES: tuple[str, ...] = tuple(_DATA["answer_templates"])
"""The 30 answers; each states a preference for ``<A>`` (answer 4 names only ``<A>``)."""

PROBE_QUESTION: str = _DATA["probe_question"]
"""Section 4's measurement question, ``"Do you prefer <A> or <B>?"`` (never used in training)."""

CORRECTIONS: tuple[str, ...] = tuple(_DATA["corrections"])
"""What was mended relative to the paper's printed lists."""

# The data file is part of the package: a broken edit should fail at import, not mid-run.
if len(QUESTION_TEMPLATES) != 20 or len(ANSWER_TEMPLATES) != 30:
    raise RuntimeError(
        f"templates.json must hold 20 questions and 30 answers, "
        f"got {len(QUESTION_TEMPLATES)} and {len(ANSWER_TEMPLATES)}"
    )
for _t in (*QUESTION_TEMPLATES, PROBE_QUESTION):
    if "<A>" not in _t or "<B>" not in _t:
        raise RuntimeError(f"question template without both <A> and <B>: {_t!r}")
for _t in ANSWER_TEMPLATES:
    if "<A>" not in _t:
        raise RuntimeError(f"answer template without <A>: {_t!r}")
if len(set(QUESTION_TEMPLATES)) != 20 or len(set(ANSWER_TEMPLATES)) != 30:
    raise RuntimeError("templates.json holds a duplicated template")


def fill(template: str, a: str, b: str) -> str:
    """Replace ``<A>`` by ``a`` and ``<B>`` by ``b`` in one pass.

    One pass means an option name that itself contains ``"<B>"`` is not substituted again.

    >>> fill("I prefer <A> over <B>.", "dog", "bird")
    'I prefer dog over bird.'
    """
    return _PLACEHOLDER.sub(lambda m: a if m.group(0) == "<A>" else b, template)
