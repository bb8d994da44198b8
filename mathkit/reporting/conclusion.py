"""Sentences written from the numbers: the conclusion a report ends with, and how numbers read.

A conclusion typed by hand drifts from the results it describes; these helpers build it from the
summaries themselves (``accuracy``/``value``, ``n``, ``correct``, ``ci95`` as
:func:`mathkit.evaluation.metrics.accuracy_summary` and results.json's headline write them).
Percentages use two decimals, more where two would round a bound to 100.00 or 0.00 that it is not.
"""

from __future__ import annotations

from collections.abc import Mapping


def percent(fraction: float, decimals: int = 2) -> str:
    """``0.9998`` -> ``99.98``; ``0.99996`` -> ``99.996`` (never ``100.00`` for less than 1)."""
    if abs(fraction) < 1e-12 or abs(1 - fraction) < 1e-12:  # float noise of an exact 0 or 1
        fraction = round(fraction)
    for places in range(decimals, decimals + 4):
        text = f"{100 * fraction:.{places}f}"
        rounds_to_edge = (text == f"{100:.{places}f}" and fraction < 1) or (
            text == f"{0:.{places}f}" and fraction > 0)
        if not rounds_to_edge:
            return text
    return text


def _accuracy(summary: Mapping) -> float:
    return summary["accuracy"] if "accuracy" in summary else summary["value"]


def _correct(summary: Mapping) -> int | None:
    if summary.get("correct") is not None:
        return int(summary["correct"])
    if summary.get("n") is not None:
        return round(_accuracy(summary) * summary["n"])
    return None


def accuracy_text(summary: Mapping) -> str:
    """``2/100 = 2.00% [0.55, 7.00]``: count, percentage and 95% interval (in percent)."""
    acc, n, ci = _accuracy(summary), summary.get("n"), summary.get("ci95")
    correct = _correct(summary)
    text = f"{correct}/{n} = {percent(acc)}%" if n is not None else f"{percent(acc)}%"
    if ci:
        text += f" [{percent(ci[0])}, {percent(ci[1])}]"
    return text


def intervals_overlap(a: Mapping, b: Mapping) -> bool:
    """Whether the two 95% intervals share any value."""
    (a_lo, a_hi), (b_lo, b_hi) = a["ci95"], b["ci95"]
    return a_lo <= b_hi and b_lo <= a_hi


def accuracy_sentence(subject: str, summary: Mapping, what: str) -> str:
    """``SmolLM2 solves 2/100 = 2.00% [0.55, 7.00] of GSM8K originals.``"""
    return f"{subject} solves {accuracy_text(summary)} of {what}."


def comparison_sentence(label_a: str, a: Mapping, label_b: str, b: Mapping, what: str,
                        p_value: float | None = None) -> str:
    """Two accuracies on the same ``what`` and whether the data tell them apart.

    Non-overlapping 95% intervals are called a difference; overlapping ones are not (a paired
    test, when given as ``p_value``, is quoted either way).
    """
    head = f"On {what}, {label_a} gets {accuracy_text(a)} and {label_b} {accuracy_text(b)}"
    test = f" (paired test p = {p_value:.3g})" if p_value is not None else ""
    if intervals_overlap(a, b):
        return f"{head}{test}: the 95% intervals overlap, so this run does not show a difference."
    higher, lower = (label_a, label_b) if _accuracy(a) > _accuracy(b) else (label_b, label_a)
    return f"{head}{test}: the intervals do not overlap; {higher} is better than {lower}."


def best_and_worst_sentence(groups: Mapping[str, Mapping], what: str) -> str:
    """Which group scores highest and lowest (``what`` names the grouping, e.g. "evaluation sets")."""
    if not groups:
        return f"No {what} were evaluated."
    ranked = sorted(groups.items(), key=lambda kv: _accuracy(kv[1]), reverse=True)
    (best, b), (worst, w) = ranked[0], ranked[-1]
    if len(ranked) == 1 or _accuracy(b) == _accuracy(w):
        return f"All {what} score the same accuracy, {percent(_accuracy(b))}%."
    overlap = "their intervals overlap" if intervals_overlap(b, w) else "their intervals do not overlap"
    return (f"Across {what}, the highest is {best} ({accuracy_text(b)}) and the lowest {worst} "
            f"({accuracy_text(w)}); {overlap}.")


def conclusion_markdown(sentences: list[str], title: str = "Conclusion") -> str:
    """A Markdown section: the title and one bullet per sentence."""
    return f"## {title}\n\n" + "\n".join(f"- {s}" for s in sentences if s)


def truncation_sentence(summaries: Mapping[str, Mapping], max_new_tokens: int) -> str:
    """How many completions hit the token limit and how many golds were left ungraded, over all sets."""
    total = sum(s.get("n_examples", s.get("n", 0)) for s in summaries.values())
    cut = sum(s.get("truncated", 0) or 0 for s in summaries.values())
    ungradable = sum(s.get("ungradable", 0) or 0 for s in summaries.values())
    text = (f"{cut} of {total} completions were cut off at {max_new_tokens} new tokens "
            f"({percent(cut / total) if total else '0.00'}%)")
    if ungradable:
        text += f"; {ungradable} {'gold has' if ungradable == 1 else 'golds have'} no single checkable answer and " \
                f"{'is' if ungradable == 1 else 'are'} left out of the accuracies"
    return text + "."
