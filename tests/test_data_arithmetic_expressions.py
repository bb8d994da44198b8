"""A user's expression: what is accepted, and the message for each way it can be wrong."""

import pytest

from mathkit.data.arithmetic.expressions import parse_expression, validate_expression
from mathkit.data.arithmetic.records import count_tokens, make_example
from mathkit.errors import DataError, MathkitError


def test_validate_expression_accepts():
    assert validate_expression("12+34") == "12+34="
    assert validate_expression("  12+34= ") == "12+34="
    assert validate_expression("0*7=") == "0*7="
    assert validate_expression("9-3") == "9-3="
    assert parse_expression("12*3") == (12, 3, "*")
    assert parse_expression("1+0=") == (1, 0, "+")


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
    with pytest.raises(DataError, match="expected an expression as text"):
        validate_expression(12)
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
