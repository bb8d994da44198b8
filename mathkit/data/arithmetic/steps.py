"""The column-by-column steps of ``a+b``, ``a-b`` and ``a*b`` that the chain of thought writes out.

Digit columns go least significant first, one space between steps:

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
"""

from __future__ import annotations

from mathkit.errors import DataError

OPS = ("+", "-", "*")


def _digits_lsd(n: int) -> list[int]:
    """Digits of ``n`` least significant first (0 -> [0])."""
    return [int(c) for c in reversed(str(n))]


def addition_steps(a: int, b: int) -> list[str]:
    """Column steps for ``a+b`` (see the module docstring)."""
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
    """Partial products with place value, then their running sum (see the module docstring)."""
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


STEPS = {"+": addition_steps, "-": subtraction_steps, "*": multiplication_steps}


def apply_op(a: int, b: int, op: str) -> int:
    """The true result of ``a op b``."""
    if op == "+":
        return a + b
    if op == "-":
        return a - b
    if op == "*":
        return a * b
    raise DataError(f"unknown operator {op!r}; use one of {', '.join(OPS)}")
