"""Sentences built from the numbers, and percentages that never round a bound to 100."""

from mathkit.evaluation.metrics import accuracy_summary
from mathkit.reporting.conclusion import (accuracy_sentence, accuracy_text, best_and_worst_sentence,
                                          comparison_sentence, conclusion_markdown, intervals_overlap,
                                          percent)


def test_percent():
    assert percent(0.9998) == "99.98" and percent(0.99996) == "99.996" and percent(1.0) == "100.00"
    assert percent(0.00004) == "0.004" and percent(0.0) == "0.00" and percent(1e-18) == "0.00"


def test_accuracy_text_from_summary_and_headline():
    s = accuracy_summary([1, 1] + [0] * 98)
    assert accuracy_text(s).startswith("2/100 = 2.00% [0.55, 7.00]")
    assert accuracy_text({"value": 0.25, "n": 4, "ci95": [0.05, 0.7]}) == "1/4 = 25.00% [5.00, 70.00]"
    assert accuracy_sentence("SmolLM2", s, "GSM8K originals").startswith("SmolLM2 solves 2/100 = 2.00%")


def test_comparison_says_whether_intervals_overlap():
    base, tuned = accuracy_summary([1] * 2 + [0] * 118), accuracy_summary([1] * 1 + [0] * 119)
    assert intervals_overlap(base, tuned)
    text = comparison_sentence("the tuned model", tuned, "the base model", base, "the held-out templates",
                               p_value=1.0)
    assert "1/120" in text and "2/120" in text and "p = 1" in text and "does not show a difference" in text
    good = accuracy_summary([1] * 90 + [0] * 10)
    text = comparison_sentence("tuned", good, "base", base, "x")
    assert not intervals_overlap(good, base) and text.endswith("tuned is better than base.")


def test_best_and_worst_and_markdown():
    groups = {"a": accuracy_summary([1] * 9 + [0]), "b": accuracy_summary([0] * 10)}
    text = best_and_worst_sentence(groups, "sets")
    assert "highest is a (9/10" in text and "lowest b (0/10" in text and "do not overlap" in text
    assert best_and_worst_sentence({}, "sets") == "No sets were evaluated."
    same = {"a": accuracy_summary([0] * 4), "b": accuracy_summary([0])}
    assert best_and_worst_sentence(same, "sets") == "All sets score the same accuracy, 0.00%."
    assert conclusion_markdown(["One.", "", "Two."]) == "## Conclusion\n\n- One.\n- Two."


def test_truncation_sentence():
    from mathkit.reporting.conclusion import truncation_sentence

    summaries = {"a": {"n": 9, "n_examples": 10, "truncated": 4, "ungradable": 1},
                 "b": {"n": 10, "truncated": 1}}
    assert truncation_sentence(summaries, 256) == (
        "5 of 20 completions were cut off at 256 new tokens (25.00%); 1 gold has no single checkable "
        "answer and is left out of the accuracies.")
    assert truncation_sentence({}, 8) == "0 of 0 completions were cut off at 8 new tokens (0.00%)."
