"""Give back what one training left behind, so a process that trains again stays near one training's peak.

After a fold, Python's cycles still hold the fold's model and optimizer until the next
collection; glibc keeps the freed heap in its arenas instead of returning it to the
system (RSS stays at the peak); CUDA's caching allocator keeps the freed blocks. On
these CPUs six trainings in a row each left RSS at 2.3 GB, and `malloc_trim` took it
back to 0.9 GB (BENCHMARKS.md, "Memory per trial").
"""
from __future__ import annotations

import ctypes
import ctypes.util
import gc
import logging
from functools import lru_cache

__all__ = ["release_memory"]

log = logging.getLogger(__name__)


@lru_cache(maxsize=1)
def _malloc_trim():
    """glibc's malloc_trim, or None (musl, macOS, Windows)."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return libc.malloc_trim
    except (OSError, AttributeError):
        return None


def release_memory() -> None:
    """Collect cycles, empty CUDA's cache, and return the C heap's free pages to the system."""
    gc.collect()
    import torch  # already imported by whoever trained

    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.empty_cache()
    trim = _malloc_trim()
    if trim is not None:
        trim(0)
