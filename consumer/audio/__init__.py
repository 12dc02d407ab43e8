"""Decoding: uploaded bytes in any supported container, out as mono float32 at 16 kHz.

The room holds ``decoder`` (``decode``: picks the block source by the file's first bytes,
downmixes, checks and resamples block by block), its two block sources (soundfile for
WAV/RF64/W64/FLAC in ``decoder``, FFmpeg through PyAV in ``av_source``), ``wav_headers``
(the WAV header facts soundfile does not give), ``resampler`` (the streaming polyphase
resampler) and ``samples`` (``SampleFile``: the decoded audio on disk, read a window at a time). It may import ``consumer.config`` and ``consumer.errors`` and nothing else of the
service; nothing here imports torch.
"""

from consumer.audio.decoder import BLOCK_BYTES, TARGET_SAMPLE_RATE, decode, decode_blocks
from consumer.audio.samples import SampleFile

__all__ = ["BLOCK_BYTES", "TARGET_SAMPLE_RATE", "SampleFile", "decode", "decode_blocks"]
