"""Evaluation records from a spec (arithmetic:1-3:+) or a JSONL file."""

import pytest

from mathkit.data.arithmetic.generation import generate_examples
from mathkit.data.arithmetic.loading import load_arithmetic_records, parse_arithmetic_spec
from mathkit.data.arithmetic.sampling import split_of
from mathkit.errors import DataError
from mathkit.jsonl import write_jsonl


@pytest.mark.parametrize("spec, expected", [
    ("arithmetic", {"min_digits": 1, "max_digits": 3, "ops": ("+",)}),
    ("arithmetic:2-4", {"min_digits": 2, "max_digits": 4, "ops": ("+",)}),
    ("arithmetic:1-2:+*", {"min_digits": 1, "max_digits": 2, "ops": ("+", "*")}),
    ("arithmetic:+-", {"min_digits": 1, "max_digits": 3, "ops": ("+", "-")}),
    ("arithmetic:1-3:/", None),
    ("gsm8k", None),
    ("data/test.jsonl", None),
])
def test_parse_spec(spec, expected):
    assert parse_arithmetic_spec(spec) == expected


def test_spec_draws_test_bucket_records():
    records = load_arithmetic_records("arithmetic:1-2:+*", n=40, seed=3)
    assert len(records) == 40 and {r["op"] for r in records} == {"+", "*"}
    assert all(r["n_digits"] <= 2 and split_of(r["expression"]) == "test" for r in records)
    assert load_arithmetic_records("arithmetic:1-2:+*", n=40, seed=3) == records
    assert len(load_arithmetic_records("arithmetic")) == 500
    with pytest.raises(DataError, match="min_digits <= max_digits"):
        load_arithmetic_records("arithmetic:3-1")


def test_file_records_subsampled_in_order(tmp_path):
    records = generate_examples(30, seed=1)
    path = write_jsonl(records, tmp_path / "test.jsonl")
    assert load_arithmetic_records(path) == records
    some = load_arithmetic_records(str(path), n=10, seed=2)
    assert len(some) == 10 and all(r in records for r in some)
    assert [records.index(r) for r in some] == sorted(records.index(r) for r in some)


def test_bad_files(tmp_path):
    with pytest.raises(DataError, match="arithmetic records come from"):
        load_arithmetic_records(tmp_path / "missing.jsonl")
    with pytest.raises(DataError, match="arithmetic records come from"):
        load_arithmetic_records("gsm8k")
    other = write_jsonl([{"problem": "1+1", "answer": "2"}], tmp_path / "other.jsonl")
    with pytest.raises(DataError, match="no arithmetic records"):
        load_arithmetic_records(other)
