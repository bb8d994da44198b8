"""Digit arithmetic as math problems in the unified columns (the ``arithmetic`` source of
:func:`mathkit.data.load_math_dataset`).

Each row is one expression such as ``658+189``:

- ``problem``: ``"What is 658+189?"`` (``style="question"``, default) or the bare prompt
  ``"658+189="`` (``style="bare"``), the format notebook 01's small model is trained on;
- ``solution``: the column-by-column chain of thought of :mod:`mathkit.data.arithmetic.steps`,
  one step per line, after a one-line description of the method;
- ``answer``: the result; ``category``: ``"arithmetic:+"``, ``"arithmetic:-"`` or ``"arithmetic:*"``.

Expressions are distinct, drawn by :func:`mathkit.data.arithmetic.sampling.sample_expressions`
from the bucket of ``split`` (``"train"``, ``"val"``, ``"test"``, or None for all), so splits
never share an expression whatever their seeds.
"""

from __future__ import annotations

from collections.abc import Sequence

from mathkit.data.arithmetic.records import make_example, parse_completion
from mathkit.data.arithmetic.sampling import sample_expressions
from mathkit.data.schema import make_record
from mathkit.errors import DataError

SOURCE = "arithmetic"
DEFAULT_N = 1000
STYLES = ("question", "bare")
_METHOD = {
    "+": "Add column by column from the last digit, carrying 1 when a column reaches 10:",
    "-": "Subtract column by column from the last digit, borrowing 1 when the top digit is smaller:",
    "*": "Multiply by each digit of the second number with its place value, then add the partial products:",
}


def problem_row(a: int, b: int, op: str, style: str = "question") -> dict[str, str]:
    """The unified row of ``a op b``."""
    ex = make_example(a, b, op, cot=True)
    thought, _ = parse_completion(ex["completion"])
    problem = f"What is {ex['expression']}?" if style == "question" else ex["prompt"]
    return make_record(
        id=f"{SOURCE}/{ex['expression']}", source=SOURCE, problem=problem,
        solution=_METHOD[op] + "\n" + "\n".join(thought.split(" ")), answer=str(ex["result"]),
        template="", category=f"arithmetic:{op}",
    )


def generate(n: int | None = None, seed: int = 0, split: str | None = None, *, min_digits: int = 1,
             max_digits: int = 3, ops: Sequence[str] = ("+", "-", "*"),
             style: str = "question") -> list[dict[str, str]]:
    """``n`` distinct arithmetic problems (default 1000) of the given split, in draw order."""
    if style not in STYLES:
        raise DataError(f"arithmetic style must be 'question' or 'bare', not {style!r}")
    triples = sample_expressions(DEFAULT_N if n is None else n, min_digits=min_digits, max_digits=max_digits,
                                 ops=ops, seed=seed, split=split)
    return [problem_row(a, b, op, style) for a, b, op in triples]
