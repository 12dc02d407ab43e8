"""Fixtures shared by the tiers: settings, the real offline model, pyannote's sample, the local stack."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from consumer.analyzer import Analyzer
from consumer.config import Settings, cache_dir
from consumer.engine.bundle import bundle_dir, is_built
from tests.support.credentials import API_KEY

pytest_plugins = ["tests.support.balance"]

if TYPE_CHECKING:
    from tests.support.stack import Stack

# The service must never phone home, in tests either.
os.environ.setdefault("PYANNOTE_METRICS_ENABLED", "0")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
# One intra-op thread per process, in the workers and in the services they start (which
# inherit this environment; the image tier runs the image with its own). The suite runs
# several workers and their services side by side on a few cores, where torch's default of
# one OpenMP thread per core in every process spends most of its CPU spinning at barriers:
# under the suite's load a service's warm-up job took 8.9 s of CPU with the default and
# 1.5 s with one thread. The service's own default is unchanged (TORCH_NUM_THREADS).
os.environ.setdefault("OMP_NUM_THREADS", "1")


def _cache_dir() -> Path:
    return cache_dir(os.environ)


@pytest.fixture(scope="session")
def bundle() -> Path:
    """The offline default bundle; fails (never skips) when it was not built."""
    path = bundle_dir(_cache_dir())
    if not is_built(path):
        pytest.fail(f"the offline model bundle is missing at {path}: run `make models` (make test does)")
    return path


@pytest.fixture(scope="session")
def settings(bundle: Path) -> Settings:
    """Settings as the service would build them, pointing at the offline bundle."""
    return Settings.from_env(
        {"CACHE_DIR": str(_cache_dir()), "DEVICE": os.environ.get("TEST_DEVICE", "auto"), "API_KEY": API_KEY}
    )


@pytest.fixture(scope="session")
def engine(settings: Settings):
    """The real engine with the real offline bundle, loaded and warmed up once per session."""
    from consumer.engine.pyannote_engine import PyannoteEngine

    engine = PyannoteEngine(settings.engine)
    engine.load()
    return engine


@pytest.fixture(scope="session")
def analyzer(engine, settings: Settings) -> Analyzer:
    """The sync job on the real engine, bounded as the shim bounds it."""
    return Analyzer(engine, settings.audio, max_pending=settings.http.max_queued_jobs)


@pytest.fixture(scope="session")
def sample() -> tuple[Path, Path]:
    """pyannote.audio's bundled sample: real speech, 30 s, 2 speakers, with its reference RTTM."""
    import pyannote.audio

    folder = Path(pyannote.audio.__file__).parent / "sample"
    return folder / "sample.wav", folder / "sample.rttm"


@pytest.fixture(scope="session")
def stack(worker_id: str) -> Iterator[Stack]:
    """Kafka and MinIO on loopback, as ``local-dev/stack.py`` starts them (integration and image
    tiers): one instance per pytest-xdist worker, started by the worker's first test that needs it.

    The instance is ``test`` (or ``TEST_STACK_NAME``), and ``test-gw0``, ``test-gw1``... under
    xdist, so that sessions and workers on one machine never share (and destroy) one stack.
    One fixture for every tier: a second session fixture of the same name would restart (and
    so destroy) it.
    """
    from tests.support.stack import Stack  # the Kafka and MinIO clients: only for tiers that use them

    base = os.environ.get("TEST_STACK_NAME", "test")
    running = Stack.start(base if worker_id == "master" else f"{base}-{worker_id}")
    try:
        yield running
    finally:
        running.destroy()
