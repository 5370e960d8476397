"""Figure 2 and the Section 3.2 figure: the drawn regions have the areas of Proposition 2."""

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from prefjax import bradley_terry as bt  # noqa: E402
from prefjax import plackett_luce as pl  # noqa: E402
from prefjax.plot import area_vs_k, pl_regions  # noqa: E402

RTOL_POLYGON = 1e-4  # the boundary drawn with 400 points per curve


def polygon_area(path):
    """Shoelace formula over a closed matplotlib path."""
    x, y = path.vertices[:, 0], path.vertices[:, 1]
    return 0.5 * abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1)))


def test_figure2_regions_have_the_areas_of_proposition2():
    alpha, beta, Ms = 1.01, 0.99, (1.01, 2.0, 10.0)
    fig = pl_regions(alpha, beta, Ms)
    assert isinstance(fig, Figure) and len(fig.axes) == 2
    for ax, wrt in zip(fig.axes, ("uv", "vu"), strict=True):
        shaded = [c for c in ax.collections if len(c.get_paths())]
        assert len(shaded) == len(Ms)
        for coll, M in zip(shaded, Ms, strict=True):
            area = polygon_area(coll.get_paths()[0])
            assert area == pytest.approx(
                float(pl.region_area(M, alpha, beta, wrt)), rel=RTOL_POLYGON
            )


def test_area_vs_k_plots_robustness_vs_k():
    scores = np.array([1.0, 0.3, 0.0, -0.4, -1.0])
    fig = area_vs_k(scores, Ms=[2.0, 10.0])
    ax_area, ax_ab = fig.axes
    lines = [ln for ln in ax_area.get_lines() if ln.get_marker() == "o"]
    for ln, M in zip(lines, [2.0, 10.0], strict=True):
        r = pl.robustness_vs_k(scores, M)
        np.testing.assert_allclose(ln.get_xdata(), r.K)
        np.testing.assert_allclose(ln.get_ydata(), np.asarray(r.area), rtol=1e-12)
    dashed = sorted(ln.get_ydata()[0] for ln in ax_area.get_lines() if ln.get_linestyle() == "--")
    np.testing.assert_allclose(
        dashed, sorted(float(bt.region_area(M)) for M in [2.0, 10.0]), rtol=1e-12
    )
    assert ax_area.get_yscale() == "log"


def test_figures_reject_bad_input():
    with pytest.raises(ValueError, match="alpha must be"):
        pl_regions(alpha=0.0)
    with pytest.raises(ValueError, match="M must be"):
        area_vs_k([1.0, 0.0, -1.0], Ms=[-1.0])
