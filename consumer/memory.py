"""The process's allocator policy: large freed blocks go back to the system at once.

glibc serves blocks of at least its mmap threshold with their own mappings, returned on
free, and smaller ones from heap arenas that rarely shrink. By default the threshold
rises each time a mapped block is freed, up to 32 MiB, so after the first few model
batches (32 chunks of 10 s of float32 audio: 20 MiB) those blocks come from the arenas,
where in a job thread running beside Kafka's threads they fragment: the consumer's
resident memory grew with the length of the audio, 4.80 GiB at peak for three hours of
silence, 2.07 GiB with the threshold fixed (tests/integration/test_hostile_inputs.py).

Fixing the threshold with ``mallopt`` (which also turns its rise off) keeps every block of
1 MiB or more in its own mapping. An operator's ``MALLOC_MMAP_THRESHOLD_`` wins.
"""

from __future__ import annotations

import ctypes
import logging
import os
from collections.abc import Mapping

log = logging.getLogger(__name__)

M_MMAP_THRESHOLD = -3  # glibc's malloc.h
MMAP_THRESHOLD_BYTES = 1024 * 1024


def fix_mmap_threshold(environ: Mapping[str, str] = os.environ) -> bool:
    """Set glibc's mmap threshold to ``MMAP_THRESHOLD_BYTES`` for this process; idempotent.

    Returns whether it was set: False where the operator set ``MALLOC_MMAP_THRESHOLD_``
    (glibc already applied theirs) or the C library is not glibc.
    """
    if "MALLOC_MMAP_THRESHOLD_" in environ:
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt  # the C library this process already runs on
    except AttributeError:
        log.info("the C library has no mallopt; the allocator keeps its defaults")
        return False
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES))
