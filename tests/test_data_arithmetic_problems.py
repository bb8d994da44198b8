"""Digit arithmetic as unified problems (the ``arithmetic`` source of load_math_dataset)."""

from collections import Counter

import pytest

from mathkit.data.arithmetic import problems as ar
from mathkit.data.arithmetic.sampling import split_of
from mathkit.errors import DataError


def test_rows_carry_the_true_result_and_the_generators_steps():
    rows = ar.generate(300, seed=0, split="train")
    assert len(rows) == 300 and len({r["id"] for r in rows}) == 300
    for r in rows:
        expr = r["problem"].removeprefix("What is ").removesuffix("?")
        assert int(r["answer"]) == eval(expr)  # noqa: S307 - digits and one operator, generated here
        assert r["category"] == f"arithmetic:{next(op for op in '+-*' if op in expr)}"
        assert r["template"] == "" and r["source"] == "arithmetic"
    row = next(r for r in rows if "+" in r["problem"])
    a, b = row["problem"][8:-1].split("+")
    assert row["solution"].splitlines()[0].startswith("Add column by column")
    assert row["solution"].splitlines()[1].startswith(f"{a[-1]}+{b[-1]}=")
    assert set(Counter(r["category"] for r in rows)) == {"arithmetic:+", "arithmetic:-", "arithmetic:*"}


def test_bare_style_is_the_small_model_prompt():
    rows = ar.generate(5, seed=1, style="bare", ops=["+"])
    assert all(r["problem"].endswith("=") and "What" not in r["problem"] for r in rows)
    assert ar.problem_row(3, 5, "+", "bare")["problem"] == "3+5="


def test_deterministic_and_splits_disjoint():
    train = ar.generate(400, seed=2, split="train", max_digits=2)
    assert train == ar.generate(400, seed=2, split="train", max_digits=2)
    test = ar.generate(100, seed=7, split="test", max_digits=2)
    assert not {r["id"] for r in train} & {r["id"] for r in test}
    assert {split_of(r["id"].removeprefix("arithmetic/")) for r in test} == {"test"}
    assert ar.generate(50, seed=2, split="train", max_digits=2) == train[:50]


def test_small_spaces_are_exhausted_cleanly():
    assert len(ar.generate(18, split="test", max_digits=1, ops=["+"])) == 18
    with pytest.raises(DataError, match="only 18 exist"):
        ar.generate(19, split="test", max_digits=1, ops=["+"])
    with pytest.raises(DataError, match="style"):
        ar.generate(3, style="words")
    with pytest.raises(DataError, match="splits"):
        ar.generate(3, split="validation")
