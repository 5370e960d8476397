"""Figure 3 from sweep rows: what is drawn equals what the rows and Eq. (3)-(4) say."""

import json
import math

import numpy as np
import pytest

from llm_bridge.cli import main
from llm_bridge.plot import figure3, save_figure3
from llm_bridge.results import write_record

from .rows import make_row


def _row(order, p23_data, seed, p12, p23, p13):
    return make_row(order, p23_data, seed, p12, p23, p13, n=128)


ORDER_A, ORDER_B = ("dog", "bird", "cat"), ("cat", "dog", "bird")
ROWS = [
    _row(ORDER_A, 0.0, 0, 0.999, 0.01, 0.20),
    _row(ORDER_A, 0.0, 1, 0.998, 0.02, 0.30),
    _row(ORDER_A, 0.1, 0, 0.997, 0.08, 0.90),
    _row(ORDER_A, 0.1, 1, 0.996, 0.12, 0.94),
    _row(ORDER_B, 0.0, 0, 0.99, 0.05, 0.5),
    _row(ORDER_B, 0.1, 0, 0.99, 0.15, 0.7),
]


def _eq4(p, q):
    return q * (1 - q) / (p + q - 2 * p * q - 1) ** 2


def test_figure3_draws_the_rows():
    fig = figure3(ROWS, M=10)
    axes = [ax for ax in fig.axes if ax.get_visible()]
    assert [ax.get_title() for ax in axes] == ["cat > dog > bird", "dog > bird > cat"]
    ax = axes[1]
    lines = {line.get_label(): line for line in ax.get_lines()}
    p13 = lines["learned $p_{13}^L$"]
    assert p13.get_xdata().tolist() == [0.0, 0.1]
    assert p13.get_ydata() == pytest.approx([0.25, 0.92])  # means over the two seeds
    p23 = lines["learned $p_{23}^L$"]
    assert p23.get_ydata() == pytest.approx([0.015, 0.10])
    # the one-sd band of p13 (sample sd of two seeds: |a - b| / sqrt 2)
    band = ax.collections[-2].get_paths()[0].vertices
    sd0 = abs(0.20 - 0.30) / math.sqrt(2)
    assert np.min(band[:, 1]) == pytest.approx(0.25 - sd0, abs=1e-9)
    # Bradley-Terry from the data's (0.99, p23), dashed, by Eq. (3)
    bt = next(
        line for label, line in lines.items() if label.startswith("BT-implied $p_{13}$ from data")
    )
    x, y = bt.get_xdata(), bt.get_ydata()
    assert y == pytest.approx(0.99 * x / (0.99 * x + 0.01 * (1 - x)), rel=1e-9)
    # the shaded M-sensitive region: where Eq. (4) at (0.99, p23) exceeds 10, on the drawn grid
    spans = [p for p in ax.patches if p.get_label().startswith("$\\Omega")]
    assert len(spans) == 1
    x0, x1 = spans[0].get_x(), spans[0].get_x() + spans[0].get_width()
    grid = np.linspace(0, 1, 401)[1:-1]
    inside = grid[[_eq4(0.99, q) > 10 for q in grid]]
    assert (x0, x1) == pytest.approx((inside.min(), inside.max()))
    assert x0 < 0.01 < x1 < 0.1  # the region hugs p23 = 0 for p12 = 0.99


def test_save_figure3_and_cli(tmp_path, capsys):
    path = save_figure3(ROWS, tmp_path / "fig.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    out = tmp_path / "sweep"
    for row in ROWS:
        write_record(out, row)
    (out / "sweep.json").write_text("{}")
    assert main(["plot", str(out), "--out", str(tmp_path / "f3.png"), "--M", "20"]) == 0
    assert (tmp_path / "f3.png").stat().st_size > 10_000
    assert main(["analyze", str(out), "--json", str(tmp_path / "a.json")]) == 0
    data = json.loads((tmp_path / "a.json").read_text())
    assert set(data) == {"summary", "rows", "claims"} and len(data["rows"]) == len(ROWS)
    assert all(len(r) <= 11 for r in data["rows"])
    assert data["summary"] in capsys.readouterr().out
    assert main(["plot", str(tmp_path / "nothing"), "--out", str(tmp_path / "x.png")]) == 2
    with pytest.raises(ValueError, match="no finished runs"):
        figure3([])


def test_figure3_draws_dpo_optimum_from_the_reference_probes():
    from .rows import estimate

    contexts = {"p12": [0.4, 0.2], "p23": [0.3, -0.5], "p13": [0.1, 0.6]}
    ref = {
        pair: estimate(0.5)._replace(details={"log_odds": dict(enumerate(ls))})
        for pair, ls in contexts.items()
    }
    beta = 0.1
    fig = figure3(ROWS, M=10, references={ORDER_A: {"likelihood": ref}}, beta=beta)
    ax = [a for a in fig.axes if a.get_visible() and a.get_title() == "dog > bird > cat"][0]
    lines = {line.get_label(): line for line in ax.get_lines()}
    for pair, q12 in (("p23", None), ("p13", 0.99)):
        curve = lines[f"DPO optimum $p_{{{pair[1:]}}}^L$ ($\\beta'$ = {beta:g})"]
        x, y = curve.get_xdata(), curve.get_ydata()
        data = np.log(x / (1 - x)) + (0.0 if q12 is None else math.log(q12 / (1 - q12)))
        # Eq. (1)/(2) averaged over the probe's two question orders, by hand
        want = np.mean([1 / (1 + np.exp(-(c + data / beta))) for c in contexts[pair]], axis=0)
        assert y == pytest.approx(want, rel=1e-9, abs=1e-300)
    # the other order has no reference probes: no optimum curves there
    other = [a for a in fig.axes if a.get_visible() and a.get_title() == "cat > dog > bird"][0]
    assert not any(line.get_label().startswith("DPO optimum") for line in other.get_lines())
