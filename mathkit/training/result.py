"""What a training run produced, as plain numbers and portable paths for results.json."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from mathkit.env import repo_root
from mathkit.reporting.paths import anchors, portable_path


def finite(value: Any) -> float | None:
    """``value`` as a float, or None for a missing, NaN or infinite one."""
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def last_logged(history: list[dict], key: str) -> float | None:
    """The last value of ``key`` in Trainer's log history (None if it was never logged)."""
    return next((finite(row[key]) for row in reversed(history) if key in row), None)


@dataclass
class TrainResult:
    """One run of :func:`mathkit.training.train`.

    Times: ``train_runtime_s`` is the wall time of ``trainer.train()`` (evaluation and saving
    included); ``step_seconds`` only the optimizer steps, so ``tokens_per_s`` (non-padding tokens
    over step seconds) is training throughput. Counts cover this session only: a resumed run
    reports the steps and tokens it trained itself. ``memory`` is
    :func:`mathkit.memory.track_peak_memory`'s measurement of the run.
    """

    output_dir: Path
    metrics_path: Path
    global_step: int
    train_runtime_s: float
    step_seconds: float
    train_tokens: int
    tokens_per_s: float
    final_train_loss: float | None      # mean loss of the last logging window
    final_eval_loss: float | None       # validation loss at the last evaluation
    best_eval_loss: float | None
    best_checkpoint: Path | None        # lowest validation loss among saved checkpoints
    last_checkpoint: Path | None
    resumed_from: Path | None = None
    memory: dict = field(default_factory=dict)

    def portable(self, path: Path | None) -> str | None:
        """``path`` relative to the repository when inside it, else to ``output_dir``'s parent."""
        if path is None:
            return None
        path, root = Path(path).resolve(), repo_root()
        if root is not None and path.is_relative_to(root):
            return path.relative_to(root).as_posix()
        return portable_path(path, anchors(Path(self.output_dir).resolve()))

    def as_dict(self) -> dict[str, Any]:
        """Plain numbers and relative paths (no folder of the machine that ran it)."""
        out = {}
        for f in fields(self):
            value = getattr(self, f.name)
            out[f.name] = self.portable(value) if isinstance(value, Path) else value
        return out
