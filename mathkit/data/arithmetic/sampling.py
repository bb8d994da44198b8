"""Drawing arithmetic expressions: operand lengths uniform, then numbers; splits fixed by a hash.

**Lengths.** For every expression the operator is drawn uniformly from ``ops``, each operand's
digit count uniformly and independently from ``min_digits..max_digits``, and then the number
uniformly among the numbers with that many digits (1 digit includes 0). Drawing numbers
uniformly instead would make 3-digit operands 90% of a 1-3-digit set and leave the short ones
(``1+0``) almost unseen. A subtraction puts the larger operand first.

**Splits.** Every expression belongs to one bucket for good, by the SHA-256 of its text
(:func:`split_of`): ``test`` (1 in 5: the test bucket of every generated source,
:func:`mathkit.data.schema.in_test_bucket`), ``val`` (1 in 10) or ``train`` (the other 7 in 10).
Sets drawn from different buckets never share an expression whatever their seeds and sizes, and
an evaluation set drawn later from the test bucket (``arithmetic:1-3:+``) holds nothing that any
training set held.

**Small cells.** The expressions of one operator and one pair of digit counts form a *cell*;
1-digit + 1-digit holds only 100 (about 20 of them in the test bucket). ``repeat=False`` draws
distinct expressions: when a cell runs out, its later draws go to the cells that still have
some. ``repeat=True`` (training sets) starts a cell again once each of its expressions has been
drawn, so the lengths stay uniform and the few short expressions are each seen many times.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence

from mathkit.data.arithmetic.steps import OPS
from mathkit.data.schema import hash_bucket
from mathkit.errors import DataError

SPLITS = ("train", "val", "test")
SHARE = {None: 1.0, "train": 0.7, "val": 0.1, "test": 0.2}  # of every cell, in expectation
LIST_LIMIT = 20_000  # cells up to this size list their bucket's members up front (exact counts)


def split_of(expression: str) -> str:
    """``"test"``, ``"val"`` or ``"train"``: the bucket ``expression`` (e.g. ``"12+3"``) belongs to."""
    bucket = hash_bucket(expression, 10)
    if bucket % 5 == 0:  # the same expressions as schema.in_test_bucket (SHA-256 = 0 mod 5)
        return "test"
    return "val" if bucket == 1 else "train"


def number_range(n_digits: int) -> tuple[int, int]:
    """Smallest and largest number with ``n_digits`` digits (1 digit includes 0)."""
    return (0 if n_digits == 1 else 10 ** (n_digits - 1)), 10**n_digits - 1


class _Cell:
    """The expressions of one operator and one pair of digit counts that lie in one split's bucket.

    Expressions are numbered 0..size-1. Small cells list their bucket's members at once; large ones
    draw by rejection (a fifth to all of a random index lands in the bucket) until half is used,
    then list what is left, so running out costs O(size) and never loops.
    """

    def __init__(self, op: str, da: int, db: int, split: str | None):
        self.op, self.split = op, split
        self.lo_a, hi_a = number_range(da)
        self.lo_b, hi_b = number_range(db)
        self.na, self.nb = hi_a - self.lo_a + 1, hi_b - self.lo_b + 1
        # Subtraction cells with equal digit counts hold only the pairs with a >= b (a triangle).
        self.triangle = op == "-" and da == db
        self.size = self.na * (self.na + 1) // 2 if self.triangle else self.na * self.nb
        self.used: set[int] = set()
        self.members: list[int] | None = None  # the bucket's indices, once listed
        self.remaining: list[int] | None = None  # members not drawn yet in this round
        if self.size <= LIST_LIMIT:
            self.list_members()

    def pair(self, i: int) -> tuple[int, int]:
        if self.triangle:
            r = (math.isqrt(8 * i + 1) - 1) // 2
            c = i - r * (r + 1) // 2
            return self.lo_a + r, self.lo_b + c
        return self.lo_a + i // self.nb, self.lo_b + i % self.nb

    def _in_split(self, i: int) -> bool:
        if self.split is None:
            return True
        a, b = self.pair(i)
        return split_of(f"{a}{self.op}{b}") == self.split

    def list_members(self) -> None:
        """List the bucket's members (exact counts from here on); O(size), once."""
        if self.members is not None:
            return
        self.members = [i for i in range(self.size) if self._in_split(i)]
        self.remaining = [i for i in self.members if i not in self.used]

    @property
    def left(self) -> int:
        """Distinct expressions not drawn yet: exact once listed, the expected count before."""
        if self.remaining is not None:
            return len(self.remaining)
        return int(self.size * SHARE[self.split]) - len(self.used)

    def draw(self, rng: random.Random, repeat: bool) -> tuple[int, int] | None:
        """One ``(a, b)``; None when the cell has run out (only without ``repeat``) or is empty."""
        if self.remaining is None and 2 * len(self.used) >= self.size * SHARE[self.split]:
            self.list_members()
        if self.remaining is not None:
            if not self.remaining:
                if not (repeat and self.members):
                    return None
                self.remaining = list(self.members)  # a new round
            j = rng.randrange(len(self.remaining))
            self.remaining[j], self.remaining[-1] = self.remaining[-1], self.remaining[j]
            return self.pair(self.remaining.pop())
        while True:
            i = rng.randrange(self.size)
            if i not in self.used and self._in_split(i):
                self.used.add(i)
                return self.pair(i)


