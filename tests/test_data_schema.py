"""Unified columns, deterministic subsampling, gold-answer helpers."""

import pytest

from mathkit.data import schema
from mathkit.errors import DataError


def test_make_record_fills_every_column_with_strings():
    rec = schema.make_record(id=3, source="s", problem="1+1?", answer=2.0)
    assert list(rec) == list(schema.COLUMNS)
    assert rec["answer"] == "2" and rec["id"] == "3" and rec["template"] == "" and rec["solution"] == ""


def test_make_record_refuses_unknown_columns_and_empty_problems():
    with pytest.raises(DataError, match="unknown column"):
        schema.make_record(problem="x", question="y")
    with pytest.raises(DataError, match="empty problem"):
        schema.make_record(problem="  ", id="a")


def test_to_dataset_has_fixed_string_features_even_when_empty():
    ds = schema.to_dataset([{"problem": "p", "answer": "1"}])
    assert ds.column_names == list(schema.COLUMNS)
    assert all(f.dtype == "string" for f in ds.features.values())
    empty = schema.to_dataset([])
    assert len(empty) == 0 and empty.column_names == list(schema.COLUMNS)


def test_check_columns_names_what_is_missing():
    from datasets import Dataset

    with pytest.raises(DataError, match="answer"):
        schema.check_columns(Dataset.from_dict({"problem": ["p"]}))


def test_subsample_is_deterministic_nested_and_sorted():
    a = schema.subsample_indices(1000, 100, seed=3)
    b = schema.subsample_indices(1000, 100, seed=3)
    big = schema.subsample_indices(1000, 300, seed=3)
    other = schema.subsample_indices(1000, 100, seed=4)
    assert a == b and a == sorted(a) and len(set(a)) == 100
    assert set(a) <= set(big)
    assert a != other
    assert schema.subsample_indices(5, None, 0) == [0, 1, 2, 3, 4]
    assert schema.subsample_indices(5, 50, 0) == [0, 1, 2, 3, 4]


def test_subsample_dataset():
    ds = schema.to_dataset([{"problem": f"p{i}", "id": str(i)} for i in range(20)])
    sub = schema.subsample(ds, 5, seed=1)
    assert len(sub) == 5 and sub["id"] == [str(i) for i in schema.subsample_indices(20, 5, 1)]
    assert schema.subsample(ds, None, 1) is ds


@pytest.mark.parametrize("text,reasoning,answer", [
    ("He has 3+4=<<3+4=7>>7 apples.\n#### 7", "He has 3+4=<<3+4=7>>7 apples.", "7"),
    ("Total 1,234.\n#### 1,234", "Total 1,234.", "1234"),
    ("no marker here", "no marker here", ""),
    ("a\n#### -0.5\n", "a", "-0.5"),
])
def test_split_hashes(text, reasoning, answer):
    assert schema.split_hashes(text) == (reasoning, answer)


def test_strip_calculator():
    assert schema.strip_calculator("3+4=<<3+4=7>>7 and 2*2=<<2*2=4>>4") == "3+4=7 and 2*2=4"


@pytest.mark.parametrize("text,expected", [
    ("so \\boxed{\\frac{1}{2}} and then \\boxed{x^{2}+1}", "x^{2}+1"),
    ("\\boxed {42}", "42"),
    ("\\fbox{7}", "7"),
    ("none", ""),
    ("cut \\boxed{1", ""),
])
def test_last_boxed(text, expected):
    assert schema.last_boxed(text) == expected


def test_split_answer_is():
    assert schema.split_answer_is("So 2+2=4.\nThe answer is: 4") == ("So 2+2=4.", "4")
    assert schema.split_answer_is("Thus x=3. The answer is 1,500.") == ("Thus x=3.", "1500")
    assert schema.split_answer_is("no answer") == ("no answer", "")


def test_number_text_and_think_tags():
    assert schema.number_text(" $1,000. ") == "1000"
    assert schema.number_text("x = 5") == "x = 5"
    assert schema.strip_think_tags("<think>\nstep\n</think>\nDone") == "step\n\nDone"


def test_in_test_bucket_is_stable_and_about_a_fifth():
    keys = [f"k{i}" for i in range(2000)]
    share = sum(schema.in_test_bucket(k) for k in keys) / len(keys)
    assert 0.15 < share < 0.25
    assert [schema.in_test_bucket(k) for k in keys[:50]] == [schema.in_test_bucket(k) for k in keys[:50]]
    assert all(schema.in_test_bucket(k) == (schema.hash_bucket(k, 5) == 0) for k in keys)
    assert schema.hash_bucket("12+3", 10) == int(__import__("hashlib").sha256(b"12+3").hexdigest(), 16) % 10


def test_as_text_for_missing_and_whole_numbers():
    assert [schema.as_text(v) for v in (None, float("nan"), 5.0, 2.5, 7, "x")] == ["", "", "5", "2.5", "7", "x"]


def test_split_and_option_checks_name_what_is_allowed():
    schema.check_split("gen", None)
    schema.check_split("gen", "test")
    with pytest.raises(DataError, match="gen has splits 'train', 'test' or None, not 'dev'"):
        schema.check_split("gen", "dev")
    schema.check_options("gen", {"kinds": 1}, ["kinds"])
    with pytest.raises(DataError, match=r"gen does not take option\(s\) \['a', 'b'\]; it takes none \(see x\)"):
        schema.check_options("gen", {"b": 1, "a": 2}, [], also="(see x)")
