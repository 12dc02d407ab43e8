"""A test run that balances itself over pytest-xdist's workers, with no hand-kept lists.

- Tests that share a module- or class-scoped fixture of their own module (a shim, a
  consumer, a diarized meeting) are one ``xdist_group``: they run on one worker, which sets
  the fixture up once. Where the last run showed the module's own fixtures cheap (under
  ``EXPENSIVE_SETUP_SECONDS`` to set up), its tests are spread like the others; so such a
  fixture may run on several workers at once, and must name what it starts per worker.
  Every other test is scheduled on its own (``--dist loadgroup``).
- Work is handed out longest first (LPT): each test's (or group's) duration in the last run,
  kept in pytest's cache (``make test`` keeps that under ``$CACHE_DIR``), orders the queue;
  a test without a recorded duration counts as long, so new tests start early.

Loaded by ``tests/conftest.py``; without xdist (``pytest -p no:xdist``, one test file) the
order is all it changes.
"""

from __future__ import annotations

import time
from collections import defaultdict
from typing import Any

import pytest

CACHE_KEY = "diarization/durations"
SETUP_KEY = "diarization/setups"
UNKNOWN_SECONDS = 120.0  # a test never timed yet is scheduled as a long one
EXPENSIVE_SETUP_SECONDS = 10.0  # a shared fixture worth setting up once: a model, a shim, a consumer
FIXTURE_PROPERTY = "module_fixture_seconds"  # a test's user property: its module's own fixtures set up for it


def _shared_fixture_scope(item: pytest.Item, setups: dict[str, float]) -> str | None:
    """The module of ``item`` if it uses a module- or class-scoped fixture defined there that
    is not known to be cheap (``setups``: what each module's own fixtures took to set up last time)."""
    info = getattr(item, "_fixtureinfo", None)
    module = item.nodeid.split("::", 1)[0]
    for definitions in info.name2fixturedefs.values() if info is not None else ():
        for definition in definitions:
            if definition.scope in ("module", "class") and definition.baseid.split("::", 1)[0] == module:
                return module if setups.get(module, EXPENSIVE_SETUP_SECONDS) >= EXPENSIVE_SETUP_SECONDS else None
    return None


@pytest.hookimpl(hookwrapper=True)
def pytest_fixture_setup(fixturedef: pytest.FixtureDef[Any], request: pytest.FixtureRequest) -> Any:
    """Time the module's own module- and class-scoped fixtures, told to the controller with the test."""
    started = time.perf_counter()
    yield
    item = getattr(request, "_pyfuncitem", None)  # the test the fixture is set up for
    module = fixturedef.baseid.split("::", 1)[0]
    if fixturedef.scope in ("module", "class") and item is not None and item.nodeid.split("::", 1)[0] == module:
        item.user_properties.append((FIXTURE_PROPERTY, time.perf_counter() - started))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Group what shares a module fixture; order groups and tests by their last durations, longest first."""
    cache = getattr(config, "cache", None)  # none with -p no:cacheprovider
    durations: dict[str, float] = cache.get(CACHE_KEY, {}) if cache is not None else {}
    setups: dict[str, float] = cache.get(SETUP_KEY, {}) if cache is not None else {}
    unit_of: dict[str, str] = {}
    for item in items:
        group = _shared_fixture_scope(item, setups)
        if group is not None:
            item.add_marker(pytest.mark.xdist_group(group))
        unit_of[item.nodeid] = group or item.nodeid
    cost: dict[str, float] = defaultdict(float)
    for item in items:
        cost[unit_of[item.nodeid]] += durations.get(item.nodeid, UNKNOWN_SECONDS)
    first_seen = {unit: index for index, unit in reversed(list(enumerate(unit_of[item.nodeid] for item in items)))}
    # stable within a unit: a group's tests keep their file order (fixtures may rely on it)
    items.sort(key=lambda item: (-cost[unit_of[item.nodeid]], first_seen[unit_of[item.nodeid]]))


class DurationRecorder:
    """On the controller (or a run without xdist): sum each test's phases, keep them for the next run."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.seconds: dict[str, float] = defaultdict(float)
        self.setups: dict[str, float] = defaultdict(float)  # by module: its own fixtures' setup

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        self.seconds[report.nodeid] += report.duration
        if report.when == "setup":
            module = report.nodeid.split("::", 1)[0]
            spent = sum(float(value) for name, value in report.user_properties if name == FIXTURE_PROPERTY)
            self.setups[module] = max(self.setups[module], spent)

    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: Any) -> None:
        cache = getattr(self.config, "cache", None)
        if cache is None or not self.seconds:
            return
        kept: dict[str, float] = cache.get(CACHE_KEY, {})
        kept.update({nodeid: round(seconds, 2) for nodeid, seconds in self.seconds.items()})
        cache.set(CACHE_KEY, kept)
        setups: dict[str, float] = cache.get(SETUP_KEY, {})
        setups.update({module: round(seconds, 2) for module, seconds in self.setups.items()})
        cache.set(SETUP_KEY, setups)


def pytest_configure(config: pytest.Config) -> None:
    if not hasattr(config, "workerinput"):  # the controller sees every worker's reports
        config.pluginmanager.register(DurationRecorder(config), "diarization-durations")
