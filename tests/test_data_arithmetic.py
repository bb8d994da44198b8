import random
import re

import pytest

from mathkit.data.arithmetic import (
    addition_steps,
    count_tokens,
    expression_space_size,
    check_fits,
    generate_examples,
    generate_length_sets,
    generate_splits,
    load_jsonl,
    make_example,
    multiplication_steps,
    parse_completion,
    parse_expression,
    sample_expressions,
    save_jsonl,
    subtraction_steps,
    validate_expression,
)
from mathkit.errors import DataError, MathkitError


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


# -- addition -------------------------------------------------------------------------------

def test_issue_examples():
    assert make_example(658, 189, "+")["text"] == "658+189=<think>8+9=17 5+8+1=14 6+1+1=8</think>847<end>"
    assert addition_steps(658, 9) == ["8+9=17", "5+0+1=6", "6+0=6"]
    assert make_example(3, 5, "+", cot=False)["text"] == "3+5=8<end>"


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


def test_single_digit_pairs_all_correct():
    for x in range(10):
        for y in range(10):
            ex = make_example(x, y, "+")
            assert ex["completion"] == f"<think>{x}+{y}={x + y}</think>{x + y}<end>"


def test_carry_chains():
    assert addition_steps(999, 1) == ["9+1=10", "9+0+1=10", "9+0+1=10"]
    assert make_example(999, 1, "+")["result"] == 1000
    assert parse_completion(make_example(999, 1, "+")["completion"]) == ("9+1=10 9+0+1=10 9+0+1=10", "1000")
    assert addition_steps(99, 21) == ["9+1=10", "9+2+1=12"]
    assert addition_steps(1, 99999) == ["1+9=10", "0+9+1=10", "0+9+1=10", "0+9+1=10", "0+9+1=10"]


def test_random_additions_replay_and_answer():
    rng = random.Random(1)
    for _ in range(3000):
        a, b = rng.randrange(10**6), rng.randrange(10**6)
        ex = make_example(a, b, "+")
        thought, answer = parse_completion(ex["completion"])
        assert int(answer) == a + b == ex["result"]
        assert replay_addition(thought.split(" ")) == a + b


# -- subtraction and multiplication -----------------------------------------------------------

def test_subtraction_borrow_format():
    assert subtraction_steps(52, 17) == ["12-7=5", "5-1-1=3"]
    assert subtraction_steps(100, 1) == ["10-1=9", "10-0-1=9", "1-0-1=0"]
    assert make_example(100, 1, "-")["completion"] == "<think>10-1=9 10-0-1=9 1-0-1=0</think>99<end>"
    assert make_example(7, 7, "-")["completion"] == "<think>7-7=0</think>0<end>"
    with pytest.raises(DataError, match="a >= b"):
        subtraction_steps(3, 5)


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


def test_record_fields():
    ex = make_example(658, 89, "+")
    assert ex["prompt"] == "658+89=" and ex["expression"] == "658+89"
    assert ex["text"] == ex["prompt"] + ex["completion"] and ex["completion"].endswith("<end>")
    assert ex["n_digits"] == 3 and ex["a"] == 658 and ex["b"] == 89 and ex["op"] == "+"


# -- sampling ---------------------------------------------------------------------------------

def test_splits_disjoint_and_deterministic():
    splits = generate_splits(3000, 500, 1000, min_digits=1, max_digits=3, ops=("+", "-", "*"), seed=7)
    sets = {k: {r["expression"] for r in v} for k, v in splits.items()}
    assert [len(v) for v in splits.values()] == [3000, 500, 1000]
    assert all(len(sets[k]) == len(splits[k]) for k in sets)  # unique inside each split
    assert not sets["train"] & sets["val"] and not sets["train"] & sets["test"] and not sets["val"] & sets["test"]
    again = generate_splits(3000, 500, 1000, min_digits=1, max_digits=3, ops=("+", "-", "*"), seed=7)
    assert again == splits
    other = generate_splits(3000, 500, 1000, min_digits=1, max_digits=3, ops=("+", "-", "*"), seed=8)
    assert other["test"] != splits["test"]
    for records in splits.values():
        for r in records:
            assert r["result"] >= 0


def test_digit_counts_uniform_per_operand():
    ex = generate_examples(9000, min_digits=1, max_digits=3, seed=0)
    counts = {d: sum(len(str(r["a"])) == d for r in ex) for d in (1, 2, 3)}
    for d in (2, 3):  # 1-digit a + 1-digit b has only 100 expressions: the rest spill over
        assert 2700 < counts[d] < 3600, counts
    assert counts[1] > 2000
    assert all(1 <= len(str(r["b"])) <= 3 for r in ex)


