"""Every notebook runs end to end with its smoke parameters through the runner, writes only into
its (temporary) reports folder, and nbval re-runs the executed notebook to check that its tagged
outputs are reproducible."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mathkit.cli.notebook_registry import available

ROOT = Path(__file__).parent.parent
SPECS = available(ROOT / "notebooks")
WATCHED = ("runs", "reports")  # where a run could leave checkpoints or outputs in the checkout
# The runner strips progress bars from the notebooks it publishes; the nbval re-run must not draw
# them either, or a checked cell has a stderr output its reference lacks.
QUIET = {"HF_DATASETS_DISABLE_PROGRESS_BARS": "1", "HF_HUB_DISABLE_PROGRESS_BARS": "1", "TQDM_DISABLE": "1"}


def checkout_files() -> dict[str, float]:
    """Path -> modification time of every file under the checkout's runs/ and reports/."""
    return {str(f): f.stat().st_mtime for d in WATCHED if (ROOT / d).is_dir()
            for f in (ROOT / d).rglob("*") if f.is_file()}


@pytest.mark.notebook
@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.name)
def test_smoke_run_and_nbval(spec, tmp_path):
    reports = tmp_path / "reports"
    before = checkout_files()
    run = subprocess.run([sys.executable, "-m", "mathkit", "run", spec.name, "--profile", "smoke",
                          "--reports-dir", str(reports), "--quiet"],
                         cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stderr[-3000:]
    assert checkout_files() == before, "the smoke run wrote into the checkout (checkpoints, reports)"
    results = json.loads((reports / spec.name / "results.json").read_text())
    # paths in results.json are relative to the folder holding the reports
    assert results["headline"] and results["params"]["output_dir"] == f"reports/{spec.name}"
    assert results["runtime"]["device"] in ("cpu", "gpu")
    assert list((reports / spec.name).glob("*.png")), "the report has no charts"
    assert (reports / f"{spec.name}.html").stat().st_size > 10_000

    executed = reports / f"{spec.name}.ipynb"
    nbval = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--nbval-lax",
                            "--nbval-sanitize-with", str(ROOT / "tests" / "nbval_sanitize.cfg"),
                            str(executed)],
                           cwd=tmp_path, capture_output=True, text=True, timeout=900, env={**os.environ, **QUIET})
    assert nbval.returncode == 0, nbval.stdout[-4000:]
