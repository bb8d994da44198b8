"""One arithmetic example as a record, its text format, and the length of that text in tokens.

The format follows the math-llm seed: the prompt is the expression with ``=``, the completion is an
optional ``<think>...</think>`` trace (:mod:`mathkit.data.arithmetic.steps`), the answer, and
``<end>``::

    658+189=<think>8+9=17 5+8+1=14 6+1+1=8</think>847<end>      (cot=True)
    3+5=8<end>                                                   (cot=False)
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from mathkit.data.arithmetic.steps import STEPS, apply_op
from mathkit.data.markers import END, THINK_END, THINK_START
from mathkit.errors import DataError

# One token per special marker, one per other character: the count the character tokenizer makes.
_TOKEN_RE = re.compile(r"<think>|</think>|<end>|<pad>|<unk>|.", re.S)


def make_example(a: int, b: int, op: str, cot: bool = True) -> dict:
    """One record: expression, operands, result, prompt/completion/text and n_digits (the longer operand)."""
    result = apply_op(a, b, op)
    if result < 0:
        raise DataError(f"{a}{op}{b} is negative; the format covers a >= b for subtraction only")
    expression = f"{a}{op}{b}"
    prompt = f"{expression}="
    thought = f"{THINK_START}{' '.join(STEPS[op](a, b))}{THINK_END}" if cot else ""
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


def count_tokens(text: str) -> int:
    """Number of tokens of ``text`` under the character tokenizer (a marker is one token)."""
    return len(_TOKEN_RE.findall(text))


def check_fits(records: Iterable[dict], max_length: int, what: str = "examples") -> int:
    """Longest ``text`` in tokens; raises DataError when it exceeds ``max_length``."""
    longest = max((count_tokens(r["text"]) for r in records), default=0)
    if longest > max_length:
        raise DataError(f"the longest of the {what} takes {longest} tokens but max_length is {max_length}; "
                        f"raise max_length or lower max_digits (multiplication traces grow fastest)")
    return longest
