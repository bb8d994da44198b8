"""Before vs after on the same problems: paired records, tables, a bar chart and example lists.

Serves any pair of evaluations of the same dataset (base vs LoRA, without vs with the calculator,
teacher vs student): inputs are the records of :func:`mathkit.evaluation.evaluator.evaluate_model`.
:func:`compare_records` pairs the records by id (which problems were fixed, which broken, the exact
McNemar test); :func:`pairing_note` checks that both arms saw the same prompts in the same order,
batch size and precision (greedy decoding depends on the batch in bf16) and says so in a sentence.
:func:`comparison_rows` groups records by a key the caller gives. A row holds both sides as
accuracy summaries (accuracy, n, correct, ci95); ungraded records (an ungradable gold) are left
out everywhere.
:func:`group_row` holds one evaluation group's arms (base, fine-tuned, fine-tuned with the
calculator) evaluated on the same batches; :func:`groups_markdown`, :func:`groups_headline` and
:func:`groups_moved_sentence` turn such rows into the table, results.json headline and the sentence
saying which groups moved.
"""

from __future__ import annotations

import html
from collections.abc import Callable
from pathlib import Path

import matplotlib.pyplot as plt
from matplotlib.ticker import PercentFormatter

from mathkit.errors import DataError
from mathkit.evaluation.metrics import accuracy_by, accuracy_summary, mcnemar_exact
from mathkit.jsonl import read_jsonl
from mathkit.reporting.charts import axis_top, tick_label

BEFORE_COLOR, AFTER_COLOR = "tab:gray", "tab:blue"
LABELS = ("base", "fine-tuned")
# Settings that must agree for two evaluations to be paired (unless one is the point of the pair)
PAIRED_SETTINGS = ("scorer", "prompt_fn", "style", "system_prompt", "batch_size", "max_new_tokens",
                   "bf16", "calculator")


# --------------------------------------------------------------------------------------------
# pairing
# --------------------------------------------------------------------------------------------
def _as_records(x) -> list[dict]:
    if hasattr(x, "records"):
        return x.records
    if isinstance(x, (str, Path)):
        return read_jsonl(x, missing="run an evaluation with records_path first")
    return list(x)


def compare_records(before, after, *, key: str = "id") -> dict:
    """Which examples changed between two evaluations, paired by ``key``.

    ``before``/``after``: EvalResults, record lists or JSONL paths. Returns counts (``n``,
    ``n_fixed``, ``n_broken``, ``both_correct``, ``both_wrong``), the accuracy of each side on
    the shared graded examples, the exact McNemar p-value of the change, and the ``fixed`` and
    ``broken`` examples themselves (problem, gold, both answers and completions).
    """
    a = {r[key]: r for r in _as_records(before)}
    b = {r[key]: r for r in _as_records(after)}
    shared = [k for k in a if k in b]
    if not shared:
        raise DataError(f"the two evaluations share no example {key!r}: were they run on the "
                        "same dataset?")
    graded = [k for k in shared if a[k]["correct"] is not None and b[k]["correct"] is not None]

    def pair(k):
        return {key: k, "problem": b[k].get("problem"), "gold": b[k].get("gold"),
                "extracted_before": a[k].get("extracted"), "extracted_after": b[k].get("extracted"),
                "completion_before": a[k].get("completion"),
                "completion_after": b[k].get("completion")}

    fixed = [pair(k) for k in graded if not a[k]["correct"] and b[k]["correct"]]
    broken = [pair(k) for k in graded if a[k]["correct"] and not b[k]["correct"]]
    acc_before = accuracy_summary(a[k]["correct"] for k in graded)
    acc_after = accuracy_summary(b[k]["correct"] for k in graded)
    return {
        "n": len(graded),
        "n_ungraded": len(shared) - len(graded),
        "n_fixed": len(fixed),
        "n_broken": len(broken),
        "both_correct": sum(a[k]["correct"] and b[k]["correct"] for k in graded),
        "both_wrong": sum(not a[k]["correct"] and not b[k]["correct"] for k in graded),
        "accuracy_before": acc_before,
        "accuracy_after": acc_after,
        "delta": acc_after["accuracy"] - acc_before["accuracy"],
        "mcnemar_p": mcnemar_exact(len(fixed), len(broken)),
        "only_before": [k for k in a if k not in b],
        "only_after": [k for k in b if k not in a],
        "fixed": fixed,
        "broken": broken,
    }


