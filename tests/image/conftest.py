"""The image tier: the image ``make image`` built from the Containerfile, and the tier's figures."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.support.containers import image_tool, inspect


@pytest.fixture(scope="session")
def built_image(bundle: Path) -> str:
    """The image ``make image`` built from this checkout; fails loudly when it is missing or stale."""
    tag = image_tool.LOCAL_TAG
    if inspect(tag) is None:
        pytest.fail(f"no image {tag}: build it with `make image` (make test does)")
    build = image_tool.build_of(image_tool.store(), tag)
    if build is None or build["inputs"] != image_tool.inputs_digest(bundle):
        pytest.fail(f"{tag} was not built from this checkout and model as they are now: run `make image`")
    return tag


FIGURES: list[str] = []  # the tier's measurements, printed at the end of the session
FIGURE = "image-figure"  # the user property that carries one (to xdist's controller too)


@pytest.fixture
def report(request: pytest.FixtureRequest) -> Callable[[str], None]:
    """Keep a line for the session's summary: the tier's figures."""
    return lambda line: request.node.user_properties.append((FIGURE, line))


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Collect the figures of every test's report, wherever the test ran."""
    if report.when == "call":
        FIGURES.extend(value for name, value in report.user_properties if name == FIGURE)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """The image tier's figures, after the results."""
    if FIGURES:
        terminalreporter.section("image tier: figures")
        for line in FIGURES:
            terminalreporter.write_line(line)
