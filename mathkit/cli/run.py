"""``python -m mathkit run``: validate parameters, execute a notebook with papermill, write its report.

For notebook ``NAME`` and reports folder ``R`` a successful run leaves
``R/NAME.ipynb`` (executed), ``R/NAME.html`` (rendered) and ``R/NAME/`` (results.json, charts, model).
Parameters are validated before a kernel starts; the terminal shows each cell and its output
(training progress included) while it runs, and the committed notebook is cleaned of that noise
(:mod:`mathkit.reporting.publish`). While a notebook runs, the previous report is
kept aside; if the run fails or is interrupted, the half-written folder is removed and the previous
report is put back, so ``R`` never holds a mix of two runs. The failed notebook is kept under
``R/.staging/`` for inspection.
"""

from __future__ import annotations

import argparse
import logging
import re
import shutil
import sys
import time
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

import yaml

from mathkit.cli import notebook_registry as registry
from mathkit.cli.training_watch import MetricsWatcher
from mathkit.env import repo_root
from mathkit.errors import NotebookFailedError, ParamsError
from mathkit.params import NotebookParams, load_params
from mathkit.reporting.index import update_readme, write_index
from mathkit.reporting.paths import anchors
from mathkit.reporting.publish import clean_notebook, render_html

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


class TerminalProgress(logging.Handler):
    """Shows a running notebook in the terminal: each cell's number, first line and start time,
    then what the cell prints (training bars included), as papermill's ``log_output`` hands it over.

    Only the terminal sees this; the committed notebook is cleaned of progress noise afterwards.
    """

    def __init__(self, nb, stream=None):
        super().__init__(logging.INFO)
        self.sources = [c.source for c in nb.cells]
        # papermill inserts its parameters cell after the one tagged "parameters" (or first)
        tagged = [i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", [])]
        self.sources.insert(tagged[0] + 1 if tagged else 0, "# Parameters (injected)")
        self.stream = stream or sys.stderr
        self.t0 = time.perf_counter()
        self.in_cell = False

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.stream.write(self.render(record.getMessage()))
            self.stream.flush()
        except Exception:  # noqa: BLE001 - a display problem must never stop the run
            self.handleError(record)

    def render(self, message: str) -> str:
        """What the terminal shows for one papermill log message."""
        started = re.match(r"Executing Cell (\d+)", message)
        if started:
            index = int(started.group(1))
            source = self.sources[index - 1] if index <= len(self.sources) else ""
            first = next((ln for ln in source.splitlines() if ln.strip()), "")
            elapsed = time.perf_counter() - self.t0
            self.in_cell = True
            return (f"\n[{int(elapsed // 60):02d}:{int(elapsed % 60):02d}] cell "
                    f"{index}/{len(self.sources)}: {first[:80]}\n")
        if message.startswith("Ending Cell"):
            self.in_cell = False
            return ""
        if self.in_cell:  # the cell's own stdout/stderr, as it comes (\r keeps bars live)
            return message if len(message) < 4000 else message[:4000] + "...\n"
        return ""


@contextmanager
def terminal_progress(nb, enabled: bool):
    """Route papermill's cell log to :class:`TerminalProgress` for the ``with`` block."""
    if not enabled:
        yield
        return
    logger = logging.getLogger("papermill")
    handler = TerminalProgress(nb)
    saved = (logger.level, logger.propagate)
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False  # not a second time through the root handler
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(saved[0])
        logger.propagate = saved[1]


def execute(source: Path, output: Path, parameters: dict[str, Any], cwd: Path,
            progress: bool = True) -> None:
    """Execute ``source`` (a jupytext .py) with papermill into ``output``.

    ``progress`` shows each cell and its output in the terminal while it runs.
    Raises :class:`NotebookFailedError` naming the failing cell.
    """
    import nbformat
    import papermill
    from papermill.exceptions import PapermillExecutionError

    staged_input = output.with_name(output.stem + ".input.ipynb")
    nb = notebook_from_source(source)
    nbformat.write(nb, staged_input)
    try:
        with terminal_progress(nb, progress):
            papermill.execute_notebook(str(staged_input), str(output), parameters=parameters,
                                       cwd=str(cwd), kernel_name="python3", progress_bar=False,
                                       log_output=progress)
    except PapermillExecutionError as err:
        first_line = str(err.evalue).strip().splitlines()[0] if str(err.evalue).strip() else ""
        raise NotebookFailedError(
            f"{source.name} failed in cell {err.cell_index} (execution count {err.exec_count}): "
            f"{err.ename}: {first_line}  [executed notebook kept at {output}]") from None
    finally:
        staged_input.unlink(missing_ok=True)


def publish(executed: Path, reports_dir: Path, name: str, html: bool) -> None:
    """Clean the executed notebook into ``reports_dir/name.ipynb`` (+ ``.html``): no progress
    noise, paths relative to the repository, one parameters cell, math that renders offline."""
    import nbformat

    pairs = anchors(reports_dir)
    nb = clean_notebook(nbformat.read(executed, as_version=4), pairs)
    nbformat.write(nb, reports_dir / f"{name}.ipynb")
    if html:
        render_html(nb, reports_dir / f"{name}.html", pairs)
    executed.unlink()


def run_notebook(spec: registry.NotebookSpec, *, root: Path, reports_dir: Path,
                 files: list[Path], overrides: dict[str, Any] | None = None,
                 html: bool = True, progress: bool = True) -> Path:
    """Validate parameters, execute, and publish the report of one notebook; return its folder."""
    schema: type[NotebookParams] = spec.load_schema()
    reports_dir = reports_dir.resolve()
    out_dir = reports_dir / spec.name
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
    watched = [out_dir]  # training logs: under the output folder, or the checkpoint folder
    if getattr(params, "checkpoint_dir", ""):
        folder = Path(params.checkpoint_dir)
        watched.append(folder if folder.is_absolute() else root / folder)
    try:
        with MetricsWatcher(watched) if progress else nullcontext():
            execute(root / "notebooks" / f"{spec.name}.py", executed, params.model_dump(), cwd=root,
                    progress=progress)
        ok = True
    finally:
        if not ok:  # failed or interrupted: put the previous report back untouched
            shutil.rmtree(out_dir, ignore_errors=True)
            if previous.exists():
                previous.rename(out_dir)
    shutil.rmtree(previous, ignore_errors=True)
    publish(executed, reports_dir, spec.name, html)
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
        write_readme_numbers(root, reports_dir, [s for s, _ in jobs])
    if failures:
        raise NotebookFailedError(f"{len(failures)} of {len(jobs)} notebooks failed: "
                                  + " | ".join(failures))
    return 0


def cmd_index(args: argparse.Namespace) -> int:
    root = repo_root()
    if root is None:
        raise ParamsError("run from inside a mathkit checkout (no pyproject.toml + mathkit/ found)")
    reports_dir = Path(args.reports_dir) if args.reports_dir else root / "reports"
    specs = registry.available(root / "notebooks")
    print(f"index: {write_index(reports_dir, specs)}")
    write_readme_numbers(root, reports_dir, specs)
    return 0


def write_readme_numbers(root: Path, reports_dir: Path, specs) -> None:
    """Refresh README.md's headline numbers when the reports are the repository's own."""
    if reports_dir.resolve() != (root / "reports").resolve():
        return
    if update_readme(root / "README.md", reports_dir, specs):
        print("README.md: headline numbers rewritten from results.json")
    else:
        log.warning("README.md has no headline-number markers; its numbers were not updated")


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
    p.add_argument("--quiet", action="store_true", help="no cell-by-cell progress in the terminal")
    p.set_defaults(func=cmd_run)