def pairing_note(before, after, *, may_differ: tuple[str, ...] = ()) -> str:
    """One sentence saying the two evaluations are paired: the same examples in the same order,
    evaluated with the same batch size, prompt, token budget and precision. Raises
    :class:`DataError` naming what differs otherwise (``may_differ``: settings that are the point
    of the comparison, e.g. ``("calculator",)``). ``before``/``after`` are EvalResults."""
    ids_before = [r["id"] for r in before.records]
    ids_after = [r["id"] for r in after.records]
    if ids_before != ids_after:
        raise DataError(f"not paired: the evaluations hold different examples or orders "
                        f"({len(ids_before)} vs {len(ids_after)} records); evaluate both arms on "
                        "the same dataset")
    s1, s2 = before.summary["settings"], after.summary["settings"]
    differ = [k for k in PAIRED_SETTINGS if k not in may_differ and s1.get(k) != s2.get(k)]
    if differ:
        raise DataError("not paired: " + ", ".join(f"{k} {s1.get(k)!r} vs {s2.get(k)!r}"
                                                   for k in differ))
    precision = "bf16 autocast" if s1["bf16"] else "fp32"
    return (f"Both arms ran on the same {len(ids_before)} problems in the same order and batches "
            f"(batch size {s1['batch_size']}, left padding, greedy, {precision}, at most "
            f"{s1['max_new_tokens']} new tokens).")


# --------------------------------------------------------------------------------------------
# rows
# --------------------------------------------------------------------------------------------
def relative_improvement(before: float, after: float) -> float | None:
    """``(after - before) / before``; None when ``before`` is 0 (no finite ratio)."""
    return (after - before) / before if before > 0 else None


def _row(name: str, x: dict | None, y: dict | None) -> dict:
    both = x is not None and y is not None
    return {"group": name, "before": x, "after": y,
            "delta_pp": 100 * (y["accuracy"] - x["accuracy"]) if both else None,
            "relative": relative_improvement(x["accuracy"], y["accuracy"]) if both else None}


def comparison_rows(before: list[dict], after: list[dict], *, key: Callable[[dict], str],
                    include_total: bool = True) -> list[dict]:
    """One row per group (and a first ``all`` row): both sides' accuracy summaries, the change
    in percentage points and the relative improvement.

    Groups present in only one of the record lists are kept, with the missing side None, so
    nothing disappears silently.
    """
    b, a = accuracy_by(before, key), accuracy_by(after, key)
    rows = []
    if include_total:
        rows.append(_row("all", accuracy_summary(r["correct"] for r in before),
                         accuracy_summary(r["correct"] for r in after)))
    rows += [_row(k, b.get(k), a.get(k)) for k in sorted(set(b) | set(a))]
    return rows


def _n(row: dict) -> str:
    x, y = row["before"], row["after"]
    if x and y and x["n"] != y["n"]:
        return f"{x['n']}/{y['n']}"
    return str((y or x)["n"])


def _pct(s: dict | None) -> str:
    return "–" if s is None else f"{100 * s['accuracy']:.1f}%"


def _ci(s: dict | None) -> str:
    return "" if s is None else f" [{100 * s['ci95'][0]:.1f}, {100 * s['ci95'][1]:.1f}]"


def verdict(row: dict, labels: tuple[str, str] = LABELS) -> str:
    """One sentence on a comparison row that the 95% intervals can support: the second side
    beats the first only when its interval lies wholly above the first one's."""
    x, y = row["before"], row["after"]
    first, second = labels
    if y["ci95"][0] > x["ci95"][1]:
        return (f"On {row['group']} the {second} model beats the {first} model ({_pct(y)} vs "
                f"{_pct(x)}, n={_n(row)}); the 95% intervals do not overlap.")
    if y["ci95"][1] < x["ci95"][0]:
        return (f"On {row['group']} the {second} model is worse than the {first} model ({_pct(y)} "
                f"vs {_pct(x)}, n={_n(row)}); the 95% intervals do not overlap.")
    return (f"On {row['group']} the {second} model does not beat the {first} model by a margin the "
            f"95% intervals can show ({_pct(y)}{_ci(y)} vs {_pct(x)}{_ci(x)}, n={_n(row)}).")


