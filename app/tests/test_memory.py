"""Freed memory goes back to the OS, so resident size stays flat between SAM2 frames."""

from __future__ import annotations

import numpy as np
import psutil

from rvm_edge.memory import trim_heap


def test_trim_returns_freed_heap_memory() -> None:
    proc = psutil.Process()
    # many mid-sized blocks (below glibc's mmap threshold) land on the heap and stay there when freed
    blocks = [np.ones(64 * 1024 // 8) for _ in range(4000)]  # ~256 MB
    grown = proc.memory_info().rss
    del blocks
    assert trim_heap()
    after = proc.memory_info().rss
    assert grown - after > 128 * 1024 * 1024
