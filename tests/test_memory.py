"""Peak memory of a block: a large allocation inside the block must show up, and only there."""

import sys

import numpy as np
import pytest

from mathkit import memory


def _touch_mb(mb: int) -> np.ndarray:
    # np.ones writes every page, so the memory is really resident (np.zeros may stay lazy).
    return np.ones(mb * 1024 * 1024 // 8, dtype=np.float64)


def test_allocation_inside_block_raises_peak():
    with memory.track_peak_memory() as mem:
        block = _touch_mb(120)
        del block
    assert mem.cpu_peak_rss_mb >= mem.cpu_start_rss_mb + 100
    assert mem.cpu_added_mb >= 100
    d = mem.as_dict()
    assert set(d) >= {"cpu_peak_rss_mb", "cpu_start_rss_mb", "cpu_added_mb", "scope",
                      "cuda_peak_allocated_mb"}


@pytest.mark.skipif(not memory.reset_peak_rss(), reason="kernel high-water mark cannot be reset here")
def test_peak_is_the_blocks_own_when_reset_works():
    with memory.track_peak_memory() as big:
        block = _touch_mb(150)
        del block
    with memory.track_peak_memory() as small:
        block = _touch_mb(10)
        del block
    assert big.scope == small.scope == "phase"
    # The second block must not inherit the first block's peak.
    assert small.cpu_added_mb < 100
    assert big.cpu_added_mb > small.cpu_added_mb + 100


def test_current_and_peak_are_positive_and_ordered():
    assert memory.current_rss_mb() > 0
    assert memory.peak_rss_mb() >= memory.current_rss_mb() * 0.9


def test_cuda_fields_are_none_without_gpu():
    torch = pytest.importorskip("torch")
    with memory.track_peak_memory() as mem:
        pass
    if torch.cuda.is_available():
        assert mem.cuda_peak_allocated_mb is not None
    else:
        assert mem.cuda_peak_allocated_mb is None and mem.cuda_peak_reserved_mb is None


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc_trim")
def test_release_memory_returns_freed_heap_pages():
    warm = [np.ones(1024 * 1024 // 8) for _ in range(3)]  # freed mmap blocks raise glibc's threshold,
    del warm                                              # so the next 1 MiB blocks come from the heap
    blocks = [np.ones(1024 * 1024 // 8) for _ in range(120)]
    pin = np.ones(1024 * 1024 // 8)  # above the blocks: the heap top cannot shrink by itself
    del blocks
    assert memory.release_memory() > 60
    assert memory.release_memory() < 20  # nothing left to give back
    del pin
