"""The runner's training progress: new rows of growing metrics files become terminal lines."""

import io
import json

from mathkit.cli.training_watch import METRICS_FILE, MetricsWatcher, describe_row


def _append(path, *rows):
    with path.open("a") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)


def test_rows_become_lines():
    assert describe_row({"kind": "train", "step": 30, "epoch": 0.408, "loss": 0.83290,
                         "train_tokens_per_second": 122.68}) == "step 30 · epoch 0.41 · loss 0.8329 · 122.7 tokens/s"
    assert describe_row({"kind": "eval", "step": 38, "eval_loss": 0.8}) == "step 38 · eval loss 0.8000"
    assert describe_row({"kind": "summary", "step": 74}) == "step 74 · training done"
    assert describe_row({"kind": "train", "step": 3, "grad_norm": 1.0}) is None  # no loss: nothing to say


def test_only_new_rows_of_this_run_are_printed_once(tmp_path):
    old = tmp_path / "old_run" / METRICS_FILE
    old.parent.mkdir()
    _append(old, {"kind": "train", "step": 1, "loss": 9.0})
    out = io.StringIO()
    watcher = MetricsWatcher([tmp_path], stream=out, interval=3600)
    run = tmp_path / "rope-cot-seed0" / METRICS_FILE
    run.parent.mkdir()
    _append(run, {"kind": "train", "step": 10, "loss": 1.5})
    watcher.poll()
    assert out.getvalue() == "[training rope-cot-seed0] step 10 · loss 1.5000\n"
    with run.open("a") as f:  # a second row, and a third still being written
        f.write(json.dumps({"kind": "eval", "step": 20, "eval_loss": 1.25}) + "\n" + '{"kind": "tra')
    watcher.poll()
    assert out.getvalue().splitlines()[1:] == ["[training rope-cot-seed0] step 20 · eval loss 1.2500"]
    with run.open("a") as f:
        f.write('in", "step": 30, "loss": 1.0}\n')
    watcher.poll()
    assert out.getvalue().splitlines()[2:] == ["[training rope-cot-seed0] step 30 · loss 1.0000"]
    assert "9.0" not in out.getvalue()  # the earlier run's file stays quiet


def test_the_watcher_thread_prints_what_arrives_while_it_runs(tmp_path):
    out = io.StringIO()
    path = tmp_path / METRICS_FILE
    with MetricsWatcher([tmp_path], stream=out, interval=0.01):
        _append(path, {"kind": "train", "step": 1, "loss": 2.0})
    assert out.getvalue() == f"[training {tmp_path.name}] step 1 · loss 2.0000\n"


def test_the_file_name_is_the_one_training_writes():
    from mathkit.training.callbacks import METRICS_FILE as WRITTEN

    assert METRICS_FILE == WRITTEN
