"""Charts for the reports: each function returns a titled matplotlib Figure with labelled axes.

The notebook shows the figure and saves it with :func:`mathkit.reporting.results.save_figure`. Functions
take plain data (a metrics file, summaries from :mod:`mathkit.evaluation.metrics`) so that any notebook can
use them.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import matplotlib.pyplot as plt
from matplotlib.ticker import FormatStrFormatter, PercentFormatter

from mathkit.errors import DataError
from mathkit.jsonl import read_jsonl
from mathkit.reporting.conclusion import percent

TRAIN_KEYS = ("train_loss", "loss")
EVAL_KEYS = ("eval_loss",)


def read_metrics(metrics_path: str | Path) -> list[dict]:
    """The rows of a metrics.jsonl file (one JSON object per logging step)."""
    return read_jsonl(metrics_path, missing="train first (it is written during training)")


def _series(rows: list[dict], keys: tuple[str, ...]) -> tuple[list[float], list[float]]:
    steps, values = [], []
    for row in rows:
        if row.get("kind") == "summary":  # Trainer's run summary: a whole-run average, not a point
            continue
        key = next((k for k in keys if row.get(k) is not None), None)
        if key is not None and row.get("step") is not None:
            steps.append(row["step"])
            values.append(row[key])
    return steps, values


def plot_loss_curves(metrics_path: str | Path, title: str = "Training and validation loss",
                     log_scale: bool = True):
    """Train and eval loss against the optimizer step, from ``metrics.jsonl``.

    Rows need ``step`` and ``train_loss`` (or ``loss``) and/or ``eval_loss`` (as written by
    :mod:`mathkit.training.trainer`; ``kind: summary`` rows are skipped); a log y-axis (when the loss falls
    by a decade or more) shows the late, small improvements that decide exact match.
    """
    rows = read_metrics(metrics_path)
    train = _series(rows, TRAIN_KEYS)
    evals = _series(rows, EVAL_KEYS)
    if not train[0] and not evals[0]:
        raise DataError(f"{metrics_path}: no rows with step and train_loss/loss/eval_loss to plot")
    fig, ax = plt.subplots(figsize=(7, 4))
    if train[0]:
        ax.plot(*train, label="train loss", color="tab:blue", linewidth=1.2)
    if evals[0]:
        ax.plot(*evals, label="validation loss", color="tab:orange", marker="o", markersize=4)
    values = train[1] + evals[1]
    # A log axis only where the loss spans a decade or more: within one decade it has a single
    # labelled tick and the numbers vanish (LoRA runs move from ~1.3 to ~0.6).
    if log_scale and all(v > 0 for v in values) and max(values) / min(values) >= 10:
        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(FormatStrFormatter("%g"))  # 0.01, not 10^-2
        ax.yaxis.set_minor_formatter(FormatStrFormatter(""))
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("cross-entropy loss (completion tokens)")
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    return fig


def plot_accuracy_by(groups: dict, xlabel: str, title: str, train_range: tuple | None = None,
                     ylabel: str = "exact-match accuracy"):
    """Bars of accuracy per group (in percent) with 95% interval error bars, and the value and ``n``
    above each interval.

    ``groups`` maps a label (e.g. digit count) to a summary from
    :func:`mathkit.evaluation.metrics.accuracy_summary` (``accuracy``, ``n``, ``ci95``). The y axis
    is scaled to the data (a set of values under 3% is not drawn on a 0-100% axis) and leaves room
    for the labels. ``train_range`` ``(low, high)`` shades the labels inside the training range
    (compared numerically when the labels are numbers), so extrapolation stands out.
    """
    if not groups:
        raise DataError(f"nothing to plot for {title!r}: no groups")
    labels = list(groups)
    acc = [100 * groups[k]["accuracy"] for k in labels]
    upper = [100 * groups[k]["ci95"][1] for k in labels]
    lo = [max(0.0, a - 100 * groups[k]["ci95"][0]) for a, k in zip(acc, labels)]
    hi = [max(0.0, u - a) for a, u in zip(acc, upper)]
    inside = [_in_range(k, train_range) for k in labels]
    colors = ["tab:blue" if i else "tab:gray" for i in inside]
    fig, ax = plt.subplots(figsize=(max(4.5, 1.3 * len(labels) + 2), 4.2))
    xs = range(len(labels))
    ax.bar(xs, acc, yerr=[lo, hi], capsize=4, color=colors, edgecolor="black", linewidth=0.5,
           error_kw={"elinewidth": 1})
    top = axis_top(max(upper))
    for x, k, a, u in zip(xs, labels, acc, upper):  # above the interval, so text and bar never meet
        ax.annotate(f"{percent(a / 100)}%\nn={groups[k]['n']:,}", (x, u), ha="center", va="bottom",
                    fontsize=8, xytext=(0, 3), textcoords="offset points")
    if train_range is not None and any(inside):
        first, last = inside.index(True), len(inside) - 1 - inside[::-1].index(True)
        ax.axvspan(first - 0.5, last + 0.5, color="tab:green", alpha=0.08,
                   label=f"training range {train_range[0]}–{train_range[1]}")
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)  # clear of the bars
    ax.set_xticks(list(xs), [tick_label(k) for k in labels])
    ax.set_ylim(0, top)
    ax.yaxis.set_major_formatter(PercentFormatter(decimals=None))
    ax.set_xlabel(xlabel)
    ax.set_ylabel(f"{ylabel} (%, 95% interval)")
    ax.set_title(title)
    ax.grid(True, axis="y", alpha=0.3)
    fig.tight_layout()
    return fig


def axis_top(highest_percent: float) -> float:
    """Upper y limit in percent: room for two lines of labels above the highest interval.

    Values that all sit near zero get an axis of a few percent; anything above ~80% gets the
    whole 0-100% axis plus label room.
    """
    if highest_percent >= 80:
        return 118.0
    return max(1.0, highest_percent * 1.3 + 0.5)


def tick_label(label, width: int = 14) -> str:
    """A group name split into lines at underscores/spaces, so long names never overlap."""
    text = str(label).replace("_", " ")
    return textwrap.fill(text, width=width) if len(text) > width else str(label)


def _in_range(label, train_range) -> bool:
    if train_range is None:
        return True
    try:
        return float(train_range[0]) <= float(label) <= float(train_range[1])
    except (TypeError, ValueError):
        return str(label) in {str(v) for v in train_range}
