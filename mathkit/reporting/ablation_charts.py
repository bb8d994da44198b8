"""Charts of an ablation grid: one line or bar per positional encoding, seeds as a spread.

Every function takes plain numbers (:func:`mathkit.reporting.ablation_summary.aggregate`'s, or
dicts shaped like them) and returns a titled matplotlib Figure with labelled axes; the notebook
shows it and saves it with :func:`mathkit.reporting.results.save_figure`. Accuracies are drawn in
percent; a band or whisker spans the lowest to the highest seed, the line or bar is their mean.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.ticker import FuncFormatter, PercentFormatter

from mathkit.errors import DataError
from mathkit.reporting.charts import tick_label


def colors(names: Sequence[str]) -> dict[str, tuple]:
    """One stable color per name (tab10, then tab20 for longer lists)."""
    cmap = plt.get_cmap("tab10" if len(names) <= 10 else "tab20")
    return {name: cmap(i % cmap.N) for i, name in enumerate(names)}


def _need(data: Mapping, title: str) -> None:
    if not data or not any(data.values()):
        raise DataError(f"nothing to plot for {title!r}: no runs")


def plot_accuracy_vs_length(curves: Mapping[str, Mapping[str, Mapping[int, dict]]], *, train_max: int,
                            title: str = "Exact match by operand length"):
    """One panel per format; per encoding the mean exact match over seeds against the longer
    operand's digits, with a band from the lowest to the highest seed. The training range
    (1..``train_max`` digits) is shaded.

    ``curves``: ``{format: {encoding: {length: {"mean", "min", "max"}}}}`` (accuracies in 0-1).
    """
    _need(curves, title)
    names = list(dict.fromkeys(pe for by_pe in curves.values() for pe in by_pe))
    palette = colors(names)
    fig, axes = plt.subplots(1, len(curves), figsize=(6.2 * len(curves) + 1.8, 4.4), squeeze=False, sharey=True)
    for ax, (fmt, by_pe) in zip(axes[0], curves.items()):
        ax.axvspan(0.5, train_max + 0.5, color="tab:green", alpha=0.08, label=f"training range 1-{train_max}")
        for pe, by_length in by_pe.items():
            xs = sorted(by_length)
            mean = [100 * by_length[x]["mean"] for x in xs]
            ax.plot(xs, mean, marker="o", markersize=3.5, linewidth=1.4, color=palette[pe], label=pe)
            ax.fill_between(xs, [100 * by_length[x]["min"] for x in xs], [100 * by_length[x]["max"] for x in xs],
                            color=palette[pe], alpha=0.15, linewidth=0)
        ax.set_title(f"{fmt} format")
        ax.set_xlabel("digits of the longer operand")
        ax.set_xticks(sorted({x for b in by_pe.values() for x in b}))
        ax.set_ylim(-3, 103)
        ax.grid(True, alpha=0.3)
    axes[0][0].set_ylabel("exact match (%, mean over seeds; band: seed range)")
    axes[0][0].yaxis.set_major_formatter(PercentFormatter(decimals=0))
    axes[0][-1].legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False, fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_length_heatmaps(grids: Mapping[str, Mapping[str, float]], *, train_max: int,
                         title: str = "Exact match by operand lengths"):
    """One heatmap per entry (e.g. the best and the worst encoding): mean exact match for each
    pair of operand lengths (rows: first operand, columns: second), the training square outlined.

    ``grids``: ``{panel title: {"3x2": accuracy}}`` with accuracies in 0-1; missing cells stay blank.
    """
    _need(grids, title)
    size = max(int(d) for cells in grids.values() for key in cells for d in key.split("x"))
    fig, axes = plt.subplots(1, len(grids), figsize=(4.6 * len(grids) + 1.2, 4.4), squeeze=False)
    image = None
    for ax, (name, cells) in zip(axes[0], grids.items()):
        matrix = np.full((size, size), np.nan)
        for key, acc in cells.items():
            a, b = (int(d) for d in key.split("x"))
            matrix[a - 1, b - 1] = 100 * acc
        image = ax.imshow(matrix, origin="lower", cmap="viridis", vmin=0, vmax=100,
                          extent=(0.5, size + 0.5, 0.5, size + 0.5))
        for (a, b), value in np.ndenumerate(matrix):
            if not np.isnan(value):
                ax.text(b + 1, a + 1, f"{value:.0f}", ha="center", va="center", fontsize=7,
                        color="black" if value > 60 else "white")
        ax.add_patch(plt.Rectangle((0.5, 0.5), train_max, train_max, fill=False, edgecolor="red", linewidth=1.5,
                                   label=f"training range 1-{train_max}"))
        ax.set_title(name)
        ax.set_xlabel("digits of the second operand")
        ax.set_ylabel("digits of the first operand")
        ax.set_xticks(range(1, size + 1))
        ax.set_yticks(range(1, size + 1))
    axes[0][-1].legend(loc="upper left", bbox_to_anchor=(0.0, -0.14), frameon=False, fontsize=8)
    fig.colorbar(image, ax=axes[0].tolist(), label="exact match (%, mean over seeds)", shrink=0.85)
    fig.suptitle(title)
    return fig


def plot_in_vs_2n(groups: Mapping[str, Mapping[str, Mapping[str, dict]]], *, train_max: int,
                  title: str = "In the training range vs at twice its length"):
    """Per format, per encoding: two bars, mean exact match over seeds in distribution (1..N
    digits) and at 2N digits, each with a whisker from the lowest to the highest seed and the
    value above it.

    ``groups``: ``{format: {encoding: {"in_distribution": spread, "at_2n": spread}}}``.
    """
    _need(groups, title)
    fig, axes = plt.subplots(len(groups), 1, figsize=(max(6.0, 1.1 * max(map(len, groups.values())) + 2.5),
                                                      3.8 * len(groups)), squeeze=False)
    kinds = (("in_distribution", f"1-{train_max} digits (training range)", "tab:blue"),
             ("at_2n", f"{2 * train_max} digits (2x)", "tab:orange"))
    for ax, (fmt, by_pe) in zip(axes[:, 0], groups.items()):
        names = list(by_pe)
        xs = np.arange(len(names))
        for offset, (key, label, color) in zip((-0.2, 0.2), kinds):
            mean = np.array([100 * by_pe[p][key]["mean"] for p in names])
            low = mean - [100 * by_pe[p][key]["min"] for p in names]
            high = np.array([100 * by_pe[p][key]["max"] for p in names]) - mean
            ax.bar(xs + offset, mean, width=0.38, yerr=[low, high], capsize=3, color=color, edgecolor="black",
                   linewidth=0.5, label=label, error_kw={"elinewidth": 1})
            for x, m, h in zip(xs + offset, mean, high):
                ax.annotate(f"{m:.0f}", (x, m + h), ha="center", va="bottom", fontsize=7, xytext=(0, 2),
                            textcoords="offset points")
        ax.set_xticks(xs, [tick_label(p, 10) for p in names])
        ax.set_ylim(0, 115)
        ax.yaxis.set_major_formatter(PercentFormatter(decimals=0))
        ax.set_ylabel("exact match (%, whisker: seed range)")
        ax.set_title(f"{fmt} format")
        ax.grid(True, axis="y", alpha=0.3)
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False, fontsize=8)
    axes[-1][0].set_xlabel("positional encoding")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_cost(n_params: Mapping[str, int], train_minutes: Mapping[str, Mapping[str, dict]],
              title: str = "Model size and training time per encoding"):
    """Left: parameters per encoding. Right: training minutes per run (mean over seeds, whisker
    the seed range), one bar per format.

    ``train_minutes``: ``{format: {encoding: {"mean", "min", "max"}}}``.
    """
    _need(n_params, title)
    names = list(n_params)
    xs = np.arange(len(names))
    fig, (left, right) = plt.subplots(1, 2, figsize=(max(9.0, 0.6 * len(names) * 2 + 3), 4.2))
    left.bar(xs, [n_params[p] for p in names], color="tab:gray", edgecolor="black", linewidth=0.5)
    low = min(n_params.values())
    for x, p in zip(xs, names):
        extra = n_params[p] - low
        left.annotate(f"{n_params[p]:,}" + (f"\n(+{extra:,})" if extra else ""), (x, n_params[p]), ha="center",
                      va="bottom", fontsize=7, xytext=(0, 2), textcoords="offset points")
    left.set_ylim(0, max(n_params.values()) * 1.2)
    left.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}"))  # 1,000,000 rather than 1e6
    left.set_ylabel("parameters")
    left.set_title("parameters")
    width = 0.8 / max(1, len(train_minutes))
    palette = colors(list(train_minutes))
    for i, (fmt, by_pe) in enumerate(train_minutes.items()):
        offset = (i - (len(train_minutes) - 1) / 2) * width
        present = [p for p in names if p in by_pe]
        mean = np.array([by_pe[p]["mean"] for p in present])
        err = [mean - [by_pe[p]["min"] for p in present], np.array([by_pe[p]["max"] for p in present]) - mean]
        right.bar(np.array([names.index(p) for p in present]) + offset, mean, width=width * 0.95, yerr=err,
                  capsize=2, color=palette[fmt], edgecolor="black", linewidth=0.5, label=f"{fmt} format")
    right.set_ylabel("training time per run (min; whisker: seed range)")
    right.set_title("training time (same steps for all)")
    right.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False, fontsize=8)
    for ax in (left, right):
        ax.set_xticks(xs, [tick_label(p, 10) for p in names])
        ax.set_xlabel("positional encoding")
        ax.grid(True, axis="y", alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_learning_curves(curves: Mapping[str, Mapping[int, dict]], *,
                         title: str = "Validation cross-entropy during training",
                         ylabel: str = "validation cross-entropy (mean over seeds; band: seed range)"):
    """Per variant (an arm, an encoding), a validation number against the training step: the mean
    over seeds with a band from the lowest to the highest seed, on a log scale.

    ``curves``: ``{name: {step: {"mean", "min", "max"}}}`` (see
    :func:`mathkit.reporting.ablation_summary.learning_curves`).
    """
    _need(curves, title)
    palette = colors(list(curves))
    fig, ax = plt.subplots(figsize=(7.8, 4.4))
    for name, by_step in curves.items():
        xs = sorted(by_step)
        ax.plot(xs, [by_step[x]["mean"] for x in xs], marker="o", markersize=3, linewidth=1.4,
                color=palette[name], label=name)
        ax.fill_between(xs, [by_step[x]["min"] for x in xs], [by_step[x]["max"] for x in xs],
                        color=palette[name], alpha=0.15, linewidth=0)
    ax.set_yscale("log")
    ax.set_xlabel("training step")
    ax.set_ylabel(ylabel)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False, fontsize=8)
    ax.set_title(title)
    fig.tight_layout()
    return fig
