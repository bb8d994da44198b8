"""Base vs fine-tuned: tables, a bar chart and example lists for the LoRA notebook's report.

Inputs are per-example records of :func:`mathkit.evaluation.evaluator.evaluate_model` (``source``,
``template``, ``correct``, ...) and the output of :func:`mathkit.evaluation.evaluator.compare_records`, so the
same functions serve any before/after pair (LoRA, distillation, a prompt change). Records are
grouped by :func:`eval_group`, which tells apart the GSM-Symbolic templates held out of training
from those trained on: a model that learned the *structures* it saw variants of improves on the
second kind; only reasoning that transfers improves the first. Every accuracy is shown with its n
and 95% interval; the relative improvement is None where the base accuracy is 0.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Iterable

import matplotlib.pyplot as plt

from mathkit.data.gsm_symbolic import HELD_OUT_TEMPLATES
from mathkit.errors import DataError
from mathkit.evaluation.metrics import accuracy_summary

BEFORE_COLOR, AFTER_COLOR = "tab:gray", "tab:blue"
HELD_OUT = "held-out templates"
TRAINED = "training templates"


def eval_group(record: dict) -> str:
    """``"held-out templates: originals"``, ``"training templates: variants"``, ... for GSM rows
    (by template id and source); the source name (``"arithmetic"``, ``"gsm8k"``) otherwise."""
    tid = record.get("template")
    if tid:
        split = HELD_OUT if tid in HELD_OUT_TEMPLATES else TRAINED
        kind = "originals" if record.get("source") == "gsm8k_originals" else "variants"
        return f"{split}: {kind}"
    return record.get("source") or "unknown"


def is_held_out(record: dict) -> bool:
    """True for a problem of a GSM-Symbolic template that training never saw."""
    return eval_group(record).startswith(HELD_OUT)


def group_accuracies(records: Iterable[dict], key: Callable[[dict], str] = eval_group) -> dict:
    """:func:`mathkit.evaluation.metrics.accuracy_summary` per ``key(record)``, groups in sorted order."""
    by: dict[str, list[bool]] = {}
    for r in records:
        by.setdefault(key(r), []).append(bool(r["correct"]))
    return {k: accuracy_summary(by[k]) for k in sorted(by)}


def relative_improvement(before: float, after: float) -> float | None:
    """``(after - before) / before``; None when ``before`` is 0 (no finite ratio)."""
    return (after - before) / before if before > 0 else None


def _row(name: str, x: dict | None, y: dict | None) -> dict:
    both = x is not None and y is not None
    return {"group": name, "n": (y or x)["n"],
            "base": x["accuracy"] if x else None, "base_ci95": list(x["ci95"]) if x else None,
            "tuned": y["accuracy"] if y else None, "tuned_ci95": list(y["ci95"]) if y else None,
            "delta_pp": 100 * (y["accuracy"] - x["accuracy"]) if both else None,
            "relative": relative_improvement(x["accuracy"], y["accuracy"]) if both else None}


def comparison_rows(before: list[dict], after: list[dict], *, key: Callable[[dict], str] = eval_group,
                    include_total: bool = True) -> list[dict]:
    """One row per group (and a first ``all`` row): n, both accuracies with intervals, the
    change in percentage points and the relative improvement.

    ``before``/``after`` are record lists. Groups present in only one of them are kept, with the
    missing side as None, so nothing disappears silently.
    """
    b, a = group_accuracies(before, key), group_accuracies(after, key)
    rows = []
    if include_total:
        rows.append(_row("all", accuracy_summary([r["correct"] for r in before]),
                         accuracy_summary([r["correct"] for r in after])))
    rows += [_row(k, b.get(k), a.get(k)) for k in sorted(set(b) | set(a))]
    return rows


def subset_row(before: list[dict], after: list[dict], keep: Callable[[dict], bool], name: str) -> dict:
    """The comparison row of the records selected by ``keep`` (e.g. :func:`is_held_out`)."""
    x = [r["correct"] for r in before if keep(r)]
    y = [r["correct"] for r in after if keep(r)]
    if not x or not y:
        raise DataError(f"no records for {name!r} in one of the two evaluations")
    return _row(name, accuracy_summary(x), accuracy_summary(y))


def headline_row(before: list[dict], after: list[dict]) -> dict:
    """The row a report leads with: the held-out templates when the evaluation has any (the
    honest generalisation number), else all problems."""
    if any(is_held_out(r) for r in before):
        return subset_row(before, after, is_held_out, HELD_OUT)
    return comparison_rows(before, after)[0]


def verdict(row: dict, labels: tuple[str, str] = ("base", "fine-tuned")) -> str:
    """One sentence on a comparison row that the 95% intervals can support: the second side
    beats the first only when its interval lies wholly above the first one's."""
    lo_b, hi_b = row["base_ci95"]
    lo_t, hi_t = row["tuned_ci95"]
    first, second = labels
    if lo_t > hi_b:
        return (f"On {row['group']} the {second} model beats the {first} model "
                f"({_pct(row['tuned'])} vs {_pct(row['base'])}, n={row['n']}); the 95% intervals do not overlap.")
    if hi_t < lo_b:
        return (f"On {row['group']} the {second} model is worse than the {first} model "
                f"({_pct(row['tuned'])} vs {_pct(row['base'])}, n={row['n']}); the 95% intervals do not overlap.")
    return (f"On {row['group']} the {second} model does not beat the {first} model by a margin the "
            f"95% intervals can show ({_pct(row['tuned'])}{_ci(row['tuned_ci95'])} vs "
            f"{_pct(row['base'])}{_ci(row['base_ci95'])}, n={row['n']}).")


