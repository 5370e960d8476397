"""The reproduction report (analytic part, as CI runs it): claims.json against values computed
here independently, and an index.html that is well-formed and self-contained."""

import json
import math
from html.parser import HTMLParser

import mpmath as mp
import pytest

from prefjax import cli

REQUIRED_IDS = [
    "example1.model1", "example1.model2", "example1.in_omega20", "sec3_1.model1",
    "sec3_1.model2", "eq5.gamma0", "prop1.M1.01", "prop1.M2", "prop1.M3", "prop1.M5",
    "prop1.M10", "prop2.uv", "prop2.vu", "appendix_b1.area", "appendix_b2.area",
    "appendix_b3.series", "theorem1.logistic", "theorem1.probit", "theorem1.cauchit",
    *[f"theorem2.K{k}" for k in range(3, 9)], "sec3_2.k_trend",
]  # fmt: skip


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    assert cli.main(["reproduce", "--out", str(out), "--no-llm", "--quiet"]) == 0
    return out


@pytest.fixture(scope="module")
def claims(report):
    data = json.loads((report / "claims.json").read_text())
    return {c["id"]: c for c in data["claims"]}


def test_every_required_claim_is_there_with_a_verdict(claims):
    for cid in REQUIRED_IDS:
        assert cid in claims, cid
        c = claims[cid]
        assert c["verdict"] in ("agrees", "differs")
        assert c["computed_by"] and c["statement"]


def bt_compose(a, b):
    a, b = mp.mpf(a), mp.mpf(b)
    return a * b / (a * b + (1 - a) * (1 - b))


def test_example_1_numbers(claims):
    """Eq. (3) by hand: (0.9999, 0.02) gives 0.99512, so the stated 0.96 differs;
    (0.9801, 0.02) gives 0.50128, which matches the stated 0.50."""
    with mp.workdps(30):
        m1, m2 = float(bt_compose("0.9999", "0.02")), float(bt_compose("0.9801", "0.02"))
    assert claims["example1.model1"]["computed_value"] == pytest.approx(m1, rel=1e-12)
    assert claims["example1.model1"]["verdict"] == "differs"
    assert claims["example1.model2"]["computed_value"] == pytest.approx(m2, rel=1e-12)
    assert claims["example1.model2"]["verdict"] == "agrees"
    assert claims["sec3_1.model1"]["verdict"] == "differs"  # stated 0.95
    assert claims["sec3_1.model2"]["verdict"] == "agrees"
    assert claims["example1.in_omega20"]["computed_value"] is True


def test_proposition_1_values(claims):
    for M in (1.01, 2.0, 3.0, 5.0, 10.0):
        c = claims[f"prop1.M{M:g}"]
        with mp.workdps(40):
            Mm = mp.mpf(M)
            want = mp.log((Mm - 1) / (Mm + 1)) / 2 + mp.atanh(1 / mp.sqrt(Mm)) / mp.sqrt(Mm)
        assert float(c["paper_value"]) == pytest.approx(float(want), rel=1e-10)
        assert c["verdict"] == "agrees" and c["computed_value"] <= 1e-8


def test_appendix_b2_differs_by_a_factor_M(claims):
    """B6 says beta^2/(6 alpha M); integrating 2 gamma_2 of Eq. (11) by hand gives
    beta^2/(6 alpha M^2): at the report's points (M = 2, 10, 3, 20, 1.5) the relative
    difference is M - 1, largest 19."""
    c = claims["appendix_b2.area"]
    assert c["verdict"] == "differs"
    assert c["computed_value"] == pytest.approx(19.0, rel=1e-6)


def test_formulas_that_hold(claims):
    for cid in ("eq5.gamma0", "prop2.uv", "prop2.vu", "appendix_b1.area", "appendix_b3.series"):
        assert claims[cid]["verdict"] == "agrees", cid
    for cid in ("theorem1.logistic", "theorem1.probit", "theorem1.cauchit", "sec3_2.k_trend"):
        assert claims[cid]["computed_value"] == "holds", cid


class _Checker(HTMLParser):
    VOID = {"meta", "img", "br", "hr", "link", "input"}

    def __init__(self):
        super().__init__()
        self.stack, self.errors, self.external, self.images = [], [], [], 0

    def handle_starttag(self, tag, attrs):
        for name, value in attrs:
            if name in ("src", "href") and value and not value.startswith(("data:", "#")):
                self.external.append(value)
        self.images += tag == "img"
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag):
        if not self.stack or self.stack.pop() != tag:
            self.errors.append(tag)


def test_html_is_well_formed_and_self_contained(report):
    text = (report / "index.html").read_text()
    checker = _Checker()
    checker.feed(text)
    assert not checker.errors and not checker.stack
    assert not checker.external
    assert "http://" not in text and "https://" not in text
    assert checker.images >= 4  # Figures 1 (two), 2 and Section 3.2, embedded
    assert "differs" in text and "example1.model1" in text


def test_markdown_lists_every_claim(report, claims):
    text = (report / "report.md").read_text()
    for cid in claims:
        assert f"`{cid}`" in text
    assert math.isfinite(json.loads((report / "claims.json").read_text())["meta"]["seconds"])


EMPIRICAL = ("reproduced at this scale", "not reproduced", "inconclusive", "not run here")


def test_section4_claims_enter_the_report_with_their_own_verdicts(tmp_path):
    from prefjax.reproduce import _run

    analysis = {
        "claims": [
            {
                "id": "sec4.shift",
                "where": "Section 4 (Results), Figure 3",
                "statement": "a shift",
                "verdict": "reproduced at this scale",
                "computed": {"narrowest_interval": {"width": 0.05}},
                "details": "p13 goes from 0.05 to 0.95 over 0.05",
            },
            {
                "id": "sec4.llama3_8b",
                "where": "Section 4",
                "statement": "at the paper's scale",
                "verdict": "not run here",
                "computed": {"command": "llm-bridge sweep --preset paper"},
                "details": "needs GPUs",
            },
        ]
    }
    rows = _run.empirical_claims(analysis, "the quick sweep", ".quick")
    assert [r.id for r in rows] == ["sec4.shift.quick", "sec4.llama3_8b.quick"]
    assert all(r.verdict in EMPIRICAL for r in rows)
    meta = {"generated": "now", "seconds": 1.0, "python": "3", "platform": "x"}
    _run.write_html(tmp_path / "i.html", rows, {}, None, meta)
    text = (tmp_path / "i.html").read_text()
    assert 'class="reproduced"' in text and 'class="not-run"' in text
    intro = " ".join(_run._intro(rows, meta))
    assert "2 empirical claims" in intro and "1 not run here" in intro


def test_the_cpu_full_snapshot_claims_are_in_the_report(claims):
    from prefjax.reproduce import _run

    if not _run.SNAPSHOT.is_file():
        pytest.skip("no cpu-full snapshot in docs/ (an installed package)")
    ids = [cid for cid in claims if cid.endswith(".cpu_full")]
    assert {i.removesuffix(".cpu_full") for i in ids} >= {
        "sec4.shift",
        "sec4.same_p13_different_p23",
        "sec4.not_all_in_omega",
        "sec4.dpo_optimum",
        "sec4.llama3_8b",
    }
    assert all(claims[i]["verdict"] in EMPIRICAL for i in ids)
