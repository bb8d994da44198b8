"""The ablation runner: the grid, its data, one row per run, and resuming a grid without re-training."""

import json

import pytest

from mathkit.training import ablation
from mathkit.training.ablation import (RUNS_FILE, Run, build_data, grid, length_groups,
                                       read_rows, run_ablation, settings_fingerprint)
from mathkit.training.ablation_models import ModelRecipe

TRAINING = {"per_device_train_batch_size": 8, "per_device_eval_batch_size": 16, "learning_rate": 2.0e-3,
            "max_steps": 2, "warmup_steps": 0, "eval_steps": 1, "save_steps": 1, "logging_steps": 1}


def test_grid_puts_seeds_outermost():
    runs = grid(["rope", "nope"], ["reversed", "cot"], [0, 1])
    assert len(runs) == 8 and runs[0] == Run("rope", "reversed", 0) and runs[3] == Run("nope", "cot", 0)
    assert {r.seed for r in runs[:4]} == {0} and runs[0].run_id == "rope-reversed-seed0"


def test_data_share_expressions_across_formats_and_test_beyond_training():
    data = build_data(formats=["reversed", "index_hints"], max_digits=2, n_train=80, n_val=10, n_test=120,
                      test_seed=3)
    expr = lambda records: [r["expression"] for r in records]  # noqa: E731
    train0, val0 = data.train_val("reversed", 0)
    assert len(train0) == 80 and len(val0) == 10 and {r["format"] for r in val0} == {"reversed"}
    assert expr(data.train_val("index_hints", 0)[0]) == expr(train0)
    train1 = data.train_val("reversed", 1)[0]
    assert expr(train1) != expr(train0) and expr(data.train_val("reversed", 0)[0]) == expr(train0)
    assert expr(data.test["reversed"]) == expr(data.test["index_hints"])
    assert max(max(r["a"], r["b"]) for r in train0 + train1) < 100
    assert {r["n_digits"] for r in data.test["reversed"]} == {1, 2, 3, 4}
    assert not set(expr(train0 + train1 + val0)) & set(expr(data.test["reversed"])), "a test expression was trained on"
    assert {r["format"] for r in data.test["index_hints"]} == {"index_hints"}


def test_length_groups_split_by_the_longer_operand():
    records = [{"operand_lengths": "1x2", "correct": True}, {"operand_lengths": "3x1", "correct": False},
               {"operand_lengths": "4x2", "correct": True}, {"operand_lengths": "2x4", "correct": False}]
    groups = length_groups(records, 2)
    assert groups == {"in_distribution": [True], "beyond": [False, True, False], "at_2n": [True, False]}


def test_fingerprint_depends_on_every_setting():
    assert settings_fingerprint({"a": 1, "b": [1, 2]}) == settings_fingerprint({"b": [1, 2], "a": 1})
    assert settings_fingerprint({"a": 1}) != settings_fingerprint({"a": 2})


@pytest.fixture(scope="module")
def tokenizer():
    from mathkit.models.char_tokenizer import build_char_tokenizer

    return build_char_tokenizer(32)


@pytest.fixture(scope="module")
def small_data():
    return build_data(formats=["reversed"], max_digits=1, n_train=16, n_val=4, n_test=12, test_seed=0)


def run(tmp_path, tokenizer, data, runs, settings=None, **kw):
    return run_ablation(runs, data=data, recipe=ModelRecipe("small", 32), tokenizer=tokenizer, training=TRAINING,
                        folder=tmp_path, settings=settings or {"v": 1}, eval_batch_size=16, max_new_tokens=4,
                        progress=False, **kw)


def test_runs_become_rows_and_a_second_call_trains_nothing(tmp_path, tokenizer, small_data, monkeypatch):
    runs = grid(["rope", "nope"], ["reversed"], [0])
    rows = run(tmp_path, tokenizer, small_data, runs)
    assert [r["run_id"] for r in rows] == ["rope-reversed-seed0", "nope-reversed-seed0"]
    row = rows[0]
    assert row["train_steps"] == 2 and row["n_params"] > 0 and row["perplexity"] > 1
    n = len(small_data.test["reversed"])
    assert row["overall"]["n"] == n == row["in_distribution"]["n"] + row["beyond"]["n"]
    assert row["at_2n"]["n"] == sum(r["n_digits"] == 2 for r in small_data.test["reversed"])
    assert set(row["by_length"]) == {"1", "2"} and row["thought_text"] is None and row["thought_match"] is None
    assert (tmp_path / "rope-reversed-seed0" / "records.jsonl").is_file()
    assert not list((tmp_path / "rope-reversed-seed0").glob("checkpoint-*")), "checkpoints were kept"
    json.dumps(rows)  # plain numbers only

    def no_training(*args, **kwargs):
        raise AssertionError("a finished run was trained again")

    monkeypatch.setattr("mathkit.training.trainer.train", no_training)
    assert run(tmp_path, tokenizer, small_data, runs) == rows


def test_changed_settings_or_no_resume_train_again(tmp_path, tokenizer, small_data, monkeypatch):
    runs = [Run("nope", "reversed", 0)]
    first = run(tmp_path, tokenizer, small_data, runs)
    trained = []
    import mathkit.training.trainer as trainer  # run_ablation imports train from here when it runs

    original = trainer.train
    monkeypatch.setattr(trainer, "train", lambda *a, **k: trained.append(1) or original(*a, **k))
    again = run(tmp_path, tokenizer, small_data, runs, settings={"v": 2})
    assert trained == [1] and again[0]["settings"] != first[0]["settings"]
    run(tmp_path, tokenizer, small_data, runs, settings={"v": 2}, resume=False)
    assert trained == [1, 1]
    finished, others = read_rows(tmp_path / RUNS_FILE, {"nope-reversed-seed0": again[0]["settings"]})
    assert list(finished) == ["nope-reversed-seed0"] and others == []


def test_rows_of_other_grids_stay_in_the_file(tmp_path, tokenizer, small_data):
    (tmp_path / RUNS_FILE).write_text(json.dumps({"run_id": "fire-cot-seed9", "settings": "old"}) + "\n")
    run(tmp_path, tokenizer, small_data, [Run("nope", "reversed", 0)])
    finished, others = read_rows(tmp_path / RUNS_FILE, {})
    assert finished == {} and [r["run_id"] for r in others] == ["fire-cot-seed9", "nope-reversed-seed0"]


def test_a_changed_default_option_makes_earlier_rows_stale(monkeypatch):
    from mathkit.models.positional import positional_class

    before = ablation.resolved_options("rope", {})
    assert before["rope_theta"] == positional_class("rope").default_options["rope_theta"]
    monkeypatch.setitem(positional_class("rope").default_options, "rope_theta", 123.0)
    assert ablation.resolved_options("rope", {}) != before
    assert ablation.resolved_options("rope", {"rope": {"rope_theta": 5.0}})["rope_theta"] == 5.0


def test_thought_scores_only_for_formats_with_a_thought():
    from mathkit.data.arithmetic import format_example

    cot = [format_example(12, 5, "+", "cot"), format_example(3, 4, "+", "cot")]
    same = [{"completion": r["completion"]} for r in cot]
    scores = ablation.thought_scores(same, cot)
    assert scores["bleu"] == pytest.approx(100.0) and scores["rouge_l"] == pytest.approx(1.0)
    off = ablation.thought_scores([{"completion": "<think>9+9=18</think>1<end>"}] * 2, cot)
    assert off["bleu"] < 50 and off["rouge_l"] < 1.0
    plain = [format_example(12, 5, "+", "reversed")]
    assert ablation.thought_scores([{"completion": "71<end>"}], plain) is None