def _pct(v: float | None) -> str:
    return "–" if v is None else f"{100 * v:.1f}%"


def _ci(ci) -> str:
    return "" if ci is None else f" [{100 * ci[0]:.1f}, {100 * ci[1]:.1f}]"


def comparison_markdown(rows: list[dict], labels: tuple[str, str] = ("base", "fine-tuned")) -> str:
    """The rows of :func:`comparison_rows` as a Markdown table (accuracy [95% CI]); ``labels``
    name the two sides (e.g. ``("without calculator", "with calculator")``)."""
    lines = [f"| group | n | {labels[0]} | {labels[1]} | change | relative |",
             "|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        delta = "–" if r["delta_pp"] is None else f"{r['delta_pp']:+.1f} pp"
        rel = "–" if r["relative"] is None else f"{100 * r['relative']:+.0f}%"
        lines.append(f"| {r['group']} | {r['n']} | {_pct(r['base'])}{_ci(r['base_ci95'])} | "
                     f"{_pct(r['tuned'])}{_ci(r['tuned_ci95'])} | {delta} | {rel} |")
    return "\n".join(lines)


def plot_before_after(rows: list[dict], *, title: str = "Accuracy before and after LoRA fine-tuning",
                      labels: tuple[str, str] = ("base", "fine-tuned"),
                      xlabel: str = "evaluation set"):
    """Paired bars per group with Wilson 95% error bars and n under each group label."""
    if not rows:
        raise DataError(f"nothing to plot for {title!r}: no rows")
    fig, ax = plt.subplots(figsize=(max(5.0, 1.7 * len(rows) + 2), 4.4))
    width = 0.38
    for offset, key, color, label in ((-width / 2, "base", BEFORE_COLOR, labels[0]),
                                      (width / 2, "tuned", AFTER_COLOR, labels[1])):
        xs, acc, err_lo, err_hi = [], [], [], []
        for i, r in enumerate(rows):
            if r[key] is None:
                continue
            lo, hi = r[f"{key}_ci95"]
            xs.append(i + offset)
            acc.append(r[key])
            err_lo.append(max(0.0, r[key] - lo))
            err_hi.append(max(0.0, hi - r[key]))
        ax.bar(xs, acc, width, yerr=[err_lo, err_hi], capsize=4, color=color, label=label,
               edgecolor="black", linewidth=0.5)
        for x, a, eh in zip(xs, acc, err_hi):
            ax.annotate(f"{a:.1%}", (x, a + eh), ha="center", va="bottom", fontsize=8,
                        xytext=(0, 2), textcoords="offset points")
    names = [r["group"].replace(": ", ":\n") for r in rows]
    ax.set_xticks(range(len(rows)), [f"{g}\nn={r['n']}" for g, r in zip(names, rows)], fontsize=8)
    top = max([r[f"{k}_ci95"][1] for r in rows for k in ("base", "tuned") if r[k] is not None] + [0.05])
    ax.set_ylim(0, min(1.0, top * 1.25 + 0.02))
    ax.yaxis.set_major_formatter(plt.FuncFormatter(lambda v, _: f"{v:.0%}"))
    ax.set_xlabel(xlabel)
    ax.set_ylabel("answer accuracy (95% CI)")
    ax.set_title(title)
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(loc="upper left")
    fig.tight_layout()
    return fig


def _clip(text: str | None, n: int) -> str:
    text = (text or "").strip()
    return text if len(text) <= n else text[:n].rstrip() + " …"


def examples_markdown(comparison: dict, kind: str = "fixed", n: int = 3, max_chars: int = 500) -> str:
    """The first ``n`` examples that fine-tuning ``fixed`` (or ``broken``), from
    :func:`mathkit.evaluation.evaluator.compare_records`, with both completions side by side."""
    if kind not in ("fixed", "broken"):
        raise ValueError(f"kind must be 'fixed' or 'broken', got {kind!r}")
    items = comparison[kind][:n]
    total = comparison[f"n_{kind}"]
    head = f"**{kind.capitalize()} by fine-tuning: {total} of {comparison['n']} problems**"
    if not items:
        return head + " (none)"
    parts = [head + (f" (first {len(items)} shown)" if total > len(items) else "")]
    for ex in items:
        parts.append(
            f"\n---\n**Problem** ({ex.get('id')}): {_clip(ex['problem'], max_chars)}\n\n"
            f"gold **{ex['gold']}** · base answered **{ex['extracted_before']}** · "
            f"fine-tuned answered **{ex['extracted_after']}**\n\n"
            f"<details><summary>completions</summary>\n\n"
            f"*base:*\n<pre>{html.escape(_clip(ex['completion_before'], max_chars))}</pre>\n"
            f"*fine-tuned:*\n<pre>{html.escape(_clip(ex['completion_after'], max_chars))}</pre>\n"
            f"</details>")
    return "\n".join(parts)


def headline_accuracy(row: dict, side: str) -> dict:
    """``{"value", "n", "ci95"}`` of one side (``"base"``/``"tuned"``) of a comparison row: the
    headline form of an accuracy for results.json."""
    if side not in ("base", "tuned"):
        raise ValueError(f"side must be 'base' or 'tuned', got {side!r}")
    return {"value": row[side], "n": row["n"], "ci95": row[f"{side}_ci95"]}
