"""Durable starts of each input's job: one input cannot take down the fleet, and a moved
partition does not start a job twice.

An input that kills its consumer (out of memory, a native crash, a job past its deadline:
``consumer.deadline``) is never committed, so Kafka hands it to the next consumer, which
dies the same way. The Kafka worker therefore counts each start of an input's job in a
small marker object in the results bucket before running it, and removes the marker once
the answer is published: the count only grows with starts that died on the way. When it
would pass ``MAX_ATTEMPTS`` the input is answered ``too_many_attempts`` instead of being run
again.

The marker is also a lease: its owner renews it while the job runs (``LeaseKeeper``, on a
thread of its own, so that a store that hangs never stalls the poll loop; a missed renewal
is tolerated, the lease outlives three). When the partition moves to another consumer
meanwhile (a rebalance), the new owner finds a live lease of another consumer and waits
(``RunningElsewhereError``, retryable) instead of starting the job again; the first owner,
which may no longer commit, marks the marker answered once its answer is published, and the
new owner then commits without answering again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

from consumer.errors import RunningElsewhereError, ServiceError
from consumer.events import InputRef

log = logging.getLogger(__name__)

MARKER_PREFIX = "attempts/"  # in the results bucket; result objects end in .json or .rttm, markers do not
LEASE_SECONDS = 30.0  # a start not renewed for this long belongs to a consumer that died
ANSWERED = 0  # what ``begin`` returns for an input another consumer has answered meanwhile


class MarkerStore(Protocol):
    """Where markers live (``consumer.storage.ObjectStore``): small objects of the results bucket.

    Every method blocks on the store for at most the store client's bounded worst case and
    raises ``StorageUnavailableError`` (retryable) when the store cannot be read or written.
    """

    def read_marker(self, key: str) -> bytes | None:
        """The object's bytes, or None when there is none."""
        ...

    def write_marker(self, key: str, body: bytes) -> None:
        """Write (or replace) the object."""
        ...

    def remove_marker(self, key: str) -> None:
        """Remove the object (nothing happens when there is none)."""
        ...


class AttemptLog(Protocol):
    """Starts of each input's job whose answer has not been published yet.

    Every method blocks on the store and raises ``StorageUnavailableError`` (retryable)
    when it cannot be read or written; the caller backs off and tries again.
    """

    def begin(self, ref: InputRef) -> int:
        """Count one more start of ``ref``'s job; the number of unanswered starts, this one included.

        Returns ``ANSWERED`` if another consumer has published its answer since; raises
        ``RunningElsewhereError`` (retryable) while another consumer's start is alive.
        """
        ...

    def renew(self, ref: InputRef) -> None:
        """Keep this consumer's start of ``ref`` alive; called at least every third of ``LEASE_SECONDS``."""
        ...

    def answered(self, ref: InputRef) -> None:
        """Record that ``ref``'s answer is published, for a consumer that takes it over uncommitted."""
        ...

    def settle(self, ref: InputRef, starts: int = 0) -> None:
        """Set ``ref``'s count to ``starts``: 0 (answered and committed) removes its marker."""
        ...


class StoredAttempts:
    """An ``AttemptLog`` kept as one small JSON object per input, ``attempts/<sha256>``, in ``store``.

    ``owner`` names this consumer (its static group member id, or host and process).
    ``clock`` gives wall-clock seconds: leases are compared across machines. The store
    reports each call's outcome to its health (``/ready``), as for every other call.
    """

    def __init__(self, store: MarkerStore, owner: str, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.owner = owner
        self.clock = clock

    def begin(self, ref: InputRef) -> int:
        """Read the marker, write it back counted (two consumers racing here can lose one count)."""
        key = marker_key(ref)
        marker = self._read(key)
        if marker.get("answered"):
            return ANSWERED
        starts = int(marker.get("starts", 0))
        alive = self.clock() - float(marker.get("renewed", 0.0)) < LEASE_SECONDS
        if starts and marker.get("owner") != self.owner and alive:
            raise RunningElsewhereError(f"{marker.get('owner')} is running this job")
        self._write(key, ref, starts + 1)
        return starts + 1

    def renew(self, ref: InputRef) -> None:
        """Write the marker again with the current time."""
        key = marker_key(ref)
        self._write(key, ref, max(1, int(self._read(key).get("starts", 0))))

    def answered(self, ref: InputRef) -> None:
        """Mark the marker answered."""
        key = marker_key(ref)
        self._write(key, ref, int(self._read(key).get("starts", 0)), answered=True)

    def settle(self, ref: InputRef, starts: int = 0) -> None:
        """Remove the marker, or write ``starts`` into it."""
        key = marker_key(ref)
        if starts > 0:
            self._write(key, ref, starts)
        else:
            self.store.remove_marker(key)

    def _read(self, key: str) -> dict[str, Any]:
        body = self.store.read_marker(key)
        if body is None:
            return {}
        try:
            marker = json.loads(body)
        except ValueError:  # not a marker this service wrote: count afresh
            return {}
        return marker if isinstance(marker, dict) and isinstance(marker.get("starts"), int) else {}

    def _write(self, key: str, ref: InputRef, starts: int, answered: bool = False) -> None:
        marker = {
            "starts": starts,
            "owner": self.owner,
            "renewed": self.clock(),
            "answered": answered,
            "input": {"id": ref.id[:256], "source": ref.source[:256]},
        }
        self.store.write_marker(key, json.dumps(marker).encode())


class LeaseKeeper:
    """Renews the leases of the inputs in hand every third of ``LEASE_SECONDS``, on its own thread.

    A renewal that fails is logged and tried again at the next turn; a store that hangs
    delays only this thread. ``hold`` and ``release`` are called by the poll loop and never
    block on the store.
    """

    def __init__(self, attempts: AttemptLog, interval: float = LEASE_SECONDS / 3) -> None:
        self._attempts = attempts
        self._interval = interval
        self._held: list[InputRef] = []
        self._guard = threading.Lock()
        self._renewing = threading.Lock()  # held while a renewal is in flight
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="leases", daemon=True)
        self._thread.start()

    def hold(self, ref: InputRef) -> None:
        """Renew ``ref``'s lease from now on."""
        with self._guard:
            if ref not in self._held:
                self._held.append(ref)

    def release(self, ref: InputRef) -> None:
        """Stop renewing ``ref``'s lease; returns once no renewal is in flight (blocks on the store
        at worst for one call: not for the poll loop), so that none rewrites a settled marker."""
        with self._guard:
            if ref in self._held:
                self._held.remove(ref)
        with self._renewing:
            pass

    def stop(self) -> None:
        """Renew nothing more: the process is about to exit (or give the inputs up)."""
        self._stopped.set()

    def _run(self) -> None:
        while not self._stopped.wait(self._interval):
            with self._guard:
                held = list(self._held)
            for ref in held:
                with self._renewing:
                    with self._guard:
                        if self._stopped.is_set() or ref not in self._held:
                            continue
                    try:
                        self._attempts.renew(ref)
                    except ServiceError as exc:  # the lease outlives a missed renewal or two
                        log.warning("lease not renewed", extra={"event_id": ref.id, "error": exc.message})


def marker_key(ref: InputRef) -> str:
    """The marker of ``ref``: a digest, since input ids may be long or hold any character."""
    return MARKER_PREFIX + hashlib.sha256(f"{ref.source}\n{ref.id}".encode()).hexdigest()
