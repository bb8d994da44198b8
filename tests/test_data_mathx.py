"""MathX-shaped data: rows rendered with <think> reasoning, written to JSONL, streamed back as an
IterableDataset with columns unified, the first n taken with islice; the hub fails fast offline."""

import json

import pytest
from datasets import IterableDataset

from mathkit.data import mathx
from mathkit.data.schema import make_record
from mathkit.errors import DataError, HubUnavailableError

RECORDS = [
    make_record(id="gsm/1", source="gsm_symbolic", problem="Tom has 3 apples and buys 4. How many?",
                solution="3 + 4 = 7", answer="7", template="0001", category="gsm8k"),
    make_record(id="sympy/1", source="sympy_problems", problem="Solve $x^2 - x - 6 = 0$.",
                solution="Factor: (x - 3)(x + 2) = 0.", answer="$-2, 3$", category="algebra/quadratic"),
    make_record(id="gsm/2", source="gsm_symbolic", problem="Ann reads 5 pages a day for 6 days. Pages?",
                solution="5 * 6 = 30", answer="30", template="0002", category="gsm8k"),
]


def test_a_row_is_rendered_in_mathx_shape_with_think_reasoning_and_the_boxed_answer():
    row = mathx.to_mathx_row(RECORDS[1])
    assert list(row) == list(mathx.MATHX_COLUMNS)
    assert row["generated_solution"] == ("<think>\nFactor: (x - 3)(x + 2) = 0.\n</think>\n\n"
                                         "The final answer is $\\boxed{-2, 3}$.")
    assert row["expected_answer"] == "$-2, 3$"


def test_local_jsonl_streams_back_the_same_problems_solutions_and_answers(tmp_path):
    path = mathx.write_mathx_jsonl(RECORDS, tmp_path / "mathx.jsonl")
    assert [json.loads(line)["problem"] for line in path.read_text().splitlines()] == [r["problem"] for r in RECORDS]
    stream = mathx.open_stream(path, shuffle_buffer=0)
    assert isinstance(stream, IterableDataset)
    rows = mathx.load_mathx(path, n=3, shuffle_buffer=0)
    assert rows.column_names == list(RECORDS[0])
    assert rows["problem"] == [r["problem"] for r in RECORDS]
    assert rows["solution"] == [r["solution"] for r in RECORDS]  # the reasoning only, not the write-up
    assert rows["answer"] == [r["answer"] for r in RECORDS]
    assert set(rows["source"]) == {"local:mathx.jsonl"}


def test_islice_takes_the_first_n_rows_and_reads_no_further():
    read = []

    def stream():
        for i in range(1000):
            read.append(i)
            yield {"question": f"What is {i} + 1?", "generated_solution": f"<think>{i} + 1 = {i + 1}</think> "
                   f"So \\boxed{{{i + 1}}}", "expected_answer": str(i + 1)}

    rows = mathx.take(stream(), 4)
    assert rows["problem"] == [f"What is {i} + 1?" for i in range(4)]
    assert rows["solution"][2] == "2 + 1 = 3" and rows["answer"][3] == "4"
    assert read == [0, 1, 2, 3]


def test_shuffled_stream_is_deterministic_for_a_seed(tmp_path):
    many = [make_record(id=f"p{i}", source="x", problem=f"problem {i}", solution="s", answer=str(i))
            for i in range(30)]
    path = mathx.write_mathx_jsonl(many, tmp_path / "many.jsonl")
    first = mathx.load_mathx(path, n=10, seed=3, shuffle_buffer=30)["problem"]
    assert first == mathx.load_mathx(path, n=10, seed=3, shuffle_buffer=30)["problem"]
    assert first != [r["problem"] for r in many[:10]]


@pytest.mark.parametrize("row, problem", [
    ({"problem": "P?", "generated_solution": "s", "expected_answer": "1"}, "P?"),
    ({"question": "Q?", "generated_solution": "s", "expected_answer": "1"}, "Q?"),
    ({"question": "Q?", "solution": "s", "answer": "1", "extra": 5}, "Q?"),
])
def test_columns_are_unified(row, problem):
    assert mathx.unify_columns(row) == {"problem": problem, "generated_solution": "s", "expected_answer": "1"}


def test_a_missing_column_names_what_the_row_has():
    with pytest.raises(DataError, match="expected_answer.*it has \\['generated_solution', 'problem'\\]"):
        mathx.unify_columns({"problem": "P", "generated_solution": "s"})


@pytest.mark.parametrize("text, reasoning", [
    ("<think>\nstep 1\nstep 2\n</think>\n\nSo the answer is \\boxed{3}.", "step 1\nstep 2"),
    ("<think>a</think> middle <think>b</think> end", "a\n\nb"),
    ("no tags here, \\boxed{3}", "no tags here, \\boxed{3}"),
    ("<think>unclosed reasoning", "unclosed reasoning"),
])
def test_reasoning_is_what_think_holds(text, reasoning):
    assert mathx.reasoning(text) == reasoning


def test_rows_without_a_problem_are_skipped():
    rows = [{"problem": " ", "generated_solution": "s", "expected_answer": "1"},
            {"problem": "Real?", "generated_solution": "<think>r</think>", "expected_answer": "2"}]
    out = mathx.take(iter(rows), 1)
    assert out["problem"] == ["Real?"] and out["solution"] == ["r"]


def test_a_missing_local_file_and_a_bad_n_are_clear(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        mathx.open_stream(tmp_path / "absent.jsonl")
    with pytest.raises(DataError, match="positive"):
        mathx.take(iter([]), 0)


def test_hub_source_fails_fast_offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(HubUnavailableError, match="HF_HUB_OFFLINE"):
        mathx.open_stream(mathx.MATHX_REPO)
