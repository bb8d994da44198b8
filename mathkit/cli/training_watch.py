"""Training progress in the terminal while ``python -m mathkit run`` executes a notebook.

The notebook's own cells cannot show it: a progress bar printed by the kernel lands in the
training cell's output (even one written to the process's stderr, which the kernel captures),
where it would be compared by nbval and published in the report. Every training run already
appends its logs to a ``metrics.jsonl`` (:class:`mathkit.training.callbacks.MetricsCallback`), so
the runner reads those files as they grow and prints one line per logged step::

    [training checkpoints] step 30 · epoch 0.41 · loss 0.8329 · 122.7 tokens/s
    [training checkpoints] step 38 · eval loss 0.8000

Only lines added after the watcher started are shown: files that exist then (earlier runs) are
read from their size at that moment, new files from their start.
"""

from __future__ import annotations

import json
import sys
import threading
from pathlib import Path
from typing import TextIO

METRICS_FILE = "metrics.jsonl"  # the name MetricsCallback writes (kept here: no torch import for the CLI)


def describe_row(row: dict) -> str | None:
    """One terminal line for a metrics row; None for rows that say nothing about progress."""
    step = row.get("step")
    if row.get("kind") == "train" and "loss" in row:
        parts = [f"step {step}"]
        if isinstance(row.get("epoch"), (int, float)):
            parts.append(f"epoch {row['epoch']:.2f}")
        parts.append(f"loss {row['loss']:.4f}")
        if isinstance(row.get("train_tokens_per_second"), (int, float)):
            parts.append(f"{row['train_tokens_per_second']:.1f} tokens/s")
        return " · ".join(parts)
    if row.get("kind") == "eval" and "eval_loss" in row:
        return f"step {step} · eval loss {row['eval_loss']:.4f}"
    if row.get("kind") == "summary":
        return f"step {step} · training done"
    return None


class MetricsWatcher:
    """Polls ``folders`` for growing ``metrics.jsonl`` files and prints their new rows."""

    def __init__(self, folders: list[Path], stream: TextIO | None = None, interval: float = 5.0):
        self.folders = [Path(f) for f in folders]
        self.stream = stream or sys.stderr
        self.interval = interval
        self.offsets: dict[Path, int] = {}
        for path in self._files():  # what earlier runs wrote is not this run's progress
            try:
                self.offsets[path] = path.stat().st_size
            except OSError:
                continue
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _files(self) -> list[Path]:
        files = set()
        for folder in self.folders:
            if folder.is_dir():
                files.update(folder.rglob(METRICS_FILE))
        return sorted(files)

    def _label(self, path: Path) -> str:
        for folder in self.folders:
            if path.is_relative_to(folder):
                parent = path.parent.relative_to(folder)
                return str(parent) if str(parent) != "." else folder.name
        return path.parent.name

    def poll(self) -> None:
        """Print the rows added to every watched file since the last poll."""
        for path in self._files():
            try:
                with path.open("rb") as f:
                    f.seek(self.offsets.get(path, 0))
                    data = f.read()
            except OSError:
                continue
            complete = data[:data.rfind(b"\n") + 1]  # a line still being written waits for the next poll
            self.offsets[path] = self.offsets.get(path, 0) + len(complete)
            for line in complete.decode("utf-8", errors="replace").splitlines():
                try:
                    text = describe_row(json.loads(line))
                except (json.JSONDecodeError, AttributeError, TypeError, ValueError):
                    continue
                if text:
                    self.stream.write(f"[training {self._label(path)}] {text}\n")
        self.stream.flush()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.poll()

    def __enter__(self) -> "MetricsWatcher":
        self._thread = threading.Thread(target=self._loop, name="metrics-watcher", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.poll()
