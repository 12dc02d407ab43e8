"""One frozen ``Settings`` object, built from the environment in one place.

Every field declares, once, the variable it is read from, its default, its parser and its
bounds (``env(...)`` below); one loader (``_load``) walks the fields. Only entry points call
``Settings.from_env(os.environ)``; everything below them receives the object. Secrets are
kept in ``Secret`` wrappers so that printing or logging the settings never shows them.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, get_type_hints

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

DEFAULT_CACHE_DIR = "~/.cache/diarization-service"
OFFLINE_BUNDLE_NAME = "offline-default"
T = TypeVar("T", bound="DataclassInstance")


@dataclass(frozen=True, slots=True)
class Secret:
    """A string that never shows itself in ``repr`` or ``str``."""

    value: str = field(repr=False)

    def __repr__(self) -> str:
        return "Secret('***')" if self.value else "Secret('')"

    __str__ = __repr__

    def __bool__(self) -> bool:
        return bool(self.value)


# The true/false spellings of settings and job options alike (consumer.options reads them too).
TRUE_WORDS = frozenset({"1", "true", "yes", "on"})
FALSE_WORDS = frozenset({"0", "false", "no", "off"})


def parse_flag(raw: str) -> bool | None:
    """``True``/``False`` for a true/false spelling (any case), ``None`` for an empty string.

    Raises ``ValueError`` for anything else.
    """
    word = raw.strip().lower()
    if not word:
        return None
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise ValueError(word)


class SettingsError(ValueError):
    """An environment variable has a value that cannot be used."""


@dataclass(frozen=True, slots=True)
class Parser:
    """Turns a variable's text into a value; ``what`` names the expected text in errors."""

    convert: Callable[[str], Any]
    what: str = ""


def _names(raw: str) -> frozenset[str]:
    """A comma-separated list of names (buckets, token subjects)."""
    return frozenset(b.strip() for b in raw.split(",") if b.strip())


# The parser of a field of this type.
_PARSERS: dict[type, Parser] = {
    str: Parser(str),
    int: Parser(int, "an integer"),
    float: Parser(float, "a number"),
    bool: Parser(parse_flag, "true or false"),
    Secret: Parser(Secret),
    frozenset: Parser(_names),
}


@dataclass(frozen=True, slots=True)
class Variable:
    """How one field is read: variable name, parser, bounds, and a default computed from ``env``."""

    name: str
    parser: Parser
    transform: Callable[[str], str] | None = None
    minimum: float | None = None
    allowed: Callable[[Any], bool] | None = None
    expected: str = ""
    default_from: Callable[[Mapping[str, str]], str] | None = None


def env(
    name: str,
    default: Any = dataclasses.MISSING,
    *,
    kind: type | None = None,
    transform: Callable[[str], str] | None = None,
    minimum: float | None = None,
    choices: tuple[str, ...] = (),
    allowed: Callable[[Any], bool] | None = None,
    expected: str = "",
    default_from: Callable[[Mapping[str, str]], str] | None = None,
) -> Any:
    """A field read from variable ``name``, parsed as ``kind`` (the default's type); numbers are never negative."""
    if minimum is None and type(default) in (int, float):
        minimum = type(default)(0)
    if choices:
        allowed, expected = frozenset(choices).__contains__, ", ".join(choices[:-1]) + " or " + choices[-1]
    parser = _PARSERS[kind or type(default)]
    variable = Variable(name, parser, transform, minimum, allowed, expected, default_from)
    return field(default=default, metadata={"env": variable})


def cache_dir(env: Mapping[str, str]) -> Path:
    """The project's cache folder: ``CACHE_DIR``, or ``DEFAULT_CACHE_DIR``, expanded."""
    return Path(env.get("CACHE_DIR", "").strip() or DEFAULT_CACHE_DIR).expanduser()


def default_model(env: Mapping[str, str]) -> str:
    """The offline bundle inside the cache folder: the model used when none is configured."""
    return str(cache_dir(env) / "models" / OFFLINE_BUNDLE_NAME)