def _cell_key(op: str, da: int, db: int) -> tuple[str, int, int]:
    # a - b is written larger-first, so (da, db) and (db, da) are the same subtraction cell.
    return (op, max(da, db), min(da, db)) if op == "-" else (op, da, db)


def _check_settings(min_digits: int, max_digits: int, ops: Sequence[str], split: str | None) -> None:
    if not 1 <= min_digits <= max_digits:
        raise DataError(f"need 1 <= min_digits <= max_digits, got {min_digits}..{max_digits}")
    if not ops:
        raise DataError("ops is empty: give at least one of + - *")
    unknown = [op for op in ops if op not in OPS]
    if unknown:
        raise DataError(f"unknown operator(s) {unknown}; use a subset of {list(OPS)}")
    if split not in SHARE:
        raise DataError(f"arithmetic has splits {', '.join(repr(s) for s in SPLITS)} or None, not {split!r}")


def _cells(min_digits: int, max_digits: int, ops: Sequence[str], split: str | None) -> dict:
    digit_counts = range(min_digits, max_digits + 1)
    keys = dict.fromkeys(_cell_key(op, da, db) for op in ops for da in digit_counts for db in digit_counts)
    return {key: _Cell(*key, split=split) for key in keys}


def expression_space_size(min_digits: int, max_digits: int, ops: Sequence[str], split: str | None = None) -> int:
    """How many distinct expressions exist for these settings (in ``split``'s bucket when given;
    cells larger than ``LIST_LIMIT`` count their expected share)."""
    _check_settings(min_digits, max_digits, ops, split)
    return sum(cell.left for cell in _cells(min_digits, max_digits, list(dict.fromkeys(ops)), split).values())


def sample_expressions(n: int, *, min_digits: int = 1, max_digits: int = 3, ops: Sequence[str] = ("+",),
                       seed: int | str = 0, split: str | None = None,
                       repeat: bool = False) -> list[tuple[int, int, str]]:
    """``n`` ``(a, b, op)`` triples from ``split``'s bucket (None: every expression), in draw order.

    Distinct unless ``repeat`` (see the module docstring for lengths, buckets and small cells).
    Deterministic for one ``(seed, split)``, and the draws of a smaller ``n`` are the first ones of
    a larger ``n``. Raises :class:`DataError` when fewer than ``n`` distinct expressions exist.
    """
    _check_settings(min_digits, max_digits, ops, split)
    if n < 0:
        raise DataError(f"n must be >= 0, got {n}")
    ops = list(dict.fromkeys(ops))
    cells = _cells(min_digits, max_digits, ops, split)
    available = sum(c.left for c in cells.values())
    if not repeat and 2 * n > available:  # near the limit: count the large cells exactly too
        for cell in cells.values():
            cell.list_members()
        available = sum(c.left for c in cells.values())
    if (n > available and not repeat) or (n and available == 0):
        raise DataError(f"asked for {n} distinct expressions but only {available} exist with "
                        f"{min_digits}..{max_digits} digits and ops {''.join(ops)}"
                        f"{f' in the {split} bucket' if split else ''}; ask for fewer or widen the digit range")
    rng = random.Random(f"arithmetic/{seed}/{split}")
    digit_counts = range(min_digits, max_digits + 1)
    out: list[tuple[int, int, str]] = []
    empty: set[tuple[str, int, int]] = set()
    while len(out) < n:
        op = rng.choice(ops)
        key = _cell_key(op, rng.choice(digit_counts), rng.choice(digit_counts))
        pair = None if key in empty else cells[key].draw(rng, repeat)
        if pair is None:
            empty.add(key)  # run out: the other cells take its share
            if len(empty) == len(cells):
                raise DataError(f"only {len(out)} distinct expressions exist for these settings; asked for {n}")
            continue
        a, b = pair
        out.append((a, b, op) if op != "-" or a >= b else (b, a, op))
    return out
