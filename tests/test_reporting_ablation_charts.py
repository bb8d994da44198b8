"""Ablation charts: titled, labelled, one line/bar/panel per encoding or format, seeds as a spread."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from mathkit.errors import DataError  # noqa: E402
from mathkit.reporting.ablation_charts import (colors, plot_accuracy_vs_length, plot_cost, plot_in_vs_2n,  # noqa: E402
                                               plot_length_heatmaps)


def s(mean, low=None, high=None):
    return {"mean": mean, "min": mean if low is None else low, "max": mean if high is None else high}


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def test_accuracy_vs_length_has_a_line_and_band_per_encoding_and_a_panel_per_format():
    curves = {"reversed": {"rope": {1: s(1.0), 2: s(0.9), 3: s(0.2, 0.1, 0.4), 4: s(0.0)},
                           "fire": {1: s(1.0), 2: s(1.0), 3: s(0.8, 0.7, 0.9), 4: s(0.5, 0.3, 0.6)}},
              "cot": {"rope": {1: s(1.0), 2: s(1.0), 3: s(0.5), 4: s(0.1)}}}
    fig = plot_accuracy_vs_length(curves, train_max=2, title="T")
    left, right = fig.axes
    assert fig._suptitle.get_text() == "T" and left.get_title() == "reversed format"
    assert [line.get_label() for line in left.get_lines()] == ["rope", "fire"]
    np.testing.assert_allclose(left.get_lines()[1].get_ydata(), [100, 100, 80, 50])
    band = left.collections[-1].get_paths()[0].vertices[:, 1]  # fire's band: 30..100 percent
    assert band.min() == pytest.approx(30) and band.max() == pytest.approx(100)
    assert left.get_xlabel() == "digits of the longer operand" and "seed" in left.get_ylabel()
    assert left.get_lines()[0].get_color() == right.get_lines()[0].get_color()  # rope keeps its color


def test_heatmaps_place_each_cell_and_outline_the_training_square():
    fig = plot_length_heatmaps({"best": {"1x1": 1.0, "4x1": 0.25}, "worst": {"1x1": 0.5}}, train_max=2)
    best = fig.axes[0]
    matrix = np.ma.filled(best.images[0].get_array().astype(float), np.nan)
    assert matrix.shape == (4, 4) and matrix[3, 0] == 25 and matrix[0, 0] == 100 and np.isnan(matrix[0, 3])
    assert best.get_title() == "best" and best.get_xlabel() == "digits of the second operand"
    square = best.patches[0]
    assert (square.get_width(), square.get_height()) == (2, 2)
    assert "100" in [t.get_text() for t in best.texts]


def test_in_vs_2n_bars_show_means_with_seed_whiskers():
    groups = {"reversed": {"rope": {"in_distribution": s(1.0), "at_2n": s(0.4, 0.2, 0.5)},
                           "none": {"in_distribution": s(0.9, 0.8, 1.0), "at_2n": s(0.0)}}}
    fig = plot_in_vs_2n(groups, train_max=3)
    ax = fig.axes[0]
    heights = [round(p.get_height(), 6) for p in ax.patches]
    assert heights == [100, 90, 40, 0]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["1-3 digits (training range)", "6 digits (2x)"]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["rope", "none"]


def test_cost_shows_parameters_and_minutes_per_format():
    fig = plot_cost({"rope": 1000, "learned": 1256},
                    {"reversed": {"rope": s(1.0, 0.9, 1.1), "learned": s(1.2)}, "cot": {"rope": s(3.0)}})
    left, right = fig.axes
    assert [p.get_height() for p in left.patches] == [1000, 1256]
    assert "(+256)" in " ".join(t.get_text() for t in left.texts)
    assert sorted(round(p.get_height(), 3) for p in right.patches) == [1.0, 1.2, 3.0]
    assert right.get_ylabel().startswith("training time per run (min")


def test_empty_data_is_refused_and_colors_are_stable():
    with pytest.raises(DataError, match="no runs"):
        plot_accuracy_vs_length({}, train_max=2)
    names = [f"pe{i}" for i in range(12)]
    palette = colors(names)
    assert len(set(palette.values())) == 12 and colors(names[:3])["pe0"] == colors(names[:5])["pe0"]


def test_learning_curves_chart_has_a_line_per_variant():
    from mathkit.reporting.ablation_charts import plot_learning_curves

    curves = {"scratch": {10: {"mean": 2.0, "min": 1.5, "max": 2.5}, 20: {"mean": 1.0, "min": 0.9, "max": 1.1}},
              "kd": {10: {"mean": 1.5, "min": 1.4, "max": 1.6}, 20: {"mean": 0.5, "min": 0.4, "max": 0.6}}}
    fig = plot_learning_curves(curves, title="t")
    ax = fig.axes[0]
    assert [line.get_label() for line in ax.get_lines()] == ["scratch", "kd"] and ax.get_title() == "t"
    assert ax.get_xlabel() == "training step" and ax.get_yscale() == "log"
    with pytest.raises(DataError):
        plot_learning_curves({})