def default_torch_cache_dir(env: Mapping[str, str]) -> str:
    """torch's compile cache inside the cache folder (see ``EngineSettings.torch_cache_dir``)."""
    return str(cache_dir(env) / "torchinductor")


def _is_device(device: str) -> bool:
    """``auto``, ``cpu``, ``cuda`` or ``cuda:N``."""
    return device in ("auto", "cpu") or device.startswith("cuda")


def _upload_bucket(env: Mapping[str, str]) -> str:
    """What ``S3_ALLOWED_BUCKETS`` defaults to: the upload bucket, as read from ``env``."""
    return _read(next(f for f in dataclasses.fields(StorageSettings) if f.name == "upload_bucket"), env)


@dataclass(frozen=True, slots=True)
class EngineSettings:
    """Which pipeline to load, where to run it and how."""

    model: str = env("DIARIZATION_MODEL", kind=str, default_from=default_model)
    hf_token: Secret = env("HF_TOKEN", Secret(""))
    device: str = env("DEVICE", "auto", transform=str.lower, allowed=_is_device, expected="auto, cpu, cuda or cuda:N")
    # 0: chosen for the device (see pyannote_engine.BATCH_SIZES)
    segmentation_batch_size: int = env("SEGMENTATION_BATCH_SIZE", 0)
    embedding_batch_size: int = env("EMBEDDING_BATCH_SIZE", 0)
    warmup: bool = env("MODEL_WARMUP", True)
    torch_threads: int = env("TORCH_NUM_THREADS", 0)  # 0: torch's default
    # this many inference failures in a row, on different inputs, and the engine reports itself broken
    max_consecutive_failures: int = env("ENGINE_MAX_CONSECUTIVE_FAILURES", 3, minimum=1)
    # torch's compile cache (TorchInductor, Triton), given to torch before it is imported: its
    # own default is named after the user, which fails for a UID without a passwd entry
    # (consumer.engine.torch_cache). Empty only in settings built by hand: torch's default.
    torch_cache_dir: str = env("TORCHINDUCTOR_CACHE_DIR", "", default_from=default_torch_cache_dir)


@dataclass(frozen=True, slots=True)
class AudioLimits:
    """What input the service accepts."""

    max_bytes: int = env("MAX_AUDIO_BYTES", 512 * 1024 * 1024, minimum=1)
    max_seconds: float = env("MAX_AUDIO_SECONDS", 24 * 3600.0, minimum=1.0)
    min_seconds: float = 0.5  # not configurable: no variable


@dataclass(frozen=True, slots=True)
class JobLimits:
    """How long one job may run before its process counts as stuck (``consumer.deadline``).

    A job beats at every download chunk, decoded block, segmentation batch, embedding region
    and stage end: seconds apart on CPU. ``stall_seconds`` without a beat, or a run past
    ``budget_seconds`` plus ``budget_per_audio_second`` times its audio's duration, is a
    job that will not end.
    """

    stall_seconds: float = env("JOB_STALL_SECONDS", 120.0, minimum=10.0)
    budget_seconds: float = env("JOB_BUDGET_SECONDS", 600.0, minimum=10.0)
    budget_per_audio_second: float = env("JOB_BUDGET_PER_AUDIO_SECOND", 1.0, minimum=0.01)


