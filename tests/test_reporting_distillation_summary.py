"""Distillation arms against the from-scratch student: paired seed differences, headline, conclusion."""

from mathkit.reporting.ablation_summary import aggregate
from mathkit.reporting.distillation_summary import (best_single_teacher_arm, distillation_headline,
                                                    distillation_sentences, seed_differences)
from tests.test_reporting_ablation_summary import make_row, summary

ARMS = {"scratch": {"teachers": []}, "kd": {"teachers": ["t1"]}, "kd_b": {"teachers": ["t2"]},
        "two": {"teachers": ["t1", "t2"]}}


def arm_rows(levels: dict[str, list[float]]) -> list[dict]:
    rows = []
    for arm, per_seed in levels.items():
        for seed, acc in enumerate(per_seed):
            row = make_row("rope", "cot", seed, {1: acc, 2: acc, 3: 0.0, 4: 0.0})
            rows.append({**row, "arm": arm, "run_id": f"{arm}-{row['run_id']}"})
    return rows


def agg_of(levels):
    return aggregate(arm_rows(levels), by="arm")["cot"]


def test_seed_differences_pair_seeds_of_two_arms():
    agg = agg_of({"scratch": [0.5, 0.6, 0.4], "kd": [0.7, 0.6, 0.8]})
    diffs = seed_differences(agg["kd"], agg["scratch"])
    assert [round(d, 2) for d in diffs] == [0.2, 0.0, 0.4]


def test_target_met_only_when_seed_ranges_are_apart():
    apart = agg_of({"scratch": [0.4, 0.5, 0.45], "kd": [0.7, 0.8, 0.75]})
    lines = distillation_sentences(apart, ARMS, "scratch", {})
    assert "**kd** beats **scratch** in distribution with seed ranges apart" in lines[0]
    assert "ahead in 3 of 3" in lines[0] and lines[-1].endswith("met by kd.")
    overlap = agg_of({"scratch": [0.4, 0.7, 0.45], "kd": [0.6, 0.8, 0.5]})
    lines = distillation_sentences(overlap, ARMS, "scratch", {})
    assert "but the seed ranges overlap" in lines[0] and lines[-1].endswith("not met in this run.")
    worse = agg_of({"scratch": [0.8, 0.8, 0.8], "kd": [0.5, 0.5, 0.5]})
    assert "**kd** does not beat **scratch**" in distillation_sentences(worse, ARMS, "scratch", {})[0]


def test_several_teachers_are_compared_with_the_best_single_one():
    agg = agg_of({"scratch": [0.4], "kd": [0.6], "kd_b": [0.7], "two": [0.65]})
    assert best_single_teacher_arm(agg, ARMS) == "kd_b"
    lines = distillation_sentences(agg, ARMS, "scratch", {"t1": {"in_distribution": summary(0.99),
                                                                 "beyond": summary(0.0)}})
    assert lines[0].startswith("Teacher **t1**: 99.00% in distribution")
    assert any(line.startswith("Several teachers: **two** does not beat **kd_b**") for line in lines)


def test_headline_names_the_best_arm_and_the_differences_to_the_baseline():
    agg = agg_of({"scratch": [0.4, 0.5], "kd": [0.7, 0.6]})
    numbers = distillation_headline(agg, ARMS, "scratch")
    assert numbers["best_arm"] == "kd" and numbers["baseline_arm"] == "scratch"
    assert [round(d, 2) for d in numbers["vs_baseline_in_distribution"]["kd"]] == [0.3, 0.1]
    assert numbers["in_distribution"]["kd"]["n_seeds"] == 2 and numbers["in_distribution"]["kd"]["n"] == 200
    assert "vs_baseline_in_distribution" not in distillation_headline(agg, ARMS, None)


def test_when_the_target_is_missed_the_fit_of_the_labels_says_why():
    from mathkit.reporting.distillation_summary import fit_sentence, kd_weight_text

    arms = {"scratch": {"teachers": []},
            "kd": {"teachers": ["t1"], "distillation": {"kd": "forward", "kd_weight": 1.0, "temperature": 2.0,
                                                        "ce_weight": 1.0}}}
    rows = arm_rows({"scratch": [0.8, 0.8], "kd": [0.5, 0.6]})
    for row in rows:
        row["perplexity"] = 1.05 if row["arm"] == "scratch" else 1.2
    agg = aggregate(rows, by="arm")["cot"]
    assert kd_weight_text(arms["kd"]["distillation"]) == "KD 4 (T=2) : labels 1"
    assert kd_weight_text({"kd": "none"}) == "no KD term"
    sentence = fit_sentence(agg, arms, "scratch")
    assert "kd 1.200 (KD 4 (T=2) : labels 1)" in sentence and "1.050 for scratch" in sentence
    assert distillation_sentences(agg, arms, "scratch", {})[-1] == sentence
    for row in rows:
        row["perplexity"] = 1.0
    assert fit_sentence(aggregate(rows, by="arm")["cot"], arms, "scratch") is None


def test_an_arm_ahead_of_the_baseline_is_not_named_among_those_behind():
    from mathkit.reporting.distillation_summary import fit_sentence

    t1 = {"kd": "forward", "kd_weight": 1.0, "temperature": 1.0, "ce_weight": 1.0}
    arms = {"scratch": {"teachers": []}, "kd_t2": {"teachers": ["t"], "distillation": {**t1, "temperature": 2.0}},
            "kd_t1": {"teachers": ["t"], "distillation": t1}}
    rows = arm_rows({"scratch": [0.8, 0.8], "kd_t2": [0.5, 0.6], "kd_t1": [0.85, 0.8]})
    for row in rows:  # kd_t1 fits the labels a hair worse but is not behind
        row["perplexity"] = {"scratch": 1.0551, "kd_t2": 1.2, "kd_t1": 1.0554}[row["arm"]]
    sentence = fit_sentence(aggregate(rows, by="arm")["cot"], arms, "scratch")
    assert "kd_t2 1.200" in sentence and "kd_t1" not in sentence
