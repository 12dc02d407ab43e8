"""The composition root: the one place that picks concrete classes."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from consumer.config import Settings
from consumer.engine.pyannote_engine import PyannoteEngine
from consumer.errors import ServiceError
from consumer.handler import JobHandler
from consumer.storage import ObjectStore

log = logging.getLogger(__name__)


def build_handler(settings: Settings, max_pending: int | None = None) -> JobHandler:
    """A ``JobHandler`` on a (not yet loaded) pyannote engine and the configured object store."""
    return JobHandler(
        PyannoteEngine(settings.engine),
        settings.audio,
        max_pending=max_pending,
        store=ObjectStore(settings.storage),
        allowed_buckets=settings.storage.allowed_buckets,
        events=settings.events,
        model_name=model_name(settings.engine.model),
    )


def model_name(model: str) -> str:
    """How results name the model: a hub id as is, a local directory by its name."""
    path = Path(model).expanduser()
    return path.name if path.exists() or model.startswith(("/", ".", "~")) else model


def load_in_background(handler: JobHandler) -> threading.Thread:
    """Start loading the handler's model in a daemon thread; failures are logged, not raised."""

    def _load() -> None:
        try:
            handler.engine.load()
        except ServiceError as exc:
            log.error("model load failed", extra={"error_code": exc.code, "error": exc.message})

    thread = threading.Thread(target=_load, name="model-loader", daemon=True)
    thread.start()
    return thread
