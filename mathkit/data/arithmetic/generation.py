"""Record sets for training and testing an arithmetic model: examples, train/val/test splits, length sets.

Every set is drawn by :func:`mathkit.data.arithmetic.sampling.sample_expressions` (operand lengths
uniform, then numbers) and written out by :func:`mathkit.data.arithmetic.records.make_example`.
Validation and test sets come from their own hash buckets, so no split shares an expression with
another, whatever the seeds and sizes; a training set may repeat the expressions of small cells
(there are only 100 one-digit additions) so that short operands are as common as long ones.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence

from mathkit.data.arithmetic.records import make_example
from mathkit.data.arithmetic.sampling import expression_space_size, sample_expressions
from mathkit.errors import DataError

log = logging.getLogger(__name__)


def generate_examples(n: int, *, min_digits: int = 1, max_digits: int = 3, ops: Sequence[str] = ("+",),
                      cot: bool = True, seed: int | str = 0, split: str | None = None,
                      repeat: bool = False) -> list[dict]:
    """``n`` example records (distinct unless ``repeat``) from ``split``'s bucket (None: all expressions)."""
    triples = sample_expressions(n, min_digits=min_digits, max_digits=max_digits, ops=ops, seed=seed,
                                 split=split, repeat=repeat)
    return [make_example(a, b, op, cot=cot) for a, b, op in triples]


def generate_splits(n_train: int, n_val: int, n_test: int, *, min_digits: int = 1, max_digits: int = 3,
                    ops: Sequence[str] = ("+",), cot: bool = True, seed: int = 0) -> dict[str, list[dict]]:
    """``{"train", "val", "test"}`` record lists, each from its own bucket, so they share no expression.

    Validation and test hold distinct expressions; a cell too small for its share gives what its
    bucket holds and the other cells give the rest. Training repeats a cell's expressions once it
    has used them all, so every pair of operand lengths is equally common in training.
    """
    for name, value in (("n_train", n_train), ("n_val", n_val), ("n_test", n_test)):
        if value < 0:
            raise DataError(f"{name} must be >= 0, got {value}")
    settings = dict(min_digits=min_digits, max_digits=max_digits, ops=ops, cot=cot, seed=seed)
    return {"train": generate_examples(n_train, split="train", repeat=True, **settings),
            "val": generate_examples(n_val, split="val", **settings),
            "test": generate_examples(n_test, split="test", **settings)}


def generate_length_sets(lengths: Iterable[int], n_per_length: int, *, ops: Sequence[str] = ("+",),
                         cot: bool = True, seed: int = 0) -> list[dict]:
    """Up to ``n_per_length`` test-bucket examples for each operand length (both operands that long).

    For accuracy by length, inside or beyond the training range: drawn from the test bucket, they
    never repeat a training expression. A length whose test bucket holds fewer (1-digit + 1-digit:
    about 20 additions) gives all it has, and says so in the log.
    """
    records: list[dict] = []
    for length in lengths:
        exists = expression_space_size(length, length, ops, split="test")
        if exists < n_per_length:
            log.warning("only %d distinct %d-digit test expressions exist for ops %s; using all of them",
                        exists, length, "".join(ops))
        records += generate_examples(min(n_per_length, exists), min_digits=length, max_digits=length, ops=ops,
                                     cot=cot, seed=f"{seed}/length{length}", split="test")
    return records
