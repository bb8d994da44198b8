"""JSON Lines, the one format for records, metrics and generated data: read, write, append.

Writes are atomic (a temporary file renamed into place), so an interrupted run never leaves a
half-written file that a later run would trust. Reading names the file and line of bad JSON.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Iterable

from mathkit.errors import DataError


def write_jsonl(records: Iterable[dict], path: str | Path) -> Path:
    """Write one JSON object per line, atomically; creates the folder. Returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            for record in records:
                f.write(json.dumps(record, ensure_ascii=False, default=str) + "\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def append_jsonl(record: dict, path: str | Path) -> None:
    """Append one record as a line (metrics logged while training runs)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as f:
        f.write(json.dumps(record, ensure_ascii=False, default=float) + "\n")


def read_jsonl(path: str | Path, *, missing: str = "run the step that writes it first") -> list[dict]:
    """Every record of a JSONL file; a missing file or a bad line is a :class:`DataError`."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found; {missing}")
    records = []
    with path.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if line.strip():
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError as err:
                    raise DataError(f"{path}:{lineno}: not valid JSON ({err.msg})") from None
    return records
