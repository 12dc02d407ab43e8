"""The process's allocator policy: one heap whose large blocks are reused, trimmed after each job.

A diarization job allocates and frees the same large blocks batch after batch (a batch of
32 chunks of 10 s through the segmentation model: tensors of up to 160 MB). glibc's defaults serve
blocks over its mmap threshold (at most 32 MiB) with mappings of their own, so every
batch maps fresh pages and the kernel zeroes them: on 2 cores, 7 million page faults and
a third of the CPU time in the kernel for a 10-minute file. A job thread also gets an
arena of its own, made of 64 MiB heaps that cannot hold such blocks either.

So the service keeps one arena (``M_ARENA_MAX`` 1: the main heap, which can grow to any
size), serves blocks of up to ``MMAP_THRESHOLD_BYTES`` from it, and lets it keep up to
``TRIM_THRESHOLD_BYTES`` of free memory at its top while a job runs; after each job,
``release_free_memory`` hands every free page back to the system. ``bench/allocator_policy.py``
compares this policy with glibc's defaults and with every block of 1 MiB or more in its
own mapping (the policy before this one, about half as fast on 2 cores).

An operator's own ``MALLOC_*`` environment (glibc's tunables) wins: then nothing is set.
"""

from __future__ import annotations

import ctypes
import functools
import logging
import os
from collections.abc import Mapping
from typing import Any

log = logging.getLogger(__name__)

# glibc's malloc.h
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8

MMAP_THRESHOLD_BYTES = 1024**3
TRIM_THRESHOLD_BYTES = 1024**3


@functools.cache
def _libc() -> Any | None:
    """The C library this process already runs on, if it is glibc (has ``mallopt`` and ``malloc_trim``)."""
    libc = ctypes.CDLL(None)
    return libc if hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim") else None


def tune_allocator(environ: Mapping[str, str] = os.environ) -> bool:
    """Apply the policy above to this process; idempotent. Call it before the first job.

    Returns whether it was applied: False where the operator set any ``MALLOC_*`` variable
    or ``GLIBC_TUNABLES`` (glibc already applied theirs), or the C library is not glibc.
    """
    if "GLIBC_TUNABLES" in environ or any(name.startswith("MALLOC_") for name in environ):
        return False
    libc = _libc()
    if libc is None:
        log.info("the C library is not glibc; the allocator keeps its defaults")
        return False
    return all(
        libc.mallopt(option, value)
        for option, value in (
            (M_ARENA_MAX, 1),
            (M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES),
            (M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES),
        )
    )


def release_free_memory() -> None:
    """Give the free pages of the heap back to the system (``malloc_trim``); a no-op off glibc."""
    libc = _libc()
    if libc is not None:
        libc.malloc_trim(0)
