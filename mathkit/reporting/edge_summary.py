"""The exported models beside the torch model they came from: a table, a chart and a sentence.

Each row is one evaluation of the same problems (same prompts, greedy decoding, the same evaluator)
on one backend: accuracy with its interval, the paired change against torch (problems fixed and
broken, exact McNemar test), how many completions are exactly torch's, the file size, generation
speed and the batch it ran at (llama.cpp decodes one prompt at a time), all relative to torch.
The goal the edge issue set, int8 at least 2x faster than torch eager and at most a quarter of its
size with accuracy inside torch's interval, is checked per row in :func:`goal_text`.
"""

from __future__ import annotations

import matplotlib.pyplot as plt

from mathkit.errors import DataError
from mathkit.reporting.comparison import compare_records
from mathkit.reporting.conclusion import accuracy_text

MiB = 2**20
SPEED_GOAL, SIZE_GOAL = 2.0, 0.25


def _same_completions(evaluation, reference) -> int:
    ref = {r["id"]: r["completion"] for r in reference.records}
    return sum(ref.get(r["id"]) == r["completion"] for r in evaluation.records)


def edge_row(name: str, evaluation, reference, *, file_bytes: int, reference_bytes: int, batch_size: int,
             export_seconds: float | None = None) -> dict:
    """One backend's evaluation against torch's (``reference``) on the same rows."""
    s, ref = evaluation.summary, reference.summary
    paired = compare_records(reference, evaluation)
    lo, hi = ref["ci95"]
    return {
        "name": name, "n": s["n"], "accuracy": {k: s[k] for k in ("accuracy", "correct", "n", "ci95")},
        "inside_reference_interval": lo - 1e-9 <= s["accuracy"] <= hi + 1e-9,  # the bounds carry rounding error
        "paired": {k: paired[k] for k in ("n", "n_fixed", "n_broken", "mcnemar_p")},
        "same_completions": _same_completions(evaluation, reference),
        "file_mb": round(file_bytes / MiB, 1), "size_vs_reference": round(file_bytes / reference_bytes, 4),
        "tokens_per_second": round(s["tokens_per_second"], 2), "new_tokens": s["new_tokens"],
        "generation_seconds": round(s["generation_seconds"], 2), "batch_size": batch_size,
        "speed_vs_reference": round(s["tokens_per_second"] / ref["tokens_per_second"], 3)
        if ref["tokens_per_second"] else None,
        "export_seconds": None if export_seconds is None else round(export_seconds, 1),
    }


def edge_markdown(rows: list[dict]) -> str:
    """The comparison table (the first row is the reference)."""
    lines = ["| backend | size MiB | size vs torch | accuracy | fixed / broken vs torch | same text as torch | "
             "batch | tokens/s | speed vs torch |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        p = r["paired"]
        lines.append(f"| {r['name']} | {r['file_mb']:,.1f} | {r['size_vs_reference']:.2f}x | {accuracy_text(r['accuracy'])} | "
                     f"{p['n_fixed']} / {p['n_broken']} (p={p['mcnemar_p']:.2f}) | {r['same_completions']}/{r['n']} | "
                     f"{r['batch_size']} | {r['tokens_per_second']:,.1f} | {r['speed_vs_reference']:.2f}x |")
    return "\n".join(lines)


def plot_edge(rows: list[dict], *, title: str):
    """Size and generation speed of each backend relative to torch (bars), accuracy written on
    each bar; dashed lines at the goal (a quarter of the size, twice the speed)."""
    if not rows:
        raise DataError(f"nothing to plot for {title!r}: no rows")
    fig, axes = plt.subplots(1, 2, figsize=(max(7.0, 1.6 * len(rows) + 3), 4.2))
    names = [r["name"].replace(" ", "\n", 1) for r in rows]
    for ax, key, label, goal in ((axes[0], "size_vs_reference", "file size vs torch (x)", SIZE_GOAL),
                                 (axes[1], "speed_vs_reference", "tokens/s vs torch (x)", SPEED_GOAL)):
        values = [r[key] or 0.0 for r in rows]
        bars = ax.bar(range(len(rows)), values, color="#4c72b0", edgecolor="black", linewidth=0.5)
        for bar, r in zip(bars, rows):
            ax.annotate(f"{r[key]:.2f}x\n{100 * r['accuracy']['accuracy']:.1f}% right", (bar.get_x() + bar.get_width() / 2,
                        bar.get_height()), ha="center", va="bottom", fontsize=7, xytext=(0, 2),
                        textcoords="offset points")
        ax.axhline(goal, color="#c44e52", linestyle="--", linewidth=1, label=f"goal: {goal:g}x")
        ax.axhline(1.0, color="grey", linewidth=0.8)
        ax.set_xticks(range(len(rows)), names, fontsize=8)
        ax.set_ylabel(label)
        ax.set_ylim(0, max([*values, goal]) * 1.3)
        ax.grid(True, axis="y", alpha=0.3)
        ax.legend(loc="upper left", frameon=False, fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def goal_text(row: dict) -> str:
    """Whether ``row`` meets the edge goal: at least 2x torch's speed, at most a quarter of its size,
    accuracy inside torch's interval; what it misses, by how much."""
    parts = [f"{row['speed_vs_reference']:.2f}x torch's speed (goal >= {SPEED_GOAL:g}x)",
             f"{row['size_vs_reference']:.2f}x its size (goal <= {SIZE_GOAL:g}x)",
             "accuracy inside torch's interval" if row["inside_reference_interval"] else
             "accuracy OUTSIDE torch's interval"]
    met = (row["speed_vs_reference"] or 0) >= SPEED_GOAL and row["size_vs_reference"] <= SIZE_GOAL \
        and row["inside_reference_interval"]
    return f"{row['name']}: {', '.join(parts)}: goal {'met' if met else 'not met'}"


def edge_sentences(rows: list[dict], what: str) -> list[str]:
    """Conclusion sentences: per exported model, size, speed and accuracy against torch."""
    if len(rows) < 2:
        return []
    ref = rows[0]
    out = []
    for r in rows[1:]:
        p = r["paired"]
        out.append(f"Exported as {r['name']}, the model is {r['size_vs_reference']:.2f}x the size of {ref['name']} "
                   f"and generates at {r['speed_vs_reference']:.2f}x its tokens/s (batch {r['batch_size']} vs "
                   f"{ref['batch_size']}); on {what} it scores {accuracy_text(r['accuracy'])} vs "
                   f"{accuracy_text(ref['accuracy'])} ({p['n_fixed']} fixed, {p['n_broken']} broken, "
                   f"p={p['mcnemar_p']:.2f}), {r['same_completions']} of {r['n']} completions identical.")
    return out
