"""Leak check between training pool and evaluation set, and the long-example filter."""

from pathlib import Path

import pytest
from datasets import Dataset

from mathkit.data import combine_sources, load_math_dataset
from mathkit.data.gsm_symbolic import HELD_OUT_TEMPLATES
from mathkit.data.splits import drop_long_examples, drop_seen, find_leaks, group_leaks, leak_count
from mathkit.params import load_params
from mathkit.params.lora_sft import LoraSftParams
from tests.tiny_llama import build_tokenizer, word_problems

ROOT = Path(__file__).parent.parent


def test_find_leaks_names_held_out_templates_and_problems_seen_in_training():
    held = HELD_OUT_TEMPLATES[0]
    train = Dataset.from_list([{"problem": "A? ", "template": held}, {"problem": "B?", "template": "t-train"}])
    evals = Dataset.from_list([{"problem": "A?", "template": held}, {"problem": "C?", "template": "t-train"},
                               {"problem": "B?", "template": "t-train"}])
    assert find_leaks(train, evals) == {"held_out_templates": [held], "problems": ["A?", "B?"]}
    clean = Dataset.from_list([{"problem": "D?", "template": "t-train"}])
    assert find_leaks(clean, evals) == {"held_out_templates": [], "problems": []}
    no_templates = Dataset.from_list([{"problem": "A?"}])
    assert find_leaks(no_templates, evals) == {"held_out_templates": [], "problems": ["A?"]}


def _small(specs, cap=100):
    return [{**s, "n": min(s.get("n") or cap, cap)} for s in specs]


@pytest.mark.parametrize("profile", ["smoke", "cpu"])
def test_profile_training_never_sees_held_out_templates_or_group_problems(profile):
    """The offline profiles train on GSM-Symbolic *training* templates only: no held-out template
    (original or variant) and no problem of any evaluation group may be in the training pool, and
    no problem may sit in two groups. Sizes are cut down; the template split does not depend on n."""
    params = load_params(LoraSftParams, ROOT / "params" / "02_lora_sft" / f"{profile}.yaml")
    train, _ = combine_sources(params.train_sources, seed=params.seed)  # full size: every template it trains
    drawn = {name: combine_sources(_small(specs), seed=params.eval_seed)[0]
             for name, specs in params.eval_groups.items()}
    # a template with few valid numbers can draw a training problem again: the notebook drops it
    groups = {name: drop_seen(rows, train)[0] for name, rows in drawn.items()}
    assert sum(len(drawn[k]) - len(groups[k]) for k in drawn) == leak_count(group_leaks(train, drawn)) <= 5
    report = group_leaks(train, groups)
    assert leak_count(report) == 0, report
    if profile == "cpu":  # 10 variants of each training template: the in-template group saw them all
        assert report["unseen_templates"]["in_template"] == []
    assert set(report["unseen_templates"]["held_out"]) == set(groups["held_out"]["template"]) - {""}
    leaky, _ = combine_sources([{"name": "gsm_symbolic", "n": 100, "options": {"include_originals": True}}],
                               seed=0)  # split=None: every template, originals included
    leaks = group_leaks(leaky, groups)["groups"]["held_out"]
    assert leaks["held_out_templates"] and leaks["problems"], "the check cannot see a leak"


def test_in_template_group_with_the_training_seed_is_caught_as_a_leak():
    """Variants are seeded by (seed, template): drawn with the training seed, the in-template
    group repeats training problems, which the leak check must report; with another seed it
    holds new numbers only."""
    train = load_math_dataset("gsm_symbolic", split="train", n=160, seed=0)
    same_seed = load_math_dataset("gsm_symbolic", split="train", n=80, seed=0)
    other_seed = load_math_dataset("gsm_symbolic", split="train", n=80, seed=1)
    caught = group_leaks(train, {"in_template": same_seed})["groups"]["in_template"]["problems"]
    assert len(caught) == 80
    assert leak_count(group_leaks(train, {"in_template": other_seed})) == 0
    kept, dropped = drop_seen(same_seed, train)
    assert (len(kept), dropped) == (0, 80)


def test_group_leaks_reports_problems_shared_between_groups():
    a = Dataset.from_list([{"problem": "A?", "template": "0001"}, {"problem": "B?", "template": "0002"}])
    b = Dataset.from_list([{"problem": " B?", "template": "0002"}])
    c = Dataset.from_list([{"problem": "C?", "template": ""}])
    train = Dataset.from_list([{"problem": "T?", "template": "0001"}])
    report = group_leaks(train, {"a": a, "b": b, "c": c})
    assert report["shared"] == {"a & b": ["B?"], "a & c": [], "b & c": []}
    assert report["unseen_templates"] == {"a": ["0002"], "b": ["0002"], "c": []}
    assert leak_count(report) == 1


def test_drop_seen_keeps_order_and_counts():
    rows = Dataset.from_list([{"problem": p} for p in ("A?", "B?", "C?")])
    seen = Dataset.from_list([{"problem": " B? "}])
    kept, dropped = drop_seen(rows, seen)
    assert kept["problem"] == ["A?", "C?"] and dropped == 1
    same, none = drop_seen(rows, Dataset.from_list([{"problem": "Z?"}]))
    assert same is rows and none == 0


def test_long_examples_are_dropped_not_truncated():
    tokenizer = build_tokenizer()
    rows = Dataset.from_list(word_problems(4) + [{"prompt": "Question: long?\nAnswer:", "completion": " 1 +" * 80}])
    kept, dropped = drop_long_examples(rows, tokenizer, max_length=40)
    assert dropped == 1 and len(kept) == 4 and " 1 +" * 80 not in kept["completion"]
    same, none = drop_long_examples(rows, tokenizer, max_length=10_000)
    assert none == 0 and len(same) == 5 and same is rows
