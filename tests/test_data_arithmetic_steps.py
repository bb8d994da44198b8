"""Column steps of +, - and *: every step's own arithmetic, carries and borrows, replayed independently."""

import random
import re

import pytest

from mathkit.data.arithmetic.records import make_example, parse_completion
from mathkit.data.arithmetic.steps import addition_steps, apply_op, multiplication_steps, subtraction_steps
from mathkit.errors import DataError


def replay_addition(steps: list[str]) -> int:
    """Recompute a+b from its column steps, checking each step's own arithmetic and carry."""
    digits, carry = [], 0
    for step in steps:
        lhs, rhs = step.split("=")
        terms = [int(t) for t in lhs.split("+")]
        assert sum(terms) == int(rhs), step
        assert (terms[2:] == [1]) == bool(carry), f"carry mismatch in {step}"
        digits.append(int(rhs) % 10)
        carry = int(rhs) // 10
    return int("".join(map(str, ([carry] if carry else []) + digits[::-1])))


def replay_subtraction(steps: list[str]) -> int:
    digits, borrow = [], 0
    for step in steps:
        m = re.fullmatch(r"(1?\d)-(\d)(-1)?=(\d)", step)
        assert m, step
        top, y, b_in, d = int(m.group(1)), int(m.group(2)), bool(m.group(3)), int(m.group(4))
        assert b_in == bool(borrow)
        assert top - y - borrow == d
        digits.append(d)
        borrow = 1 if top >= 10 else 0
    assert borrow == 0
    return int("".join(map(str, digits[::-1])))


def test_addition_pads_the_shorter_operand():
    assert addition_steps(658, 189) == ["8+9=17", "5+8+1=14", "6+1+1=8"]
    assert addition_steps(658, 9) == ["8+9=17", "5+0+1=6", "6+0=6"]


@pytest.mark.parametrize("carry", [0, 1])
def test_every_digit_pair_column_step(carry):
    # 3-digit a and b (so the tens column always exists) whose units column produces the carry
    for x in range(10):
        for y in range(10):
            a, b = 100 + 10 * x + (9 if carry else 0), 100 + 10 * y + (1 if carry else 0)
            steps = addition_steps(a, b)
            s = x + y + carry
            assert steps[1] == (f"{x}+{y}+1={s}" if carry else f"{x}+{y}={s}")
            assert replay_addition(steps) == a + b


def test_carry_chains():
    assert addition_steps(999, 1) == ["9+1=10", "9+0+1=10", "9+0+1=10"]
    assert addition_steps(99, 21) == ["9+1=10", "9+2+1=12"]
    assert addition_steps(1, 99999) == ["1+9=10", "0+9+1=10", "0+9+1=10", "0+9+1=10", "0+9+1=10"]
    assert addition_steps(1, 0) == ["1+0=1"]


def test_random_additions_replay_and_answer():
    rng = random.Random(1)
    for _ in range(3000):
        a, b = rng.randrange(10**6), rng.randrange(10**6)
        ex = make_example(a, b, "+")
        thought, answer = parse_completion(ex["completion"])
        assert int(answer) == a + b == ex["result"]
        assert replay_addition(thought.split(" ")) == a + b


def test_subtraction_borrow_format():
    assert subtraction_steps(52, 17) == ["12-7=5", "5-1-1=3"]
    assert subtraction_steps(100, 1) == ["10-1=9", "10-0-1=9", "1-0-1=0"]
    assert subtraction_steps(7, 7) == ["7-7=0"]
    with pytest.raises(DataError, match="a >= b"):
        subtraction_steps(3, 5)


def test_random_subtractions():
    rng = random.Random(2)
    for _ in range(3000):
        a, b = sorted((rng.randrange(10**5), rng.randrange(10**5)), reverse=True)
        ex = make_example(a, b, "-")
        thought, answer = parse_completion(ex["completion"])
        assert int(answer) == a - b == ex["result"]
        assert answer == str(a - b)  # no leading zeros
        assert replay_subtraction(thought.split(" ")) == a - b


def test_multiplication_format_and_random():
    assert multiplication_steps(123, 45) == ["123*5=615", "123*40=4920", "615+4920=5535"]
    assert multiplication_steps(12, 305) == ["12*5=60", "12*0=0", "12*300=3600", "60+0=60", "60+3600=3660"]
    rng = random.Random(3)
    for _ in range(2000):
        a, b = rng.randrange(10**4), rng.randrange(10**4)
        ex = make_example(a, b, "*")
        assert int(parse_completion(ex["completion"])[1]) == a * b == ex["result"]


def test_apply_op():
    assert [apply_op(7, 3, op) for op in "+-*"] == [10, 4, 21]
    with pytest.raises(DataError, match="unknown operator"):
        apply_op(1, 2, "/")
