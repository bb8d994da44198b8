"""Before/after: paired records, pairing checks, tables, chart and examples from evaluation records."""

import matplotlib

matplotlib.use("Agg")

import pytest  # noqa: E402

from mathkit.data.gsm_symbolic import HELD_OUT_TEMPLATES  # noqa: E402
from mathkit.errors import DataError  # noqa: E402
from mathkit.evaluation.evaluator import EvalResult  # noqa: E402
from mathkit.evaluation.metrics import headline_accuracy  # noqa: E402
from mathkit.jsonl import write_jsonl  # noqa: E402
from mathkit.reporting import comparison as cmp  # noqa: E402
from mathkit.reporting.comparison import compare_records  # noqa: E402

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


def kind(record: dict) -> str:
    """The test's grouping: held-out or training template, original or variant; else the source."""
    if not record.get("template"):
        return record.get("source", "unknown")
    split = "held-out templates" if record["template"] in HELD_OUT_TEMPLATES else "training templates"
    return f"{split}: {'originals' if record['source'] == 'gsm8k_originals' else 'variants'}"


def held_out_row(before: list[dict], after: list[dict]) -> dict:
    keep = [r["id"] for r in before if r["template"] in HELD_OUT_TEMPLATES]
    pick = lambda records: [r for r in records if r["id"] in keep]  # noqa: E731
    return {**cmp.comparison_rows(pick(before), pick(after), key=kind)[0], "group": "held-out"}


def test_rows_hold_both_accuracies_intervals_and_changes():
    rows = cmp.comparison_rows(BEFORE, AFTER, key=kind)
    assert [r["group"] for r in rows] == ["all", "arithmetic", "held-out templates: originals",
                                          "held-out templates: variants", "training templates: originals"]
    assert rows[0]["group"] == "all" and len(rows) == 5
    total = rows[0]
    assert (total["before"]["n"], total["before"]["accuracy"], total["after"]["accuracy"]) == (14, 3 / 14, 9 / 14)
    assert total["delta_pp"] == pytest.approx(100 * 6 / 14) and total["relative"] == pytest.approx(2.0)
    assert total["before"]["ci95"][0] < 3 / 14 < total["before"]["ci95"][1]
    held = held_out_row(BEFORE, AFTER)
    assert (held["after"]["n"], held["before"]["accuracy"], held["after"]["accuracy"]) == (10, 0.2, 0.6)
    md = cmp.comparison_markdown([held])
    assert "| held-out | 10 | 20.0% [" in md and "+40.0 pp" in md and "+200%" in md


def test_relative_improvement_undefined_from_zero():
    assert cmp.relative_improvement(0.0, 0.3) is None
    assert cmp.relative_improvement(0.1, 0.15) == pytest.approx(0.5)
    rows = cmp.comparison_rows(BEFORE, AFTER, key=kind)
    trained = next(r for r in rows if r["group"] == "training templates: originals")
    assert trained["before"]["accuracy"] == 0.0 and trained["relative"] is None
    assert "| – |" in cmp.comparison_markdown([trained])


def test_group_missing_on_one_side_is_kept():
    after = AFTER + _records({99: True}, {99: ("gsm8k", "")})
    extra = next(r for r in cmp.comparison_rows(BEFORE, after, key=kind) if r["group"] == "gsm8k")
    assert extra["before"] is None and extra["after"]["accuracy"] == 1.0 and extra["delta_pp"] is None


def test_chart_has_title_labels_and_one_bar_pair_per_group():
    rows = cmp.comparison_rows(BEFORE, AFTER, key=kind)
    fig = cmp.plot_before_after(rows, title="T")
    ax = fig.axes[0]
    assert ax.get_title() == "T" and ax.get_xlabel() and ax.get_ylabel()
    assert len(ax.patches) == 2 * len(rows)
    heights = sorted(round(p.get_height(), 3) for p in ax.patches)
    assert round(900 / 14, 3) in heights and round(300 / 14, 3) in heights  # percent
    with pytest.raises(DataError):
        cmp.plot_before_after([])


def test_examples_list_fixed_and_broken():
    comp = compare_records(BEFORE, AFTER)
    fixed = cmp.examples_markdown(comp, "fixed", n=2)
    assert "Fixed: 7 of 14" in fixed and "first 2 shown" in fixed
    assert fixed.count("**Problem**") == 2 and "problem 1" in fixed
    broken = cmp.examples_markdown(comp, "broken", n=3)
    assert "Broken: 1 of 14" in broken and "problem 5" in broken
    assert "fine-tuned answered **4**" in broken
    relabelled = cmp.examples_markdown(comp, "broken", labels=("without", "with calculator"))
    assert "with calculator answered **4**" in relabelled
    assert cmp.examples_markdown(compare_records(BEFORE, BEFORE), "fixed").endswith("(none)")
    with pytest.raises(ValueError):
        cmp.examples_markdown(comp, "changed")