@dataclass(frozen=True, slots=True)
class HttpSettings:
    """The HTTP shim: address, API key, concurrency."""

    host: str = env("HOST", "0.0.0.0")
    port: int = env("PORT", 8080, minimum=1)
    api_key: Secret = env("API_KEY", Secret(""))
    # "key": /v1/* and /metrics need API_KEY, and the shim refuses to start without one;
    # "none" opens them to whoever reaches the shim (an explicit choice: http_shim.auth)
    api_auth: str = env("API_AUTH", "key", transform=str.lower, choices=("key", "none"))
    threads: int = env("HTTP_THREADS", 8, minimum=1)
    max_queued_jobs: int = env("MAX_QUEUED_JOBS", 4)
    request_timeout: float = env("REQUEST_TIMEOUT_SECONDS", 300.0, minimum=1.0)
    # the sync doors' longest audio: what fits the request timeout (1 h at the slowest
    # measured real-time factor, 0.07 on 2 CPU cores, is 252 s); longer audio goes to /v1/jobs
    sync_max_seconds: float = env("SYNC_MAX_AUDIO_SECONDS", 3600.0, minimum=1.0)
    body_read_timeout: float = env("BODY_READ_TIMEOUT_SECONDS", 30.0, minimum=0.1)
    header_timeout: float = env("HEADER_TIMEOUT_SECONDS", 10.0, minimum=0.1)
    # /v1/jobs: the shim then writes audio and job records to the store (its credentials need
    # that scope, see the README), so it is a door opened on purpose
    jobs_enabled: bool = env("JOBS_ENABLED", False)


@dataclass(frozen=True, slots=True)
class ReceiverSettings:
    """The Knative receiver (``POST /`` on the shim)."""

    sink: str = env("K_SINK", "")  # injected by a SinkBinding or a source's sink
    reply_timeout_seconds: float = env("RECEIVER_REPLY_TIMEOUT_SECONDS", 240.0)
    always_async: bool = env("RECEIVER_ASYNC", False)
    dedup_window_seconds: float = env("DEDUP_WINDOW_SECONDS", 600.0)
    max_event_bytes: int = env("EVENT_MAX_BYTES", 1024 * 1024, minimum=1024)
    # the largest result event the receiver sends (reply or K_SINK): a KafkaSink's producer
    # refuses records over 1 MiB by default; larger results are summarized (codec.fitted)
    max_result_bytes: int = env("RECEIVER_RESULT_MAX_BYTES", 1024 * 1024, minimum=64 * 1024)
    enabled: bool = env("RECEIVER_ENABLED", False)  # POST /: on in the cluster-local events Service only
    # Sender authentication on POST / (http_shim.sender_auth): a shared bearer token, and/or
    # Knative Eventing's OIDC tokens checked against the issuer's keys and a list of allowed
    # senders. "required": an enabled receiver with neither refuses to start; "none" opens it.
    auth: str = env("RECEIVER_AUTH", "required", transform=str.lower, choices=("required", "none"))
    token: Secret = env("RECEIVER_TOKEN", Secret(""))
    oidc_issuer: str = env("RECEIVER_OIDC_ISSUER", "")
    oidc_audience: str = env("RECEIVER_OIDC_AUDIENCE", "")
    oidc_jwks_url: str = env("RECEIVER_OIDC_JWKS_URL", "")  # empty: from the issuer's discovery document
    oidc_ca_bundle: str = env("RECEIVER_OIDC_CA_BUNDLE", "")
    oidc_fetch_token_file: str = env("RECEIVER_OIDC_FETCH_TOKEN_FILE", "")  # bearer for fetching the keys
    # token subjects that may send: exact names, or prefixes ending in ":" such as
    # system:serviceaccount:<namespace>: (every service account of one namespace)
    oidc_allowed_subjects: frozenset[str] = env("RECEIVER_OIDC_ALLOWED_SUBJECTS", frozenset())


