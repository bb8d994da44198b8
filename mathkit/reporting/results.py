"""Writing a notebook's results: results.json with parameters and provenance, and PNG charts.

results.json holds plain numbers (accuracies with n and a 95% interval), the resolved parameters,
library versions and where the run happened, so a number in a report can always be traced back.
``headline`` is the handful of numbers that ``reports/index.md`` shows for the notebook.
"""

from __future__ import annotations

import json
import logging
import math
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from mathkit.env import runtime_info

log = logging.getLogger(__name__)


def _plain(value: Any) -> Any:
    """Turn numpy/torch scalars, paths and tuples into JSON-native values; NaN becomes None."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "item") and callable(value.item):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_json_atomic(path: str | Path, data: Any) -> Path:
    """Write JSON through a temporary file and a rename, so a crash never leaves half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(_plain(data), indent=2, sort_keys=False) + "\n")
    os.replace(tmp, path)
    return path


def save_results(output_dir: str | Path, *, notebook: str, headline: dict, metrics: dict,
                 params: Any, extra: dict | None = None) -> Path:
    """Write ``output_dir/results.json`` and return its path."""
    params_dict = params.model_dump() if hasattr(params, "model_dump") else dict(params)
    data = {
        "notebook": notebook,
        "headline": headline,
        "metrics": metrics,
        "params": params_dict,
        "runtime": runtime_info(),
        "finished_utc": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    if extra:
        data.update(extra)
    path = write_json_atomic(Path(output_dir) / "results.json", data)
    log.info("wrote %s", path)
    return path


def save_figure(fig, output_dir: str | Path, name: str) -> Path:
    """Save a matplotlib figure as ``output_dir/name.png`` (the notebook still shows it)."""
    path = Path(output_dir) / f"{name}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    return path
