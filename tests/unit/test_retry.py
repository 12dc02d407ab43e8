"""The one backoff rule: growing, capped, jittered delays; waits that tick and can stop early."""

from __future__ import annotations

import pytest

from consumer.retry import Backoff


class FakeClock:
    """A clock that moves only when slept on."""

    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.mark.parametrize(("jitter", "factor"), [(0.0, 0.5), (0.999999, 1.0)])
def test_delays_double_up_to_the_cap_within_the_jitter_band(jitter, factor):
    backoff = Backoff(max_seconds=30.0, jitter=lambda: jitter)
    delays = [backoff.delay(attempt) for attempt in range(1, 9)]
    assert delays == pytest.approx([factor * d for d in (1, 2, 4, 8, 16, 30, 30, 30)], rel=1e-5)


def test_wait_without_a_tick_sleeps_the_whole_delay_once():
    clock = FakeClock()
    assert Backoff(clock=clock, sleep=clock.sleep, jitter=lambda: 0.0).wait(3)
    assert clock.sleeps == [2.0]


def test_wait_ticks_every_slice_until_the_delay_is_over():
    clock = FakeClock()
    ticks: list[float] = []
    backoff = Backoff(tick_seconds=0.2, clock=clock, sleep=clock.sleep, jitter=lambda: 0.0)
    assert backoff.wait(1, tick=lambda: ticks.append(clock.now) is None)
    assert sum(clock.sleeps) == pytest.approx(0.5) and max(clock.sleeps) <= 0.2
    assert len(ticks) == 4  # at 0, 0.2, 0.4 and at the end


def test_a_tick_returning_false_stops_the_wait():
    clock = FakeClock()
    calls = iter([True, True, False])
    backoff = Backoff(tick_seconds=0.2, clock=clock, sleep=clock.sleep, jitter=lambda: 0.0)
    assert not backoff.wait(5, tick=lambda: next(calls))
    assert sum(clock.sleeps) == pytest.approx(0.4)
