"""What the Flask app serves, and the one typed accessor the blueprints use to reach it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from flask import Flask, current_app

from consumer.analyzer import Analyzer
from consumer.config import Settings

if TYPE_CHECKING:  # the receiver module imports this one
    from http_shim.receiver import Receiver

_EXTENSION = "diarization"


@dataclass(frozen=True, slots=True)
class AppState:
    """The analyzer behind the sync API, the settings, and the Knative receiver (if events are served)."""

    analyzer: Analyzer
    settings: Settings
    receiver: Receiver | None


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
