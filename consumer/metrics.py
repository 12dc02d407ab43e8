"""Prometheus metrics of jobs, shared by every door (HTTP, Knative, Kafka)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

JOBS = Counter("diarization_jobs_total", "Jobs finished, by task and outcome", ["task", "outcome"])
AUDIO_SECONDS = Counter("diarization_audio_seconds_total", "Seconds of audio processed", ["task"])
INFERENCE_SECONDS = Histogram(
    "diarization_inference_seconds",
    "Model time per job",
    ["task"],
    buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600),
)
REAL_TIME_FACTOR = Histogram(
    "diarization_real_time_factor",
    "Model time divided by audio duration, per job (lower is faster)",
    ["task"],
    buckets=(0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1, 1.5, 2, 5),
)
STAGE_SECONDS = Counter(
    "diarization_stage_seconds_total",
    "Wall-clock seconds spent per stage: decode, segmentation, embeddings, clustering, confidence",
    ["task", "stage"],
)
JOBS_IN_FLIGHT = Gauge("diarization_jobs_in_flight", "Jobs running or waiting for the model")
MODEL_READY = Gauge("diarization_model_ready", "1 when the model is loaded and warm")
WEBHOOKS = Counter(
    "diarization_webhook_attempts_total",
    "Webhook attempts of /v1/jobs, by outcome: delivered, retried, given_up",
    ["outcome"],
)
