"""``StreamResampler``: ``scipy.signal.resample_poly`` fed one block at a time.

``resample_poly`` needs the whole signal at once, so a long file at a high rate would be
held whole at its source rate (12 times the 16 kHz result at 192 kHz). This designs the
same filter as ``resample_poly`` (Kaiser window, beta 5, half length 10 x max(up, down),
float32 taps for float32 input) and runs scipy's ``upfirdn`` over each block together with
the few earlier input samples that the next outputs still reach. Every output is the same
float32 sum over the same samples as in the whole-signal call, so the concatenated outputs
equal ``resample_poly(x, up, down)`` on the whole of ``x`` while only one block is held.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.signal import firwin, upfirdn


class StreamResampler:
    """Resamples float32 mono from ``rate_in`` to ``rate_out`` as blocks arrive.

    Feed the blocks in order with ``feed`` (each call returns the outputs they complete),
    then call ``finish`` once for the rest. One instance resamples one signal.
    """

    def __init__(self, rate_in: int, rate_out: int) -> None:
        g = math.gcd(rate_in, rate_out)
        self.up, self.down = rate_out // g, rate_in // g
        self._taps: np.ndarray = np.zeros(0, np.float32)
        self._skip = 0  # upfirdn's first outputs, before the one centred on input 0
        if not self.identity:
            self._taps, self._skip = _filter(self.up, self.down)
        self._pending = np.zeros(0, np.float32)  # input from index `_start` (a multiple of `down`) on
        self._start = 0
        self._received = 0
        self._next = self._skip  # index, in upfirdn's output over the whole signal, of the next output

    @property
    def identity(self) -> bool:
        """Whether the rates are equal: blocks pass through unchanged."""
        return self.up == self.down

    def output_length(self, frames: int) -> int:
        """How many samples ``frames`` input samples become (``resample_poly``'s length)."""
        return -(-frames * self.up // self.down)

    def feed(self, block: np.ndarray) -> np.ndarray:
        """Take the next input samples; return the outputs that are now complete."""
        if self.identity:
            return block
        self._received += len(block)
        # an output is complete once its newest input sample has arrived
        return self._run(block, end=(self._received * self.up - 1) // self.down + 1)

    def finish(self) -> np.ndarray:
        """Return the remaining outputs, computed with zeros after the last input (as ``resample_poly`` pads)."""
        if self.identity:
            return np.zeros(0, np.float32)
        end = self._skip + self.output_length(self._received)
        # upfirdn stops where its input does: give it the zeros the last outputs reach
        reach = -(-((end - 1) * self.down - (len(self._taps) - 1)) // self.up) + 1
        missing = reach - (self._start + len(self._pending))
        return self._run(np.zeros(max(0, missing), np.float32), end=end)

    def _run(self, block: np.ndarray, end: int) -> np.ndarray:
        pending = np.concatenate((self._pending, block)) if len(self._pending) else block
        if end <= self._next or not len(pending):
            self._pending = pending.copy()
            return np.zeros(0, np.float32)
        first = self._start * self.up // self.down  # the whole-signal index of upfirdn's first output here
        outputs = upfirdn(self._taps, pending, self.up, self.down)[self._next - first : end - first]
        self._next = end
        # keep what the next output reaches back to, from a multiple of `down` so that
        # the outputs of the next call stay aligned with the whole-signal ones
        oldest = max(0, -(-(end * self.down - (len(self._taps) - 1)) // self.up))
        start = oldest - oldest % self.down
        self._pending = pending[start - self._start :].copy()
        self._start = start
        return outputs


def _filter(up: int, down: int) -> tuple[np.ndarray, int]:
    """``resample_poly``'s filter for float32 input, and how many of its first outputs to drop."""
    max_rate = max(up, down)
    half_len = 10 * max_rate
    taps = firwin(2 * half_len + 1, 1.0 / max_rate, window=("kaiser", 5.0)).astype(np.float32)
    taps *= up
    # resample_poly's alignment: pad the front so that output `skip` is centred on input 0
    pre_pad = down - half_len % down
    return np.concatenate((np.zeros(pre_pad, np.float32), taps)), (half_len + pre_pad) // down
