import json

import pytest

from mathkit.errors import DataError
from mathkit.jsonl import append_jsonl, read_jsonl, write_jsonl


def test_round_trip_and_append(tmp_path):
    path = write_jsonl([{"a": 1}, {"b": "é"}], tmp_path / "sub" / "r.jsonl")
    append_jsonl({"c": 2.5}, path)
    assert read_jsonl(path) == [{"a": 1}, {"b": "é"}, {"c": 2.5}]


def test_write_is_atomic_on_failure(tmp_path):
    path = write_jsonl([{"a": 1}], tmp_path / "r.jsonl")

    def records():
        yield {"a": 2}
        raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError):
        write_jsonl(records(), path)
    assert read_jsonl(path) == [{"a": 1}]
    assert [p.name for p in tmp_path.iterdir()] == ["r.jsonl"]


def test_bad_line_and_missing_file_name_the_place(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps({"a": 1}) + "\n{oops\n")
    with pytest.raises(DataError, match=r"bad.jsonl:2"):
        read_jsonl(path)
    with pytest.raises(DataError, match="not found"):
        read_jsonl(tmp_path / "none.jsonl")
