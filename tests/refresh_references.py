"""Store new reference notebooks for the smoke test: ``python -m tests.refresh_references [NAME ...]``.

Runs each notebook (all registered ones by default; a name or prefix such as ``02`` picks one)
with its smoke parameters through the runner, in a temporary folder, and stores the published
notebook, without its chart images, as ``tests/references/<notebook>.ipynb``. Run it when a change
to a checked value is meant (a new learning rate, a fixed scorer, a new print format), then review
``git diff tests/references``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import nbformat

from mathkit.cli.notebook_registry import available, resolve
from tests.notebook_references import REFERENCES, ROOT, checked_cells, reference_path, run_smoke


def refresh(name: str, scratch: Path) -> Path:
    """Run ``name`` with the smoke profile into ``scratch`` and store its published notebook."""
    run = run_smoke(name, scratch, html=False)
    if run.returncode != 0:
        raise SystemExit(f"{name}: the smoke run failed, no reference stored\n{run.stderr[-3000:]}")
    nb = nbformat.read(scratch / f"{name}.ipynb", as_version=4)
    for cell in nb.cells:  # charts: nbval never compares images, they would only weigh on git
        for output in cell.get("outputs", []):
            for kind in [k for k in output.get("data", {}) if k.startswith("image/")]:
                del output["data"][kind]
    target = reference_path(name)
    REFERENCES.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, target)
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="*", help="names or prefixes (default: every notebook)")
    args = parser.parse_args(argv)
    notebooks_dir = ROOT / "notebooks"
    specs = [resolve(n, notebooks_dir) for n in args.notebooks] or available(notebooks_dir)
    with tempfile.TemporaryDirectory(prefix="mathkit-references-") as scratch:
        for spec in specs:
            target = refresh(spec.name, Path(scratch) / "reports")
            n_checked = len(checked_cells(nbformat.read(target, as_version=4)))
            print(f"{spec.name}: {target.relative_to(ROOT)} ({n_checked} checked cells)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
