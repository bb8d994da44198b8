"""Arithmetic examples with a written-out chain of thought, and their train/val/test splits.

The format follows the math-llm seed: the prompt is the expression with ``=``, the completion is an
optional ``<think>...</think>`` trace, the answer, and ``<end>``::

    658+189=<think>8+9=17 5+8+1=14 6+1+1=8</think>847<end>      (cot=True)
    3+5=8<end>                                                   (cot=False)

Step formats, one space between steps, digit columns least significant first:

* Addition: one step per column, ``da+db=s``; a carry from the column before is written as a
  third term ``+1``. The shorter operand is padded with 0 (``658+9``: ``8+9=17 5+0+1=6 6+0=6``).
  There is no extra step for a final carry: the last step's two-digit sum gives the answer's
  leading 1 (``99+21``: ``9+1=10 9+2+1=12``, answer 120).
* Subtraction: only ``a >= b`` (no negative results; the generator puts the larger operand
  first). One step per column of ``a``, ``da-db=d``; a borrow *into* the next column is written
  as ``-1`` there, and a column that has to borrow shows the borrowed ten as a leading 1 on its
  top digit (``52-17``: ``12-7=5 5-1-1=3``, answer 35; ``100-1``: ``10-1=9 10-0-1=9 1-0-1=0``,
  answer 99). The answer drops the leading zeros the columns leave.
* Multiplication: one partial product per digit of ``b`` (least significant first), written
  with its place value (``123*40=4920``), then a running sum of the partials
  (``123*45``: ``123*5=615 123*40=4920 615+4920=5535``, answer 5535). Digits of b that are 0
  give ``a*0=0`` style steps, so the trace always has one partial per digit of b.

Splits never share an expression: all examples are drawn without replacement from one pool and
then dealt out. Each operand's digit count is drawn uniformly from ``min_digits..max_digits``
and then the number (so 1-digit operands are as frequent as 3-digit ones); small spaces such as
1-digit + 1-digit (100 expressions) are exhausted cleanly instead of looping forever.
"""

from __future__ import annotations

import json
import math
import random
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

from mathkit.data.markers import END, THINK_END, THINK_START
from mathkit.errors import DataError

OPS = ("+", "-", "*")

# One token per special marker, one per other character: the count the character tokenizer makes.
_TOKEN_RE = re.compile(r"<think>|</think>|<end>|<pad>|<unk>|.", re.S)
_EXPR_RE = re.compile(r"(\d+)([+\-*])(\d+)=?")
_HARD_MAX_DIGITS = 1000  # user input beyond this is a mistake (and Python caps int() at 4300 digits)


# --------------------------------------------------------------------------------------------
# Step traces
# --------------------------------------------------------------------------------------------

def _digits_lsd(n: int) -> list[int]:
    """Digits of ``n`` least significant first (0 -> [0])."""
    return [int(c) for c in reversed(str(n))]


def addition_steps(a: int, b: int) -> list[str]:
    """Column steps for ``a+b`` (see module docstring)."""
    da, db = _digits_lsd(a), _digits_lsd(b)
    width = max(len(da), len(db))
    da += [0] * (width - len(da))
    db += [0] * (width - len(db))
    steps, carry = [], 0
    for x, y in zip(da, db):
        s = x + y + carry
        steps.append(f"{x}+{y}" + ("+1" if carry else "") + f"={s}")
        carry = s // 10
    return steps


def subtraction_steps(a: int, b: int) -> list[str]:
    """Column steps for ``a-b`` with ``a >= b`` (borrow format in the module docstring)."""
    if a < b:
        raise DataError(f"{a}-{b}: subtraction needs a >= b (negative results are not in the format)")
    da, db = _digits_lsd(a), _digits_lsd(b)
    db += [0] * (len(da) - len(db))
    steps, borrow = [], 0
    for x, y in zip(da, db):
        d = x - y - borrow
        top = str(x)
        if d < 0:
            top, d = f"1{x}", d + 10
            next_borrow = 1
        else:
            next_borrow = 0
        steps.append(f"{top}-{y}" + ("-1" if borrow else "") + f"={d}")
        borrow = next_borrow
    return steps


def multiplication_steps(a: int, b: int) -> list[str]:
    """Partial products with place value, then their running sum (see module docstring)."""
    partials, steps = [], []
    for i, d in enumerate(_digits_lsd(b)):
        multiplier = d * 10**i
        shown = f"{d}{'0' * i}" if d else "0"
        steps.append(f"{a}*{shown}={a * multiplier}")
        partials.append(a * multiplier)
    total = partials[0]
    for p in partials[1:]:
        steps.append(f"{total}+{p}={total + p}")
        total += p
    return steps


_STEPS = {"+": addition_steps, "-": subtraction_steps, "*": multiplication_steps}


