"""``SampleFile``: a job's decoded audio, kept on disk and read a window at a time.

A day of 16 kHz float32 audio is 5.5 GB: held in memory it would be most of a pod's limit,
so the decoder appends its output to an unnamed temporary file (``tempfile.TemporaryFile``
in ``TMPDIR``: removed by the kernel when closed or when the process ends, whatever way it
ends), and the engine reads the windows it works on with ``pread``. What a read brings in
is page cache, which the kernel reclaims under memory pressure, not the process's resident
memory. The pod's temporary disk must hold 64 KB per second of the longest audio it takes.
"""

from __future__ import annotations

import os
import tempfile
from typing import IO, Any

import numpy as np

_ITEM = np.dtype(np.float32).itemsize


class SampleFile:
    """Mono float32 samples at ``sample_rate``, appended in order, then read by position.

    Indexing with a slice (``samples[a:b]``, steps of 1 only) or ``numpy.asarray`` reads
    into a new array; ``read`` clips to the samples there are. Not thread-safe for
    appending; reads may come from any thread.
    """

    def __init__(self, sample_rate: int) -> None:
        self.sample_rate = sample_rate
        self._file: IO[bytes] = tempfile.TemporaryFile(prefix="samples-")
        self._length = 0

    @classmethod
    def from_array(cls, samples: np.ndarray, sample_rate: int) -> SampleFile:
        """A file holding a copy of in-memory ``samples``."""
        written = cls(sample_rate)
        written.append(samples)
        return written

    def append(self, samples: np.ndarray) -> None:
        """Write ``samples`` after those already there."""
        data = np.ascontiguousarray(samples, dtype=np.float32)
        view, offset = data.data.cast("B"), self._length * _ITEM
        while len(view):
            done = os.pwrite(self._file.fileno(), view, offset)
            view, offset = view[done:], offset + done
        self._length += len(data)

    def __len__(self) -> int:
        return self._length

    @property
    def duration(self) -> float:
        """Length in seconds."""
        return self._length / self.sample_rate

    @property
    def nbytes(self) -> int:
        """Bytes the samples take on disk."""
        return self._length * _ITEM

    def read(self, start: int, stop: int) -> np.ndarray:
        """Samples ``start`` to ``stop`` (clipped to the file) as a new float32 array."""
        start, stop = max(0, start), min(stop, self._length)
        out = np.empty(max(0, stop - start), np.float32)
        view, offset = out.data.cast("B"), start * _ITEM
        while len(view):
            done = os.preadv(self._file.fileno(), [view], offset)
            if done <= 0:
                raise OSError(f"sample file ended at byte {offset} of {self.nbytes}")
            view, offset = view[done:], offset + done
        return out

    def padded(self, start: int, length: int) -> np.ndarray:
        """``length`` samples from ``start``, zeros where they pass the end."""
        out = np.zeros(length, np.float32)
        data = self.read(start, start + length)
        out[: len(data)] = data
        return out

    def __getitem__(self, index: slice) -> np.ndarray:
        if not isinstance(index, slice) or index.step not in (None, 1):
            raise TypeError("SampleFile takes contiguous slices only")
        start, stop, _ = index.indices(self._length)
        return self.read(start, stop)

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        samples = self.read(0, self._length)
        return samples if dtype is None else samples.astype(dtype)

    def close(self) -> None:
        """Delete the samples (the file was never named; closing frees its disk)."""
        self._file.close()

    def __enter__(self) -> SampleFile:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()
