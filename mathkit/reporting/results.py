"""Writing a notebook's results: results.json with parameters and provenance, and PNG charts.

results.json holds plain numbers (accuracies with n and a 95% interval), the resolved parameters and
the run's provenance (commit, machine, versions, stage times), so a number in a report can always
be traced back. Paths in it are relative to the repository.
``headline`` is the handful of numbers that ``reports/index.md`` shows for the notebook.
"""

from __future__ import annotations

import json
import logging
import math
import os
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from mathkit.env import runtime_info
from mathkit.reporting.paths import anchors, portable

log = logging.getLogger(__name__)


def _plain(value: Any) -> Any:
    """Turn numpy/torch scalars, paths and tuples into JSON-native values; NaN becomes None."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if getattr(value, "ndim", 0) and hasattr(value, "tolist"):  # numpy array / tensor
        return _plain(value.tolist())
    if hasattr(value, "item") and callable(value.item):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_json_atomic(path: str | Path, data: Any) -> Path:
    """Write JSON through a temporary file and a rename, so a crash never leaves half a file.

    NaN and infinities become ``null`` (JSON has none); anything else that is not JSON-native
    (an object, a set) is an error here rather than a file nobody can read back.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(_plain(data), indent=2, allow_nan=False) + "\n"
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def save_results(output_dir: str | Path, *, notebook: str, headline: dict, metrics: dict,
                 params: Any, provenance: dict | None = None, extra: dict | None = None) -> Path:
    """Write ``output_dir/results.json`` and return its path.

    ``provenance`` is :meth:`mathkit.session.Session.provenance` (commit, machine, versions, stage
    times, models, data sizes). Every absolute path in the file is written relative to the
    repository (or to the folder holding the reports), so the file names no folder of this machine.
    """
    output_dir = Path(output_dir)
    params_dict = params.model_dump() if hasattr(params, "model_dump") else dict(params)
    data = {
        "notebook": notebook,
        "headline": headline,
        "metrics": metrics,
        "params": params_dict,
        "runtime": runtime_info(),
        "finished_utc": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    if provenance is not None:
        data["provenance"] = provenance
    if extra:
        data.update(extra)
    data = portable(_plain(data), anchors(output_dir.parent))
    path = write_json_atomic(output_dir / "results.json", data)
    log.info("wrote %s", path)
    return path


def save_figure(fig, output_dir: str | Path, name: str) -> Path:
    """Save a matplotlib figure as ``output_dir/name.png`` (the notebook still shows it)."""
    path = Path(output_dir) / f"{name}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    return path
