"""The image tier: the image ``make image`` built from the Containerfile, started as OpenShift starts it.

Each mode runs once for the tier (one shim with its receiver, one consumer), as an arbitrary
UID without a passwd entry, with the image's own environment (``HF_HUB_OFFLINE=1``, no hub
token, warm-up on), against the session's local stack.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support.containers import Containers, Started, image_tool, inspect, wait_ready
from tests.support.processes import free_port
from tests.support.stack import Stack


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


@pytest.fixture(scope="session")
def containers(built_image: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Containers]:
    """Containers of the built image; all of them stopped and removed at the end of the session."""
    started = Containers(built_image, tmp_path_factory.mktemp("containers"))
    try:
        yield started
    finally:
        started.close()


@pytest.fixture(scope="session")
def shim(containers: Containers, stack: Stack) -> Started:
    """``diarization shim`` with its receiver (the default), the stack's object store, ready."""
    port = free_port()
    container = containers.start("shim", {**stack.env, "HOST": "127.0.0.1", "PORT": str(port), "LOG_FORMAT": "json"})
    return wait_ready(container, f"http://127.0.0.1:{port}/ready")


@pytest.fixture(scope="session")
def consumer(containers: Containers, stack: Stack) -> Started:
    """``diarization consumer`` on the stack's topics, in a fresh group that starts at their end, ready."""
    group = f"image-{uuid.uuid4().hex[:8]}"
    stack.move_group_to_end(group, stack.env["KAFKA_INPUT_TOPIC"])
    port = free_port()
    env = {**stack.env, "KAFKA_GROUP_ID": group, "CONSUMER_PROBE_PORT": str(port), "LOG_FORMAT": "json"}
    container = containers.start("consumer", env)
    return wait_ready(container, f"http://127.0.0.1:{port}/ready")


FIGURES: list[str] = []  # the tier's measurements, printed at the end of the session


@pytest.fixture
def report() -> Callable[[str], None]:
    """Keep a line for the session's summary (the lane's log): the tier's figures."""
    return FIGURES.append


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """The image tier's figures, after the results."""
    if FIGURES:
        terminalreporter.section("image tier: figures")
        for line in FIGURES:
            terminalreporter.write_line(line)
