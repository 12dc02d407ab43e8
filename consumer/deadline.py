"""How long a job may run: a budget scaled by its audio's duration, and a limit on silence.

A job thread that never returns (a CUDA call blocked after a driver fault, a deadlock, a
decoder caught in a loop) cannot be killed from inside the process, and while the rest of
the process is healthy nothing else notices: the Kafka worker's loop keeps turning and its
lease stays renewed, the shim keeps answering its probes. What can be done is to notice and
end the process: the Kafka worker exits non-zero (one more start in the input's attempt
marker, so the input is answered ``too_many_attempts`` after ``MAX_ATTEMPTS`` of them) and
the shim's ``/health`` fails, so that Kubernetes restarts it.

Every stage of a job beats its ``JobWatch`` (download chunks, decoded blocks, segmentation
batches, embedding regions, stage ends); time spent waiting for the engine while another job
holds it does not count.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from consumer.config import JobLimits


class JobWatch:
    """The beats of one running job, and whether it has outrun its limits; safe across threads."""

    def __init__(self, limits: JobLimits, clock: Callable[[], float] = time.monotonic) -> None:
        self.limits = limits
        self._clock = clock
        self._started = self._last = clock()
        self._waited = 0.0  # seconds spent waiting for the engine (not counted)
        self._waiting_since: float | None = None
        self._duration: float | None = None
        self._guard = threading.Lock()

    def beat(self) -> None:
        """The job made progress."""
        self._last = self._clock()

    def set_duration(self, seconds: float) -> None:
        """The audio's duration, known once it is decoded: the budget grows with it."""
        self._duration = seconds
        self.beat()

    @property
    def budget(self) -> float:
        """Seconds the job may run in all (waiting for the engine not counted)."""
        return self.limits.budget_seconds + self.limits.budget_per_audio_second * (self._duration or 0.0)

    @contextmanager
    def waiting(self) -> Iterator[None]:
        """Time inside this block is the engine's queue, not the job's: it neither stalls nor spends."""
        with self._guard:
            self._waiting_since = self._clock()
        try:
            yield
        finally:
            with self._guard:
                assert self._waiting_since is not None
                self._waited += self._clock() - self._waiting_since
                self._waiting_since = None
            self.beat()

    def overdue(self) -> str | None:
        """Why the job will not end (no beat for ``stall_seconds``, or past its budget), or None."""
        now = self._clock()
        with self._guard:
            if self._waiting_since is not None:
                return None
            spent = now - self._started - self._waited
        silent = now - self._last
        if silent > self.limits.stall_seconds:
            return f"no progress for {silent:.0f} s (JOB_STALL_SECONDS={self.limits.stall_seconds:g})"
        if spent > self.budget:
            return f"running for {spent:.0f} s, past its budget of {self.budget:.0f} s"
        return None


class Watches:
    """The watches of the jobs running in a process, for its liveness probe; safe across threads."""

    def __init__(self) -> None:
        self._running: set[JobWatch] = set()
        self._guard = threading.Lock()

    @contextmanager
    def running(self, watch: JobWatch) -> Iterator[JobWatch]:
        """``watch`` counts as running inside this block."""
        with self._guard:
            self._running.add(watch)
        try:
            yield watch
        finally:
            with self._guard:
                self._running.discard(watch)

    def overdue(self) -> str | None:
        """Why one of the running jobs will not end, or None."""
        with self._guard:
            watches = list(self._running)
        return next((reason for watch in watches if (reason := watch.overdue())), None)
