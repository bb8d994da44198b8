"""Before/after tables, chart and examples from evaluation records."""

import matplotlib

matplotlib.use("Agg")

import pytest  # noqa: E402

from mathkit.reporting import comparison as lora_report  # noqa: E402
from mathkit.data.gsm_symbolic import HELD_OUT_TEMPLATES  # noqa: E402
from mathkit.errors import DataError  # noqa: E402
from mathkit.evaluation.evaluator import compare_records  # noqa: E402

HELD, TRAINED = HELD_OUT_TEMPLATES[0], "0000"
assert TRAINED not in HELD_OUT_TEMPLATES


def _records(correct_by_id: dict, kind_of: dict) -> list[dict]:
    """kind: (source, template) of each id."""
    return [{"id": i, "source": kind_of[i][0], "template": kind_of[i][1], "category": "gsm8k",
             "problem": f"problem {i}", "gold": "5", "completion": f"... #### {5 if ok else 4}",
             "extracted": "5" if ok else "4", "extracted_strict": "5" if ok else "4",
             "correct": ok, "correct_strict": ok, "new_tokens": 10, "finished": True}
            for i, ok in correct_by_id.items()]


# ids 0-3: held-out originals, 4-9: held-out variants, 10-11: a training template's original,
# 12-13: arithmetic (no template)
KIND = {**{i: ("gsm8k_originals", HELD) for i in range(4)}, **{i: ("gsm_symbolic", HELD) for i in range(4, 10)},
        10: ("gsm8k_originals", TRAINED), 11: ("gsm8k_originals", TRAINED),
        12: ("arithmetic", ""), 13: ("arithmetic", "")}
BEFORE = _records({i: i in (0, 5, 12) for i in range(14)}, KIND)                 # 3/14
AFTER = _records({i: i in (0, 1, 2, 6, 7, 8, 10, 11, 12) for i in range(14)}, KIND)  # 9/14, broke 5


def test_groups_tell_held_out_from_trained_templates():
    groups = lora_report.group_accuracies(AFTER)
    assert list(groups) == ["arithmetic", "held-out templates: originals", "held-out templates: variants",
                            "training templates: originals"]
    assert groups["held-out templates: originals"]["n"] == 4
    assert groups["training templates: originals"]["accuracy"] == 1.0
    assert [lora_report.is_held_out(r) for r in AFTER].count(True) == 10


def test_rows_hold_both_accuracies_intervals_and_changes():
    rows = lora_report.comparison_rows(BEFORE, AFTER)
    assert rows[0]["group"] == "all" and len(rows) == 5
    total = rows[0]
    assert (total["n"], total["base"], total["tuned"]) == (14, 3 / 14, 9 / 14)
    assert total["delta_pp"] == pytest.approx(100 * 6 / 14) and total["relative"] == pytest.approx(2.0)
    assert total["base_ci95"][0] < 3 / 14 < total["base_ci95"][1]
    held = lora_report.subset_row(BEFORE, AFTER, lora_report.is_held_out, "held-out")
    assert (held["n"], held["base"], held["tuned"]) == (10, 0.2, 0.6)
    md = lora_report.comparison_markdown([held])
    assert "| held-out | 10 | 20.0% [" in md and "+40.0 pp" in md and "+200%" in md


def test_relative_improvement_undefined_from_zero():
    assert lora_report.relative_improvement(0.0, 0.3) is None
    assert lora_report.relative_improvement(0.1, 0.15) == pytest.approx(0.5)
    rows = lora_report.comparison_rows(BEFORE, AFTER)
    trained = next(r for r in rows if r["group"] == "training templates: originals")
    assert trained["base"] == 0.0 and trained["relative"] is None
    assert "| – |" in lora_report.comparison_markdown([trained])


def test_group_missing_on_one_side_is_kept():
    after = AFTER + _records({99: True}, {99: ("gsm8k", "")})
    extra = next(r for r in lora_report.comparison_rows(BEFORE, after) if r["group"] == "gsm8k")
    assert extra["base"] is None and extra["tuned"] == 1.0 and extra["delta_pp"] is None


def test_empty_subset_is_a_clear_error():
    with pytest.raises(DataError, match="nothing"):
        lora_report.subset_row(BEFORE, AFTER, lambda r: False, "nothing")


def test_chart_has_title_labels_and_one_bar_pair_per_group():
    rows = lora_report.comparison_rows(BEFORE, AFTER)
    fig = lora_report.plot_before_after(rows, title="T")
    ax = fig.axes[0]
    assert ax.get_title() == "T" and ax.get_xlabel() and ax.get_ylabel()
    assert len(ax.patches) == 2 * len(rows)
    heights = sorted(round(p.get_height(), 3) for p in ax.patches)
    assert round(9 / 14, 3) in heights and round(3 / 14, 3) in heights
    with pytest.raises(DataError):
        lora_report.plot_before_after([])


def test_examples_list_fixed_and_broken():
    comp = compare_records(BEFORE, AFTER)
    fixed = lora_report.examples_markdown(comp, "fixed", n=2)
    assert "Fixed by fine-tuning: 7 of 14" in fixed and "first 2 shown" in fixed
    assert fixed.count("**Problem**") == 2 and "problem 1" in fixed
    broken = lora_report.examples_markdown(comp, "broken", n=3)
    assert "Broken by fine-tuning: 1 of 14" in broken and "problem 5" in broken
    assert lora_report.examples_markdown(compare_records(BEFORE, BEFORE), "fixed").endswith("(none)")
    with pytest.raises(ValueError):
        lora_report.examples_markdown(comp, "changed")


def test_headline_accuracy():
    row = lora_report.subset_row(BEFORE, AFTER, lora_report.is_held_out, "held-out")
    v = lora_report.headline_accuracy(row, "tuned")
    assert v["value"] == 0.6 and v["n"] == 10 and len(v["ci95"]) == 2
    with pytest.raises(ValueError):
        lora_report.headline_accuracy(row, "after")


def test_headline_is_held_out_when_there_are_held_out_templates():
    assert lora_report.headline_row(BEFORE, AFTER)["group"] == "held-out templates"
    assert lora_report.headline_row(BEFORE, AFTER)["n"] == 10
    plain = [r for r in BEFORE if r["source"] == "arithmetic"], [r for r in AFTER if r["source"] == "arithmetic"]
    assert lora_report.headline_row(*plain)["group"] == "all"


def _row_with(base_ok: int, tuned_ok: int, n: int) -> dict:
    before = _records({i: i < base_ok for i in range(n)}, {i: ("gsm_symbolic", HELD) for i in range(n)})
    after = _records({i: i < tuned_ok for i in range(n)}, {i: ("gsm_symbolic", HELD) for i in range(n)})
    return lora_report.subset_row(before, after, lora_report.is_held_out, "held-out templates")


def test_verdict_claims_a_win_only_when_the_intervals_separate():
    assert "beats the base model" in lora_report.verdict(_row_with(2, 40, 200))
    assert "is worse than the base model" in lora_report.verdict(_row_with(40, 2, 200))
    overlap = lora_report.verdict(_row_with(2, 6, 200))   # 1% vs 3%: intervals overlap
    assert "does not beat" in overlap and "n=200" in overlap
    with_calc = lora_report.verdict(_row_with(2, 40, 200), labels=("without-calculator", "calculator"))
    assert "calculator model beats the without-calculator model" in with_calc


def test_markdown_labels_name_the_two_sides():
    md = lora_report.comparison_markdown([_row_with(1, 2, 10)], labels=("without calculator", "with calculator"))
    assert md.splitlines()[0] == "| group | n | without calculator | with calculator | change | relative |"
