"""One example's record and text format, parsing a completion back, token counts."""

import pytest

from mathkit.data.arithmetic.records import check_fits, count_tokens, make_example, parse_completion
from mathkit.errors import DataError


def test_issue_examples():
    assert make_example(658, 189, "+")["text"] == "658+189=<think>8+9=17 5+8+1=14 6+1+1=8</think>847<end>"
    assert make_example(3, 5, "+", cot=False)["text"] == "3+5=8<end>"
    assert make_example(100, 1, "-")["completion"] == "<think>10-1=9 10-0-1=9 1-0-1=0</think>99<end>"
    assert make_example(7, 7, "-")["completion"] == "<think>7-7=0</think>0<end>"


def test_single_digit_pairs_have_no_leading_zero():
    for x in range(10):
        for y in range(10):
            ex = make_example(x, y, "+")
            assert ex["completion"] == f"<think>{x}+{y}={x + y}</think>{x + y}<end>"
    assert parse_completion(make_example(1, 0, "+")["completion"]) == ("1+0=1", "1")


def test_record_fields():
    ex = make_example(658, 89, "+")
    assert ex["prompt"] == "658+89=" and ex["expression"] == "658+89"
    assert ex["text"] == ex["prompt"] + ex["completion"] and ex["completion"].endswith("<end>")
    assert ex["n_digits"] == 3 and ex["a"] == 658 and ex["b"] == 89 and ex["op"] == "+" and ex["result"] == 747
    with pytest.raises(DataError, match="negative"):
        make_example(3, 5, "-")


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


def test_count_tokens():
    assert count_tokens("12+3=<think>2+3=5 1+0=1</think>15<end>") == 5 + 1 + 11 + 1 + 2 + 1


def test_check_fits():
    records = [make_example(99999, 99999, "+"), make_example(1, 2, "+")]
    longest = check_fits(records, 128)
    assert longest == count_tokens(records[0]["text"])
    with pytest.raises(DataError, match="max_length"):
        check_fits(records, longest - 1)
    assert check_fits([], 8) == 0
