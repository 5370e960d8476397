"""The paper's templates as shipped: counts, placeholders, and the mended slips."""

import json
import re
from importlib import resources

import pytest

from llm_bridge import templates
from llm_bridge.templates import ANSWER_TEMPLATES, PROBE_QUESTION, QUESTION_TEMPLATES, fill


def test_counts_match_appendix_c2():
    # Appendix C.2: 20 question templates and 30 answer templates (the paper's list numbers its
    # last answer "20" a second time).
    assert len(QUESTION_TEMPLATES) == 20
    assert len(ANSWER_TEMPLATES) == 30
    assert len(set(QUESTION_TEMPLATES)) == 20
    assert len(set(ANSWER_TEMPLATES)) == 30


def test_data_file_is_the_source():
    raw = json.loads(resources.files("llm_bridge").joinpath("templates.json").read_text())
    assert tuple(raw["question_templates"]) == QUESTION_TEMPLATES
    assert tuple(raw["answer_templates"]) == ANSWER_TEMPLATES
    assert raw["probe_question"] == PROBE_QUESTION


@pytest.mark.parametrize("template", QUESTION_TEMPLATES + ANSWER_TEMPLATES + (PROBE_QUESTION,))
def test_no_mangled_markup(template):
    # The paper's text has "\A>", "\langle A \rangle" in places of "<A>"; none may survive.
    assert "\\" not in template
    assert "langle" not in template and "rangle" not in template
    placeholders = re.findall(r"<[^>]*>", template)
    assert set(placeholders) <= {"<A>", "<B>"}, placeholders
    assert template == template.strip()


@pytest.mark.parametrize("template", QUESTION_TEMPLATES + (PROBE_QUESTION,))
def test_questions_name_both_options_once_and_ask(template):
    assert template.count("<A>") == 1 and template.count("<B>") == 1
    assert template.index("<A>") < template.index("<B>")  # <A> is the option shown first
    assert template.endswith("?")


@pytest.mark.parametrize("template", ANSWER_TEMPLATES)
def test_answers_state_a_preference_for_a(template):
    assert "<A>" in template
    assert template.endswith(".")


def test_fill_is_one_pass():
    # An option name containing a placeholder must not be substituted again.
    assert fill("<A> or <B>?", "x<B>", "y") == "x<B> or y?"
    assert fill("I prefer <A> over <B>.", "dog", "bird") == "I prefer dog over bird."


def test_corrections_are_documented():
    assert len(templates.CORRECTIONS) >= 3
    assert re.fullmatch(r"[0-9a-f]{64}", templates.TEMPLATES_SHA256)


def test_package_exports_lazily():
    import subprocess
    import sys

    import llm_bridge

    for name in llm_bridge.__all__:
        assert getattr(llm_bridge, name) is not None
    # importing the package alone pulls in neither torch nor transformers
    code = "import sys, llm_bridge; print('torch' in sys.modules, 'transformers' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]
