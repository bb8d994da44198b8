"""``python -m mathkit run``: validate parameters, execute a notebook with papermill, write its report.

For notebook ``NAME`` and reports folder ``R`` a successful run leaves
``R/NAME.ipynb`` (executed), ``R/NAME.html`` (rendered) and ``R/NAME/`` (results.json, charts, model).
Parameters are validated before a kernel starts. While a notebook runs, the previous report is
kept aside; if the run fails or is interrupted, the half-written folder is removed and the previous
report is put back, so ``R`` never holds a mix of two runs. The failed notebook is kept under
``R/.staging/`` for inspection.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import time
from pathlib import Path
from typing import Any

import yaml

from mathkit.cli import notebook_registry as registry
from mathkit.env import repo_root
from mathkit.errors import NotebookFailedError, ParamsError
from mathkit.params import NotebookParams, load_params
from mathkit.reporting.index import write_index

log = logging.getLogger(__name__)

PROFILES = ("smoke", "cpu", "kaggle", "colab")  # the usual ones; any params/<nb>/<name>.yaml works


def parse_overrides(pairs: list[str]) -> dict[str, Any]:
    """``["max_steps=10", "ops=[+, -]"]`` -> values parsed as YAML scalars/lists."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key.strip():
            raise ParamsError(f"--set expects KEY=VALUE, got '{pair}'")
        out[key.strip()] = yaml.safe_load(raw)
    return out


def params_files(root: Path, name: str, profile: str | None, extra: list[str]) -> list[Path]:
    """The profile's file (default cpu unless only --params files are given), then --params files."""
    files: list[Path] = []
    if profile or not extra:
        files.append(root / "params" / name / f"{profile or 'cpu'}.yaml")
    files += [Path(f) for f in extra]
    return files


def notebook_from_source(source: Path):
    """Read the jupytext ``.py`` source of truth as an nbformat notebook (papermill needs JSON)."""
    import jupytext

    nb = jupytext.read(source)
    nb.metadata.setdefault("kernelspec", {"name": "python3", "display_name": "Python 3",
                                          "language": "python"})
    return nb


def render_html(executed: Path, html_path: Path) -> None:
    """Render an executed notebook as a standalone HTML page."""
    import nbformat
    from nbconvert import HTMLExporter

    body, _ = HTMLExporter().from_notebook_node(nbformat.read(executed, as_version=4))
    html_path.write_text(body)


def execute(source: Path, output: Path, parameters: dict[str, Any], cwd: Path,
            progress: bool = True) -> None:
    """Execute ``source`` (a jupytext .py) with papermill into ``output``.

    Raises :class:`NotebookFailedError` naming the failing cell.
    """
    import nbformat
    import papermill
    from papermill.exceptions import PapermillExecutionError

    staged_input = output.with_name(output.stem + ".input.ipynb")
    nbformat.write(notebook_from_source(source), staged_input)
    try:
        papermill.execute_notebook(str(staged_input), str(output), parameters=parameters,
                                   cwd=str(cwd), kernel_name="python3", progress_bar=progress,
                                   log_output=False)
    except PapermillExecutionError as err:
        first_line = str(err.evalue).strip().splitlines()[0] if str(err.evalue).strip() else ""
        raise NotebookFailedError(
            f"{source.name} failed in cell {err.cell_index} (execution count {err.exec_count}): "
            f"{err.ename}: {first_line}  [executed notebook kept at {output}]") from None
    finally:
        staged_input.unlink(missing_ok=True)


