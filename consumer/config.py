"""One frozen ``Settings`` object, built from the environment in one place.

Only entry points call ``Settings.from_env(os.environ)``; everything below them receives
the object. Secrets are kept in ``Secret`` wrappers so that printing or logging the
settings never shows them.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DEFAULT_CACHE_DIR = "~/.cache/diarization-service"
OFFLINE_BUNDLE_NAME = "offline-default"


@dataclass(frozen=True, slots=True)
class Secret:
    """A string that never shows itself in ``repr`` or ``str``."""

    value: str = field(repr=False)

    def __repr__(self) -> str:
        return "Secret('***')" if self.value else "Secret('')"

    __str__ = __repr__

    def __bool__(self) -> bool:
        return bool(self.value)


class SettingsError(ValueError):
    """An environment variable has a value that cannot be used."""


def _int(env: Mapping[str, str], name: str, default: int, minimum: int = 0) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name} must be an integer, got {raw!r}") from None
    if value < minimum:
        raise SettingsError(f"{name} must be >= {minimum}, got {value}")
    return value


def _float(env: Mapping[str, str], name: str, default: float, minimum: float = 0.0) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a number, got {raw!r}") from None
    if value < minimum:
        raise SettingsError(f"{name} must be >= {minimum}, got {value}")
    return value


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in {"1", "true", "yes", "on"}:
        return True
    if raw in {"0", "false", "no", "off"}:
        return False
    raise SettingsError(f"{name} must be true or false, got {raw!r}")


def _str(env: Mapping[str, str], name: str, default: str = "") -> str:
    return env.get(name, "").strip() or default


def default_model(env: Mapping[str, str]) -> str:
    """The offline bundle inside the cache folder: the model used when none is configured."""
    cache_dir = Path(_str(env, "CACHE_DIR", DEFAULT_CACHE_DIR)).expanduser()
    return str(cache_dir / "models" / OFFLINE_BUNDLE_NAME)


@dataclass(frozen=True, slots=True)
class EngineSettings:
    """Which pipeline to load, where to run it and how."""

    model: str
    hf_token: Secret = Secret("")
    device: str = "auto"
    segmentation_batch_size: int = 0  # 0: chosen for the device (see pyannote_engine.BATCH_SIZES)
    embedding_batch_size: int = 0
    warmup: bool = True
    torch_threads: int = 0  # 0: torch's default


@dataclass(frozen=True, slots=True)
class AudioLimits:
    """What input the service accepts."""

    max_bytes: int = 512 * 1024 * 1024
    max_seconds: float = 4 * 3600.0
    min_seconds: float = 0.5


@dataclass(frozen=True, slots=True)
class HttpSettings:
    """The HTTP shim: address, API key, concurrency."""

    host: str = "0.0.0.0"
    port: int = 8080
    api_key: Secret = Secret("")
    threads: int = 8
    max_queued_jobs: int = 4
    request_timeout: float = 300.0
    body_read_timeout: float = 30.0
    header_timeout: float = 10.0


@dataclass(frozen=True, slots=True)
class ReceiverSettings:
    """The Knative receiver (``POST /`` on the shim)."""

    sink: str = ""  # K_SINK, injected by a SinkBinding or a source's sink
    reply_timeout_seconds: float = 240.0
    always_async: bool = False
    dedup_window_seconds: float = 600.0
    max_event_bytes: int = 1024 * 1024
    sink_retry_seconds: float = 300.0


@dataclass(frozen=True, slots=True)
class KafkaSettings:
    """The Kafka consumer's connection, topics and client options."""

    bootstrap_servers: str = "127.0.0.1:9092"
    input_topic: str = "audio-uploads"
    results_topic: str = "diarization-results"
    dlq_topic: str = "diarization-dlq"
    group_id: str = "diarization-consumer"
    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str = ""
    sasl_username: str = ""
    sasl_password: Secret = Secret("")
    ssl_ca_location: str = ""
    max_poll_interval_ms: int = 300_000
    session_timeout_ms: int = 45_000
    max_message_bytes: int = 1024 * 1024
    publish_timeout_seconds: float = 30.0
    retry_backoff_max_seconds: float = 30.0
    shutdown_grace_seconds: float = 300.0
    probe_port: int = 8081
    liveness_timeout_seconds: float = 60.0


