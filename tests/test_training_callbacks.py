"""The metrics callback: row kinds, resume rows dropped, step timer; side configs in checkpoints."""

import json
from types import SimpleNamespace

from mathkit.training import callbacks
from mathkit.training.callbacks import MetricsCallback, SideConfigCallback, row_kind


def state(step=0, tokens=0):
    return SimpleNamespace(global_step=step, epoch=step / 10, num_input_tokens_seen=tokens,
                           is_world_process_zero=True)


def rows(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_row_kinds():
    assert row_kind({"loss": 1.0, "train_runtime": 3.0}) == "train"  # tokens counted: runtime in each row
    assert row_kind({"eval_loss": 1.0}) == "eval"
    assert row_kind({"train_runtime": 3.0, "total_flos": 1.0, "train_loss": 1.2}) == "summary"


def test_rows_are_appended_and_the_summary_mean_is_renamed(tmp_path):
    cb = MetricsCallback(tmp_path / "m.jsonl")
    cb.on_train_begin(None, state(), None)
    cb.on_log(None, state(1), None, logs={"loss": 2.0, "note": "x", "skip": [1]})
    cb.on_log(None, state(1), None, logs={"eval_loss": 1.5})
    cb.on_log(None, state(1), None, logs={"train_loss": 1.9, "total_flos": 5.0, "train_runtime": 1.0})
    got = rows(cb.path)
    assert [r["kind"] for r in got] == ["train", "eval", "summary"]
    assert got[0] == {"kind": "train", "step": 1, "epoch": 0.1, "loss": 2.0, "note": "x"}
    assert got[2]["mean_train_loss"] == 1.9 and "train_loss" not in got[2]


def test_a_resumed_run_drops_rows_after_its_checkpoint(tmp_path):
    path = tmp_path / "m.jsonl"
    path.write_text("".join(json.dumps({"kind": "train", "step": s}) + "\n" for s in (1, 2, 3, 4)))
    cb = MetricsCallback(path)
    cb.on_train_begin(None, state(step=2, tokens=70), None)
    assert [r["step"] for r in rows(path)] == [1, 2] and cb.tokens_at_start == 70


def test_the_step_timer_counts_only_time_inside_steps(tmp_path, monkeypatch):
    clock = iter([10.0, 12.0, 50.0, 53.5])
    monkeypatch.setattr(callbacks.time, "perf_counter", lambda: next(clock))
    cb = MetricsCallback(tmp_path / "m.jsonl")
    cb.on_step_begin(None, state(), None)
    cb.on_step_end(None, state(1), None)      # 2 s
    # evaluation and saving happen here, between two steps: not counted
    cb.on_step_begin(None, state(1), None)
    cb.on_step_end(None, state(2), None)      # 3.5 s
    cb.on_step_end(None, state(2), None)      # no step open: nothing added
    assert cb.step_seconds == 5.5


def test_side_configs_go_into_the_checkpoint(tmp_path):
    from mathkit.models import build_decoder
    from mathkit.models.char_tokenizer import build_char_tokenizer

    model = build_decoder("small", build_char_tokenizer(), hidden_size=16, num_hidden_layers=1,
                          num_attention_heads=2, intermediate_size=32)
    (tmp_path / "checkpoint-3").mkdir()
    args = SimpleNamespace(output_dir=str(tmp_path))
    SideConfigCallback().on_save(args, state(3), None, model=model)
    assert json.loads((tmp_path / "checkpoint-3" / "pe_config.json").read_text())["positional_encoding"] == "rope"
