"""Drawing expressions: uniform operand lengths, fixed hash buckets, small cells, determinism."""

import random
from collections import Counter

import pytest

from mathkit.data.arithmetic import sampling
from mathkit.data.arithmetic.sampling import expression_space_size, number_range, sample_expressions, split_of
from mathkit.data.schema import in_test_bucket
from mathkit.errors import DataError


def lengths(triples):
    return Counter((len(str(a)), len(str(b))) for a, b, _ in triples)


def test_number_range_includes_zero_for_one_digit():
    assert number_range(1) == (0, 9) and number_range(2) == (10, 99) and number_range(4) == (1000, 9999)


def test_each_pair_of_operand_lengths_is_equally_common_in_training_sets():
    # Uniform numbers would give 1-digit + 1-digit 0.01% of the draws; uniform lengths give 1/9 each.
    counts = lengths(sample_expressions(9000, min_digits=1, max_digits=3, seed=0, split="train", repeat=True))
    assert set(counts) == {(da, db) for da in (1, 2, 3) for db in (1, 2, 3)}
    assert all(850 < c < 1150 for c in counts.values()), counts


def test_distinct_draws_use_up_a_small_cell_and_spread_the_rest_evenly():
    counts = lengths(sample_expressions(2700, min_digits=1, max_digits=3, seed=0, split="train"))
    one_digit_sums = expression_space_size(1, 1, "+", split="train")
    assert counts[(1, 1)] == one_digit_sums  # all 76 of them, then its draws go elsewhere
    share = (2700 - one_digit_sums) / 8
    assert all(0.85 * share < c < 1.15 * share for pair, c in counts.items() if pair != (1, 1)), counts


def test_one_digit_operands_cover_zero_to_nine():
    triples = sample_expressions(3000, min_digits=1, max_digits=2, seed=1, split="train", repeat=True)
    one_digit = [a for a, _, _ in triples if a < 10] + [b for _, b, _ in triples if b < 10]
    assert set(one_digit) == set(range(10))
    assert 2700 < len(one_digit) < 3300  # half of 6000 operands
    assert all(0 <= a <= 99 and 0 <= b <= 99 for a, b, _ in triples)


def test_operators_uniform_and_subtraction_larger_first():
    triples = sample_expressions(3000, min_digits=1, max_digits=3, ops="+-*", seed=2)
    ops = Counter(op for _, _, op in triples)
    assert all(850 < ops[op] < 1150 for op in "+-*"), ops
    assert all(a >= b for a, b, op in triples if op == "-")


def test_buckets_are_fixed_by_the_text_with_shares_70_10_20():
    keys = [f"{a}+{b}" for a in range(150) for b in range(150)]
    shares = Counter(split_of(k) for k in keys)
    assert abs(shares["train"] / len(keys) - 0.7) < 0.02
    assert abs(shares["val"] / len(keys) - 0.1) < 0.01
    assert abs(shares["test"] / len(keys) - 0.2) < 0.015
    assert all((split_of(k) == "test") == in_test_bucket(k) for k in keys)  # one test bucket for every source


@pytest.mark.parametrize("split", ["train", "val", "test"])
def test_draws_come_from_their_bucket_only(split):
    triples = sample_expressions(2000, min_digits=1, max_digits=4, ops="+-", seed=3, split=split)
    assert len(set(triples)) == 2000
    assert {split_of(f"{a}{op}{b}") for a, b, op in triples} == {split}


def test_deterministic_and_a_smaller_n_is_a_prefix():
    kwargs = dict(min_digits=1, max_digits=3, ops="+*", seed=4, split="test")
    first = sample_expressions(500, **kwargs)
    assert sample_expressions(500, **kwargs) == first
    assert sample_expressions(120, **kwargs) == first[:120]
    assert sample_expressions(500, **{**kwargs, "seed": 5}) != first


def test_small_space_exhausted_exactly_without_looping():
    assert expression_space_size(1, 1, ("+",)) == 100
    assert {f"{a}+{b}" for a, b, _ in sample_expressions(100, min_digits=1, max_digits=1)} == {
        f"{a}+{b}" for a in range(10) for b in range(10)}
    assert expression_space_size(1, 1, ("-",)) == 55
    assert len(set(sample_expressions(55, min_digits=1, max_digits=1, ops="-"))) == 55
    n_test = expression_space_size(1, 1, "+", split="test")
    assert n_test == sum(split_of(f"{a}+{b}") == "test" for a in range(10) for b in range(10))
    assert len(set(sample_expressions(n_test, min_digits=1, max_digits=1, split="test"))) == n_test
    with pytest.raises(DataError, match=f"only {n_test} exist"):
        sample_expressions(n_test + 1, min_digits=1, max_digits=1, split="test")


def test_space_size_matches_enumeration():
    for ops in ("+", "-", "+-*"):
        for split in (None, "val"):
            n = expression_space_size(1, 2, ops, split=split)
            assert len(set(sample_expressions(n, min_digits=1, max_digits=2, ops=ops, seed=1, split=split))) == n


def test_repeat_cycles_through_a_cell_evenly():
    n_test = expression_space_size(1, 1, "+", split="test")
    triples = sample_expressions(10 * n_test + 3, min_digits=1, max_digits=1, split="test", repeat=True)
    counts = Counter(triples)
    assert len(counts) == n_test and set(counts.values()) <= {10, 11}  # every round uses each once


def test_large_cells_switch_from_rejection_to_a_list_without_repeats(monkeypatch):
    monkeypatch.setattr(sampling, "LIST_LIMIT", 0)  # every cell starts by rejection
    every = {f"{a}+{b}" for a in range(10, 100) for b in range(10, 100) if split_of(f"{a}+{b}") == "test"}
    triples = sample_expressions(len(every), min_digits=2, max_digits=2, split="test", seed=6)
    assert {f"{a}+{b}" for a, b, _ in triples} == every


def test_does_not_touch_global_random():
    random.seed(123)
    before = random.random()
    random.seed(123)
    sample_expressions(50, seed=0, split="train", repeat=True)
    assert random.random() == before


@pytest.mark.parametrize("kwargs", [dict(min_digits=0), dict(min_digits=3, max_digits=2), dict(ops=("/",)),
                                    dict(ops=()), dict(split="dev")])
def test_bad_settings(kwargs):
    with pytest.raises(DataError):
        sample_expressions(5, **kwargs)
    with pytest.raises(DataError, match="n must be"):
        sample_expressions(-1)
