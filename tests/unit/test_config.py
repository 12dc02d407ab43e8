"""Settings come from the environment in one place, validated, with secrets masked."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from consumer.config import Secret, Settings, SettingsError, cache_dir, variables

NOT_CONFIGURABLE = {"audio.min_seconds"}  # plain fields: no variable, always the default


def leaf_fields(obj: Any, prefix: str = "") -> list[tuple[str, dataclasses.Field[Any]]]:
    """``(dotted name, field)`` of every non-group field of a settings object."""
    found = []
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if "env" not in f.metadata and dataclasses.is_dataclass(value):
            found += leaf_fields(value, f"{prefix}{f.name}.")
        else:
            found.append((f"{prefix}{f.name}", f))
    return found


def test_every_field_has_a_variable_and_the_names_are_unique():
    fields = leaf_fields(Settings.from_env({}))
    assert {name for name, f in fields if "env" not in f.metadata} == NOT_CONFIGURABLE
    names = [f.metadata["env"].name for _, f in fields if "env" in f.metadata]
    assert len(names) == len(set(names)) == len(variables()) > 40
    assert names == [var.name for var in variables()]


def test_an_empty_environment_gives_the_defaults():
    settings = Settings.from_env({})
    assert settings.engine.model == str(cache_dir({}) / "models" / "offline-default")
    assert settings.engine.device == "auto" and settings.engine.warmup is True
    assert settings.audio.max_bytes == 512 * 1024 * 1024 and settings.audio.max_seconds == 86400.0
    assert settings.http.port == 8080 and settings.http.host == "0.0.0.0" and settings.http.request_timeout == 300.0
    assert settings.kafka.security_protocol == "PLAINTEXT" and settings.kafka.max_poll_interval_ms == 300_000
    assert settings.storage.allowed_buckets == frozenset({"audio"}) and settings.storage.secure is False
    assert settings.receiver.always_async is False and settings.receiver.max_event_bytes == 1024 * 1024
    assert (settings.log_level, settings.log_format) == ("INFO", "json")
    assert settings.http.api_key == Secret("")


def test_constructors_keep_the_same_defaults_as_an_empty_environment():
    from_env = Settings.from_env({})
    assert Settings(engine=from_env.engine) == from_env


def test_blank_values_count_as_unset():
    assert Settings.from_env({"PORT": "  ", "DEVICE": "", "MODEL_WARMUP": " "}) == Settings.from_env({})


def test_defaults_point_at_the_offline_bundle_in_the_cache():
    settings = Settings.from_env({"CACHE_DIR": "/srv/cache"})
    assert settings.engine.model == "/srv/cache/models/offline-default"
    assert settings.engine.device == "auto"
    assert settings.http.port == 8080
    assert settings.audio.min_seconds == 0.5


def test_cache_dir_is_the_variable_or_the_default_expanded():
    assert str(cache_dir({"CACHE_DIR": " /srv/cache "})) == "/srv/cache"
    assert cache_dir({}) == cache_dir({"CACHE_DIR": ""}) == cache_dir({"CACHE_DIR": "~/.cache/diarization-service"})
    assert "~" not in str(cache_dir({}))


def test_model_device_and_limits_are_read():
    settings = Settings.from_env(
        {
            "DIARIZATION_MODEL": "pyannote/speaker-diarization-3.1",
            "DEVICE": "cuda:1",
            "MAX_AUDIO_SECONDS": "60",
            "MAX_AUDIO_BYTES": "1000",
            "PORT": "9000",
        }
    )
    assert settings.engine.model == "pyannote/speaker-diarization-3.1"
    assert settings.engine.device == "cuda:1"
    assert settings.audio.max_seconds == 60.0
    assert settings.audio.max_bytes == 1000
    assert settings.http.port == 9000


def test_case_is_normalised_where_the_value_is_a_word():
    settings = Settings.from_env(
        {
            "DEVICE": "CPU",
            "LOG_FORMAT": "Text",
            "LOG_LEVEL": "debug",
            "KAFKA_SECURITY_PROTOCOL": "sasl_ssl",
            "S3_SECURE": "YES",
            "RECEIVER_ASYNC": "On",
        }
    )
    assert (settings.engine.device, settings.log_format, settings.log_level) == ("cpu", "text", "DEBUG")
    assert settings.kafka.security_protocol == "SASL_SSL"
    assert settings.storage.secure is True and settings.receiver.always_async is True


@pytest.mark.parametrize("word", ["0", "false", "No", "OFF"])
def test_false_spellings_switch_a_flag_off(word):
    assert Settings.from_env({"MODEL_WARMUP": word}).engine.warmup is False


def test_allowed_buckets_default_to_the_upload_bucket():
    assert Settings.from_env({"S3_UPLOAD_BUCKET": "uploads"}).storage.allowed_buckets == frozenset({"uploads"})
    storage = Settings.from_env({"S3_UPLOAD_BUCKET": "uploads", "S3_ALLOWED_BUCKETS": " a, b,,uploads "}).storage
    assert storage.upload_bucket == "uploads" and storage.allowed_buckets == frozenset({"a", "b", "uploads"})


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("PORT", "eighty", "must be an integer"),
        ("MAX_QUEUED_JOBS", "1.5", "must be an integer"),
        ("MAX_AUDIO_SECONDS", "long", "must be a number"),
        ("S3_SECURE", "maybe", "must be true or false"),
        ("MODEL_WARMUP", "2", "must be true or false"),
        ("PORT", "0", "must be >= 1"),
        ("MAX_AUDIO_SECONDS", "0", "must be >= 1.0"),
        ("EVENT_MAX_BYTES", "1023", "must be >= 1024"),
        ("TORCH_NUM_THREADS", "-1", "must be >= 0"),
        ("DEDUP_WINDOW_SECONDS", "-0.5", "must be >= 0.0"),
        ("DEVICE", "tpu", "must be auto, cpu, cuda or cuda:N"),
        ("LOG_FORMAT", "xml", "must be json or text"),
    ],
)
def test_bad_values_are_refused_with_the_variable_named(name, value, message):
    with pytest.raises(SettingsError, match=f"^{name} {message}"):
        Settings.from_env({name: value})


def test_secrets_never_show_in_repr_or_describe():
    env = {
        "HF_TOKEN": "hf_supersecret",
        "API_KEY": "key-123456",
        "S3_SECRET_KEY": "minio-secret",
        "KAFKA_SASL_PASSWORD": "kafka-pass",
        "S3_ACCESS_KEY": "minio-access",
    }
    settings = Settings.from_env(env)
    rendered = repr(settings) + str(settings.describe())
    for secret in env.values():
        assert secret not in rendered
    assert settings.http.api_key.value == "key-123456"
    assert settings.describe()["engine"]["hf_token"] == "Secret('***')"
    assert settings.describe()["http"]["port"] == 8080


def test_secret_is_falsy_when_empty():
    assert not Secret("")
    assert Secret("x")
