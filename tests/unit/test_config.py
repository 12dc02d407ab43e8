"""Settings come from the environment in one place, validated, with secrets masked."""

import pytest

from consumer.config import Secret, Settings, SettingsError


def test_defaults_point_at_the_offline_bundle_in_the_cache():
    settings = Settings.from_env({"CACHE_DIR": "/srv/cache"})
    assert settings.engine.model == "/srv/cache/models/offline-default"
    assert settings.engine.device == "auto"
    assert settings.http.port == 8080
    assert settings.audio.min_seconds == 0.5


def test_model_device_and_limits_are_read():
    settings = Settings.from_env(
        {"DIARIZATION_MODEL": "pyannote/speaker-diarization-3.1", "DEVICE": "cuda:1",
         "MAX_AUDIO_SECONDS": "60", "MAX_AUDIO_BYTES": "1000", "PORT": "9000"}
    )  # fmt: skip
    assert settings.engine.model == "pyannote/speaker-diarization-3.1"
    assert settings.engine.device == "cuda:1"
    assert settings.audio.max_seconds == 60.0
    assert settings.audio.max_bytes == 1000
    assert settings.http.port == 9000


@pytest.mark.parametrize(
    ("name", "value"),
    [("PORT", "eighty"), ("DEVICE", "tpu"), ("MAX_AUDIO_SECONDS", "0"), ("S3_SECURE", "maybe"), ("LOG_FORMAT", "xml")],
)
def test_bad_values_are_refused_with_the_variable_named(name, value):
    with pytest.raises(SettingsError, match=name):
        Settings.from_env({name: value})


def test_secrets_never_show_in_repr_or_describe():
    env = {"HF_TOKEN": "hf_supersecret", "API_KEY": "key-123456", "S3_SECRET_KEY": "minio-secret",
           "KAFKA_SASL_PASSWORD": "kafka-pass"}  # fmt: skip
    settings = Settings.from_env(env)
    rendered = repr(settings) + str(settings.describe())
    for secret in env.values():
        assert secret not in rendered
    assert settings.http.api_key.value == "key-123456"
    assert settings.describe()["engine"]["hf_token"] == "Secret('***')"


def test_secret_is_falsy_when_empty():
    assert not Secret("")
    assert Secret("x")
