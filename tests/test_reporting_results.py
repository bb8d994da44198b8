"""results.json: plain JSON (NaN -> null), relative paths, provenance, and an atomic write."""

import json
import math
import os

import numpy as np
import pytest

from mathkit.params import NotebookParams
from mathkit.reporting import results
from mathkit.reporting.paths import find_absolute_paths


class Params(NotebookParams):
    n: int = 3


def test_save_results_plain_json_relative_paths_and_provenance(tmp_path):
    out = tmp_path / "reports" / "99_demo"
    params = Params(output_dir=str(out))
    path = results.save_results(
        out, notebook="99_demo", params=params,
        headline={"acc": {"value": np.float64(0.5), "n": 4, "ci95": (0.1, 0.9)}, "loss": float("nan")},
        metrics={"records_path": out / "records" / "a.jsonl", "inf": math.inf, "counts": np.array([1, 2])},
        provenance={"models": [{"name": "m", "path": str(tmp_path / "reports" / "99_demo" / "model")}]})
    text = path.read_text()
    data = json.loads(text)
    assert data["headline"] == {"acc": {"value": 0.5, "n": 4, "ci95": [0.1, 0.9]}, "loss": None}
    assert data["metrics"] == {"records_path": "reports/99_demo/records/a.jsonl", "inf": None, "counts": [1, 2]}
    assert data["params"]["output_dir"] == "reports/99_demo" and data["params"]["n"] == 3
    assert data["provenance"]["models"][0]["path"] == "reports/99_demo/model"
    assert str(tmp_path) not in text and find_absolute_paths([text]) == []
    assert "NaN" not in text and "Infinity" not in text


def test_write_json_atomic_keeps_the_old_file_when_writing_fails(tmp_path, monkeypatch):
    path = results.write_json_atomic(tmp_path / "results.json", {"a": 1})
    old = path.read_bytes()

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(results.os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        results.write_json_atomic(path, {"a": 2})
    assert path.read_bytes() == old
    assert os.listdir(tmp_path) == ["results.json"]  # no temporary file left behind
    with pytest.raises(TypeError):
        results.write_json_atomic(tmp_path / "bad.json", {"a": object()})
    assert not (tmp_path / "bad.json").exists()


def test_save_figure(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    ax.plot([0, 1])
    path = results.save_figure(fig, tmp_path / "charts", "line")
    plt.close(fig)
    assert path == tmp_path / "charts" / "line.png" and path.read_bytes()[:4] == b"\x89PNG"
