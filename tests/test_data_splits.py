"""Leak check between training pool and evaluation set, and the long-example filter."""

from pathlib import Path

import pytest
from datasets import Dataset

from mathkit.data import combine_sources
from mathkit.data.gsm_symbolic import HELD_OUT_TEMPLATES
from mathkit.data.splits import drop_long_examples, find_leaks
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


@pytest.mark.parametrize("profile", ["smoke", "cpu"])
def test_profile_training_never_sees_held_out_templates_or_eval_problems(profile):
    """The offline profiles train on GSM-Symbolic *training* templates only: no held-out template
    (original or variant) and no evaluated problem may be in the training pool. Sizes are cut
    down; the template split does not depend on n."""
    params = load_params(LoraSftParams, ROOT / "params" / "02_lora_sft" / f"{profile}.yaml")
    small = lambda specs: [{**s, "n": min(s.get("n") or 100, 100)} for s in specs]  # noqa: E731
    train, _ = combine_sources(small(params.train_sources), seed=0)
    evals, _ = combine_sources(small(params.eval_sources), seed=0)
    assert {t for t in evals["template"] if t}, "the evaluation set has no GSM templates to check"
    assert find_leaks(train, evals) == {"held_out_templates": [], "problems": []}
    leaky, _ = combine_sources([{"name": "gsm_symbolic", "n": 100, "options": {"include_originals": True}}],
                               seed=0)  # split=None: every template, originals included
    leaks = find_leaks(leaky, evals)
    assert leaks["held_out_templates"] and leaks["problems"], "the check cannot see a leak"


def test_long_examples_are_dropped_not_truncated():
    tokenizer = build_tokenizer()
    rows = Dataset.from_list(word_problems(4) + [{"prompt": "Question: long?\nAnswer:", "completion": " 1 +" * 80}])
    kept, dropped = drop_long_examples(rows, tokenizer, max_length=40)
    assert dropped == 1 and len(kept) == 4 and " 1 +" * 80 not in kept["completion"]
    same, none = drop_long_examples(rows, tokenizer, max_length=10_000)
    assert none == 0 and len(same) == 5 and same is rows
