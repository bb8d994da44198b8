"""TrainResult: plain numbers and paths relative to the repository or the run's parent folder."""

import json
import math
from pathlib import Path

from mathkit.env import repo_root
from mathkit.training.result import TrainResult, finite, last_logged


def result(out: Path, **kw):
    fields = dict(output_dir=out, metrics_path=out.parent / "metrics.jsonl", global_step=3,
                  train_runtime_s=2.0, step_seconds=1.5, train_tokens=300, tokens_per_s=200.0,
                  final_train_loss=1.0, final_eval_loss=None, best_eval_loss=None,
                  best_checkpoint=out / "checkpoint-2", last_checkpoint=out / "checkpoint-3")
    return TrainResult(**{**fields, **kw})


def test_paths_outside_the_repository_are_relative_to_the_runs_parent(tmp_path):
    d = result(tmp_path / "report" / "checkpoints").as_dict()
    assert d["metrics_path"] == "metrics.jsonl" and d["best_checkpoint"] == "checkpoints/checkpoint-2"
    assert d["resumed_from"] is None and d["global_step"] == 3
    assert str(tmp_path) not in json.dumps(d)


def test_paths_inside_the_repository_are_relative_to_it():
    root = repo_root(Path(__file__))
    d = result(root / "runs" / "01_arithmetic_cot").as_dict()
    assert d["last_checkpoint"] == "runs/01_arithmetic_cot/checkpoint-3"
    assert d["metrics_path"] == "runs/metrics.jsonl"


def test_nan_losses_become_none():
    assert finite(float("nan")) is None and finite(None) is None and finite(2) == 2.0
    history = [{"loss": 3.0}, {"eval_loss": 2.0}, {"loss": math.inf}]
    assert last_logged(history, "loss") is None and last_logged(history, "eval_loss") == 2.0
    assert last_logged(history, "grad_norm") is None