def test_small_space_exhausted_without_looping():
    assert expression_space_size(1, 1, ("+",)) == 100
    ex = generate_examples(100, min_digits=1, max_digits=1, seed=0)
    assert {r["expression"] for r in ex} == {f"{a}+{b}" for a in range(10) for b in range(10)}
    assert expression_space_size(1, 1, ("-",)) == 55
    ex = generate_examples(55, min_digits=1, max_digits=1, ops=("-",), seed=0)
    assert len({r["expression"] for r in ex}) == 55
    with pytest.raises(DataError, match="only 100"):
        generate_splits(80, 10, 11, min_digits=1, max_digits=1)


def test_space_size_matches_enumeration():
    for ops in (("+",), ("-",), ("+", "-", "*")):
        n = expression_space_size(1, 2, ops)
        ex = generate_examples(n, min_digits=1, max_digits=2, ops=ops, seed=1)
        assert len({r["expression"] for r in ex}) == n


def test_exclude():
    train = generate_examples(90, min_digits=1, max_digits=1, seed=0)
    rest = generate_examples(10, min_digits=1, max_digits=1, seed=1, exclude=[r["expression"] for r in train])
    assert not {r["expression"] for r in rest} & {r["expression"] for r in train}
    with pytest.raises(DataError):
        generate_examples(11, min_digits=1, max_digits=1, seed=1, exclude=[r["expression"] for r in train])


def test_does_not_touch_global_random():
    random.seed(123)
    before = random.random()
    random.seed(123)
    generate_examples(50, seed=0)
    assert random.random() == before


@pytest.mark.parametrize("kwargs", [dict(min_digits=0), dict(min_digits=3, max_digits=2), dict(ops=("/",)), dict(ops=())])
def test_bad_settings(kwargs):
    with pytest.raises(DataError):
        sample_expressions(5, **kwargs)


def test_jsonl_round_trip(tmp_path):
    ex = generate_examples(20, seed=0)
    path = save_jsonl(ex, tmp_path / "data" / "train.jsonl")
    assert load_jsonl(path) == ex
    with pytest.raises(DataError, match="not found"):
        load_jsonl(tmp_path / "missing.jsonl")


# -- parsing and validation -------------------------------------------------------------------

@pytest.mark.parametrize("text, expected", [
    ("<think>8+9=17</think>17<end>", ("8+9=17", "17")),
    ("8<end>", ("", "8")),
    ("8", ("", "8")),
    ("<think>8+9=17 5+", ("8+9=17 5+", "")),
    ("<think>1+1=2</think>2<end><pad><pad>", ("1+1=2", "2")),
    ("3+5=<think>3+5=8</think>8<end>", ("3+5=8", "8")),
    ("", ("", "")),
])
def test_parse_completion(text, expected):
    assert parse_completion(text) == expected


def test_validate_expression_accepts():
    assert validate_expression("12+34") == "12+34="
    assert validate_expression("  12+34= ") == "12+34="
    assert validate_expression("0*7=") == "0*7="
    assert validate_expression("9-3") == "9-3="
    assert parse_expression("12*3") == (12, 3, "*")


@pytest.mark.parametrize("text, message", [
    ("", "empty"),
    ("   ", "empty"),
    ("12+ab", "only digits"),
    ("1/2", "only digits"),
    ("12 + 3", "only digits"),
    ("12+", "expected NUMBER OP NUMBER"),
    ("+3", "expected NUMBER OP NUMBER"),
    ("1+2+3", "expected NUMBER OP NUMBER"),
    ("1+2==", "expected NUMBER OP NUMBER"),
    ("012+3", "leading zeros"),
    ("3-5", "negative"),
])
def test_validate_expression_rejects(text, message):
    with pytest.raises(MathkitError, match=message):
        validate_expression(text)


def test_validate_expression_limits():
    with pytest.raises(DataError, match="at most 3"):
        validate_expression("1234+1", max_digits=3)
    with pytest.raises(DataError, match="not supported"):
        validate_expression("3*4", ops=("+",))
    n = count_tokens(make_example(123456, 654321, "+")["text"])
    assert validate_expression("123456+654321", max_length=n) == "123456+654321="
    with pytest.raises(DataError, match="tokens"):
        validate_expression("123456+654321", max_length=n - 1)
    with pytest.raises(DataError, match="prompt alone takes 202 tokens"):
        validate_expression("9" * 100 + "*" + "9" * 100, max_length=128)
    with pytest.raises(DataError, match="at most 1000"):
        validate_expression("9" * 5000 + "+1")


def test_count_tokens():
    assert count_tokens("12+3=<think>2+3=5 1+0=1</think>15<end>") == 5 + 1 + 11 + 1 + 2 + 1


def test_length_sets_and_fit():
    ood = generate_length_sets([4, 5], 30, ops=("+", "-"), seed=0)
    assert len(ood) == 60 and len({r["expression"] for r in ood}) == 60
    assert sorted({r["n_digits"] for r in ood}) == [4, 5]
    assert all(len(str(r["a"])) == len(str(r["b"])) == r["n_digits"] for r in ood)
    longest = check_fits(ood, 128)
    assert longest == max(count_tokens(r["text"]) for r in ood)
    with pytest.raises(DataError, match="max_length"):
        check_fits(ood, longest - 1)
