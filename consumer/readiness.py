"""Readiness, the one rule of every door: the engine loaded, warm and not broken, and (for a
door that reads the store) the object store serving the service's calls."""

from __future__ import annotations

from typing import TYPE_CHECKING

from consumer import metrics
from consumer.engine import Engine

if TYPE_CHECKING:
    from consumer.storage import StoreHealth


def readiness(engine: Engine, store: StoreHealth | None = None) -> tuple[int, dict[str, object]]:
    """``/ready``'s status and body: 200 once the model is loaded and warm, 503 while it
    loads, after loading failed or the engine broke (with the error), and while ``store``
    (if given) fails the service's calls (``{"status": "storage_unavailable", "error"}``)."""
    metrics.MODEL_READY.set(1 if engine.ready else 0)
    if not engine.ready:
        if engine.error is not None:
            return 503, {"status": "failed", "error": engine.error.to_dict()}
        return 503, {"status": "loading"}
    failure = None if store is None else store.failure
    if failure is not None:
        return 503, {"status": "storage_unavailable", "error": failure.to_dict()}
    return 200, {"status": "ready"}
