"""Hand memory that a finished stage freed back to the operating system before the next stage starts."""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import gc

import pyarrow as pa


@functools.cache
def _malloc_trim():
    """glibc's malloc_trim, or None where the C library has none (musl, macOS, Windows)."""
    name = ctypes.util.find_library("c")
    try:
        return getattr(ctypes.CDLL(name), "malloc_trim", None) if name else None
    except OSError:
        return None


def release_freed_memory() -> None:
    """Collect garbage, release Arrow's unused pool memory and trim the C heap.

    Reading a log and training free hundreds of MB in pieces that malloc keeps for reuse; without this the
    next stage's peak stacks on top of them (measured: 40-90 MB less resident after loading 6.4M events)."""
    gc.collect()
    pa.default_memory_pool().release_unused()
    trim = _malloc_trim()
    if trim is not None:
        trim(0)
