"""local-dev/compose.yaml is valid Compose and matches the container-free stack (stack.py).

Tier tests/repo: runs Go (``stack.py compose-schema`` downloads the compose-go module once).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from tests.support import local_dev

LOCAL_DEV = local_dev.LOCAL_DEV
SERVICE_NAMES = ("consumer", "shim", "init")


stack = local_dev.load("stack")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load((LOCAL_DEV / "compose.yaml").read_text())


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    """The Compose spec JSON schema from the pinned compose-go module (via stack.py)."""
    result = subprocess.run(
        [sys.executable, str(LOCAL_DEV / "stack.py"), "compose-schema"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, f"cannot get the Compose schema (needs Go):\n{result.stderr}"
    return json.loads(Path(result.stdout.strip()).read_text())


def test_compose_file_matches_the_compose_spec(compose: dict[str, Any], schema: dict[str, Any]) -> None:
    validator_class = jsonschema.validators.validator_for(schema)
    validator_class.check_schema(schema)
    validator = validator_class(schema, format_checker=validator_class.FORMAT_CHECKER)
    errors = [f"{error.json_path}: {error.message}" for error in validator.iter_errors(compose)]
    assert errors == []


def test_schema_rejects_an_invalid_file(schema: dict[str, Any]) -> None:
    validator = jsonschema.validators.validator_for(schema)(schema)
    assert not validator.is_valid({"services": {"broken": {"image": 1, "no-such-key": True}}})


@pytest.mark.parametrize("service", SERVICE_NAMES)
def test_services_get_the_settings_stack_py_prints(compose: dict[str, Any], service: str) -> None:
    env = dict(compose["services"][service]["environment"])
    expected = stack.connection_env(stack.Ports(0))
    if service == "shim":  # its API needs a key, given by whoever starts the file
        assert env.pop("API_KEY") == "${API_KEY:?set API_KEY for the shim's API}"
    assert list(env) == list(stack.ENV_NAMES)
    port_free = {k: v for k, v in expected.items() if k not in ("KAFKA_BOOTSTRAP_SERVERS", "S3_ENDPOINT")}
    assert {k: env[k] for k in port_free} == port_free
    assert env["KAFKA_BOOTSTRAP_SERVERS"] == "kafka:9092"
    assert env["S3_ENDPOINT"] == "minio:9000"


def test_consumer_and_shim_run_the_project_image(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert services["consumer"]["command"] == ["consumer"]  # modes of the image ENTRYPOINT "diarization"
    assert services["shim"]["command"] == ["shim"]
    for name in SERVICE_NAMES:
        assert services[name]["build"] == {"context": "..", "dockerfile": "Containerfile"}
        assert (LOCAL_DEV / services[name]["build"]["context"]).is_dir()


def test_init_provisions_with_stack_py(compose: dict[str, Any]) -> None:
    init = compose["services"]["init"]
    assert init["entrypoint"][-2:] == ["/opt/local-dev/stack.py", "provision"]
    assert "./stack.py:/opt/local-dev/stack.py:ro" in init["volumes"]
    for name in ("consumer", "shim"):
        condition = compose["services"][name]["depends_on"]["init"]["condition"]
        assert condition == "service_completed_successfully"


def test_minio_notifies_the_same_target(compose: dict[str, Any]) -> None:
    env = compose["services"]["minio"]["environment"]
    expected = stack.minio_notify_env("kafka:9092", "/queue")
    assert {k: v for k, v in env.items() if k.startswith("MINIO_NOTIFY_")} == expected
    assert env["MINIO_ROOT_USER"] == stack.S3_ACCESS_KEY
    assert env["MINIO_ROOT_PASSWORD"] == stack.S3_SECRET_KEY


def test_kafka_has_the_same_broker_settings(compose: dict[str, Any]) -> None:
    env = compose["services"]["kafka"]["environment"]
    # The apache/kafka image turns KAFKA_FOO_BAR into the property foo.bar.
    properties = {
        k.removeprefix("KAFKA_").lower().replace("_", "."): str(v) for k, v in env.items() if k.startswith("KAFKA_")
    }
    assert {k: properties.get(k) for k in stack.KAFKA_SETTINGS} == stack.KAFKA_SETTINGS
    image_version = compose["services"]["kafka"]["image"].rsplit(":", 1)[1]
    assert image_version == stack.kafka_version()
