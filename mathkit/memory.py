"""Peak memory of one phase (training, evaluation): CPU resident set and CUDA allocations.

Reports quote "peak memory" next to tokens/s, so the number has to belong to the phase it is
printed for. On Linux the kernel's high-water mark of the resident set (``VmHWM``) can be reset by
writing ``5`` to ``/proc/self/clear_refs``; when that works the CPU peak is the phase's own
(``scope="phase"``). Elsewhere only the process-lifetime peak from ``resource.getrusage`` exists,
and the result says so (``scope="process"``) instead of passing it off as the phase's. No psutil:
the standard library and /proc are enough. CUDA peaks come from torch's allocator statistics,
which ``torch.cuda.reset_peak_memory_stats`` resets.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import logging
import resource
import sys
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

log = logging.getLogger(__name__)

_MB = 1024 * 1024
_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")


def _status_kb(field: str) -> int | None:
    """A ``kB`` field of /proc/self/status (``VmRSS``, ``VmHWM``), or None off Linux."""
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def current_rss_mb() -> float:
    """Resident memory of this process now, in MiB (0.0 where /proc is missing)."""
    kb = _status_kb("VmRSS")
    return kb / 1024 if kb is not None else 0.0


def peak_rss_mb() -> float:
    """Highest resident memory since the last :func:`reset_peak_rss` (or process start), MiB."""
    kb = _status_kb("VmHWM")
    if kb is not None:
        return kb / 1024
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Linux reports kilobytes, macOS bytes.
    return peak / _MB if sys.platform == "darwin" else peak / 1024


def reset_peak_rss() -> bool:
    """Reset the kernel's resident high-water mark; False where the platform does not allow it."""
    try:
        _CLEAR_REFS.write_text("5")
    except OSError:
        return False
    return _status_kb("VmHWM") is not None


def _cuda_available() -> bool:
    # Only a process that imported torch can hold CUDA memory; never import it just to look.
    torch = sys.modules.get("torch")
    return torch is not None and torch.cuda.is_available()


def reset_cuda_peak() -> None:
    """Reset torch's CUDA peak statistics on every visible device (no-op without a GPU)."""
    if _cuda_available():
        torch = sys.modules["torch"]
        for i in range(torch.cuda.device_count()):
            torch.cuda.reset_peak_memory_stats(i)


def cuda_peak_mb() -> tuple[float, float] | None:
    """(max allocated, max reserved) in MiB summed over visible GPUs, or None without a GPU."""
    if not _cuda_available():
        return None
    torch = sys.modules["torch"]
    allocated = sum(torch.cuda.max_memory_allocated(i) for i in range(torch.cuda.device_count()))
    reserved = sum(torch.cuda.max_memory_reserved(i) for i in range(torch.cuda.device_count()))
    return allocated / _MB, reserved / _MB


def release_memory() -> float:
    """Return freed memory to the OS; MiB of resident memory released (CPU).

    After a model or trainer is deleted, glibc keeps the freed heap pages mapped (they were
    measured here as 10 GB still resident after LoRA training), so the next phase's RSS and any
    other process on the machine pay for memory nobody uses. ``malloc_trim(0)`` hands it back;
    CUDA's cache is emptied too.
    """
    before = current_rss_mb()
    gc.collect()
    if _cuda_available():
        sys.modules["torch"].cuda.empty_cache()
    libc_name = ctypes.util.find_library("c")
    if libc_name and sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(libc_name).malloc_trim(0)
        except (OSError, AttributeError):  # not glibc (musl): nothing to trim
            pass
    return max(0.0, before - current_rss_mb())


@dataclass
class PeakMemory:
    """What :func:`track_peak_memory` measured; fields are filled when the block exits."""

    cpu_start_rss_mb: float = 0.0
    cpu_peak_rss_mb: float = 0.0
    scope: str = "phase"                      # "phase": the block's own peak; "process": lifetime
    cuda_peak_allocated_mb: float | None = None
    cuda_peak_reserved_mb: float | None = None

    @property
    def cpu_added_mb(self) -> float:
        """How far the peak rose above the resident memory at the start of the block."""
        return max(0.0, self.cpu_peak_rss_mb - self.cpu_start_rss_mb)

    def as_dict(self) -> dict:
        d = asdict(self)
        d["cpu_added_mb"] = self.cpu_added_mb
        return {k: (round(v, 1) if isinstance(v, float) else v) for k, v in d.items()}


@contextmanager
def track_peak_memory():
    """Measure the peak CPU resident memory and CUDA allocation of the ``with`` block.

    Blocks do not nest: an inner block resets the same process-wide marks the outer one reads.

    >>> with track_peak_memory() as mem:
    ...     train()
    >>> mem.cpu_peak_rss_mb, mem.cuda_peak_allocated_mb
    """
    result = PeakMemory(cpu_start_rss_mb=current_rss_mb())
    if not reset_peak_rss():
        result.scope = "process"
        log.info("cannot reset the resident high-water mark here; reporting the process peak")
    reset_cuda_peak()
    try:
        yield result
    finally:
        result.cpu_peak_rss_mb = max(peak_rss_mb(), current_rss_mb())
        cuda = cuda_peak_mb()
        if cuda is not None:
            result.cuda_peak_allocated_mb, result.cuda_peak_reserved_mb = cuda
