"""``SampleFile``: decoded audio on disk, read back a window at a time (``consumer.audio.samples``)."""

from __future__ import annotations

import os

import numpy as np
import pytest

from consumer.audio import SampleFile, decode
from consumer.config import AudioLimits
from tests.support import media


def test_reads_what_was_appended_in_any_window():
    data = np.random.default_rng(0).standard_normal(50_000).astype(np.float32)
    with SampleFile(16_000) as samples:
        for first in range(0, len(data), 7_777):
            samples.append(data[first : first + 7_777])
        assert len(samples) == len(data) and samples.nbytes == data.nbytes
        assert samples.duration == pytest.approx(50_000 / 16_000)
        assert np.array_equal(samples.read(0, len(data)), data)
        assert np.array_equal(samples.read(12_345, 23_456), data[12_345:23_456])
        assert np.array_equal(samples[-100:], data[-100:])
        assert np.array_equal(np.asarray(samples), data)
        assert np.array_equal(samples.read(49_990, 60_000), data[49_990:])  # clipped at the end
        padded = samples.padded(49_990, 20)
        assert np.array_equal(padded[:10], data[49_990:]) and not padded[10:].any()
        with pytest.raises(TypeError):
            samples[::2]


def test_the_file_has_no_name_and_its_disk_is_freed_on_close():
    samples = SampleFile.from_array(np.ones(1000, np.float32), 16_000)
    descriptor = samples._file.fileno()
    target = os.readlink(f"/proc/self/fd/{descriptor}")
    assert target.endswith("(deleted)") or not os.path.exists(target), target
    samples.close()
    with pytest.raises(OSError):
        os.fstat(descriptor)


def test_decoding_writes_the_samples_to_a_file_not_to_memory():
    audio = decode(media.encode(media.tone(2.0, 44_100, 2), 44_100), AudioLimits())
    with audio.samples as samples:
        assert isinstance(samples, SampleFile)
        assert len(samples) > 0 and np.isfinite(samples[:]).all()
