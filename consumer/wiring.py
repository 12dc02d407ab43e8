"""The composition root: the one place that picks concrete classes."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

from consumer.analyzer import Analyzer
from consumer.config import Settings
from consumer.engine import Engine
from consumer.engine.fingerprint import cached, model_fingerprint
from consumer.engine.model_path import model_name
from consumer.engine.pyannote_engine import PyannoteEngine
from consumer.errors import ServiceError
from consumer.event_job import EventJob
from consumer.jobs import JobLayout, Jobs, JobStates
from consumer.memory import tune_allocator
from consumer.storage import ObjectStore, StoreHealth
from consumer.webhooks import Outbox, WebhookDispatcher, WebhookSender

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Service:
    """The core the doors share: one engine, its analyzer, the event job on the object store, and the jobs of ``/v1/jobs``."""

    engine: Engine
    analyzer: Analyzer
    event_job: EventJob
    store: ObjectStore
    jobs: Jobs
    webhooks: WebhookDispatcher | None  # None without WEBHOOK_SECRET: deliveries wait in the outbox

    @property
    def store_health(self) -> StoreHealth:
        """Whether the object store serves the service's calls (for ``/ready``)."""
        return self.store.health


def build_service(settings: Settings, max_pending: int | None = None) -> Service:
    """The service on a (not yet loaded) pyannote engine and the configured object store.

    Also fixes the process's allocator policy (``consumer.memory``) before the first job.
    """
    tune_allocator()
    engine = PyannoteEngine(settings.engine)
    analyzer = Analyzer(engine, settings.audio, max_pending=max_pending, job_limits=settings.jobs)
    store = ObjectStore(settings.storage)
    layout = JobLayout.from_settings(settings.storage)
    outbox = Outbox(store, layout)
    event_job = EventJob(
        analyzer,
        store,
        allowed_buckets=settings.storage.allowed_buckets,
        events=settings.events,
        model_name=model_name(settings.engine.model),
        model_fingerprint=cached(lambda: model_fingerprint(settings.engine.model)),
        job_states=JobStates(store, layout, notifier=outbox),
    )
    webhooks = WebhookDispatcher(outbox, WebhookSender(settings.webhooks)) if settings.webhooks.secret else None
    return Service(engine, analyzer, event_job, store, Jobs(store, layout), webhooks)


def load_model(engine: Engine) -> bool:
    """Load the engine's model; blocks. A failure is logged (and kept in ``engine.error``), not raised."""
    try:
        engine.load()
    except ServiceError as exc:
        log.error("model load failed", extra={"error_code": exc.code, "error": exc.message})
        return False
    return True


def load_in_background(engine: Engine) -> threading.Thread:
    """``load_model`` in a daemon thread."""
    thread = threading.Thread(target=load_model, args=(engine,), name="model-loader", daemon=True)
    thread.start()
    return thread