@dataclass(frozen=True, slots=True)
class StorageSettings:
    """The S3-compatible object store holding uploads and results."""

    endpoint: str = "127.0.0.1:9000"
    access_key: Secret = Secret("")
    secret_key: Secret = Secret("")
    secure: bool = False
    region: str = ""
    ca_bundle: str = ""
    upload_bucket: str = "audio"
    results_bucket: str = "diarization-results"
    results_prefix: str = "results/"
    allowed_buckets: frozenset[str] = frozenset({"audio"})


@dataclass(frozen=True, slots=True)
class EventSettings:
    """Result events: their source, and progress reports for long jobs."""

    source: str = "/diarization-service"
    progress_min_audio_seconds: float = 60.0
    progress_interval_seconds: float = 5.0


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything the service reads from its environment."""

    engine: EngineSettings
    audio: AudioLimits = AudioLimits()
    http: HttpSettings = HttpSettings()
    receiver: ReceiverSettings = ReceiverSettings()
    kafka: KafkaSettings = KafkaSettings()
    storage: StorageSettings = StorageSettings()
    events: EventSettings = EventSettings()
    log_level: str = "INFO"
    log_format: str = "json"

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        """Build the settings from ``env`` (normally ``os.environ``); raises ``SettingsError``."""
        device = _str(env, "DEVICE", "auto").lower()
        if device != "auto" and device != "cpu" and not device.startswith("cuda"):
            raise SettingsError(f"DEVICE must be auto, cpu, cuda or cuda:N, got {device!r}")
        log_format = _str(env, "LOG_FORMAT", "json").lower()
        if log_format not in {"json", "text"}:
            raise SettingsError(f"LOG_FORMAT must be json or text, got {log_format!r}")
        audio, http, receiver, kafka, storage, events = (
            AudioLimits(), HttpSettings(), ReceiverSettings(), KafkaSettings(), StorageSettings(), EventSettings()
        )
        upload_bucket = _str(env, "S3_UPLOAD_BUCKET", storage.upload_bucket)
        allowed = _str(env, "S3_ALLOWED_BUCKETS", upload_bucket)
        return cls(
            engine=EngineSettings(
                model=_str(env, "DIARIZATION_MODEL") or default_model(env),
                hf_token=Secret(_str(env, "HF_TOKEN")),
                device=device,
                segmentation_batch_size=_int(env, "SEGMENTATION_BATCH_SIZE", 0),
                embedding_batch_size=_int(env, "EMBEDDING_BATCH_SIZE", 0),
                warmup=_bool(env, "MODEL_WARMUP", True),
                torch_threads=_int(env, "TORCH_NUM_THREADS", 0),
            ),
            audio=AudioLimits(
                max_bytes=_int(env, "MAX_AUDIO_BYTES", audio.max_bytes, minimum=1),
                max_seconds=_float(env, "MAX_AUDIO_SECONDS", audio.max_seconds, minimum=1.0),
            ),
            http=HttpSettings(
                host=_str(env, "HOST", http.host),
                port=_int(env, "PORT", http.port, minimum=1),
                api_key=Secret(_str(env, "API_KEY")),
                threads=_int(env, "HTTP_THREADS", http.threads, minimum=1),
                max_queued_jobs=_int(env, "MAX_QUEUED_JOBS", http.max_queued_jobs),
                request_timeout=_float(
                    env, "REQUEST_TIMEOUT_SECONDS", http.request_timeout, minimum=1.0
                ),
                body_read_timeout=_float(env, "BODY_READ_TIMEOUT_SECONDS", http.body_read_timeout, minimum=0.1),
                header_timeout=_float(env, "HEADER_TIMEOUT_SECONDS", http.header_timeout, minimum=0.1),
            ),
            receiver=ReceiverSettings(
                sink=_str(env, "K_SINK"),
                reply_timeout_seconds=_float(env, "RECEIVER_REPLY_TIMEOUT_SECONDS", receiver.reply_timeout_seconds),
                always_async=_bool(env, "RECEIVER_ASYNC", receiver.always_async),
                dedup_window_seconds=_float(env, "DEDUP_WINDOW_SECONDS", receiver.dedup_window_seconds),
                max_event_bytes=_int(env, "EVENT_MAX_BYTES", receiver.max_event_bytes, minimum=1024),
                sink_retry_seconds=_float(env, "RECEIVER_SINK_RETRY_SECONDS", receiver.sink_retry_seconds),
            ),
            kafka=KafkaSettings(
                bootstrap_servers=_str(env, "KAFKA_BOOTSTRAP_SERVERS", kafka.bootstrap_servers),
                input_topic=_str(env, "KAFKA_INPUT_TOPIC", kafka.input_topic),
                results_topic=_str(env, "KAFKA_RESULTS_TOPIC", kafka.results_topic),
                dlq_topic=_str(env, "KAFKA_DLQ_TOPIC", kafka.dlq_topic),
                group_id=_str(env, "KAFKA_GROUP_ID", kafka.group_id),
                security_protocol=_str(env, "KAFKA_SECURITY_PROTOCOL", "PLAINTEXT").upper(),
                sasl_mechanism=_str(env, "KAFKA_SASL_MECHANISM"),
                sasl_username=_str(env, "KAFKA_SASL_USERNAME"),
                sasl_password=Secret(_str(env, "KAFKA_SASL_PASSWORD")),
                ssl_ca_location=_str(env, "KAFKA_SSL_CA_LOCATION"),
                max_poll_interval_ms=_int(
                    env, "KAFKA_MAX_POLL_INTERVAL_MS", kafka.max_poll_interval_ms, minimum=1000
                ),
                session_timeout_ms=_int(
                    env, "KAFKA_SESSION_TIMEOUT_MS", kafka.session_timeout_ms, minimum=1000
                ),
                max_message_bytes=_int(env, "KAFKA_MAX_MESSAGE_BYTES", kafka.max_message_bytes, minimum=1024),
                publish_timeout_seconds=_float(
                    env, "KAFKA_PUBLISH_TIMEOUT_SECONDS", kafka.publish_timeout_seconds, minimum=1.0
                ),
                retry_backoff_max_seconds=_float(
                    env, "RETRY_BACKOFF_MAX_SECONDS", kafka.retry_backoff_max_seconds, minimum=0.1
                ),
                shutdown_grace_seconds=_float(env, "SHUTDOWN_GRACE_SECONDS", kafka.shutdown_grace_seconds),
                probe_port=_int(env, "CONSUMER_PROBE_PORT", kafka.probe_port),
                liveness_timeout_seconds=_float(
                    env, "LIVENESS_TIMEOUT_SECONDS", kafka.liveness_timeout_seconds, minimum=1.0
                ),
            ),
            storage=StorageSettings(
                endpoint=_str(env, "S3_ENDPOINT", storage.endpoint),
                access_key=Secret(_str(env, "S3_ACCESS_KEY")),
                secret_key=Secret(_str(env, "S3_SECRET_KEY")),
                secure=_bool(env, "S3_SECURE", False),
                region=_str(env, "S3_REGION"),
                ca_bundle=_str(env, "S3_CA_BUNDLE"),
                upload_bucket=upload_bucket,
                results_bucket=_str(env, "S3_RESULTS_BUCKET", storage.results_bucket),
                results_prefix=_str(env, "S3_RESULTS_PREFIX", storage.results_prefix),
                allowed_buckets=frozenset(b.strip() for b in allowed.split(",") if b.strip()),
            ),
            events=EventSettings(
                source=_str(env, "EVENT_SOURCE", events.source),
                progress_min_audio_seconds=_float(
                    env, "PROGRESS_MIN_AUDIO_SECONDS", events.progress_min_audio_seconds
                ),
                progress_interval_seconds=_float(env, "PROGRESS_INTERVAL_SECONDS", events.progress_interval_seconds),
            ),
            log_level=_str(env, "LOG_LEVEL", "INFO").upper(),
            log_format=log_format,
        )

    def describe(self) -> dict[str, Any]:
        """The settings as a plain dict for a start-up log line; secrets stay masked."""
        return _describe(self)


def _describe(obj: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if isinstance(value, Secret):
            out[f.name] = repr(value)
        elif dataclasses.is_dataclass(value):
            out[f.name] = _describe(value)
        else:
            out[f.name] = value
    return out


def from_environment() -> Settings:
    """``Settings.from_env(os.environ)``: for entry points only."""
    return Settings.from_env(os.environ)
