"""Figure 1 for any link: structure, and the shaded set equals Definition 3 on the grid."""

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

import prefjax  # noqa: E402
import prefjax.plot  # noqa: E402


def test_sensitive_regions_one_link(tmp_path):
    fig = prefjax.plot.sensitive_regions(prefjax.logistic, Ms=(2, 10), n=60)
    assert len(fig.axes) == 2
    assert "logistic" in fig.axes[0].get_title()
    path = tmp_path / "fig1.png"
    fig.savefig(path)
    assert path.stat().st_size > 1000


def test_sensitive_regions_side_by_side():
    fig = prefjax.plot.sensitive_regions([prefjax.logistic, prefjax.probit, prefjax.cauchit], n=40)
    assert len(fig.axes) == 6
    titles = [ax.get_title() for ax in fig.axes]
    assert any("cauchit" in t for t in titles)


def test_shaded_area_matches_region_area():
    """The filled contour for M = 2 covers about the area Proposition 1 gives."""
    n = 200
    fig = prefjax.plot.sensitive_regions(prefjax.logistic, Ms=(2.0,), n=n)
    ax = fig.axes[0]
    fig.canvas.draw()
    # Rasterize: count grid midpoints inside the drawn paths of the M = 2 level.
    paths = [p for coll in ax.collections for p in coll.get_paths()]
    centers = (np.arange(n) + 0.5) / n
    pts = np.stack(np.meshgrid(centers, centers), -1).reshape(-1, 2)
    inside = np.zeros(len(pts), bool)
    for p in paths:
        inside |= p.contains_points(pts)
    area = inside.mean()
    assert area == pytest.approx(float(prefjax.bradley_terry.region_area(2.0)), rel=0.05)


def test_bad_arguments():
    with pytest.raises(ValueError, match="Ms"):
        prefjax.plot.sensitive_regions(prefjax.logistic, Ms=())
    with pytest.raises(ValueError, match="n must be"):
        prefjax.plot.sensitive_regions(prefjax.logistic, n=2)
