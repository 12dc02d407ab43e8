"""The HTTP shim: the synchronous API of the previous server, asynchronous jobs, the Knative receiver, probes, metrics, the results page,
the OpenAPI document and its Swagger UI page.

``create_app(analyzer, settings, event_job)`` builds the Flask app; ``http_shim.server`` runs
it under gunicorn and calls ``shut_down`` when it stops. Nothing here imports torch.
"""

from __future__ import annotations

from flask import Flask

from consumer.analyzer import Analyzer
from consumer.config import Settings
from consumer.event_job import EventJob
from consumer.jobs import Jobs
from http_shim import api, errors, jobs_api, observability, openai_api, openapi, probes, receiver, results_page
from http_shim.auth import check_doors
from http_shim.state import AppState, install, state_of


def create_app(
    analyzer: Analyzer, settings: Settings, event_job: EventJob | None = None, jobs: Jobs | None = None
) -> Flask:
    """The Flask app: the sync API on ``analyzer``, the Knative receiver on ``event_job`` if given
    and ``RECEIVER_ENABLED`` (the public Service runs without it: no ``POST /``), and ``/v1/jobs``
    on ``jobs`` if given and ``JOBS_ENABLED``.

    Raises ``SettingsError`` when a door would be open without anyone having chosen so
    (``http_shim.auth``, ``http_shim.sender_auth``).
    """
    check_doors(settings)
    # no static folder: every route is a door or a page of its own (http_shim.openapi.PAGES)
    app = Flask(__name__, static_folder=None)
    # multipart framing adds a little to the audio itself
    app.config["MAX_CONTENT_LENGTH"] = settings.audio.max_bytes + 64 * 1024
    enabled = event_job is not None and settings.receiver.enabled
    events = receiver.Receiver(event_job, settings) if enabled and event_job is not None else None
    jobs = jobs if settings.http.jobs_enabled else None
    install(app, AppState(analyzer, settings, events, jobs))
    observability.register(app)
    errors.register(app)
    app.register_blueprint(probes.blueprint)
    app.register_blueprint(api.blueprint)
    app.register_blueprint(openai_api.blueprint)
    app.register_blueprint(results_page.blueprint)
    app.register_blueprint(openapi.blueprint)
    if jobs is not None:
        app.register_blueprint(jobs_api.blueprint)
    if events is not None:
        app.register_blueprint(receiver.blueprint)
    return app


def shut_down(app: Flask) -> None:
    """The process is stopping: tell the receiver (if any), whose accepted jobs then give up retrying."""
    events = state_of(app).receiver
    if events is not None:
        events.shutdown()