@dataclass(frozen=True, slots=True)
class KafkaSettings:
    """The Kafka consumer's connection, topics and client options."""

    bootstrap_servers: str = env("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
    input_topic: str = env("KAFKA_INPUT_TOPIC", "audio-uploads")
    results_topic: str = env("KAFKA_RESULTS_TOPIC", "diarization-results")
    dlq_topic: str = env("KAFKA_DLQ_TOPIC", "diarization-dlq")
    group_id: str = env("KAFKA_GROUP_ID", "diarization-consumer")
    security_protocol: str = env("KAFKA_SECURITY_PROTOCOL", "PLAINTEXT", transform=str.upper)
    sasl_mechanism: str = env("KAFKA_SASL_MECHANISM", "")
    sasl_username: str = env("KAFKA_SASL_USERNAME", "")
    sasl_password: Secret = env("KAFKA_SASL_PASSWORD", Secret(""))
    ssl_ca_location: str = env("KAFKA_SSL_CA_LOCATION", "")
    max_poll_interval_ms: int = env("KAFKA_MAX_POLL_INTERVAL_MS", 300_000, minimum=1000)
    session_timeout_ms: int = env("KAFKA_SESSION_TIMEOUT_MS", 45_000, minimum=1000)
    max_message_bytes: int = env("KAFKA_MAX_MESSAGE_BYTES", 1024 * 1024, minimum=1024)
    publish_timeout_seconds: float = env("KAFKA_PUBLISH_TIMEOUT_SECONDS", 30.0, minimum=1.0)
    retry_backoff_max_seconds: float = env("RETRY_BACKOFF_MAX_SECONDS", 30.0, minimum=0.1)
    shutdown_grace_seconds: float = env("SHUTDOWN_GRACE_SECONDS", 300.0)
    probe_port: int = env("CONSUMER_PROBE_PORT", 8081)
    liveness_timeout_seconds: float = env("LIVENESS_TIMEOUT_SECONDS", 60.0, minimum=1.0)
    # Kafka's default topic max.message.bytes: every record produced is built to fit it
    max_record_bytes: int = env("KAFKA_MAX_RECORD_BYTES", 1_048_588, minimum=65536)
    group_instance_id: str = env("KAFKA_GROUP_INSTANCE_ID", "")  # static membership; "" for dynamic
    max_attempts: int = env("MAX_ATTEMPTS", 3, minimum=1)


@dataclass(frozen=True, slots=True)
class StorageSettings:
    """The S3-compatible object store holding uploads and results."""

    endpoint: str = env("S3_ENDPOINT", "127.0.0.1:9000")
    access_key: Secret = env("S3_ACCESS_KEY", Secret(""))
    secret_key: Secret = env("S3_SECRET_KEY", Secret(""))
    secure: bool = env("S3_SECURE", False)
    region: str = env("S3_REGION", "")
    ca_bundle: str = env("S3_CA_BUNDLE", "")
    upload_bucket: str = env("S3_UPLOAD_BUCKET", "audio")
    results_bucket: str = env("S3_RESULTS_BUCKET", "diarization-results")
    results_prefix: str = env("S3_RESULTS_PREFIX", "results/")
    jobs_prefix: str = env("S3_JOBS_PREFIX", "jobs/")  # /v1/jobs: audio in the upload bucket, records in results
    allowed_buckets: frozenset[str] = env("S3_ALLOWED_BUCKETS", frozenset({"audio"}), default_from=_upload_bucket)


def webhook_signing_key(secret: str) -> bytes:
    """The key of a Standard Webhooks secret, ``whsec_<base64>``, of at least 16 bytes; ``ValueError`` otherwise."""
    if not secret.startswith("whsec_"):
        raise ValueError("a webhook secret starts with 'whsec_'")
    try:
        key = base64.b64decode(secret.removeprefix("whsec_") + "==")  # padding may be left out
    except binascii.Error as exc:
        raise ValueError(f"a webhook secret is base64 after 'whsec_': {exc}") from None
    if len(key) < 16:
        raise ValueError("a webhook secret holds at least 16 bytes")
    return key


def _is_webhook_secret(value: Secret) -> bool:
    try:
        return bool(webhook_signing_key(value.value))
    except ValueError:
        return False


@dataclass(frozen=True, slots=True)
class WebhookSettings:
    """Webhooks of ``/v1/jobs`` (``consumer.webhooks``): the signing secret, and whom they may call."""

    # Standard Webhooks' "whsec_<base64>"; consumers sign with it (no secret: nothing is sent)
    secret: Secret = env(
        "WEBHOOK_SECRET", Secret(""), allowed=_is_webhook_secret, expected="whsec_<base64 of 16+ bytes>"
    )
    # hosts, addresses or networks a webhook may call although they are not public (default: none)
    allowed_hosts: frozenset[str] = env("WEBHOOK_ALLOWED_HOSTS", frozenset(), transform=str.lower)
    allow_http: bool = env("WEBHOOK_ALLOW_HTTP", False)  # plain http URLs (default: https only)
    timeout_seconds: float = env("WEBHOOK_TIMEOUT_SECONDS", 10.0, minimum=1.0)


@dataclass(frozen=True, slots=True)
class EventSettings:
    """Result events: their source, and progress reports for long jobs."""

    source: str = env("EVENT_SOURCE", "/diarization-service")
    progress_min_audio_seconds: float = env("PROGRESS_MIN_AUDIO_SECONDS", 60.0)
    progress_interval_seconds: float = env("PROGRESS_INTERVAL_SECONDS", 5.0)


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything the service reads from its environment."""

    engine: EngineSettings
    audio: AudioLimits = AudioLimits()
    jobs: JobLimits = JobLimits()
    http: HttpSettings = HttpSettings()
    receiver: ReceiverSettings = ReceiverSettings()
    kafka: KafkaSettings = KafkaSettings()
    storage: StorageSettings = StorageSettings()
    events: EventSettings = EventSettings()
    webhooks: WebhookSettings = WebhookSettings()
    log_level: str = env("LOG_LEVEL", "INFO", transform=str.upper)
    log_format: str = env("LOG_FORMAT", "json", transform=str.lower, choices=("json", "text"))

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        """Build the settings from ``env`` (normally ``os.environ``); raises ``SettingsError``."""
        return _load(cls, env)

    def describe(self) -> dict[str, Any]:
        """The settings as a plain dict for a start-up log line; secrets stay masked."""
        return _describe(self)


def _load(cls: type[T], env: Mapping[str, str]) -> T:
    """Build the settings dataclass ``cls`` from ``env``.

    A field declared with ``env(...)`` is read from its variable (``_read``); a field whose
    type is a dataclass is a group, loaded the same way; any other field keeps its default.
    Raises ``SettingsError`` naming the first variable whose value cannot be used.
    """
    hints = get_type_hints(cls)
    values: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if "env" in f.metadata:
            values[f.name] = _read(f, env)
        elif dataclasses.is_dataclass(hints[f.name]):
            values[f.name] = _load(hints[f.name], env)
    return cls(**values)


def _read(f: dataclasses.Field[Any], env: Mapping[str, str]) -> Any:
    """The value of field ``f`` in ``env``: blank or unset gives its default."""
    var: Variable = f.metadata["env"]
    raw = env.get(var.name, "").strip() or (var.default_from(env) if var.default_from else "")
    if not raw:
        return f.default
    text = var.transform(raw) if var.transform else raw
    try:
        value = var.parser.convert(text)
    except ValueError:
        raise SettingsError(f"{var.name} must be {var.parser.what}, got {text!r}") from None
    if var.minimum is not None and value < var.minimum:
        raise SettingsError(f"{var.name} must be >= {var.minimum}, got {value}")
    if var.allowed is not None and not var.allowed(value):
        raise SettingsError(f"{var.name} must be {var.expected}, got {value!r}")
    return value


def variables(cls: type = Settings) -> list[Variable]:
    """Every variable ``cls`` and its groups declare, in declaration order (for docs and checks)."""
    hints = get_type_hints(cls)
    found: list[Variable] = []
    for f in dataclasses.fields(cls):
        if "env" in f.metadata:
            found.append(f.metadata["env"])
        elif dataclasses.is_dataclass(hints[f.name]):
            found.extend(variables(hints[f.name]))
    return found


def _describe(obj: Any) -> dict[str, Any]:
    """The fields of ``obj`` as a dict, groups nested, secrets masked."""
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