def run_notebook(spec: registry.NotebookSpec, *, root: Path, reports_dir: Path,
                 files: list[Path], overrides: dict[str, Any] | None = None,
                 html: bool = True, progress: bool = True) -> Path:
    """Validate parameters, execute, and publish the report of one notebook; return its folder."""
    schema: type[NotebookParams] = spec.load_schema()
    out_dir = (reports_dir / spec.name).resolve()
    params = load_params(schema, *files, overrides={**(overrides or {}), "output_dir": str(out_dir)})

    staging = reports_dir / ".staging"
    staging.mkdir(parents=True, exist_ok=True)
    previous = staging / f"{spec.name}.previous"
    executed = staging / f"{spec.name}.ipynb"
    shutil.rmtree(previous, ignore_errors=True)
    if out_dir.exists():
        out_dir.rename(previous)
    log.info("running %s with %s", spec.name, ", ".join(str(f) for f in files) or "defaults")
    t0 = time.perf_counter()
    ok = False
    try:
        execute(root / "notebooks" / f"{spec.name}.py", executed, params.model_dump(), cwd=root,
                progress=progress)
        ok = True
    finally:
        if not ok:  # failed or interrupted: put the previous report back untouched
            shutil.rmtree(out_dir, ignore_errors=True)
            if previous.exists():
                previous.rename(out_dir)
    shutil.rmtree(previous, ignore_errors=True)
    shutil.move(str(executed), reports_dir / f"{spec.name}.ipynb")
    if html:
        render_html(reports_dir / f"{spec.name}.ipynb", reports_dir / f"{spec.name}.html")
    log.info("%s done in %.0f s: %s", spec.name, time.perf_counter() - t0, out_dir)
    return out_dir


def cmd_run(args: argparse.Namespace) -> int:
    root = repo_root()
    if root is None:
        raise ParamsError("run from inside a mathkit checkout (no pyproject.toml + mathkit/ found)")
    reports_dir = Path(args.reports_dir) if args.reports_dir else root / "reports"
    notebooks_dir = root / "notebooks"
    if args.notebook == "all":
        specs = registry.available(notebooks_dir)
    else:
        specs = [registry.resolve(args.notebook, notebooks_dir)]
    overrides = parse_overrides(args.set or [])
    jobs = []
    for spec in specs:  # validate every notebook's parameters before running any of them
        files = params_files(root, spec.name, args.profile, args.params or [])
        load_params(spec.load_schema(), *files, overrides={**overrides, "output_dir": "-"})
        jobs.append((spec, files))
    failures = []
    for spec, files in jobs:
        try:
            out = run_notebook(spec, root=root, reports_dir=reports_dir, files=files,
                               overrides=overrides, html=not args.no_html,
                               progress=not args.quiet)
            print(f"{spec.name}: report in {out}")
        except NotebookFailedError as err:
            if len(jobs) == 1:
                raise
            failures.append(str(err))
            log.error("%s", err)
    if args.notebook == "all":
        index = write_index(reports_dir, [s for s, _ in jobs])
        print(f"index: {index}")
    if failures:
        raise NotebookFailedError(f"{len(failures)} of {len(jobs)} notebooks failed: "
                                  + " | ".join(failures))
    return 0


def cmd_index(args: argparse.Namespace) -> int:
    root = repo_root()
    if root is None:
        raise ParamsError("run from inside a mathkit checkout (no pyproject.toml + mathkit/ found)")
    reports_dir = Path(args.reports_dir) if args.reports_dir else root / "reports"
    print(f"index: {write_index(reports_dir, registry.available(root / 'notebooks'))}")
    return 0


def register(subparsers) -> None:
    i = subparsers.add_parser("index", help="rewrite reports/index.md from the reports there")
    i.add_argument("--reports-dir", default=None, help="where reports are (default: reports/)")
    i.set_defaults(func=cmd_index)
    p = subparsers.add_parser("run", help="execute notebooks with papermill and write reports",
                              description=__doc__.splitlines()[0])
    p.add_argument("notebook", help="notebook name or prefix (e.g. 01), or 'all'")
    p.add_argument("--profile", default=None,
                   help="params/<notebook>/<profile>.yaml: " + ", ".join(PROFILES)
                   + " or another file there (default: cpu)")
    p.add_argument("--params", action="append", metavar="FILE",
                   help="extra parameter file; repeatable, later files win")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="override one parameter (YAML value); repeatable")
    p.add_argument("--reports-dir", default=None, help="where reports go (default: reports/)")
    p.add_argument("--no-html", action="store_true", help="skip the HTML rendering")
    p.add_argument("--quiet", action="store_true", help="no papermill progress bar")
    p.set_defaults(func=cmd_run)