def apply_op(a: int, b: int, op: str) -> int:
    """The true result of ``a op b``."""
    if op == "+":
        return a + b
    if op == "-":
        return a - b
    if op == "*":
        return a * b
    raise DataError(f"unknown operator {op!r}; use one of {', '.join(OPS)}")


# --------------------------------------------------------------------------------------------
# Records
# --------------------------------------------------------------------------------------------

def make_example(a: int, b: int, op: str, cot: bool = True) -> dict:
    """One record: expression, operands, result, prompt/completion/text and n_digits."""
    result = apply_op(a, b, op)
    if result < 0:
        raise DataError(f"{a}{op}{b} is negative; the format covers a >= b for subtraction only")
    expression = f"{a}{op}{b}"
    prompt = f"{expression}="
    thought = f"{THINK_START}{' '.join(_STEPS[op](a, b))}{THINK_END}" if cot else ""
    completion = f"{thought}{result}{END}"
    return {
        "expression": expression,
        "a": a,
        "b": b,
        "op": op,
        "result": result,
        "prompt": prompt,
        "completion": completion,
        "text": prompt + completion,
        "n_digits": max(len(str(a)), len(str(b))),
    }


def count_tokens(text: str) -> int:
    """Number of tokens of ``text`` under the character tokenizer (a marker is one token)."""
    return len(_TOKEN_RE.findall(text))


def parse_completion(text: str) -> tuple[str, str]:
    """Split a completion into ``(thought, answer)``.

    ``thought`` is what lies between ``<think>`` and ``</think>`` ("" without a think block);
    ``answer`` is what follows ``</think>`` (or the whole text without one) up to ``<end>``,
    stripped. An unfinished think block (no ``</think>``) has no answer: ``("...", "")``.
    A prompt echoed before ``<think>`` is ignored.
    """
    body = text.split(END, 1)[0]
    if THINK_START in body or THINK_END in body:
        after_start = body.split(THINK_START, 1)[1] if THINK_START in body else body
        if THINK_END not in after_start:
            return after_start.strip(), ""
        thought, answer = after_start.split(THINK_END, 1)
        return thought.strip(), answer.strip()
    return "", body.strip()


def parse_expression(text: str) -> tuple[int, int, str]:
    """``"12+3="`` -> ``(12, 3, "+")``, the argument order of :func:`make_example`; raises
    DataError like :func:`validate_expression`."""
    prompt = validate_expression(text)
    m = _EXPR_RE.fullmatch(prompt)
    return int(m.group(1)), int(m.group(3)), m.group(2)


def validate_expression(text: str, *, max_length: int | None = None, ops: Iterable[str] = OPS,
                        max_digits: int | None = None) -> str:
    """Check a user's expression and return it as a prompt ending in ``=``.

    Accepted: ``<digits><op><digits>`` with op one of ``+ - *`` and an optional trailing ``=``
    (surrounding whitespace is ignored). ``max_length`` is the model's context in tokens: the
    full chain of thought for the expression must fit in it. Anything else raises
    :class:`DataError` with a message saying what to type instead.
    """
    if not isinstance(text, str):
        raise DataError(f"expected an expression as text, got {type(text).__name__}")
    s = text.strip()
    if not s:
        raise DataError("empty expression: type something like 12+34")
    bad = sorted(set(re.sub(r"[0-9+\-*=]", "", s)))
    if bad:
        raise DataError(f"{s!r}: only digits, + - * and a trailing = are allowed "
                        f"(found {' '.join(repr(c) for c in bad)})")
    m = _EXPR_RE.fullmatch(s)
    if not m:
        raise DataError(f"{s!r}: expected NUMBER OP NUMBER with an optional trailing =, e.g. 12+34")
    a_str, op, b_str = m.groups()
    ops = tuple(ops)
    if op not in ops:
        raise DataError(f"{s!r}: operator {op!r} is not supported here (supported: {' '.join(ops)})")
    for digits in (a_str, b_str):
        if len(digits) > 1 and digits[0] == "0":
            raise DataError(f"{s!r}: write numbers without leading zeros ({digits!r})")
        limit = min(max_digits or _HARD_MAX_DIGITS, _HARD_MAX_DIGITS)
        if len(digits) > limit:
            raise DataError(f"{s!r}: a number has {len(digits)} digits; at most {limit} are supported")
    prompt_tokens = len(a_str) + len(b_str) + 2
    if max_length is not None and prompt_tokens > max_length:
        raise DataError(f"{s!r}: the prompt alone takes {prompt_tokens} tokens but the model handles at most "
                        f"{max_length}; use fewer digits")
    a, b = int(a_str), int(b_str)
    if op == "-" and a < b:
        raise DataError(f"{s!r}: the result would be negative, which the format does not cover; "
                        f"put the larger number first ({b}-{a})")
    if max_length is not None:
        n = count_tokens(make_example(a, b, op, cot=True)["text"])
        if n > max_length:
            raise DataError(f"{s!r}: its chain of thought takes {n} tokens but the model handles at most "
                            f"{max_length}; use fewer digits")
    return f"{a_str}{op}{b_str}="


