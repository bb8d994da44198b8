"""Trainer callbacks: the metrics file charts read back, and side configs in every checkpoint."""

from __future__ import annotations

import time
from pathlib import Path

from transformers import TrainerCallback

from mathkit.jsonl import append_jsonl, read_jsonl, write_jsonl

METRICS_FILE = "metrics.jsonl"


def row_kind(logs: dict) -> str:
    """``eval`` (validation metrics), ``summary`` (the end-of-run totals) or ``train``.

    (Training rows carry ``train_runtime`` too when input tokens are counted; only the summary
    has ``total_flos`` and the run's mean ``train_loss``.)
    """
    if any(key.startswith("eval_") for key in logs):
        return "eval"
    return "summary" if "total_flos" in logs or "train_loss" in logs else "train"


class MetricsCallback(TrainerCallback):
    """Append every Trainer log as one JSON line, and time the optimizer steps.

    Rows carry ``kind`` (:func:`row_kind`), ``step`` and ``epoch`` next to the logged values. A
    resumed run continues the same file: rows logged after the checkpoint's step (by the
    interrupted run) are dropped first, so no step appears twice. The summary's ``train_loss``
    (a whole-run mean, not a point on the curve) is stored as ``mean_train_loss``.

    ``step_seconds`` adds up the time from the start to the end of each optimizer step, so it
    leaves out evaluation and checkpoint saving: tokens per step-second is training throughput.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.step_seconds = 0.0
        self.tokens_at_start = 0
        self._started: float | None = None

    def on_train_begin(self, args, state, control, **kwargs):
        self.tokens_at_start = int(state.num_input_tokens_seen or 0)
        if state.is_world_process_zero and self.path.is_file():
            kept = [row for row in read_jsonl(self.path) if row.get("step", 0) <= state.global_step]
            write_jsonl(kept, self.path)

    def on_step_begin(self, args, state, control, **kwargs):
        self._started = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        if self._started is not None:
            self.step_seconds += time.perf_counter() - self._started
            self._started = None

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs:
            return
        row = {"kind": row_kind(logs), "step": int(state.global_step), "epoch": state.epoch}
        row.update({k: v for k, v in logs.items() if isinstance(v, (int, float, str))})
        if row["kind"] == "summary" and "train_loss" in row:
            row["mean_train_loss"] = row.pop("train_loss")
        append_jsonl(row, self.path)


class SideConfigCallback(TrainerCallback):
    """Write the model's side configs (``pe_config.json``) into every checkpoint, so that a
    checkpoint folder loads with :func:`mathkit.models.load` like a saved model."""

    def on_save(self, args, state, control, model=None, **kwargs):
        from mathkit.models.io import side_configs, write_side_configs

        folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        if state.is_world_process_zero and model is not None and folder.is_dir():
            write_side_configs(folder, side_configs(model))
