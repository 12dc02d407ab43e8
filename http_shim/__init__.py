"""The HTTP shim: the synchronous API of the previous server, the Knative receiver, probes, metrics.

``create_app(handler=..., settings=...)`` builds the Flask app; ``http_shim.server`` runs
it under gunicorn. Nothing here imports torch.
"""

from __future__ import annotations

from flask import Flask

from consumer.config import Settings
from consumer.handler import JobHandler
from http_shim import api, errors, observability, probes, receiver


def create_app(handler: JobHandler, settings: Settings) -> Flask:
    """The Flask app serving ``handler`` with ``settings``."""
    app = Flask(__name__)
    # multipart framing adds a little to the audio itself
    app.config["MAX_CONTENT_LENGTH"] = settings.audio.max_bytes + 64 * 1024
    app.extensions["diarization"] = {
        "handler": handler,
        "settings": settings,
        "receiver": receiver.Receiver(handler, settings),
    }
    observability.register(app)
    errors.register(app)
    app.register_blueprint(probes.blueprint)
    app.register_blueprint(api.blueprint)
    app.register_blueprint(receiver.blueprint)
    return app