# --------------------------------------------------------------------------------------------
# Sampling without replacement
# --------------------------------------------------------------------------------------------

def _number_range(n_digits: int) -> tuple[int, int]:
    """Smallest and largest number with ``n_digits`` digits (1 digit includes 0)."""
    return (0 if n_digits == 1 else 10 ** (n_digits - 1)), 10**n_digits - 1


class _Cell:
    """All expressions with one operator and one pair of operand digit counts.

    Items are numbered 0..size-1 and drawn without replacement: by rejection while less than half
    is used, then from an explicit shuffled list of what is left, so exhausting a cell costs
    O(size) and never loops.
    """

    def __init__(self, op: str, da: int, db: int, exclude: set[str]):
        self.op, self.da, self.db = op, da, db
        self.lo_a, hi_a = _number_range(da)
        self.lo_b, hi_b = _number_range(db)
        self.na, self.nb = hi_a - self.lo_a + 1, hi_b - self.lo_b + 1
        # Subtraction cells with equal digit counts hold only the pairs with a >= b (a triangle).
        self.triangle = op == "-" and da == db
        self.size = self.na * (self.na + 1) // 2 if self.triangle else self.na * self.nb
        self.used: set[int] = set()
        self.remaining: list[int] | None = None
        for expr in exclude:
            idx = self._index_of(expr)
            if idx is not None:
                self.used.add(idx)

    def pair(self, i: int) -> tuple[int, int]:
        if self.triangle:
            r = (math.isqrt(8 * i + 1) - 1) // 2
            c = i - r * (r + 1) // 2
            return self.lo_a + r, self.lo_b + c
        return self.lo_a + i // self.nb, self.lo_b + i % self.nb

    def _index_of(self, expr: str) -> int | None:
        m = _EXPR_RE.fullmatch(expr)
        if not m or m.group(2) != self.op:
            return None
        a, b = int(m.group(1)), int(m.group(3))
        ra, rb = a - self.lo_a, b - self.lo_b
        if not (0 <= ra < self.na and 0 <= rb < self.nb):
            return None
        if self.triangle:
            return ra * (ra + 1) // 2 + rb if rb <= ra else None
        return ra * self.nb + rb

    @property
    def left(self) -> int:
        return self.size - len(self.used) if self.remaining is None else len(self.remaining)

    def draw(self, rng: random.Random) -> tuple[int, int]:
        if self.remaining is None and 2 * len(self.used) >= self.size:
            self.remaining = [i for i in range(self.size) if i not in self.used]
            rng.shuffle(self.remaining)
        if self.remaining is not None:
            return self.pair(self.remaining.pop())
        while True:
            i = rng.randrange(self.size)
            if i not in self.used:
                self.used.add(i)
                return self.pair(i)


def _cell_key(op: str, da: int, db: int) -> tuple[str, int, int]:
    # a - b is written larger-first, so (da, db) and (db, da) are the same subtraction cell.
    return (op, max(da, db), min(da, db)) if op == "-" else (op, da, db)


def expression_space_size(min_digits: int, max_digits: int, ops: Sequence[str]) -> int:
    """How many distinct expressions the generator can produce for these settings."""
    keys = {_cell_key(op, da, db) for op in ops
            for da in range(min_digits, max_digits + 1) for db in range(min_digits, max_digits + 1)}
    return sum(_Cell(*k, exclude=set()).size for k in keys)


def _check_settings(min_digits: int, max_digits: int, ops: Sequence[str]) -> None:
    if not 1 <= min_digits <= max_digits:
        raise DataError(f"need 1 <= min_digits <= max_digits, got {min_digits}..{max_digits}")
    if not ops:
        raise DataError("ops is empty: give at least one of + - *")
    unknown = [op for op in ops if op not in OPS]
    if unknown:
        raise DataError(f"unknown operator(s) {unknown}; use a subset of {list(OPS)}")


