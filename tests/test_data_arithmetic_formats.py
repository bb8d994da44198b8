"""Arithmetic formats: each writes the answer its own way, keeps the expression and operands, and
its text is tokenized one character per token with the hint letters added."""

import pytest

from mathkit.data.arithmetic import (FORMATS, answer_text, count_tokens, expected_answer, extra_tokens,
                                     format_example, format_records, generate_examples, hinted, make_example)
from mathkit.errors import DataError


def test_each_format_writes_35_plus_17_as_documented():
    texts = {fmt: format_example(35, 17, "+", fmt)["text"] for fmt in FORMATS}
    assert texts == {
        "cot": "35+17=<think>5+7=12 3+1+1=5</think>52<end>",
        "plain": "35+17=52<end>",
        "reversed": "35+17=25<end>",
        "index_hints": "b3a5+b1a7=b5a2<end>",
    }


@pytest.mark.parametrize("fmt", FORMATS)
def test_records_keep_the_expression_and_operands(fmt):
    r = format_example(658, 9, "+", fmt)
    assert (r["expression"], r["a"], r["b"], r["op"], r["result"], r["n_digits"]) == ("658+9", 658, 9, "+", 667, 3)
    assert r["format"] == fmt and r["text"] == r["prompt"] + r["completion"]
    assert r["completion"].endswith(r["answer"] + "<end>") and r["answer"] == expected_answer(r)


def test_hints_name_the_place_value_so_columns_match_across_lengths():
    assert hinted(7) == "a7" and hinted(0) == "a0" and hinted(123) == "c1b2a3"
    r = format_example(123, 45, "+", "index_hints")
    assert r["prompt"] == "c1b2a3+b4a5=" and r["answer"] == "c1b6a8"  # 3 and 5 both after 'a'
    assert answer_text(10**25, "index_hints").startswith("z1y0")
    with pytest.raises(DataError, match="26 digits"):
        hinted(10**26)


def test_reversed_answers_keep_trailing_zeros_as_leading_ones():
    assert answer_text(100, "reversed") == "001" and answer_text(0, "reversed") == "0"
    assert format_example(99, 1, "+", "reversed")["completion"] == "001<end>"


def test_expected_answer_of_records_without_a_format_is_the_number():
    assert expected_answer(make_example(658, 189, "+")) == "847"
    assert expected_answer(make_example(3, 4, "+", cot=False)) == "7"


def test_format_records_rewrites_the_same_expressions():
    base = generate_examples(30, min_digits=1, max_digits=3, seed=2)
    for fmt in FORMATS:
        out = format_records(base, fmt)
        assert [r["expression"] for r in out] == [r["expression"] for r in base]
        assert {r["format"] for r in out} == {fmt}
    assert [r["text"] for r in format_records(base, "cot")] == [r["text"] for r in base]


def test_unknown_format_is_refused():
    with pytest.raises(DataError, match="unknown arithmetic format 'backwards'"):
        format_example(1, 2, "+", "backwards")


def test_hint_letters_become_tokens_and_markers_stay_whole():
    from mathkit.models.char_tokenizer import build_char_tokenizer

    assert extra_tokens(["cot", "reversed"]) == []
    letters = extra_tokens(["cot", "index_hints"])
    assert letters == list("abcdefghijklmnopqrstuvwxyz")
    tok = build_char_tokenizer()
    tok.add_tokens(letters)
    text = format_example(123, 45, "+", "index_hints")["text"]
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert tok.unk_token_id not in ids and len(ids) == count_tokens(text)
    assert tok.convert_ids_to_tokens(ids)[-1] == "<end>"  # not '<', 'e', 'n', 'd', '>'
    assert tok.decode(ids, skip_special_tokens=False) == text
    cot = format_example(12, 5, "+", "cot")["text"]
    assert tok.decode(tok(cot, add_special_tokens=False)["input_ids"], skip_special_tokens=False) == cot