def test_headline_accuracy_of_one_side():
    row = held_out_row(BEFORE, AFTER)
    v = headline_accuracy(row["after"])
    assert v["value"] == 0.6 and v["n"] == 10 and len(v["ci95"]) == 2


def _row_with(base_ok: int, tuned_ok: int, n: int) -> dict:
    before = _records({i: i < base_ok for i in range(n)}, {i: ("gsm_symbolic", HELD) for i in range(n)})
    after = _records({i: i < tuned_ok for i in range(n)}, {i: ("gsm_symbolic", HELD) for i in range(n)})
    return {**cmp.comparison_rows(before, after, key=kind)[0], "group": "held-out templates"}


def test_verdict_claims_a_win_only_when_the_intervals_separate():
    assert "beats the base model" in cmp.verdict(_row_with(2, 40, 200))
    assert "is worse than the base model" in cmp.verdict(_row_with(40, 2, 200))
    overlap = cmp.verdict(_row_with(2, 6, 200))   # 1% vs 3%: intervals overlap
    assert "does not beat" in overlap and "n=200" in overlap
    with_calc = cmp.verdict(_row_with(2, 40, 200), labels=("without-calculator", "calculator"))
    assert "calculator model beats the without-calculator model" in with_calc


def test_markdown_labels_name_the_two_sides():
    md = cmp.comparison_markdown([_row_with(1, 2, 10)], labels=("without calculator", "with calculator"))
    assert md.splitlines()[0] == "| group | n | without calculator | with calculator | change | relative |"


def _rec(i, correct, extracted="1"):
    return {"id": i, "problem": f"p{i}", "gold": "1", "extracted": extracted,
            "completion": f"c{i}", "correct": correct}


def test_compare_records_fixed_broken_and_paths(tmp_path):
    before = [_rec(1, False, "2"), _rec(2, True), _rec(3, False), _rec(4, True), _rec(5, False)]
    after = [_rec(1, True), _rec(2, False, "3"), _rec(3, True), _rec(4, True), _rec(6, True)]
    c = compare_records(before, after)
    assert c["n"] == 4
    assert [f["id"] for f in c["fixed"]] == [1, 3] and [b["id"] for b in c["broken"]] == [2]
    assert (c["n_fixed"], c["n_broken"], c["both_correct"], c["both_wrong"]) == (2, 1, 1, 0)
    assert c["fixed"][0]["extracted_before"] == "2" and c["fixed"][0]["extracted_after"] == "1"
    assert c["accuracy_before"]["accuracy"] == 0.5 and c["accuracy_after"]["accuracy"] == 0.75
    assert c["delta"] == pytest.approx(0.25)
    assert c["mcnemar_p"] == pytest.approx(1.0)
    assert c["only_before"] == [5] and c["only_after"] == [6]
    # the same from JSONL files and from EvalResults
    p1, p2 = write_jsonl(before, tmp_path / "b.jsonl"), write_jsonl(after, tmp_path / "a.jsonl")
    assert compare_records(p1, EvalResult(summary={}, records=after))["n_fixed"] == 2
    assert compare_records(str(p1), str(p2))["fixed"] == c["fixed"]
    with pytest.raises(DataError, match="share no example"):
        compare_records(before, [_rec(99, True)])
    with pytest.raises(DataError, match="records_path"):
        compare_records(tmp_path / "missing.jsonl", after)


def test_compare_records_leaves_ungraded_examples_out():
    before = [_rec(1, False), _rec(2, None), _rec(3, True)]
    after = [_rec(1, True), _rec(2, None), _rec(3, True)]
    c = compare_records(before, after)
    assert (c["n"], c["n_ungraded"], c["n_fixed"]) == (2, 1, 1)
    row = cmp.comparison_rows(before, after, key=kind)[0]
    assert row["before"]["n"] == row["after"]["n"] == 2


def _result(ids, **settings):
    base = {"prompt_fn": "math_answer", "style": "gsm8k", "system_prompt": None, "batch_size": 32,
            "max_new_tokens": 256, "bf16": False, "calculator": False}
    return EvalResult(summary={"settings": {**base, **settings}},
                      records=[_rec(i, True) for i in ids])


