import platform

import numpy as np
import pytest

from engine.data.memory import keep_freed_memory, release_freed_memory

glibc = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt and malloc_trim are glibc's")


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS")) / 1024


@glibc
def test_freed_blocks_are_kept_for_reuse_then_released():
    assert keep_freed_memory()
    before = _rss_mb()
    blocks = [np.ones(1 << 18, dtype=np.float32) for _ in range(200)]  # 200 blocks of 1 MB, touched
    del blocks
    kept = _rss_mb() - before
    assert kept > 150  # below the 64 MB mmap threshold: heap blocks, held for the next step
    release_freed_memory()
    assert _rss_mb() - before < kept - 150
