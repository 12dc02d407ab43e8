"""What the Flask app serves, and the one typed accessor the blueprints use to reach it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from flask import Flask, Response, current_app

from consumer.analyzer import Analyzer
from consumer.config import Settings
from consumer.jobs import Jobs

_EXTENSION = "diarization"


class EventDoor(Protocol):
    """The Knative receiver as the app holds it (``http_shim.receiver.Receiver``)."""

    def answer_request(self) -> Response:
        """The answer to the ``POST /`` being served; called inside its request context, blocks
        up to the reply timeout, raises the project's errors (rendered by ``http_shim.errors``)."""
        ...

    def shutdown(self) -> None:
        """The process is stopping: accepted jobs and sink retries give up (logged and counted)."""
        ...


@dataclass(frozen=True, slots=True)
class AppState:
    """The analyzer behind the sync API, the settings, the Knative receiver (if events are served)
    and the jobs of ``/v1/jobs`` (if served)."""

    analyzer: Analyzer
    settings: Settings
    receiver: EventDoor | None
    jobs: Jobs | None = None


def install(app: Flask, state: AppState) -> None:
    """Attach ``state`` to ``app`` (once, in ``create_app``)."""
    app.extensions[_EXTENSION] = state


def state() -> AppState:
    """The current app's state; call inside a request or app context."""
    return state_of(current_app)


def state_of(app: Flask) -> AppState:
    """``app``'s state."""
    found: AppState = app.extensions[_EXTENSION]
    return found
