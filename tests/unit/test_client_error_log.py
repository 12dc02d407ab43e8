"""librdkafka's client errors are logged once per kind, then at most one summary per interval.

The log reads ``time.monotonic()`` itself, so the tests swap the ``time`` the module sees for
a clock they move by hand (only inside consumer.kafka.worker: nothing else is affected).
"""

from __future__ import annotations

import logging
import threading
from types import SimpleNamespace

import pytest
from confluent_kafka import KafkaError

from consumer.kafka import worker as kafka_worker
from consumer.kafka.worker import _ClientErrorLog

TRANSPORT = KafkaError(KafkaError._TRANSPORT, "broker down")
ALL_DOWN = KafkaError(KafkaError._ALL_BROKERS_DOWN, "all brokers down")


class Clock:
    def __init__(self, now: float = 0.0) -> None:
        self.now = now

    def monotonic(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch) -> Clock:
    clock = Clock()
    monkeypatch.setattr(kafka_worker, "time", SimpleNamespace(monotonic=clock.monotonic))
    return clock


@pytest.fixture
def logged(caplog) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.WARNING, logger=kafka_worker.log.name)
    return caplog


def summary(logged: pytest.LogCaptureFixture) -> list[tuple[str, str, int]]:
    """(code, error text, suppressed count) of each ``kafka client error`` record so far."""
    return [
        (r.code, r.error, r.suppressed_since_last) for r in logged.records if r.getMessage() == "kafka client error"
    ]


def test_the_first_error_of_a_kind_is_logged_at_once(clock, logged):
    clock.now = 0.0  # even at the clock's origin: nothing was logged before
    _ClientErrorLog(interval=10)(TRANSPORT)
    assert summary(logged) == [("_TRANSPORT", "broker down", 0)]
    assert logged.records[0].levelno == logging.WARNING


def test_repeats_within_the_interval_are_counted_then_summarised(clock, logged):
    errors = _ClientErrorLog(interval=10)
    clock.now = 100.0
    errors(TRANSPORT)
    for step in range(1, 6):
        clock.now = 100.0 + step  # 101 .. 105: inside the interval
        errors(TRANSPORT)
    assert len(summary(logged)) == 1
    clock.now = 109.999
    errors(TRANSPORT)
    assert len(summary(logged)) == 1
    clock.now = 110.0  # one full interval after the last logged one
    errors(TRANSPORT)
    assert summary(logged) == [("_TRANSPORT", "broker down", 0), ("_TRANSPORT", "broker down", 6)]


def test_the_count_starts_again_after_each_summary(clock, logged):
    errors = _ClientErrorLog(interval=10)
    errors(TRANSPORT)  # t=0: logged
    clock.now = 1
    errors(TRANSPORT)  # suppressed
    clock.now = 10
    errors(TRANSPORT)  # logged, 1 suppressed
    clock.now = 20
    errors(TRANSPORT)  # logged, none suppressed since the last one
    clock.now = 30.5
    errors(TRANSPORT)  # logged, none suppressed
    assert [count for *_, count in summary(logged)] == [0, 1, 0, 0]


def test_each_kind_has_its_own_interval(clock, logged):
    errors = _ClientErrorLog(interval=10)
    errors(TRANSPORT)
    clock.now = 1
    errors(TRANSPORT)
    errors(ALL_DOWN)  # another kind: logged although TRANSPORT is being held back
    clock.now = 5
    errors(ALL_DOWN)
    clock.now = 10
    errors(TRANSPORT)  # TRANSPORT's interval is over, ALL_DOWN's (from t=1) is not
    errors(ALL_DOWN)
    clock.now = 11
    errors(ALL_DOWN)
    assert summary(logged) == [
        ("_TRANSPORT", "broker down", 0),
        ("_ALL_BROKERS_DOWN", "all brokers down", 0),
        ("_TRANSPORT", "broker down", 1),
        ("_ALL_BROKERS_DOWN", "all brokers down", 2),
    ]


def test_the_default_interval_is_thirty_seconds(clock, logged):
    errors = _ClientErrorLog()
    errors(TRANSPORT)
    clock.now = 29.9
    errors(TRANSPORT)
    assert len(summary(logged)) == 1
    clock.now = 30.0
    errors(TRANSPORT)
    assert [count for *_, count in summary(logged)] == [0, 1]


def test_errors_from_many_threads_at_once_log_one_line(clock, logged):
    errors = _ClientErrorLog(interval=10)
    start = threading.Barrier(8)

    def report() -> None:
        start.wait()
        for _ in range(50):
            errors(TRANSPORT)

    threads = [threading.Thread(target=report) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(summary(logged)) == 1
    clock.now = 10
    errors(TRANSPORT)
    assert summary(logged)[-1] == ("_TRANSPORT", "broker down", 8 * 50 - 1)