def sample_expressions(n: int, *, min_digits: int = 1, max_digits: int = 3,
                       ops: Sequence[str] = ("+",), seed: int = 0,
                       exclude: Iterable[str] = ()) -> list[tuple[int, int, str]]:
    """``n`` distinct ``(a, b, op)`` triples, none of them in ``exclude`` (expressions like "1+2").

    Operator and each operand's digit count are drawn uniformly, then the numbers; a subtraction
    puts the larger operand first. Raises :class:`DataError` when fewer than ``n`` expressions
    exist.
    """
    _check_settings(min_digits, max_digits, ops)
    ops = list(dict.fromkeys(ops))
    exclude = set(exclude)
    rng = random.Random(seed)
    cells: dict[tuple[str, int, int], _Cell] = {}
    for op in ops:
        for da in range(min_digits, max_digits + 1):
            for db in range(min_digits, max_digits + 1):
                key = _cell_key(op, da, db)
                if key not in cells:
                    cells[key] = _Cell(*key, exclude=exclude)
    available = sum(c.left for c in cells.values())
    if n > available:
        raise DataError(f"asked for {n} distinct expressions but only {available} exist with "
                        f"{min_digits}..{max_digits} digits and ops {''.join(ops)} (after exclusions); "
                        f"lower n_train/n_val/n_test or widen the digit range")
    out: list[tuple[int, int, str]] = []
    digit_counts = range(min_digits, max_digits + 1)
    while len(out) < n:
        op = rng.choice(ops)
        cell = cells[_cell_key(op, rng.choice(digit_counts), rng.choice(digit_counts))]
        if cell.left == 0:
            continue  # exhausted; the others still hold >= n - len(out) expressions
        a, b = cell.draw(rng)
        if op == "-" and a < b:
            a, b = b, a
        out.append((a, b, op))
    return out


def generate_examples(n: int, *, min_digits: int = 1, max_digits: int = 3,
                      ops: Sequence[str] = ("+",), cot: bool = True, seed: int = 0,
                      exclude: Iterable[str] = ()) -> list[dict]:
    """``n`` distinct example records (see :func:`make_example`)."""
    triples = sample_expressions(n, min_digits=min_digits, max_digits=max_digits, ops=ops,
                                 seed=seed, exclude=exclude)
    return [make_example(a, b, op, cot=cot) for a, b, op in triples]


def generate_splits(n_train: int, n_val: int, n_test: int, *, min_digits: int = 1,
                    max_digits: int = 3, ops: Sequence[str] = ("+",), cot: bool = True,
                    seed: int = 0, exclude: Iterable[str] = ()) -> dict[str, list[dict]]:
    """``{"train", "val", "test"}`` record lists that share no expression.

    Drawn as one pool and shuffled before dealing, so that a small cell exhausted early (such as
    1-digit + 1-digit) is spread over all splits in proportion instead of landing in train only.
    """
    for name, value in (("n_train", n_train), ("n_val", n_val), ("n_test", n_test)):
        if value < 0:
            raise DataError(f"{name} must be >= 0, got {value}")
    pool = generate_examples(n_train + n_val + n_test, min_digits=min_digits, max_digits=max_digits,
                             ops=ops, cot=cot, seed=seed, exclude=exclude)
    random.Random(seed + 1).shuffle(pool)
    return {"train": pool[:n_train], "val": pool[n_train:n_train + n_val],
            "test": pool[n_train + n_val:]}


def generate_length_sets(lengths: Iterable[int], n_per_length: int, *, ops: Sequence[str] = ("+",),
                         cot: bool = True, seed: int = 0) -> list[dict]:
    """``n_per_length`` examples for each operand length in ``lengths`` (both operands that long).

    For extrapolation tests beyond the training range: with both operands longer than any
    training operand, no expression can repeat one seen in training.
    """
    records: list[dict] = []
    for i, length in enumerate(lengths):
        records += generate_examples(n_per_length, min_digits=length, max_digits=length, ops=ops,
                                     cot=cot, seed=seed + 1000 * (i + 1))
    return records


def check_fits(records: Iterable[dict], max_length: int, what: str = "examples") -> int:
    """Longest ``text`` in tokens; raises DataError when it exceeds ``max_length``."""
    longest = max((count_tokens(r["text"]) for r in records), default=0)
    if longest > max_length:
        raise DataError(f"the longest of the {what} takes {longest} tokens but max_length is {max_length}; "
                        f"raise max_length or lower max_digits (multiplication traces grow fastest)")
    return longest


# --------------------------------------------------------------------------------------------
# JSONL
# --------------------------------------------------------------------------------------------

def save_jsonl(records: Iterable[dict], path: str | Path) -> Path:
    """Write one JSON object per line (creating the folder)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as f:
        for r in records:
            f.write(json.dumps(r) + "\n")
    return path


def load_jsonl(path: str | Path) -> list[dict]:
    """Read a JSONL file written by :func:`save_jsonl`."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: data file not found; generate it first")
    records = []
    with path.open() as f:
        for lineno, line in enumerate(f, 1):
            if line.strip():
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError as err:
                    raise DataError(f"{path}:{lineno}: not valid JSON ({err.msg})") from None
    return records
