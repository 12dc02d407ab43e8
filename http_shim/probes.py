"""Liveness and readiness, always open; metrics, behind the API key when one is set."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from consumer import metrics
from consumer.engine import Engine
from consumer.readiness import readiness
from http_shim.auth import require_api_key
from http_shim.state import state

blueprint = Blueprint("probes", __name__)


def _engine() -> Engine:
    return state().analyzer.engine


@blueprint.get("/health")
def health() -> tuple[Response, int]:
    """Liveness: the process answers and no job is stuck (``consumer.deadline``): 503 when one
    has outrun its deadline, so that the container is restarted. Reports whether the model is
    loaded and where it runs."""
    engine = _engine()
    stuck = state().analyzer.watches.overdue()
    if stuck is not None:
        return jsonify(status="stuck", model_loaded=engine.ready, device=engine.device, error=stuck), 503
    return jsonify(status="healthy", model_loaded=engine.ready, device=engine.device), 200


@blueprint.get("/ready")
def ready() -> tuple[Response, int]:
    """Readiness: 200 only once the model is loaded and warm, 503 before (or if loading failed)."""
    status, body = readiness(_engine())
    return jsonify(body), status


@blueprint.get("/metrics")
def prometheus() -> Response:
    """Prometheus text exposition of the job and HTTP metrics; needs the API key like the API."""
    # event ids, error counts and load are not for whoever reaches the Route
    require_api_key(state().settings)
    metrics.MODEL_READY.set(1 if _engine().ready else 0)
    return Response(generate_latest(), mimetype=CONTENT_TYPE_LATEST)
