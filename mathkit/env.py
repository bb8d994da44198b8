"""Where we run (Kaggle, Colab, local), what the hardware is, and seeding.

Everything that differs between a laptop, CI, Kaggle and Colab is decided here, so that the
notebooks and the rest of mathkit never look at environment variables themselves.
"""

from __future__ import annotations

import os
import platform
import random
import sys
from pathlib import Path

# Kaggle's writable folder (its /kaggle/input is read-only). A module constant so that tests can
# stand a temporary folder in for it.
KAGGLE_WORKING = Path("/kaggle/working")

# Library versions that provenance and results.json report.
REPORTED_PACKAGES = ("mathkit", "torch", "transformers", "peft", "trl", "datasets", "tokenizers",
                     "accelerate", "bitsandbytes", "math-verify", "papermill")


def detect_platform() -> str:
    """Return ``"kaggle"``, ``"colab"`` or ``"local"``."""
    if os.environ.get("KAGGLE_KERNEL_RUN_TYPE"):
        return "kaggle"
    if "google.colab" in sys.modules or os.environ.get("COLAB_RELEASE_TAG"):
        return "colab"
    return "local"


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch so that CPU runs with one seed give the same metrics."""
    random.seed(seed)
    os.environ["PYTHONHASHSEED"] = str(seed)
    try:
        import numpy as np

        np.random.seed(seed)
    except ImportError:  # numpy is a dependency, but seeding should never be the failure
        pass
    try:
        import torch

        torch.manual_seed(seed)
        if torch.cuda.is_available():
            torch.cuda.manual_seed_all(seed)
    except ImportError:
        pass


def best_device() -> str:
    """``"cuda"`` when a GPU is visible, else ``"cpu"``."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def cpu_supports_bf16() -> bool:
    """True when this CPU has native bf16 matmuls (avx512_bf16 or AMX); fall back to fp32 otherwise."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def package_versions(packages: tuple[str, ...] = REPORTED_PACKAGES) -> dict[str, str]:
    """Installed versions of ``packages`` (missing ones are left out; mathkit always appears)."""
    import importlib.metadata as md

    versions = {}
    for pkg in packages:
        try:
            versions[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            continue
    if "mathkit" in packages and "mathkit" not in versions:
        from mathkit import __version__

        versions["mathkit"] = __version__
    return versions


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (e.g. "Intel(R) Xeon(R) ..."), else what Python knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def cpu_cores() -> int:
    """Cores this process may run on (its affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def set_threads(threads: int) -> int:
    """Use ``threads`` torch CPU threads (0 keeps torch's default); returns the count in use."""
    import torch

    if threads < 0:
        raise ValueError(f"threads must be >= 0 (0 = torch's default), got {threads}")
    if threads:
        torch.set_num_threads(threads)
    return torch.get_num_threads()


def runtime_info() -> dict:
    """Where a run happened, for results.json: platform, device, threads and library versions."""
    import torch

    info = {
        "platform": detect_platform(),
        "device": "gpu" if torch.cuda.is_available() else "cpu",
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpu_threads": torch.get_num_threads(),
        "versions": package_versions(),
    }
    if torch.cuda.is_available():
        info["gpu_name"] = torch.cuda.get_device_name(0)
    return info


def repo_root(start: str | Path | None = None) -> Path | None:
    """The mathkit checkout containing ``start`` (or the cwd): the folder holding pyproject.toml
    next to mathkit/. None when running from an installed copy outside a checkout."""
    here = Path(start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "pyproject.toml").is_file() and (folder / "mathkit").is_dir():
            return folder
    return None


def resolve_output_dir(output_dir: str | Path) -> Path:
    """Absolute folder for a notebook's outputs.

    On Kaggle everything goes under /kaggle/working. Elsewhere a relative path is taken from the
    repository root, so a notebook opened from ``notebooks/`` writes to the same ``reports/`` as
    the runner does.
    """
    path = Path(output_dir)
    if detect_platform() == "kaggle" and not path.is_absolute():
        return KAGGLE_WORKING / path
    if path.is_absolute():
        return path
    root = repo_root()
    return (root / path) if root else path.resolve()
