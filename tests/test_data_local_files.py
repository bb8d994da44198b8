"""A user's own problems from JSON/JSONL/CSV/Parquet files or folders."""

import json

import pytest
from datasets import Dataset

from mathkit.data.local_files import load_local, looks_like_path
from mathkit.data.schema import COLUMNS
from mathkit.errors import DataError

ROWS = [{"question": "What is 2+3?", "final": "5", "topic": "add"},
        {"question": "What is 7*6?", "final": "42", "topic": "mul"}]


def _write(path, rows, kind):
    if kind == "jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    elif kind == "json":
        path.write_text(json.dumps(rows))
    elif kind == "csv":
        Dataset.from_list(rows).to_csv(str(path), index=False)
    else:
        Dataset.from_list(rows).to_parquet(str(path))
    return path


@pytest.mark.parametrize("kind", ["jsonl", "json", "csv", "parquet"])
def test_every_format_with_a_column_mapping(tmp_path, kind):
    path = _write(tmp_path / f"mine.{kind}", ROWS, kind)
    ds = load_local(path, columns={"problem": "question", "answer": "final", "category": "topic"})
    assert ds.column_names == list(COLUMNS)
    assert ds["problem"] == ["What is 2+3?", "What is 7*6?"]
    assert ds["answer"] == ["5", "42"] and ds["category"] == ["add", "mul"]
    assert ds["source"] == ["local:mine." + kind] * 2 and ds["id"] == ["mine/0", "mine/1"]


def test_aliases_and_gsm8k_style_answers(tmp_path):
    rows = [{"question": "Q?", "answer": "2+2=<<2+2=4>>4\n#### 4"}]
    ds = load_local(_write(tmp_path / "g.jsonl", rows, "jsonl"))
    assert ds[0]["solution"] == "2+2=<<2+2=4>>4" and ds[0]["answer"] == "4"
    boxed = [{"problem": "P", "solution": "so \\boxed{9}"}]
    assert load_local(_write(tmp_path / "b.jsonl", boxed, "jsonl"))[0]["answer"] == "9"


def test_numeric_and_missing_cells(tmp_path):
    rows = [{"problem": "a", "answer": 5.0}, {"problem": "b", "answer": 2.5}, {"problem": "c", "answer": None}]
    ds = load_local(_write(tmp_path / "n.csv", rows, "csv"))
    assert ds["answer"] == ["5", "2.5", ""]


def test_missing_required_column_names_the_columns_found(tmp_path):
    path = _write(tmp_path / "bad.jsonl", [{"text": "x", "label2": "y"}], "jsonl")
    with pytest.raises(DataError, match=r"columns found: \['label2', 'text'\]|columns found: \['text', 'label2'\]"):
        load_local(path)
    with pytest.raises(DataError, match=r"\{'problem': 'query'\} not in the file; columns found"):
        load_local(path, columns={"problem": "query", "answer": "text"})
    with pytest.raises(DataError, match="unknown unified name"):
        load_local(path, columns={"question": "text"})


def test_folders_pick_files_by_split(tmp_path):
    _write(tmp_path / "train.jsonl", ROWS, "jsonl")
    _write(tmp_path / "test.jsonl", ROWS[:1], "jsonl")
    cols = {"problem": "question", "answer": "final"}
    assert len(load_local(tmp_path, "train", cols)) == 2
    assert len(load_local(tmp_path, "test", cols)) == 1
    assert len(load_local(tmp_path, None, cols)) == 3
    with pytest.raises(DataError, match="no files for split 'validation'"):
        load_local(tmp_path, "validation", cols)


def test_unusable_paths(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        load_local(tmp_path / "nope.jsonl")
    (tmp_path / "notes.txt").write_text("hi")
    with pytest.raises(DataError, match="unsupported file type"):
        load_local(tmp_path / "notes.txt")
    with pytest.raises(DataError, match="no .* files in this folder"):
        load_local(tmp_path)
    _write(tmp_path / "a.jsonl", ROWS, "jsonl")
    _write(tmp_path / "b.csv", ROWS, "csv")
    with pytest.raises(DataError, match="mixed file types"):
        load_local(tmp_path)
    (tmp_path / "broken.json").write_text("{not json")
    with pytest.raises(DataError):
        load_local(tmp_path / "broken.json")


def test_looks_like_path(tmp_path):
    assert looks_like_path("data/problems.jsonl") and looks_like_path(str(tmp_path))
    assert not looks_like_path("gsm8k") and not looks_like_path("openai/gsm8k")
