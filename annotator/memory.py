"""A worker's freed memory given back to the system, so that joblib does not take it for a leak.

glibc keeps the buffers an 8-24 MP photo frees for reuse, and a worker's resident memory grows by hundreds
of MB over a few photos. joblib's workers (loky) read a growth of 300 MB as a leak: they warn the user and
replace the worker, which loads the networks again.
"""
from __future__ import annotations

import ctypes
import os
from functools import lru_cache
from pathlib import Path

TRIM_AFTER = 100 * 2**20  # bytes of growth since the last trim before the next one (a trim costs 10-25 ms)
_STATM = Path("/proc/self/statm")
_last = {"resident": 0}  # this process's resident bytes after its last trim


def give_back_freed_memory() -> None:
    """Return freed memory to the system when the resident size has grown by :data:`TRIM_AFTER` since the
    last time (glibc on Linux; elsewhere nothing is done)."""
    libc = glibc()
    if libc is None or resident_bytes() - _last["resident"] < TRIM_AFTER:
        return
    libc.malloc_trim(0)
    _last["resident"] = resident_bytes()


def resident_bytes() -> int:
    """This process's resident memory (Linux's /proc)."""
    return int(_STATM.read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@lru_cache(maxsize=1)
def glibc() -> ctypes.CDLL | None:
    """The C library when it is Linux's glibc, which keeps freed memory and can give it back; else None."""
    if not _STATM.exists():
        return None
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:  # not glibc (musl): its allocator is left alone
        return None
    return libc if hasattr(libc, "malloc_trim") else None