def comparison_markdown(rows: list[dict], labels: tuple[str, str] = LABELS) -> str:
    """The rows of :func:`comparison_rows` as a Markdown table (accuracy [95% CI]); ``labels``
    name the two sides (e.g. ``("without calculator", "with calculator")``)."""
    lines = [f"| group | n | {labels[0]} | {labels[1]} | change | relative |",
             "|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        delta = "–" if r["delta_pp"] is None else f"{r['delta_pp']:+.1f} pp"
        rel = "–" if r["relative"] is None else f"{100 * r['relative']:+.0f}%"
        lines.append(f"| {r['group']} | {_n(r)} | {_pct(r['before'])}{_ci(r['before'])} | "
                     f"{_pct(r['after'])}{_ci(r['after'])} | {delta} | {rel} |")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# chart and examples
# --------------------------------------------------------------------------------------------
def plot_before_after(rows: list[dict], *, title: str = "Accuracy before and after",
                      labels: tuple[str, str] = LABELS, xlabel: str = "evaluation set"):
    """Paired bars per group (percent, axis scaled to the data) with Wilson 95% error bars, the
    value above each interval and n under each group label."""
    if not rows:
        raise DataError(f"nothing to plot for {title!r}: no rows")
    fig, ax = plt.subplots(figsize=(max(5.0, 1.7 * len(rows) + 2), 4.4))
    width, highest = 0.38, 0.0
    for offset, side, color, label in ((-width / 2, "before", BEFORE_COLOR, labels[0]),
                                       (width / 2, "after", AFTER_COLOR, labels[1])):
        bars = [(i + offset, r[side]) for i, r in enumerate(rows) if r[side] is not None]
        xs = [x for x, _ in bars]
        acc = [100 * s["accuracy"] for _, s in bars]
        upper = [100 * s["ci95"][1] for _, s in bars]
        lower = [100 * s["ci95"][0] for _, s in bars]
        ax.bar(xs, acc, width, yerr=[[a - lo for a, lo in zip(acc, lower)],
                                     [u - a for a, u in zip(acc, upper)]],
               capsize=4, color=color, label=label, edgecolor="black", linewidth=0.5)
        for x, a, u in zip(xs, acc, upper):
            ax.annotate(f"{a:.1f}%", (x, u), ha="center", va="bottom", fontsize=8,
                        xytext=(0, 2), textcoords="offset points")
        highest = max([highest, *upper])
    ax.set_xticks(range(len(rows)), [f"{tick_label(r['group'])}\nn={_n(r)}" for r in rows],
                  fontsize=8)
    ax.set_ylim(0, axis_top(highest))
    ax.yaxis.set_major_formatter(PercentFormatter(decimals=None))
    ax.set_xlabel(xlabel)
    ax.set_ylabel("answer accuracy (%, 95% interval)")
    ax.set_title(title)
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    fig.tight_layout()
    return fig


def _clip(text: str | None, n: int) -> str:
    text = (text or "").strip()
    return text if len(text) <= n else text[:n].rstrip() + " …"


def examples_markdown(comparison: dict, kind: str = "fixed", n: int = 3, max_chars: int = 500,
                      labels: tuple[str, str] = LABELS) -> str:
    """The first ``n`` examples the change ``fixed`` (or ``broken``), from
    :func:`compare_records`, with both completions side by side."""
    if kind not in ("fixed", "broken"):
        raise ValueError(f"kind must be 'fixed' or 'broken', got {kind!r}")
    items = comparison[kind][:n]
    total = comparison[f"n_{kind}"]
    head = f"**{kind.capitalize()}: {total} of {comparison['n']} problems**"
    if not items:
        return head + " (none)"
    parts = [head + (f" (first {len(items)} shown)" if total > len(items) else "")]
    first, second = labels
    for ex in items:
        parts.append(
            f"\n---\n**Problem** ({ex.get('id')}): {_clip(ex['problem'], max_chars)}\n\n"
            f"gold **{ex['gold']}** · {first} answered **{ex['extracted_before']}** · "
            f"{second} answered **{ex['extracted_after']}**\n\n"
            f"<details><summary>completions</summary>\n\n"
            f"*{first}:*\n<pre>{html.escape(_clip(ex['completion_before'], max_chars))}</pre>\n"
            f"*{second}:*\n<pre>{html.escape(_clip(ex['completion_after'], max_chars))}</pre>\n"
            f"</details>")
    return "\n".join(parts)


# --------------------------------------------------------------------------------------------
# evaluation groups: base, fine-tuned and calculator arms of each group, on the same batches
# --------------------------------------------------------------------------------------------
GROUP_DESCRIPTIONS = {
    "in_template": "new-number variants of the training templates",
    "held_out": "the held-out templates (GSM8K originals and variants)",
    "arithmetic": "arithmetic problems",
}


def describe_group(name: str) -> str:
    """What a group holds, in words (the name itself for a group without a description)."""
    return GROUP_DESCRIPTIONS.get(name, name.replace("_", " "))


def _paired_counts(paired: dict) -> dict:
    return {k: paired[k] for k in ("n", "n_fixed", "n_broken", "both_correct", "both_wrong", "mcnemar_p")}


def group_row(name: str, base, tuned, calculator=None) -> dict:
    """One evaluation group: base vs fine-tuned (and the fine-tuned model with the calculator).

    ``base``, ``tuned``, ``calculator``: EvalResults of the same problems; :func:`pairing_note`
    raises unless they ran in the same order, batches and precision (the calculator arm may
    differ in ``calculator`` only). The row is a :func:`comparison_rows` row (``before`` = base,
    ``after`` = fine-tuned, so the table, chart and :func:`verdict` take it) plus ``paired``
    (fixed, broken, exact McNemar p), ``calculator`` (its accuracy summary or None),
    ``calculator_paired`` (fine-tuned without vs with it) and the pairing sentences.
    """
    paired = compare_records(base, tuned)
    row = _row(name, paired["accuracy_before"], paired["accuracy_after"])
    row.update(paired=_paired_counts(paired), pairing=pairing_note(base, tuned),
               calculator=None, calculator_paired=None, calculator_uses=None)
    if calculator is not None:
        with_calc = compare_records(tuned, calculator)
        row.update(calculator=with_calc["accuracy_after"], calculator_paired=_paired_counts(with_calc),
                   calculator_uses=calculator.summary.get("calculator_uses"),
                   pairing_calculator=pairing_note(tuned, calculator, may_differ=("calculator",)))
    return row


def groups_markdown(rows: list[dict], labels: tuple[str, str] = LABELS, *, calculator: bool = True) -> str:
    """The :func:`group_row` rows as a Markdown table: each arm's accuracy [95% CI], the paired
    change (fixed / broken, exact McNemar p) and, with ``calculator``, the calculator arm."""
    head = f"| group | n | {labels[0]} | {labels[1]} | change | fixed / broken | McNemar p |"
    lines = [head + (f" {labels[1]} + calculator |" if calculator else ""),
             "|---|---:|---:|---:|---:|---:|---:|" + ("---:|" if calculator else "")]
    for r in rows:
        p = r["paired"]
        line = (f"| {r['group']} | {_n(r)} | {_pct(r['before'])}{_ci(r['before'])} | "
                f"{_pct(r['after'])}{_ci(r['after'])} | {r['delta_pp']:+.1f} pp | "
                f"{p['n_fixed']} / {p['n_broken']} | {p['mcnemar_p']:.3g} |")
        if calculator:
            line += " – |" if r["calculator"] is None else f" {_pct(r['calculator'])}{_ci(r['calculator'])} |"
        lines.append(line)
    return "\n".join(lines)


def groups_headline(rows: list[dict]) -> dict:
    """``{group: {"base", "tuned"[, "tuned_calculator"]}}``, each ``{"value", "n", "ci95"}``: the
    form results.json's headline gives the groups."""
    def accuracy(s: dict) -> dict:
        return {"value": s["accuracy"], "n": s["n"], "ci95": list(s["ci95"])}

    out = {}
    for r in rows:
        out[r["group"]] = {"base": accuracy(r["before"]), "tuned": accuracy(r["after"])}
        if r["calculator"] is not None:
            out[r["group"]]["tuned_calculator"] = accuracy(r["calculator"])
    return out


def moved(row: dict) -> str | None:
    """``"up"`` / ``"down"`` when the fine-tuned model's 95% interval lies wholly above / below the
    base model's on this group; None when they overlap."""
    (b_lo, b_hi), (t_lo, t_hi) = row["before"]["ci95"], row["after"]["ci95"]
    if t_lo > b_hi:
        return "up"
    if t_hi < b_lo:
        return "down"
    return None


def groups_moved_sentence(rows: list[dict]) -> str:
    """Which groups moved (non-overlapping 95% intervals, base vs fine-tuned) and which did not."""
    up = [r["group"] for r in rows if moved(r) == "up"]
    down = [r["group"] for r in rows if moved(r) == "down"]
    still = [r["group"] for r in rows if moved(r) is None]
    if not up and not down:
        return (f"Fine-tuning moved none of the groups ({', '.join(still)}) beyond what the 95% "
                "intervals can show.")
    changes = ([f"raised {', '.join(up)}"] if up else []) + ([f"lowered {', '.join(down)}"] if down else [])
    text = f"Fine-tuning {' and '.join(changes)} (the 95% intervals of base and fine-tuned model do not overlap)"
    if still:
        text += f"; {', '.join(still)} did not move beyond what the intervals can show"
    return text + "."


def trials_markdown(trials: list[dict]) -> str:
    """The trials that chose a profile (one mapping per trial, the same keys) as a Markdown table."""
    if not trials:
        return "No trials are recorded for this profile."
    keys = list(trials[0])
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(str(t.get(k, "")) for k in keys) + " |" for t in trials]
    return "\n".join(lines)
