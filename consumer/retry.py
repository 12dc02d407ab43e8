"""One backoff rule for every door: jittered exponential delays, with an injectable clock.

The Kafka worker waits out a delay while it keeps polling (``wait`` with a ``tick``), the
Knative receiver's detached jobs simply sleep; both take their delays from ``Backoff``.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Backoff:
    """Delay before retry ``attempt`` (1, 2, ...): ``base * 2**attempt`` capped at ``max_seconds``,
    times a jitter factor in [0.5, 1) so that many waiting clients do not retry in step."""

    max_seconds: float = 30.0
    base_seconds: float = 0.5
    tick_seconds: float = 0.2  # how often ``wait`` calls its tick
    clock: Callable[[], float] = field(default=time.monotonic, repr=False)
    sleep: Callable[[float], None] = field(default=time.sleep, repr=False)
    jitter: Callable[[], float] = field(default=random.random, repr=False)  # in [0, 1)

    def delay(self, attempt: int) -> float:
        """Seconds to wait before retry number ``attempt``."""
        return min(self.max_seconds, self.base_seconds * 2**attempt) * (0.5 + 0.5 * self.jitter())

    def wait(self, attempt: int, tick: Callable[[], bool] | None = None) -> bool:
        """Block for ``delay(attempt)``, calling ``tick()`` at least every ``tick_seconds``.

        ``tick`` returns False to stop waiting early (shutdown); ``wait`` then returns False.
        """
        deadline = self.clock() + self.delay(attempt)
        while True:
            if tick is not None and not tick():
                return False
            remaining = deadline - self.clock()
            if remaining <= 0:
                return True
            self.sleep(remaining if tick is None else min(self.tick_seconds, remaining))
