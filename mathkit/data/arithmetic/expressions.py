"""A user's expression (``"12+34"``, ``"12+34="``) checked and turned into a prompt or its operands.

The solve/chat commands read what a person typed; every way it can be wrong gets a message that
says what to type instead (:class:`mathkit.errors.DataError`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from mathkit.data.arithmetic.records import count_tokens, make_example
from mathkit.data.arithmetic.steps import OPS
from mathkit.errors import DataError

_EXPR_RE = re.compile(r"(\d+)([+\-*])(\d+)=?")
_HARD_MAX_DIGITS = 1000  # user input beyond this is a mistake (and Python caps int() at 4300 digits)


def parse_expression(text: str) -> tuple[int, int, str]:
    """``"12+3="`` -> ``(12, 3, "+")``, the argument order of
    :func:`mathkit.data.arithmetic.records.make_example`; raises DataError like :func:`validate_expression`."""
    prompt = validate_expression(text)
    m = _EXPR_RE.fullmatch(prompt)
    return int(m.group(1)), int(m.group(3)), m.group(2)


def _check_characters(s: str) -> tuple[str, str, str]:
    """The ``(a, op, b)`` texts of a stripped, non-empty expression; DataError for anything else."""
    bad = sorted(set(re.sub(r"[0-9+\-*=]", "", s)))
    if bad:
        raise DataError(f"{s!r}: only digits, + - * and a trailing = are allowed "
                        f"(found {' '.join(repr(c) for c in bad)})")
    m = _EXPR_RE.fullmatch(s)
    if not m:
        raise DataError(f"{s!r}: expected NUMBER OP NUMBER with an optional trailing =, e.g. 12+34")
    return m.group(1), m.group(2), m.group(3)


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
    a_str, op, b_str = _check_characters(s)
    ops = tuple(ops)
    if op not in ops:
        raise DataError(f"{s!r}: operator {op!r} is not supported here (supported: {' '.join(ops)})")
    limit = min(max_digits or _HARD_MAX_DIGITS, _HARD_MAX_DIGITS)
    for digits in (a_str, b_str):
        if len(digits) > 1 and digits[0] == "0":
            raise DataError(f"{s!r}: write numbers without leading zeros ({digits!r})")
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
