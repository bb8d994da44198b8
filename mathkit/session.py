"""Notebook start-up in one call: parameters, output folder, seed, threads, device, provenance.

Every notebook's first code cell after its parameters is::

    session = start(BaseModelEvalParams, globals(), notebook="00_base_model_eval")
    params, out = session.params, session.out
    session.show_provenance()

``start`` reads the notebook's variables named like the schema's fields (the parameters cell, or
the values papermill injected after it) and validates them before anything is loaded. On Kaggle or
Colab, a notebook opened with "Run all" has only its parameters cell's small defaults; there the
hosted profile ``params/<notebook>/kaggle.yaml`` (or ``colab.yaml``) is taken instead and the
notebook says so. ``MATHKIT_PROFILE`` names another profile of that folder.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mathkit.env import best_device, detect_platform, repo_root, resolve_output_dir, seed_everything, set_threads
from mathkit.errors import ParamsError
from mathkit.params import NotebookParams, load_params
from mathkit.reporting import provenance as prov
from mathkit.reporting.paths import anchors, portable, portable_path

log = logging.getLogger(__name__)

PROFILE_VARIABLE = "MATHKIT_PROFILE"          # e.g. kaggle_mistral7b: another hosted profile
PARAMS_DIR_VARIABLE = "MATHKIT_PARAMS_DIR"    # where params/ is when mathkit came from a wheel
PAPERMILL_HEADER = "# Parameters\n"           # first line of the cell papermill injects


def parameters_injected(namespace: dict[str, Any]) -> bool:
    """True when papermill injected parameters into this kernel (its cell starts ``# Parameters``).

    IPython keeps every executed cell's source in ``In``; "Run all" on Kaggle has none of them.
    """
    history = namespace.get("In") or []
    return any(isinstance(src, str) and src.startswith(PAPERMILL_HEADER) for src in history)


def params_dirs() -> list[Path]:
    """Folders that may hold ``params/``'s notebook folders, in the order they are tried."""
    dirs = []
    if os.environ.get(PARAMS_DIR_VARIABLE):
        dirs.append(Path(os.environ[PARAMS_DIR_VARIABLE]))
    for root in (repo_root(), prov.source_root()):
        if root is not None and root / "params" not in dirs:
            dirs.append(root / "params")
    return dirs


def hosted_profile(notebook: str, platform: str) -> Path:
    """``params/<notebook>/<platform>.yaml`` (or ``$MATHKIT_PROFILE.yaml``); ParamsError if missing."""
    name = os.environ.get(PROFILE_VARIABLE) or platform
    tried = [d / notebook / f"{name}.yaml" for d in params_dirs()]
    for path in tried:
        if path.is_file():
            return path
    raise ParamsError(
        f"{platform}: 'Run all' takes the parameters of profile '{name}', but no "
        f"{notebook}/{name}.yaml was found (looked in: {', '.join(str(p.parent.parent) for p in tried) or 'no params folder'}). "
        f"Install mathkit from a checkout (MATHKIT_SOURCE) or set {PARAMS_DIR_VARIABLE} to a params folder; "
        f"{PROFILE_VARIABLE}=NAME picks another profile of params/{notebook}/.")


@dataclass
class Session:
    """A running notebook: its validated parameters, output folder, device, and what it recorded."""

    notebook: str
    params: NotebookParams
    out: Path
    device: str
    threads: int
    profile: str | None = None                # "params/<notebook>/kaggle.yaml" when "Run all" took it
    started_utc: str = field(default_factory=prov.utc_now)
    # The code a run imports is the code of its start: the commit is read then, not when results
    # are saved (a commit made while a long run goes on would otherwise be named as its source).
    git: dict = field(default_factory=lambda: prov.git_state(prov.source_root()))
    stages: dict[str, float] = field(default_factory=dict)
    models: list[dict] = field(default_factory=list)
    data: dict[str, int] = field(default_factory=dict)
    _t0: float = field(default_factory=time.perf_counter, repr=False)
    _display: Any = field(default=None, repr=False)

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """Time the ``with`` block as stage ``name`` (a stage run twice adds up)."""
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.stages[name] = self.stages.get(name, 0.0) + time.perf_counter() - t0

    def record_model(self, description: dict | list[dict]) -> None:
        """Note a model (``mathkit.models.describe(name)``: its source and quantization)."""
        for item in description if isinstance(description, list) else [description]:
            if not isinstance(item, dict):
                raise TypeError(f"record_model takes describe()'s dict, got {type(item).__name__}")
            if item not in self.models:
                self.models.append(dict(item))

    def record_data(self, name: str, n: int) -> None:
        """Note the size of a data set the notebook used."""
        self.data[name] = int(n)

    def provenance(self) -> dict:
        """Commit, date, machine, threads, versions, stage times, models and data sizes, as of now."""
        pairs = anchors(self.out.parent)
        return prov.collect(notebook=self.notebook, git=self.git, started_utc=self.started_utc, device=self.device,
                            threads=self.threads, stages=self.stages,
                            wall_seconds=time.perf_counter() - self._t0,
                            models=[portable(m, pairs) for m in self.models], data=self.data,
                            profile=self.profile)

    def provenance_markdown(self) -> str:
        return prov.to_markdown(self.provenance())

    def show_provenance(self) -> None:
        """Show the provenance table; later calls update the same output in place.

        The first call sits at the top of the report; the last call (at the end of the notebook)
        fills in stage times, models and data sizes there.
        """
        from IPython.display import Markdown, display

        table = Markdown(self.provenance_markdown())
        if self._display is not None:
            self._display.update(table)
        else:
            self._display = display(table, display_id=True)


def _resolve_params(schema: type[NotebookParams], namespace: dict[str, Any],
                    notebook: str) -> tuple[NotebookParams, Path | None]:
    platform = detect_platform()
    if platform == "local" or parameters_injected(namespace):
        return schema.from_namespace(namespace), None
    profile = hosted_profile(notebook, platform)
    log.warning(f"{platform}: 'Run all' without injected parameters, so the hosted profile "
          f"{notebook}/{profile.name} is used (the parameters cell above holds the small test defaults).")
    return load_params(schema, profile), profile


def start(schema: type[NotebookParams], namespace: dict[str, Any], notebook: str) -> Session:
    """Validate the notebook's parameters and set the run up; see the module docstring.

    ``namespace`` is the notebook's ``globals()``. Raises :class:`ParamsError` naming the bad key
    before any model or data set is loaded.
    """
    params, profile = _resolve_params(schema, namespace, notebook)
    out = resolve_output_dir(params.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    seed_everything(params.seed)
    threads = set_threads(getattr(params, "threads", 0))
    session = Session(notebook=notebook, params=params, out=out, device=best_device(),
                      threads=threads, profile=f"params/{notebook}/{profile.name}" if profile else None)
    log.info("%s: device %s, %s, seed %d, outputs in %s", notebook, session.device,
             prov.plural(threads, "thread"), params.seed, portable_path(out, anchors(out.parent)))
    return session
