"""Committed reports and benchmark results name no folder of the machine that made them and carry
no progress-bar or warning noise (the runner cleans them; this catches a report that was not)."""

import json
import re
import subprocess
from pathlib import Path

import pytest

from mathkit.reporting.paths import absolute_paths_in

ROOT = Path(__file__).parent.parent
FOLDERS = ("reports", "benchmarks/results")
TEXT_SUFFIXES = {".json", ".jsonl", ".md", ".ipynb", ".html", ".csv", ".txt", ".yaml"}
BAR = re.compile(r"\d+%\|[#█▏▎▍▌▋▊▉ ]*\||\d+/\d+ \[\d+:\d+(:\d+)?<")
WARNING = re.compile(r"^\S.*:\d+: \w*Warning: ", re.MULTILINE)


def committed_files(root: Path = ROOT) -> list[Path]:
    """Text files under reports/ and benchmarks/results/ that git tracks (all of them outside git)."""
    try:
        listed = subprocess.run(["git", "-C", str(root), "ls-files", "--", *FOLDERS], capture_output=True,
                                text=True, check=True).stdout.split()
        files = [root / f for f in listed]
    except (OSError, subprocess.CalledProcessError):
        files = [p for f in FOLDERS for p in (root / f).rglob("*") if ".staging" not in p.parts]
    return [p for p in files if p.is_file() and p.suffix in TEXT_SUFFIXES]


def noise_in_notebook(text: str) -> list[str]:
    """Progress bars, carriage-return redraws and warnings.warn output in a notebook's outputs."""
    found = []
    for cell in json.loads(text).get("cells", []):
        for output in cell.get("outputs", []):
            if output.get("output_type") != "stream":
                continue
            stream = "".join(output.get("text", ""))
            found += [m.group(0) for m in BAR.finditer(stream)] + [m.group(0) for m in WARNING.finditer(stream)]
            if "\r" in stream:
                found.append("carriage return in " + output.get("name", "stream"))
    return found


def problems(path: Path) -> list[str]:
    text = path.read_text(encoding="utf-8", errors="replace")
    found = [f"absolute path: ...{hit}..." for hit in absolute_paths_in(text)]
    if path.suffix == ".ipynb":
        found += [f"noise: {n!r}" for n in noise_in_notebook(text)]
    elif path.suffix == ".html":
        found += [f"noise: {m.group(0)!r}" for m in BAR.finditer(text)]
    return found


def test_the_check_finds_planted_paths_and_noise(tmp_path):
    nb = {"cells": [{"cell_type": "code", "source": "", "outputs": [
        {"output_type": "stream", "name": "stderr", "text": " 40%|####      | 4/10 [00:01<00:02]\r"},
        {"output_type": "stream", "name": "stderr", "text": "x.py:3: FutureWarning: old\n  warn()\n"}]}]}
    (tmp_path / "a.ipynb").write_text(json.dumps(nb))
    (tmp_path / "r.json").write_text('{"records_path": "/work/main/reports/00/r.jsonl"}')
    (tmp_path / "ok.json").write_text('{"records_path": "reports/00/r.jsonl", "answer": "1/2"}')
    found = " ".join(problems(tmp_path / "a.ipynb"))
    assert "40%|####" in found and "carriage return" in found and "FutureWarning" in found
    assert problems(tmp_path / "r.json") == ['absolute path: ...{"records_path": "/work/main/reports/00/r.jsonl"}...']
    assert problems(tmp_path / "ok.json") == []


def test_there_are_committed_reports_to_check():
    assert any(p.suffix == ".ipynb" for p in committed_files())


@pytest.mark.parametrize("path", committed_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_committed_file_is_clean(path):
    found = problems(path)
    assert not found, f"{path.relative_to(ROOT)}: {len(found)} problems, e.g. {found[:3]}"
