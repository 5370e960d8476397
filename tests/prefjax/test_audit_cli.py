"""``prefjax audit DATA``: the four files, the page's fragile pairs, errors as exit code 2."""

import csv
import json

import prefjax
from prefjax import cli


def test_cli_writes_the_report(tmp_path, capsys):
    out = tmp_path / "report"
    data = prefjax.example_data("baseball")
    rc = cli.main(["audit", str(data), "--ties", "half", "--threshold", "0.0025",
                   "--out", str(out), "--quiet"])  # fmt: skip
    assert rc == 0
    assert {p.name for p in out.iterdir()} == {"audit.csv", "audit.json", "heatmap.png",
                                               "index.html"}  # fmt: skip
    summary = json.loads((out / "audit.json").read_text())["summary"]
    assert summary["n_fragile"] > 0 and summary["link"] == "logistic"
    with open(out / "audit.csv") as fh:
        rows = list(csv.DictReader(fh))
    fragile = [r for r in rows if r["fragile"] == "True"]
    assert len(fragile) == summary["n_fragile"]
    page = (out / "index.html").read_text()
    assert f"{len(fragile)} of 42 ordered pairs are fragile" in page
    assert "data:image/png;base64," in page and "<script" not in page
    assert fragile[0]["i"] in page


def test_cli_reports_bad_input(tmp_path, capsys):
    bad = tmp_path / "bad.csv"
    bad.write_text("model_a,model_b,winner\nx,y,model_c\n")
    assert cli.main(["audit", str(bad), "--out", str(tmp_path / "o"), "--quiet"]) == 2
    assert "line 2 of bad.csv: unknown winner 'model_c'" in capsys.readouterr().err
    assert cli.main(["audit", str(tmp_path / "missing.csv"), "--quiet"]) == 2
