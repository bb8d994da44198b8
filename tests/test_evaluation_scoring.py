"""Scorers plug into the one evaluator: a task of its own needs only a Scorer subclass."""

import pytest

from mathkit.evaluation.evaluator import evaluate_model
from mathkit.evaluation.metrics import accuracy_summary
from mathkit.evaluation.scoring import Scorer
from tests.test_evaluation_evaluator import OracleLM, tiny_tokenizer


class StartsWithScorer(Scorer):
    """A task of its own: is the reply's first word the expected one?"""

    name = "first_word"
    required_columns = ("question", "word")
    display_columns = ("id", "first", "correct")

    def prompt_fn(self, tokenizer, *, style, system_prompt):
        return lambda row: f"Q: {row['question']}\nA:"

    def default_max_new_tokens(self, tokenizer, rows):
        return 12

    def score(self, row, completion, finished):
        first = (completion.split() or [""])[0].strip(".")
        return {"first": first, "correct": first == row["word"], "completion": completion}

    def summarize(self, records):
        s = accuracy_summary(r["correct"] for r in records)
        return {**s, "by_word": {r["first"]: r["correct"] for r in records}}


def test_a_custom_scorer_gets_batching_records_and_generation_stats(tmp_path):
    tok = tiny_tokenizer()
    model = OracleLM(tok, {"colour of snow": "White.", "colour of coal": "Grey, mostly."})
    rows = [{"question": "colour of snow", "word": "White"}, {"question": "colour of coal", "word": "Black"}]
    result = evaluate_model(model, tok, rows, scorer=StartsWithScorer(), batch_size=1,
                            records_path=tmp_path / "r.jsonl", progress=False)
    assert [r["correct"] for r in result.records] == [True, False]
    assert result.summary["n"] == 2 and result.summary["accuracy"] == 0.5
    assert result.summary["settings"]["scorer"] == "first_word"
    assert result.summary["settings"]["max_new_tokens"] == 12 and model.calls == [1, 1]
    assert result.table(1) == [{"id": 0, "first": "White", "correct": True}]
    assert (tmp_path / "r.jsonl").is_file()


def test_the_scorer_names_the_columns_it_needs():
    from mathkit.errors import DataError

    tok = tiny_tokenizer()
    with pytest.raises(DataError, match="question"):
        evaluate_model(OracleLM(tok, {}), tok, [{"problem": "x", "answer": "1"}],
                       scorer=StartsWithScorer(), progress=False)
    with pytest.raises(NotImplementedError):
        Scorer().score({}, "", True)
