import json

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402

from mathkit.errors import DataError  # noqa: E402
from mathkit.evaluation.metrics import accuracy_summary  # noqa: E402
from mathkit.reporting.charts import plot_accuracy_by, plot_loss_curves, read_metrics  # noqa: E402


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def write_metrics(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_loss_curves_from_trainer_rows(tmp_path):
    rows = [{"kind": "train", "step": s, "epoch": s / 100, "loss": 2.0 / s, "learning_rate": 1e-3}
            for s in (10, 20, 30, 40)]
    rows += [{"kind": "eval", "step": 20, "eval_loss": 0.2}, {"kind": "eval", "step": 40, "eval_loss": 0.01}]
    rows += [{"kind": "summary", "step": 40, "train_loss": 9.0, "train_runtime": 12.0}]
    fig = plot_loss_curves(write_metrics(tmp_path / "metrics.jsonl", rows))
    ax = fig.axes[0]
    lines = {line.get_label(): line for line in ax.get_lines()}
    assert list(lines["train loss"].get_xdata()) == [10, 20, 30, 40]
    assert list(lines["validation loss"].get_ydata()) == [0.2, 0.01]
    assert 9.0 not in list(lines["train loss"].get_ydata())  # the summary row is not a point
    assert ax.get_title() and ax.get_xlabel() == "optimizer step" and "loss" in ax.get_ylabel()
    assert ax.get_yscale() == "log"


def test_loss_curves_within_one_decade_stay_linear(tmp_path):
    rows = [{"step": s, "loss": v} for s, v in ((1, 1.3), (20, 0.9), (40, 0.6))]
    ax = plot_loss_curves(write_metrics(tmp_path / "m.jsonl", rows)).axes[0]
    assert ax.get_yscale() == "linear"


def test_loss_curves_train_only_and_errors(tmp_path):
    fig = plot_loss_curves(write_metrics(tmp_path / "m.jsonl", [{"step": 1, "train_loss": 0.0}]), log_scale=True)
    assert fig.axes[0].get_yscale() == "linear"  # a zero loss cannot go on a log axis
    with pytest.raises(DataError, match="not found"):
        plot_loss_curves(tmp_path / "missing.jsonl")
    with pytest.raises(DataError, match="no rows"):
        plot_loss_curves(write_metrics(tmp_path / "empty.jsonl", [{"step": 1, "grad_norm": 1.0}]))
    (tmp_path / "bad.jsonl").write_text("{not json\n")
    with pytest.raises(DataError, match="bad.jsonl:1"):
        read_metrics(tmp_path / "bad.jsonl")


def test_accuracy_by_marks_training_range(tmp_path):
    groups = {1: accuracy_summary([1] * 50), 2: accuracy_summary([1] * 99 + [0]),
              3: accuracy_summary([1] * 9 + [0]), 4: accuracy_summary([0] * 20)}
    fig = plot_accuracy_by(groups, xlabel="digits", title="Exact match by digits", train_range=(1, 3))
    ax = fig.axes[0]
    bars = ax.patches[:4]
    assert [round(b.get_height(), 3) for b in bars] == [100.0, 99.0, 90.0, 0.0]  # percent
    assert bars[0].get_facecolor() != bars[3].get_facecolor()  # outside the range looks different
    assert [t.get_text() for t in ax.get_xticklabels()] == ["1", "2", "3", "4"]
    assert ax.get_title() == "Exact match by digits" and ax.get_xlabel() == "digits" and ax.get_ylabel()
    assert "training range 1–3" in [t.get_text() for t in ax.get_legend().get_texts()]
    texts = [t.get_text() for t in ax.texts]
    assert "n=100" in texts[1] and "99.00%" in texts[1]  # two decimals: 99.98% must not show as 100%
    assert ax.get_ylim()[1] > 100  # room above 100% for the labels
    fig.savefig(tmp_path / "acc.png")


def test_accuracy_axis_is_scaled_to_small_values_with_labels_above_intervals():
    # Report 00's case: every value under 3%, the widest interval reaching 16%.
    groups = {"gsm8k_originals": accuracy_summary([1] * 2 + [0] * 98),
              "gsm8k_originals_heldout": accuracy_summary([0] * 20),
              "champ": accuracy_summary([1] * 7 + [0] * 263)}
    ax = plot_accuracy_by(groups, xlabel="set", title="small").axes[0]
    top = ax.get_ylim()[1]
    highest_upper = 100 * max(g["ci95"][1] for g in groups.values())
    assert highest_upper < top <= 1.5 * highest_upper + 1  # not 0..100% for values of a few percent
    assert "%" in ax.yaxis.get_major_formatter()(5, 0)      # percent tick labels
    for text, g in zip(ax.texts, groups.values()):           # each label sits on its interval's top
        assert text.xy[1] == pytest.approx(100 * g["ci95"][1])
        assert f"n={g['n']}" in text.get_text()
    ticks = [t.get_text() for t in ax.get_xticklabels()]
    assert ticks[1] == "gsm8k\noriginals\nheldout" and ticks[2] == "champ"  # long names wrap


def test_axis_top_and_tick_label():
    from mathkit.reporting.charts import axis_top, tick_label

    assert axis_top(100.0) > 100 and axis_top(5.0) < 10 and axis_top(0.0) >= 1
    assert tick_label(3) == "3" and "\n" in tick_label("a_rather_long_group_name")


def test_accuracy_by_string_labels_without_range():
    groups = {"+": accuracy_summary([1, 1, 0]), "-": accuracy_summary([1])}
    fig = plot_accuracy_by(groups, xlabel="operator", title="by op")
    assert fig.axes[0].get_legend() is None
    with pytest.raises(DataError):
        plot_accuracy_by({}, xlabel="x", title="empty")
