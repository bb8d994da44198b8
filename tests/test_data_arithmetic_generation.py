"""Train/val/test splits and length sets: disjoint, deterministic, and uniform over operand lengths."""

import logging
from collections import Counter

import pytest

from mathkit.data.arithmetic.generation import generate_examples, generate_length_sets, generate_splits
from mathkit.data.arithmetic.sampling import expression_space_size, split_of
from mathkit.errors import DataError

SETTINGS = dict(min_digits=1, max_digits=3, ops=("+", "-", "*"))


def expressions(records):
    return {r["expression"] for r in records}


def length_pairs(records):
    return Counter((len(str(r["a"])), len(str(r["b"]))) for r in records)


def test_splits_disjoint_sized_and_deterministic():
    splits = generate_splits(3000, 500, 1000, seed=7, **SETTINGS)
    assert [len(v) for v in splits.values()] == [3000, 500, 1000]
    sets = {k: expressions(v) for k, v in splits.items()}
    assert len(sets["val"]) == 500 and len(sets["test"]) == 1000  # distinct inside the held-out splits
    assert not sets["train"] & sets["val"] and not sets["train"] & sets["test"] and not sets["val"] & sets["test"]
    assert all(split_of(e) == k for k, exprs in sets.items() for e in exprs)
    assert generate_splits(3000, 500, 1000, seed=7, **SETTINGS) == splits
    other = generate_splits(3000, 500, 1000, seed=8, **SETTINGS)
    assert other["test"] != splits["test"] and other["train"] != splits["train"]
    assert all(r["result"] >= 0 for records in splits.values() for r in records)


def test_test_set_does_not_depend_on_the_training_size():
    small = generate_splits(10, 20, 300, seed=1)
    large = generate_splits(5000, 20, 300, seed=1)
    assert small["test"] == large["test"] and small["val"] == large["val"]


def test_training_lengths_uniform_with_short_sums_repeated():
    train = generate_splits(9000, 10, 10, seed=0)["train"]
    counts = length_pairs(train)
    assert all(850 < c < 1150 for c in counts.values()) and len(counts) == 9, counts
    one_digit = Counter(r["expression"] for r in train if r["n_digits"] == 1)
    assert len(one_digit) == expression_space_size(1, 1, "+", split="train")  # every train-bucket 1+1 sum
    assert min(one_digit.values()) >= 5  # each seen many times, so `1+0` is learned, not met once


def test_test_set_spreads_over_length_pairs_as_far_as_cells_allow():
    test = generate_splits(0, 0, 1350, seed=0)["test"]
    counts = length_pairs(test)
    assert counts[(1, 1)] == expression_space_size(1, 1, "+", split="test")  # all 18 one-digit sums
    assert all(140 < c < 200 for pair, c in counts.items() if pair != (1, 1)), counts  # 1350 / 9 = 150 each
    assert len(expressions(test)) == 1350


def test_negative_sizes_refused():
    with pytest.raises(DataError, match="n_val must be >= 0"):
        generate_splits(10, -1, 10)


def test_generate_examples_records():
    records = generate_examples(20, max_digits=2, ops="*", cot=False, seed=3, split="val")
    assert len(expressions(records)) == 20 and all(r["op"] == "*" for r in records)
    assert all("<think>" not in r["completion"] for r in records)


def test_length_sets_come_from_the_test_bucket(caplog):
    ood = generate_length_sets([4, 5], 30, ops=("+", "-"), seed=0)
    assert len(ood) == 60 and len(expressions(ood)) == 60
    assert Counter(r["n_digits"] for r in ood) == {4: 30, 5: 30}
    assert all(len(str(r["a"])) == len(str(r["b"])) == r["n_digits"] for r in ood)
    assert {split_of(e) for e in expressions(ood)} == {"test"}
    with caplog.at_level(logging.WARNING, logger="mathkit.data.arithmetic.generation"):
        short = generate_length_sets([1], 50, seed=0)
    assert len(short) == expression_space_size(1, 1, "+", split="test") and "only" in caplog.text