def test_pairing_note_says_what_was_shared_or_what_differs():
    note = cmp.pairing_note(_result([1, 2, 3]), _result([1, 2, 3], calculator=True),
                            may_differ=("calculator",))
    assert "same 3 problems in the same order" in note and "batch size 32" in note and "fp32" in note
    with pytest.raises(DataError, match="batch_size 32 vs 8"):
        cmp.pairing_note(_result([1, 2]), _result([1, 2], batch_size=8))
    with pytest.raises(DataError, match="bf16"):
        cmp.pairing_note(_result([1, 2]), _result([1, 2], bf16=True))
    with pytest.raises(DataError, match="different examples or orders"):
        cmp.pairing_note(_result([1, 2]), _result([2, 1]))
    with pytest.raises(DataError, match="calculator"):
        cmp.pairing_note(_result([1]), _result([1], calculator=True))


# ---- evaluation groups: base, fine-tuned and calculator arms ----

def _arm(correct: list[bool], calculator: bool = False, uses: int = 0, batch_size: int = 32) -> EvalResult:
    result = _result([], calculator=calculator, batch_size=batch_size)
    result.records = [_rec(i, ok) for i, ok in enumerate(correct)]
    result.summary["calculator_uses"] = uses
    return result


def test_group_row_pairs_the_arms_and_counts_the_change():
    n = 100
    base = _arm([i < 1 for i in range(n)])                      # 1/100
    tuned = _arm([0 < i < 21 for i in range(n)])                # 20/100: fixed 20, broke 1
    calc = _arm([0 < i < 41 for i in range(n)], calculator=True, uses=77)
    row = cmp.group_row("in_template", base, tuned, calc)
    assert (row["before"]["correct"], row["after"]["correct"], row["calculator"]["correct"]) == (1, 20, 40)
    assert (row["paired"]["n_fixed"], row["paired"]["n_broken"]) == (20, 1) and row["paired"]["mcnemar_p"] < 1e-3
    assert row["calculator_paired"]["n_fixed"] == 20 and row["calculator_uses"] == 77
    assert "same 100 problems" in row["pairing"] and "same 100 problems" in row["pairing_calculator"]
    assert cmp.moved(row) == "up" and "beats the base model" in cmp.verdict(row)
    without = cmp.group_row("held_out", base, base)
    assert without["calculator"] is None and cmp.moved(without) is None
    with pytest.raises(DataError, match="batch_size"):  # arms on other batches are not paired
        cmp.group_row("in_template", base, _arm([True] * n, batch_size=8))


def test_groups_table_headline_and_sentence():
    n = 100
    base = _arm([i < 1 for i in range(n)])
    rows = [cmp.group_row("in_template", base, _arm([i < 25 for i in range(n)]),
                          _arm([i < 40 for i in range(n)], calculator=True)),
            cmp.group_row("held_out", base, _arm([i < 3 for i in range(n)])),
            cmp.group_row("arithmetic", _arm([i < 60 for i in range(n)]), _arm([i < 30 for i in range(n)]))]
    md = cmp.groups_markdown(rows).splitlines()
    assert md[0].startswith("| group | n | base | fine-tuned |") and len(md) == 5
    assert md[2].startswith("| in_template | 100 | 1.0% [") and "| 24 / 0 |" in md[2] and md[2].endswith("] |")
    assert md[3].endswith("| – |")  # no calculator arm for that group
    head = cmp.groups_headline(rows)
    assert list(head) == ["in_template", "held_out", "arithmetic"]
    assert head["in_template"]["tuned"]["value"] == 0.25 and head["in_template"]["base"]["n"] == 100
    assert set(head["in_template"]) == {"base", "tuned", "tuned_calculator"} and set(head["held_out"]) == {"base", "tuned"}
    assert len(head["held_out"]["tuned"]["ci95"]) == 2
    sentence = cmp.groups_moved_sentence(rows)
    assert sentence == ("Fine-tuning raised in_template and lowered arithmetic (the 95% intervals of base and "
                        "fine-tuned model do not overlap); held_out did not move beyond what the intervals can show.")
    assert cmp.groups_moved_sentence(rows[1:2]).startswith("Fine-tuning moved none of the groups (held_out)")


def test_trials_table_and_group_descriptions():
    md = cmp.trials_markdown([{"lr": "5e-4", "steps": 58}, {"lr": "1e-3", "steps": 58}])
    assert md.splitlines() == ["| lr | steps |", "|---|---|", "| 5e-4 | 58 |", "| 1e-3 | 58 |"]
    assert cmp.trials_markdown([]) == "No trials are recorded for this profile."
    assert "training templates" in cmp.describe_group("in_template")
    assert cmp.describe_group("gsm8k_test") == "gsm8k test"
