"""What ran, where, and for how long: the provenance a report opens with.

A number in a report is only as good as what a reader knows about the run behind it: the commit
(and whether the tree had uncommitted changes), the date, the CPU or GPU and the threads used,
library versions, each model with its source and quantization, the size of each data set and the
wall time of each stage. :class:`mathkit.session.Session` gathers these while the notebook runs;
this module reads the machine and git, and renders the Markdown table of the report's first cell.
"""

from __future__ import annotations

import platform
import subprocess
from datetime import datetime, timezone
from pathlib import Path

from mathkit.env import cpu_cores, cpu_model, detect_platform, package_versions, repo_root

NOT_A_CHECKOUT = "not a git checkout"
# Outputs that a running notebook rewrites: they never make the source tree "dirty".
OUTPUT_FOLDERS = ("reports", "benchmarks/results", "runs")


def source_root() -> Path | None:
    """The checkout that the imported mathkit comes from (an editable install), else the cwd's."""
    import mathkit

    return repo_root(Path(mathkit.__file__).parent) or repo_root()


def _git(folder: Path, *args: str) -> str:
    done = subprocess.run(["git", "-C", str(folder), *args], capture_output=True, text=True,
                          timeout=30, check=True)
    return done.stdout


def git_state(folder: Path | None) -> dict:
    """``{"commit", "dirty", "changed_files"}`` of the checkout at ``folder``, or a note saying there is none.

    Changes under the output folders (``reports/``...) do not count: the run itself writes there.
    Untracked files do not count either; modified or staged tracked files do.
    """
    if folder is None:
        return {"commit": None, "git": NOT_A_CHECKOUT}
    try:
        commit = _git(folder, "rev-parse", "HEAD").strip()
        excludes = [f":(exclude){f}" for f in OUTPUT_FOLDERS]
        status = _git(folder, "status", "--porcelain", "--untracked-files=no", "--", ".", *excludes)
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "git": NOT_A_CHECKOUT}
    changed = [line[3:] for line in status.splitlines() if line.strip()]  # "XY path"
    return {"commit": commit, "dirty": bool(changed), "changed_files": changed[:20]}


def machine() -> dict:
    """Platform (local/kaggle/colab), CPU model and cores, GPU name if any, Python version."""
    info = {"platform": detect_platform(), "cpu": cpu_model(), "cpu_cores": cpu_cores(),
            "gpu": None, "python": platform.python_version()}
    try:
        import torch

        if torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name(0)
    except ImportError:
        pass
    return info


def utc_now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def collect(*, notebook: str, git: dict, started_utc: str, device: str, threads: int, stages: dict[str, float],
            wall_seconds: float, models: list[dict], data: dict[str, int],
            profile: str | None = None) -> dict:
    """The provenance dict written into results.json (see :func:`to_markdown` for the table)."""
    return {
        "notebook": notebook,
        "git": git,
        "started_utc": started_utc,
        "machine": machine(),
        "device": device,
        "threads": threads,
        "versions": package_versions(),
        "stages_seconds": {k: round(v, 1) for k, v in stages.items()},
        "wall_seconds": round(wall_seconds, 1),
        "models": models,
        "data": data,
        "hosted_profile": profile,
    }


def plural(n: int, word: str) -> str:
    """``1 thread``, ``2 threads``."""
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def duration(seconds: float) -> str:
    """``42 s``, ``3.2 min``, ``1.5 h``."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def _commit_text(git: dict) -> str:
    if not git.get("commit"):
        return git.get("git", NOT_A_CHECKOUT)
    text = f"`{git['commit'][:10]}`"
    if git.get("dirty"):
        files = git.get("changed_files", [])
        shown = ", ".join(f"`{f}`" for f in files[:5]) + (", ..." if len(files) > 5 else "")
        return text + f" with uncommitted changes in {plural(len(files), 'file')} ({shown})"
    return text + " (clean tree)"


def _model_text(model: dict) -> str:
    """``name``: the one-line ``weights`` of :func:`mathkit.models.describe` and the parameter
    count; without ``weights``, every plain field (nested ``base`` left out)."""
    name = model.get("name") or "model"
    count = model.get("parameters")
    count_text = f"{count:,} parameters" if isinstance(count, int) else None
    if model.get("weights"):
        details = [model["weights"]] + ([count_text] if count_text else [])
    else:
        details = [f"{k.replace('_', ' ')}: {v}" for k, v in model.items()
                   if k not in ("name", "parameters") and v not in (None, "") and not isinstance(v, (dict, list))]
        details += [count_text] if count_text else []
    return f"`{name}`" + (f": {'; '.join(details)}" if details else "")


def to_markdown(prov: dict) -> str:
    """A two-column Markdown table for the top of a report."""
    m = prov["machine"]
    hardware = f"{m['cpu']}, {plural(m['cpu_cores'], 'core')}, {plural(prov['threads'], 'thread')} used"
    hardware += f"; GPU: {m['gpu']}" if m.get("gpu") else "; no GPU"
    rows = [
        ("commit", _commit_text(prov["git"])),
        ("started", prov["started_utc"]),
        ("where", f"{m['platform']}, device `{prov['device']}`: {hardware}"),
        ("versions", ", ".join(f"{k} {v}" for k, v in prov["versions"].items())
         + f", Python {m['python']}"),
    ]
    if prov.get("hosted_profile"):
        rows.append(("parameters", f"hosted profile `{prov['hosted_profile']}`"))
    rows += [("model", _model_text(model)) for model in prov["models"]]
    if prov["data"]:
        rows.append(("data", ", ".join(f"{k}: n={v}" for k, v in prov["data"].items())))
    stages = ", ".join(f"{k} {duration(v)}" for k, v in prov["stages_seconds"].items())
    rows.append(("wall time", (stages + "; " if stages else "") + f"total {duration(prov['wall_seconds'])}"))
    lines = ["| provenance | |", "|---|---|"]
    lines += [f"| {key} | {str(value).replace('|', '&#124;')} |" for key, value in rows]
    return "\n".join(lines)
