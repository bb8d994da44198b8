"""Stored reference outputs of the smoke notebooks, and how a fresh smoke run is compared with them.

``tests/references/<notebook>.ipynb`` is the notebook as ``python -m mathkit run <notebook> --profile
smoke`` publishes it (clean, relative paths, no progress bars). Its cells tagged
``nbval-check-output`` (data sizes, training losses, evaluation results, headline, conclusion) hold
the values a change in mathkit must not move unnoticed; ``python -m tests.refresh_references``
stores new ones on purpose.

Why the comparison replays outputs instead of letting nbval execute the notebook: nbval always
executes the notebook it checks and compares what it gets with the outputs stored in that file. Run
on a copy of the reference, it would execute the notebook a second time (after the runner's run that
the smoke test also checks), with the parameters frozen in the reference instead of the current
params/<notebook>/smoke.yaml, in a kernel started in the copy's folder. Instead, the notebook is run
once, through the runner, and :func:`replay_notebook` builds a small notebook with one cell per
checked cell: the cell *prints again what the fresh run printed* (read from a JSON file beside it)
and its stored outputs are the reference's. ``pytest --nbval-lax --nbval-sanitize-with
tests/nbval_sanitize.cfg`` on that notebook then compares the two exactly as nbval compares any
notebook (same sanitizing, streams coalesced, images, metadata and execution counts ignored), in a
kernel that starts in a second, and names the differing cell with both values.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import nbformat

ROOT = Path(__file__).parent.parent
REFERENCES = ROOT / "tests" / "references"
SANITIZE = ROOT / "tests" / "nbval_sanitize.cfg"
CHECK_TAG = "nbval-check-output"
REFRESH_COMMAND = "python -m tests.refresh_references"

# The environment of every smoke run, the reference's and the test's: no progress bars (the runner
# strips them anyway) and one torch thread, so that fp32 sums are reduced in the same order whatever
# the machine's core count (a notebook whose `threads` is 0 takes torch's default, which reads it).
SMOKE_ENV = {"HF_DATASETS_DISABLE_PROGRESS_BARS": "1", "HF_HUB_DISABLE_PROGRESS_BARS": "1",
             "TQDM_DISABLE": "1", "OMP_NUM_THREADS": "1"}

REPLAY_HELPER = '''\
# Prints again what the checked cells of the fresh smoke run printed, output by output.
import json, sys
from IPython.display import publish_display_data

with open({outputs_file!r}, encoding="utf-8") as f:
    FRESH_OUTPUTS = json.load(f)

def replay(number):
    for output in FRESH_OUTPUTS[number - 1]:
        if output["output_type"] == "stream":
            stream = getattr(sys, output["name"])
            stream.write(output["text"])
            stream.flush()
        else:
            publish_display_data(output["data"])
'''


def reference_path(name: str) -> Path:
    return REFERENCES / f"{name}.ipynb"


def run_smoke(name: str, reports_dir: Path, *, html: bool = True, timeout: int = 900):
    """``python -m mathkit run NAME --profile smoke`` into ``reports_dir`` (the runner, as users run it)."""
    command = [sys.executable, "-m", "mathkit", "run", name, "--profile", "smoke",
               "--reports-dir", str(reports_dir), "--quiet"] + ([] if html else ["--no-html"])
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **SMOKE_ENV})


def checked_cells(nb) -> list:
    """The code cells whose outputs are compared with the reference, in order."""
    return [c for c in nb.cells if c.cell_type == "code" and CHECK_TAG in c.metadata.get("tags", [])]


def first_line(source: str) -> str:
    return next((line for line in source.splitlines() if line.strip()), "")[:100]


def _replayable(outputs) -> list[dict]:
    """Stream and display outputs without images (nbval ignores images; they only add weight)."""
    kept = []
    for output in outputs:
        if output["output_type"] == "stream":
            kept.append({"output_type": "stream", "name": output["name"], "text": output["text"]})
        elif "data" in output:
            data = {k: v for k, v in output["data"].items() if not k.startswith("image/")}
            kept.append({"output_type": "display_data", "data": data})
    return kept


class ReferenceMismatch(AssertionError):
    """The fresh run and the stored reference do not check the same cells: the reference is stale."""


def replay_notebook(fresh, reference, name: str, outputs_file: str):
    """A notebook for nbval: per checked cell, code printing the fresh outputs, stored with the reference's.

    Cells are paired in order; the fresh outputs are read from ``outputs_file`` (next to the
    notebook, see :func:`fresh_outputs`). Raises :class:`ReferenceMismatch` when the two check a
    different number of cells (a tag was added or removed since the reference was stored).
    """
    fresh_cells, reference_cells = checked_cells(fresh), checked_cells(reference)
    if len(fresh_cells) != len(reference_cells):
        raise ReferenceMismatch(
            f"{name}: the notebook checks {len(fresh_cells)} cells, tests/references/{name}.ipynb "
            f"{len(reference_cells)}; store new references with `{REFRESH_COMMAND} {name}`")
    cells = [nbformat.v4.new_code_cell(REPLAY_HELPER.format(outputs_file=outputs_file))]
    for number, (new, old) in enumerate(zip(fresh_cells, reference_cells), start=1):
        source = f"# {name}, checked cell {number}: {first_line(new.source)}\nreplay({number})"
        cell = nbformat.v4.new_code_cell(source, metadata={"tags": [CHECK_TAG]})
        cell.outputs = old.outputs
        cell.execution_count = number  # nbval does not compare cells it thinks were never run
        cells.append(cell)
    nb = nbformat.v4.new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    return nb


def fresh_outputs(fresh) -> list[list[dict]]:
    """What each checked cell of the fresh run printed, for ``replay(number)``."""
    return [_replayable(cell.outputs) for cell in checked_cells(fresh)]


def compare_with_reference(fresh_path: Path, name: str, workdir: Path):
    """nbval (lax, sanitized) on the replay of ``fresh_path`` against the stored reference.

    Returns the finished ``pytest`` process; its stdout names each cell that differs, with both outputs.
    """
    fresh = nbformat.read(fresh_path, as_version=4)
    stored = nbformat.read(reference_path(name), as_version=4)
    outputs_file = f"{name}.fresh-outputs.json"
    replay = workdir / f"{name}.replay.ipynb"
    nbformat.write(replay_notebook(fresh, stored, name, outputs_file), replay)
    (workdir / outputs_file).write_text(json.dumps(fresh_outputs(fresh)), encoding="utf-8")
    # the kernel starts in the replay notebook's folder, where the outputs file is
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--color=no",
                           "--nbval-lax", "--nbval-current-env", "--nbval-sanitize-with", str(SANITIZE),
                           str(replay)],
                          cwd=workdir, capture_output=True, text=True, timeout=300,
                          env={**os.environ, **SMOKE_ENV})
