"""How an arithmetic example is written: the formats a length-generalization study compares.

The same expression ``35+17`` in each format (prompt | completion)::

    cot          35+17=  | <think>5+7=12 3+1+1=5</think>52<end>   per-column steps (notebook 01)
    plain        35+17=  | 52<end>                                 the answer, nothing else
    reversed     35+17=  | 25<end>                                 answer digits least significant first
    index_hints  b3a5+b1a7= | b5a2<end>                            every digit after its place letter

*Reversed* answers let the model write the units digit first, the order in which carries are
computed (Lee et al. 2023, "Teaching arithmetic to small transformers"). *Index hints* follow
Zhou et al. 2023 ("What algorithms can transformers learn?", arXiv:2310.16028): each digit is
preceded by a letter naming its position, so that finding the two digits of one column is a
match on a token rather than a count of positions. Here the letter names the *place value*
(``a`` = units, ``b`` = tens, ...), in operands and answer alike, so that operands of different
lengths still share a letter per column; the digits stay in their usual order. 26 letters cover
numbers of up to 26 digits.

Every record is :func:`mathkit.data.arithmetic.records.make_example`'s with its ``prompt``,
``completion`` and ``text`` written in the format, plus ``format`` and ``answer`` (the answer as
the completion writes it). :func:`expected_answer` is what a scorer compares a generated answer
with, exactly: a reversed ``52`` written as ``52`` is wrong, and so is a hinted answer with a
wrong letter.
"""

from __future__ import annotations

from collections.abc import Iterable

from mathkit.data.arithmetic.records import make_example
from mathkit.data.markers import END
from mathkit.errors import DataError

FORMATS = ("cot", "plain", "reversed", "index_hints")
HINT_LETTERS = "abcdefghijklmnopqrstuvwxyz"  # a = units, b = tens, ...


def hinted(number: int) -> str:
    """``35`` -> ``"b3a5"``: each digit after the letter of its place value (units = ``a``)."""
    digits = str(number)
    if number < 0 or len(digits) > len(HINT_LETTERS):
        raise DataError(f"index hints write numbers from 0 to {len(HINT_LETTERS)} digits, not {number}")
    width = len(digits)
    return "".join(f"{HINT_LETTERS[width - 1 - i]}{d}" for i, d in enumerate(digits))


def check_format(fmt: str) -> str:
    if fmt not in FORMATS:
        raise DataError(f"unknown arithmetic format {fmt!r}; use one of {', '.join(FORMATS)}")
    return fmt


def answer_text(result: int, fmt: str) -> str:
    """The answer ``result`` as format ``fmt`` writes it (before ``<end>``)."""
    check_format(fmt)
    if fmt == "reversed":
        return str(result)[::-1]
    if fmt == "index_hints":
        return hinted(result)
    return str(result)


def format_example(a: int, b: int, op: str, fmt: str) -> dict:
    """The record of ``a op b`` written in format ``fmt`` (see the module docstring)."""
    record = make_example(a, b, op, cot=check_format(fmt) == "cot")
    answer = answer_text(record["result"], fmt)
    if fmt in ("cot", "plain"):
        return {**record, "format": fmt, "answer": answer}
    prompt = f"{hinted(a)}{op}{hinted(b)}=" if fmt == "index_hints" else record["prompt"]
    completion = f"{answer}{END}"
    return {**record, "prompt": prompt, "completion": completion, "text": prompt + completion,
            "format": fmt, "answer": answer}


def format_records(records: Iterable[dict], fmt: str) -> list[dict]:
    """The same expressions (``a``, ``b``, ``op`` of each record) written in format ``fmt``."""
    return [format_example(int(r["a"]), int(r["b"]), r["op"], fmt) for r in records]


def expected_answer(record: dict) -> str:
    """The answer a completion must end with to be right: the record's format applied to its
    ``result`` (records without a ``format``, such as notebook 01's, write the plain number)."""
    return answer_text(int(record["result"]), record.get("format") or "plain")


def extra_tokens(formats: Iterable[str]) -> list[str]:
    """Characters the formats write that the character tokenizer lacks (the hint letters)."""
    return list(HINT_LETTERS) if "index_hints" in {check_format(f) for f in formats} else []
