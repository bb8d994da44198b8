"""Digit arithmetic as math problems: :mod:`mathkit.data.arithmetic`'s generator in the unified columns.

Each row is one expression such as ``658+189``:

- ``problem``: ``"What is 658+189?"`` (``style="question"``, default) or the bare prompt
  ``"658+189="`` (``style="bare"``), the format notebook 01's small model is trained on;
- ``solution``: the generator's column-by-column chain of thought, one step per line, after a
  one-line description of the method;
- ``answer``: the result; ``category``: ``"arithmetic:+"``, ``"arithmetic:-"`` or ``"arithmetic:*"``.

Expressions are drawn without replacement by :func:`mathkit.data.arithmetic.sample_expressions`;
``split="test"`` keeps the expressions whose SHA-256 is 0 mod 5 and ``split="train"`` the others,
so the two never share an expression whatever their seeds.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from mathkit.data.schema import in_test_bucket, make_record
from mathkit.errors import DataError

SOURCE = "arithmetic"
DEFAULT_N = 1000
_METHOD = {
    "+": "Add column by column from the last digit, carrying 1 when a column reaches 10:",
    "-": "Subtract column by column from the last digit, borrowing 1 when the top digit is smaller:",
    "*": "Multiply by each digit of the second number with its place value, then add the partial products:",
}


def _row(a: int, b: int, op: str, style: str) -> dict[str, str]:
    from mathkit.data.arithmetic import make_example, parse_completion

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
    """``n`` distinct arithmetic problems (default 1000) of the given split, in generation order."""
    from mathkit.data.arithmetic import expression_space_size, sample_expressions

    if style not in ("question", "bare"):
        raise DataError(f"arithmetic style must be 'question' or 'bare', not {style!r}")
    if split not in (None, "train", "test"):
        raise DataError(f"arithmetic has splits 'train', 'test' or None, not {split!r}")
    n = DEFAULT_N if n is None else n
    space = expression_space_size(min_digits, max_digits, ops)
    share = {None: 1.0, "train": 0.8, "test": 0.2}[split]
    # Over-draw, keep this split's bucket, and draw more if the bucket came up short.
    draw = min(space, math.ceil(n / share * 1.2) + 20)
    while True:
        triples = sample_expressions(draw, min_digits=min_digits, max_digits=max_digits, ops=ops, seed=seed)
        kept = [t for t in triples if split is None or in_test_bucket(f"{t[0]}{t[2]}{t[1]}") == (split == "test")]
        if len(kept) >= n or draw == space:
            break
        draw = min(space, draw * 2)
    if len(kept) < n:
        raise DataError(f"only {len(kept)} distinct {split or 'all'} expressions exist with {min_digits}.."
                        f"{max_digits} digits and ops {''.join(ops)}; ask for fewer or widen the range")
    return [_row(a, b, op, style) for a, b, op in kept[:n]]
