"""knative/ matches the real Kubernetes, Knative, KEDA and OpenShift schemas, and the code.

Core kinds are validated with the schemas of the ``kubernetes-validate`` wheel, custom
resources with the CRDs of the pinned Go modules (local-dev/k8s_schemas.py fetches them
once into the cache). Beyond the schemas: every env var a manifest sets is one the code
reads, ports and probe paths are the code's, timeouts nest, and kustomize sees every file.

Tier tests/repo: runs Go (``go mod download`` of the pinned modules, from the network once).
"""

from __future__ import annotations

import ast
import base64
import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import jsonschema
import pytest
import yaml

from consumer.config import Settings, variables
from diarization import cli
from tests.support import local_dev

REPO = Path(__file__).resolve().parents[2]
KNATIVE = REPO / "knative"
ROOT_KUSTOMIZATIONS = (KNATIVE, KNATIVE / "openshift")  # applied on their own
IMAGE = "diarization-service"
# Read by libraries rather than consumer/config.py, or injected by Knative.
LIBRARY_ENV = {"K_SINK", "HF_TOKEN", "HF_HUB_OFFLINE", "PYANNOTE_METRICS_ENABLED"}
KNATIVE_INGRESS_NAMESPACE = "knative-serving-ingress"
ROOT_FIELDS = {"apiVersion": {"type": "string"}, "kind": {"type": "string"}, "metadata": {"type": "object"}}


k8s_schemas = local_dev.load("k8s_schemas")
stack = k8s_schemas.stack


@dataclass(frozen=True)
class Doc:
    """One YAML document of a manifest file."""

    path: Path
    body: dict[str, Any]

    @property
    def kind(self) -> str:
        return self.body["kind"]

    @property
    def name(self) -> str:
        return self.body["metadata"]["name"]

    @property
    def example(self) -> bool:
        return self.path.name.endswith(".example.yaml")

    def __str__(self) -> str:
        return f"{self.path.relative_to(KNATIVE)}:{self.kind}/{self.name}"


def manifest_files() -> list[Path]:
    """Every YAML file under knative/ except the kustomizations."""
    return sorted(p for p in KNATIVE.rglob("*.yaml") if p.name != "kustomization.yaml")


def load_docs() -> list[Doc]:
    """Every YAML document of the manifest files, examples included."""
    return [
        Doc(path, body)
        for path in manifest_files()
        for body in yaml.safe_load_all(path.read_text())
        if body is not None
    ]


DOCS = load_docs()


def find(kind: str, *, examples: bool = False) -> list[Doc]:
    """The documents of ``kind``; examples only when asked for."""
    return [doc for doc in DOCS if doc.kind == kind and (examples or not doc.example)]


def the(kind: str, api_group: str = "") -> Doc:
    """The one (non-example) document of ``kind`` (in ``api_group``, when given)."""
    docs = [doc for doc in find(kind) if doc.body["apiVersion"].startswith(api_group)]
    assert len(docs) == 1, f"expected one {kind} in knative/, found {[str(d) for d in docs]}"
    return docs[0]


def knative_services() -> list[Doc]:
    """The Knative Services of the shim: the public one and the cluster-local one that receives events."""
    return [doc for doc in find("Service") if doc.body["apiVersion"].startswith("serving.knative.dev/")]


def knative_service(name: str) -> Doc:
    """The Knative Service called ``name``."""
    (doc,) = [doc for doc in knative_services() if doc.name == name]
    return doc


def route_service() -> Doc:
    """The Knative Service the Route exposes: its host is ``<service>-<namespace>.<apps domain>``."""
    host = the("Route").body["spec"]["host"]
    namespace = kustomization(KNATIVE)["namespace"]
    matches = [doc for doc in knative_services() if host.startswith(f"{doc.name}-{namespace}.")]
    assert len(matches) == 1, f"the Route's host {host} names no single Knative Service"
    return matches[0]


def event_targets() -> list[tuple[Doc, dict[str, Any]]]:
    """Everything that sends events to a workload: Trigger subscribers, KafkaSource sinks, SinkBinding subjects."""
    return [
        *((doc, doc.body["spec"]["subscriber"]) for doc in find("Trigger")),
        *((doc, doc.body["spec"]["sink"]) for doc in find("KafkaSource")),
        *((doc, {"ref": doc.body["spec"]["subject"]}) for doc in find("SinkBinding")),
    ]


def events_service() -> Doc:
    """The Knative Service the event plumbing points at."""
    names = {target["ref"]["name"] for _, target in event_targets()}
    assert len(names) == 1, f"events go to several workloads: {names}"
    return knative_service(names.pop())


def pod_spec(doc: Doc) -> dict[str, Any]:
    """The pod spec of a Knative Service or a Deployment."""
    return doc.body["spec"]["template"]["spec"]


def workloads() -> list[Doc]:
    """Everything that runs the image."""
    return [*knative_services(), *find("Deployment")]


def config_map() -> dict[str, str]:
    """The shared settings."""
    return the("ConfigMap").body["data"]


# --- Schemas ------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def crd_schemas() -> dict[tuple[str, str], dict[str, Any]]:
    """The CRD schemas of the pinned modules; fails (never skips) when they cannot be had."""
    try:
        return k8s_schemas.crd_schemas(stack.cache_dir())
    except k8s_schemas.SchemaError as exc:
        pytest.fail(f"cannot get the CRD schemas (needs Go and the module proxy once): {exc}")


@pytest.fixture(scope="session")
def kubernetes_validate() -> ModuleType:
    """The core Kubernetes schemas' package; fails (never skips) when it is missing."""
    try:
        import kubernetes_validate
    except ImportError:
        pytest.fail(
            "kubernetes-validate is not installed; it belongs to setup.cfg's test extra "
            "(pip install 'kubernetes-validate==1.37.*')"
        )
    return kubernetes_validate


def strict(schema: dict[str, Any]) -> dict[str, Any]:
    """An openAPIV3Schema as JSON Schema that rejects unknown fields, like `kubectl --validate=strict`."""
    out = {key: value for key, value in schema.items() if value is not None}  # `anyOf: null` = absent
    if "properties" in out:
        out["properties"] = {name: strict(sub) for name, sub in out["properties"].items()}
    for key in ("items", "additionalProperties"):
        if isinstance(out.get(key), dict):
            out[key] = strict(out[key])
    # allOf/anyOf/oneOf/not only add value checks in a structural schema: left as they are.
    if out.pop("nullable", False) and "type" in out:
        out["type"] = [out["type"], "null"]
    if out.get("x-kubernetes-embedded-resource"):
        out["properties"] = {"apiVersion": {}, "kind": {}, "metadata": {}, **out.get("properties", {})}
    if (
        "properties" in out
        and "additionalProperties" not in out
        and not out.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    return out


def schema_errors(
    body: dict[str, Any], crds: dict[tuple[str, str], dict[str, Any]], kubernetes_validate: ModuleType
) -> list[str]:
    """Why ``body`` does not match its CRD or core schema (empty when it does)."""
    key = (body["apiVersion"], body["kind"])
    if key in crds:
        schema = strict(crds[key])
        # The API server accepts these at the root of every object, listed in the CRD or not.
        schema["properties"] = {**ROOT_FIELDS, **schema.get("properties", {})}
        validator = jsonschema.Draft4Validator(schema)
        return sorted(f"{error.json_path}: {error.message}" for error in validator.iter_errors(body))
    try:
        kubernetes_validate.validate(body, k8s_schemas.KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.SchemaNotFoundError:
        return [
            f"no schema for {key}: not a core kind of Kubernetes {k8s_schemas.KUBERNETES_VERSION} "
            f"and not a CRD of {sorted(k8s_schemas.MODULES)}"
        ]
    except kubernetes_validate.ValidationError as error:
        return [f"{error.json_path}: {error.message}"]
    return []


@pytest.mark.parametrize("doc", DOCS, ids=str)
def test_document_matches_its_schema(doc: Doc, crd_schemas: dict, kubernetes_validate: ModuleType) -> None:
    assert schema_errors(doc.body, crd_schemas, kubernetes_validate) == []


@pytest.mark.parametrize("doc", [*knative_services(), the("Deployment")], ids=str)
def test_schemas_reject_an_unknown_field(doc: Doc, crd_schemas: dict, kubernetes_validate: ModuleType) -> None:
    body = yaml.safe_load(yaml.safe_dump(doc.body))
    body["spec"]["template"]["spec"]["containers"][0]["imagePullPolicyy"] = "Always"
    assert schema_errors(body, crd_schemas, kubernetes_validate) != []


# --- Kustomize ----------------------------------------------------------------------------
def kustomization(folder: Path) -> dict[str, Any]:
    """``folder``'s kustomization.yaml, which must exist."""
    path = folder / "kustomization.yaml"
    assert path.is_file(), f"{path.relative_to(REPO)} is missing"
    return yaml.safe_load(path.read_text())


def kustomization_folders() -> list[Path]:
    """Every folder under knative/ with a kustomization."""
    return sorted(path.parent for path in KNATIVE.rglob("kustomization.yaml"))


def entries(folder: Path) -> list[str]:
    """What a kustomization lists: resources and components."""
    spec = kustomization(folder)
    return [*spec.get("resources", []), *spec.get("components", [])]


def listed_files(folder: Path) -> list[Path]:
    """The files a kustomization lists itself; a listed folder must hold a kustomization."""
    files = []
    for entry in entries(folder):
        target = (folder / entry).resolve()
        assert target.is_file() or (target / "kustomization.yaml").is_file(), (
            f"{folder.relative_to(REPO)}/kustomization.yaml lists {entry}, which does not exist"
        )
        if target.is_file():
            files.append(target)
    return files


def test_kustomize_applies_every_manifest_and_no_example() -> None:
    listed = [path for folder in kustomization_folders() for path in listed_files(folder)]
    assert len(listed) == len(set(listed)), "a file is listed twice"
    expected = {path.resolve() for path in manifest_files() if not path.name.endswith(".example.yaml")}
    assert set(listed) == expected


def test_every_folder_is_applied_or_an_optional_component() -> None:
    referenced = {(folder / entry).resolve() for folder in kustomization_folders() for entry in entries(folder)}
    for folder in kustomization_folders():
        kind = kustomization(folder)["kind"]
        assert folder in ROOT_KUSTOMIZATIONS or kind == "Component", folder
        assert folder not in ROOT_KUSTOMIZATIONS or folder not in referenced, f"{folder} is applied twice"


def test_only_one_kafka_door_is_enabled() -> None:
    components = kustomization(KNATIVE).get("components", [])
    assert len({"kafka-consumer", "kafka-source"} & set(components)) == 1, components


def test_the_route_keeps_its_namespace() -> None:
    """Kustomize's ``namespace:`` would move the Route out of knative-serving-ingress."""
    assert "namespace" not in kustomization(KNATIVE / "openshift")
    route = the("Route")
    assert route.path.parent == KNATIVE / "openshift"
    assert route.body["metadata"]["namespace"] == KNATIVE_INGRESS_NAMESPACE


# --- Environment --------------------------------------------------------------------------
def code_env_names() -> set[str]:
    """The variables the settings declare (consumer.config), and those libraries read."""
    return {variable.name for variable in variables()} | LIBRARY_ENV


def secrets() -> dict[str, dict[str, str]]:
    """Name -> keys of every Secret defined in knative/ (examples included)."""
    return {
        doc.name: {**doc.body.get("data", {}), **doc.body.get("stringData", {})}
        for doc in find("Secret", examples=True)
    }


def container_env(container: dict[str, Any]) -> dict[str, str | None]:
    """Name -> value of every variable a container gets (None: from a Secret)."""
    maps = {doc.name: doc.body["data"] for doc in find("ConfigMap")}
    env: dict[str, str | None] = {}
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            name = source["configMapRef"]["name"]
            assert name in maps, f"envFrom ConfigMap {name} is not defined in knative/"
            env.update(maps[name])
        else:
            name = source["secretRef"]["name"]
            assert name in secrets(), f"envFrom Secret {name} has no example in knative/"
            env.update(dict.fromkeys(secrets()[name]))
    for var in container.get("env", []):
        ref = var.get("valueFrom", {}).get("secretKeyRef")
        if ref:
            assert ref["key"] in secrets().get(ref["name"], {}), f"{var['name']}: no {ref} in the examples"
        env[var["name"]] = var.get("value")
    return env


def settings_of(container: dict[str, Any]) -> Settings:
    """The settings the code builds from a container's environment (Secrets left out)."""
    return Settings.from_env({k: v for k, v in container_env(container).items() if v is not None})


def containers() -> list[tuple[Doc, dict[str, Any]]]:
    """Every container of every workload, with its workload."""
    return [(doc, container) for doc in workloads() for container in pod_spec(doc)["containers"]]


CONTAINERS = [pytest.param(doc, container, id=f"{doc}:{container['name']}") for doc, container in containers()]


@pytest.mark.parametrize(("doc", "container"), CONTAINERS)
def test_every_variable_is_read_by_the_code(doc: Doc, container: dict[str, Any]) -> None:
    assert set(container_env(container)) - code_env_names() == set()


def test_every_config_map_key_is_read_by_the_code() -> None:
    assert set(config_map()) - code_env_names() == set()


@pytest.mark.parametrize(("doc", "container"), CONTAINERS)
def test_the_code_accepts_the_settings(doc: Doc, container: dict[str, Any]) -> None:
    settings_of(container)  # raises SettingsError on a value the service would refuse


def test_nothing_sets_what_knative_or_the_defaults_own() -> None:
    """Knative sets PORT (= containerPort) and K_SINK (SinkBinding); the port checks assume defaults."""
    for _, container in containers():
        assert {"PORT", "K_SINK", "CONSUMER_PROBE_PORT"} & set(container_env(container)) == set()


# --- Modes, ports, probes -----------------------------------------------------------------
def test_containers_run_a_mode_of_the_entry_point() -> None:
    for doc, container in containers():
        assert container["image"] == IMAGE, doc
        assert "command" not in container, f"{doc}: keep the image's ENTRYPOINT"
        assert container["args"][0] in cli.MODES, doc
    for service in knative_services():
        assert [c["args"] for c in pod_spec(service)["containers"]] == [["shim"]], service
    assert [c["args"] for c in pod_spec(the("Deployment"))["containers"]] == [["consumer"]]


def served_paths(path: Path) -> set[str]:
    """Probe paths a module serves: Flask route decorators and ``self.path == "/..."`` tests."""
    paths = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.FunctionDef):
            for decorator in node.decorator_list:
                if isinstance(decorator, ast.Call) and decorator.args and isinstance(decorator.args[0], ast.Constant):
                    paths.add(decorator.args[0].value)
        if isinstance(node, ast.Compare) and ast.unparse(node.left) == "self.path":
            paths.update(c.value for c in node.comparators if isinstance(c, ast.Constant))
    return paths


def probes(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The httpGet of each probe a container has."""
    return {
        kind: container[kind]["httpGet"]
        for kind in ("livenessProbe", "readinessProbe", "startupProbe")
        if kind in container
    }


@pytest.mark.parametrize(
    ("doc", "served", "port"),
    [
        *(
            pytest.param(service, REPO / "http_shim" / "probes.py", Settings.from_env({}).http.port, id=service.name)
            for service in knative_services()
        ),
        pytest.param(
            the("Deployment"),
            REPO / "consumer" / "kafka" / "probe_server.py",
            Settings.from_env({}).kafka.probe_port,
            id="consumer",
        ),
    ],
)
def test_ports_and_probes_are_the_codes(doc: Doc, served: Path, port: int) -> None:
    paths = served_paths(served)
    assert {"/health", "/ready"} <= paths, f"{served.name} parse broke: {paths}"
    (container,) = pod_spec(doc)["containers"]
    assert [p["containerPort"] for p in container["ports"]] == [port]
    http = probes(container)
    assert http["livenessProbe"]["path"] == "/health" and http["readinessProbe"]["path"] == "/ready"
    for probe in http.values():
        assert probe["path"] in paths
        assert probe.get("port", port) == port  # Knative: only the container port


# --- Workloads ----------------------------------------------------------------------------
def test_each_replica_gets_one_gpu_on_a_gpu_node() -> None:
    for doc, container in containers():
        resources = container["resources"]
        assert resources["limits"]["nvidia.com/gpu"] == resources["requests"]["nvidia.com/gpu"] == "1", doc
        assert pod_spec(doc)["nodeSelector"] == {"nvidia.com/gpu.present": "true"}, doc
    for service in knative_services():
        assert settings_of(pod_spec(service)["containers"][0]).engine.device == "cuda", service


def test_consumer_grace_period_outlasts_its_shutdown_grace() -> None:
    deployment = the("Deployment")
    (container,) = pod_spec(deployment)["containers"]
    grace = settings_of(container).kafka.shutdown_grace_seconds
    assert pod_spec(deployment)["terminationGracePeriodSeconds"] >= grace + 10


def test_scaled_object_follows_the_consumer_group_within_the_partitions() -> None:
    scaled, deployment = the("ScaledObject").body, the("Deployment")
    settings = settings_of(pod_spec(deployment)["containers"][0]).kafka
    assert scaled["spec"]["scaleTargetRef"]["name"] == deployment.name
    assert 1 <= scaled["spec"]["minReplicaCount"] <= scaled["spec"]["maxReplicaCount"]
    assert scaled["spec"]["maxReplicaCount"] <= stack.TOPIC_PARTITIONS[stack.INPUT_TOPIC]
    (trigger,) = scaled["spec"]["triggers"]
    assert trigger["type"] == "kafka"
    assert trigger["metadata"]["topic"] == settings.input_topic
    assert trigger["metadata"]["consumerGroup"] == settings.group_id
    assert trigger["metadata"]["bootstrapServers"] == settings.bootstrap_servers
    assert int(trigger["metadata"]["lagThreshold"]) >= 1


def test_one_kafka_cluster_and_the_stacks_topic_names() -> None:
    kafka = Settings.from_env(config_map()).kafka
    assert (kafka.input_topic, kafka.results_topic, kafka.dlq_topic) == (
        stack.INPUT_TOPIC,
        stack.RESULTS_TOPIC,
        stack.DLQ_TOPIC,
    )
    sinks = {doc.name: doc.body["spec"] for doc in find("KafkaSink")}
    assert {spec["topic"] for spec in sinks.values()} == {kafka.results_topic, kafka.dlq_topic}
    (source,) = [doc.body["spec"] for doc in find("KafkaSource")]
    assert source["topics"] == [kafka.input_topic]
    assert source["consumerGroup"] != kafka.group_id  # Knative's offsets are its own
    for spec in [*sinks.values(), source]:
        assert spec["bootstrapServers"] == [kafka.bootstrap_servers]
    storage = Settings.from_env(config_map()).storage
    assert (storage.upload_bucket, storage.results_bucket) == stack.BUCKETS


# --- Knative ------------------------------------------------------------------------------
def iso_seconds(duration: str) -> int:
    """Seconds of an ISO 8601 duration such as ``PT5M``."""
    match = re.fullmatch(r"PT(?:(\d+)H)?(?:(\d+)M)?(?:(\d+)S)?", duration)
    assert match, duration
    hours, minutes, seconds = (int(part or 0) for part in match.groups())
    return hours * 3600 + minutes * 60 + seconds


def deliveries() -> list[tuple[Doc, dict[str, Any]]]:
    """The delivery specs of the Trigger and the KafkaSource."""
    return [(doc, doc.body["spec"]["delivery"]) for doc in [*find("Trigger"), *find("KafkaSource")]]


@pytest.mark.parametrize("service", knative_services(), ids=str)
def test_concurrency_fits_one_gpu(service: Doc) -> None:
    spec = pod_spec(service)
    settings = settings_of(spec["containers"][0]).http
    assert spec["containerConcurrency"] == settings.max_queued_jobs + 1  # running + waiting
    assert settings.threads > spec["containerConcurrency"]  # probes still get a thread


def test_timeouts_nest() -> None:
    """Receiver reply < delivery timeout <= Knative's request timeout = the Route's; shims drain in time."""
    for service in knative_services():
        spec = pod_spec(service)
        assert settings_of(spec["containers"][0]).http.request_timeout < spec["timeoutSeconds"], service
    spec = pod_spec(events_service())
    settings = settings_of(spec["containers"][0])
    for doc, delivery in deliveries():
        timeout = iso_seconds(delivery["timeout"])
        assert settings.receiver.reply_timeout_seconds < timeout <= spec["timeoutSeconds"], doc
    route_timeout = the("Route").body["metadata"]["annotations"]["haproxy.router.openshift.io/timeout"]
    assert route_timeout == f"{pod_spec(route_service())['timeoutSeconds']}s"


def test_deliveries_retry_with_backoff_into_the_dead_letter_sink() -> None:
    dlq = [doc for doc in find("KafkaSink") if doc.body["spec"]["topic"] == stack.DLQ_TOPIC]
    assert len(dlq) == 1
    for doc, delivery in deliveries():
        assert delivery["retry"] >= 1 and delivery["backoffPolicy"] == "exponential", doc
        iso_seconds(delivery["backoffDelay"])
        assert delivery["deadLetterSink"]["ref"]["name"] == dlq[0].name, doc
        target = doc.body["spec"].get("subscriber") or doc.body["spec"]["sink"]
        assert target["ref"]["name"] == events_service().name, doc


def test_the_trigger_takes_audio_uploaded_events() -> None:
    (trigger,) = find("Trigger")
    assert trigger.body["spec"]["filter"]["attributes"] == {"type": "dev.diarization.audio.uploaded"}
    assert trigger.body["spec"]["broker"] == the("Broker").name


def test_results_go_to_the_results_topic_through_k_sink() -> None:
    binding = the("SinkBinding").body["spec"]
    assert binding["subject"]["name"] == events_service().name
    sinks = {doc.name: doc.body["spec"]["topic"] for doc in find("KafkaSink")}
    assert sinks[binding["sink"]["ref"]["name"]] == stack.RESULTS_TOPIC


@pytest.mark.parametrize("service", knative_services(), ids=str)
def test_the_service_scales_to_zero_from_its_creation_and_is_bounded(service: Doc) -> None:
    """Idle, and when created, a Service holds no GPU; initial-scale 0 needs the cluster's consent."""
    annotations = service.body["spec"]["template"]["metadata"]["annotations"]
    assert (
        annotations["autoscaling.knative.dev/min-scale"] == annotations["autoscaling.knative.dev/initial-scale"] == "0"
    )
    assert int(annotations["autoscaling.knative.dev/max-scale"]) >= 1
    assert 'allow-zero-initial-scale: "true"' in service.path.read_text()
    assert 'allow-zero-initial-scale: "true"' in (REPO / "README.md").read_text()


def used_feature_flags(value: Any, schema: dict[str, Any]) -> set[str]:
    """Knative Serving feature flags that the fields set in ``value`` need (from the CRD's descriptions)."""
    flags = set(re.findall(r"behind a feature flag - ([\w.-]+)", schema.get("description", "")))
    if isinstance(value, dict):
        for key, sub in value.items():
            if key in schema.get("properties", {}):
                flags |= used_feature_flags(sub, schema["properties"][key])
    elif isinstance(value, list) and "items" in schema:
        for item in value:
            flags |= used_feature_flags(item, schema["items"])
    return flags


@pytest.mark.parametrize("service", knative_services(), ids=str)
def test_the_services_feature_flags_are_named_in_its_comments(service: Doc, crd_schemas: dict) -> None:
    flags = used_feature_flags(service.body, crd_schemas[(service.body["apiVersion"], "Service")])
    assert "kubernetes.podspec-persistent-volume-claim" in flags
    text = service.path.read_text()
    assert {flag for flag in flags if flag not in text} == set()


def test_the_route_serves_the_service_over_https() -> None:
    service, route = route_service().body, the("Route").body["spec"]
    assert service["metadata"]["annotations"]["serving.knative.openshift.io/disableRoute"] == "true"
    assert route["to"] == {"kind": "Service", "name": "kourier", "weight": 100}
    assert route["port"] == {"targetPort": "http2"}
    assert route["tls"] == {"termination": "edge", "insecureEdgeTerminationPolicy": "Redirect"}
    assert route["host"].startswith(f"{service['metadata']['name']}-")


# --- Who can reach the receiver -------------------------------------------------------------
def receiver_settings(service: Doc) -> Settings:
    return settings_of(pod_spec(service)["containers"][0])


def test_there_are_two_services_the_public_one_and_the_event_receiver() -> None:
    assert len(knative_services()) == 2
    assert route_service().name != events_service().name


def test_the_routes_service_has_the_receiver_off() -> None:
    public = route_service()
    assert receiver_settings(public).receiver.enabled is False
    assert "networking.knative.dev/visibility" not in public.body["metadata"].get("labels", {})


def test_the_event_receiving_service_is_cluster_local() -> None:
    events = events_service()
    assert events.body["metadata"]["labels"]["networking.knative.dev/visibility"] == "cluster-local"
    assert receiver_settings(events).receiver.enabled is True
    # the SinkBinding's inclusion mode also selects the Service itself
    assert events.body["metadata"]["labels"]["bindings.knative.dev/include"] == "true"


def test_only_cluster_local_services_receive_events() -> None:
    for service in knative_services():
        local = service.body["metadata"].get("labels", {}).get("networking.knative.dev/visibility") == "cluster-local"
        assert receiver_settings(service).receiver.enabled is local, service


@pytest.mark.parametrize(("doc", "target"), event_targets(), ids=[str(doc) for doc, _ in event_targets()])
def test_every_trigger_source_and_binding_points_at_the_event_receiver(doc: Doc, target: dict[str, Any]) -> None:
    events = events_service()
    assert target["ref"]["apiVersion"] == events.body["apiVersion"], doc
    assert (target["ref"]["kind"], target["ref"]["name"]) == ("Service", events.name), doc
    assert not target.get("uri"), f"{doc}: a URI would bypass the cluster-local Service"


def test_senders_ask_for_the_audience_the_receiver_checks() -> None:
    """Knative's OIDC tokens carry the subscriber's/sink's ``audience``: the receiver's RECEIVER_OIDC_AUDIENCE."""
    events = events_service()
    audience = receiver_settings(events).receiver.oidc_audience
    namespace = kustomization(KNATIVE)["namespace"]
    assert audience == f"serving.knative.dev/service/{namespace}/{events.name}"  # Knative's <group>/<kind>/<ns>/<name>
    senders = [(doc, target) for doc, target in event_targets() if doc.kind != "SinkBinding"]
    assert senders
    for doc, target in senders:
        assert target["audience"] == audience, doc


def makefile_recipe(target: str) -> str:
    """The recipe lines of one Makefile target."""
    text = (REPO / "Makefile").read_text()
    match = re.search(rf"^{target}:.*\n((?:\t.*\n)+)", text, re.MULTILINE)
    assert match, f"no {target} target in the Makefile"
    return match.group(1)


def test_make_deploy_includes_the_namespace_in_sinkbinding_and_exposes_only_the_public_service() -> None:
    recipe = makefile_recipe("deploy")
    assert re.search(r"label --overwrite namespace \$\(NAMESPACE\) bindings\.knative\.dev/include=true", recipe)
    for service in knative_services():
        assert f"ksvc/{service.name} " in recipe, f"make deploy does not wait for {service.name}"
    assert f"get ksvc {route_service().name} -o jsonpath" in recipe  # the Route's host
    assert f"get ksvc {events_service().name} -o jsonpath" not in recipe
    assert (
        f"/{kustomization(KNATIVE)['namespace']}/{events_service().name}|" in recipe
    )  # the audience follows NAMESPACE


# --- Closed by default ----------------------------------------------------------------------
def deployed_settings(doc: Doc) -> Settings:
    """A container's settings with its Secrets filled in (by placeholders), as the pod starts."""
    env = container_env(pod_spec(doc)["containers"][0])
    return Settings.from_env({name: value or _placeholder(name) for name, value in env.items()})


def _placeholder(name: str) -> str:
    """A value a Secret's key could hold, in the shape its variable requires."""
    if name == "WEBHOOK_SECRET":
        return "whsec_" + base64.b64encode(b"from-its-secret-" * 2).decode()
    return f"{name.lower()}-from-its-secret"


def deployed_app(doc: Doc) -> Any:
    """The real app a Service's pod would serve with its manifest's settings (model not loaded)."""
    from consumer.analyzer import Analyzer
    from consumer.engine.pyannote_engine import PyannoteEngine
    from consumer.event_job import EventJob
    from consumer.storage import ObjectStore
    from http_shim import create_app

    settings = deployed_settings(doc)
    analyzer = Analyzer(PyannoteEngine(settings.engine), settings.audio)
    jobs = EventJob(analyzer, ObjectStore(settings.storage), allowed_buckets=settings.storage.allowed_buckets)
    return create_app(analyzer, settings, jobs)


def test_the_events_service_admits_only_its_namespaces_senders() -> None:
    receiver = deployed_settings(events_service()).receiver
    namespace = kustomization(KNATIVE)["namespace"]
    assert receiver.auth == "required" and receiver.oidc_issuer and not receiver.token
    assert receiver.oidc_allowed_subjects == {f"system:serviceaccount:{namespace}:"}
    assert f"s|system:serviceaccount:{namespace}:|system:serviceaccount:$(NAMESPACE):|" in makefile_recipe("deploy")


def test_an_unauthenticated_event_is_refused_by_the_deployed_settings() -> None:
    client = deployed_app(events_service()).test_client()
    event = {"ce-specversion": "1.0", "ce-id": "e1", "ce-source": "/x", "ce-type": "dev.diarization.audio.uploaded"}
    body = b'{"bucket": "audio", "key": "a.wav"}'
    for authorization in ({}, {"Authorization": "Bearer not-a-token"}):
        answer = client.post("/", data=body, headers={**event, **authorization}, content_type="application/json")
        assert answer.status_code == 401 and answer.get_json()["error"]["code"] == "unauthorized"


def test_the_public_service_needs_its_key_and_holds_no_store_credentials() -> None:
    public = route_service()
    pod = pod_spec(public)
    container = pod["containers"][0]
    assert pod.get("automountServiceAccountToken") is False  # parses untrusted media; needs no API token
    sources = [source.get("secretRef", {}) for source in container.get("envFrom", [])]
    assert {"S3_ACCESS_KEY", "S3_SECRET_KEY"} & set(container_env(container)) == set()
    key_secret = next(source for source in sources if "API_KEY" in secrets().get(source.get("name", ""), {}))
    assert key_secret.get("optional") is not True, "without its key the public Service would not start"
    client = deployed_app(public).test_client()
    assert client.post("/v1/vad", data={}, content_type="multipart/form-data").status_code == 401
    assert client.get("/metrics").status_code == 401
    assert client.post("/", data=b"{}", content_type="application/json").status_code in (404, 405)


# --- GPUs: what a deployment holds while idle, when created, and at full scale --------------
PROFILES = KNATIVE / "profiles"
PROFILE_NAMES = sorted(path.parent.name for path in PROFILES.glob("*/kustomization.yaml"))
DEFAULT = "default"  # knative/ as it is, what `make deploy` applies without PROFILE
GPU = "nvidia.com/gpu"


@dataclass(frozen=True)
class Footprint:
    """GPUs requested by a rendered deployment."""

    idle: int  # every workload at its lower bound
    created: int  # right after it is applied, before any load
    full: int  # every workload at its upper bound


@pytest.fixture(scope="session")
def kustomize() -> Path:
    """The pinned kustomize; fails (never skips) when it cannot be built."""
    try:
        return k8s_schemas.kustomize_binary(stack.cache_dir())
    except k8s_schemas.SchemaError as exc:
        pytest.fail(f"cannot build kustomize (needs Go and the module proxy once): {exc}")


@pytest.fixture(scope="session")
def rendered(kustomize: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[dict[str, Any]]]:
    """knative/ as kustomize renders it, alone and with each profile's component (as `make deploy PROFILE=...`)."""
    folders = {DEFAULT: KNATIVE}
    for name in PROFILE_NAMES:
        overlay = tmp_path_factory.mktemp(name)
        # kustomize takes neither absolute roots nor an overlay inside its base: a relative one outside
        spec = {
            "resources": [os.path.relpath(KNATIVE, overlay)],
            "components": [os.path.relpath(PROFILES / name, overlay)],
        }
        (overlay / "kustomization.yaml").write_text(yaml.safe_dump(spec))
        folders[name] = overlay
    out = {}
    for name, folder in folders.items():
        build = subprocess.run([str(kustomize), "build", str(folder)], capture_output=True, text=True, check=False)
        assert build.returncode == 0, f"kustomize build of {name}: {build.stderr}"
        out[name] = [body for body in yaml.safe_load_all(build.stdout) if body]
    return out


def pod_gpus(spec: dict[str, Any]) -> int:
    """The GPUs one pod of ``spec`` requests (its containers' limits)."""
    return sum(int(c.get("resources", {}).get("limits", {}).get(GPU, 0)) for c in spec["containers"])


def footprint(bodies: list[dict[str, Any]]) -> Footprint:
    """The GPUs of a rendered deployment: Knative Services by their scale annotations, Deployments
    by their ScaledObject (KEDA's defaults: 0 to 100 replicas) or their replica count."""
    scaled = {body["spec"]["scaleTargetRef"]["name"]: body["spec"] for body in bodies if body["kind"] == "ScaledObject"}
    idle = created = full = 0
    for body in bodies:
        if body["kind"] == "Service" and body["apiVersion"].startswith("serving.knative.dev/"):
            annotations = body["spec"]["template"]["metadata"]["annotations"]
            each = pod_gpus(body["spec"]["template"]["spec"])
            lower = int(annotations["autoscaling.knative.dev/min-scale"])  # explicit: Knative's default is cluster-wide
            initial = int(annotations.get("autoscaling.knative.dev/initial-scale", "1"))  # Knative's default
            idle += lower * each
            created += max(lower, initial) * each
            full += int(annotations["autoscaling.knative.dev/max-scale"]) * each  # none: unbounded
        elif body["kind"] == "Deployment":
            each = pod_gpus(body["spec"]["template"]["spec"])
            scaler = scaled.get(body["metadata"]["name"])
            lower, upper = (
                (scaler.get("minReplicaCount", 0), scaler.get("maxReplicaCount", 100))
                if scaler
                else (body["spec"].get("replicas", 1),) * 2
            )
            idle += lower * each
            created += lower * each
            full += upper * each
    return Footprint(idle, created, full)


@pytest.fixture(scope="session")
def footprints(rendered: dict[str, list[dict[str, Any]]]) -> dict[str, Footprint]:
    return {name: footprint(bodies) for name, bodies in rendered.items()}


def test_the_default_deployment_holds_at_most_one_gpu_while_idle(footprints: dict[str, Footprint]) -> None:
    assert footprints[DEFAULT].idle <= 1, footprints[DEFAULT]


def test_the_idle_zero_profile_holds_no_gpu_while_idle(footprints: dict[str, Footprint]) -> None:
    assert footprints["idle-zero"].idle == 0, footprints["idle-zero"]


def test_applying_a_deployment_takes_no_more_gpus_than_it_holds_idle(footprints: dict[str, Footprint]) -> None:
    """`make deploy` waits for the Services to be Ready: with no GPU free beyond the idle ones."""
    for name, gpus in footprints.items():
        assert gpus.created == gpus.idle, name


def test_every_profile_keeps_the_scale_out(footprints: dict[str, Footprint]) -> None:
    for name, gpus in footprints.items():
        assert gpus.full == footprints[DEFAULT].full > gpus.idle, name


@pytest.mark.parametrize("name", [DEFAULT, *PROFILE_NAMES])
def test_every_door_keeps_its_way_in(name: str, rendered: dict[str, list[dict[str, Any]]]) -> None:
    """The public API (the Route's Service), the receiver (the events Service) and the Kafka consumer
    can each get a replica, whatever the profile."""
    bodies = {(body["kind"], body["metadata"]["name"]): body for body in rendered[name]}
    for service in (route_service(), events_service()):
        annotations = bodies[("Service", service.name)]["spec"]["template"]["metadata"]["annotations"]
        assert int(annotations["autoscaling.knative.dev/max-scale"]) >= 1, service
    scaler = bodies[("ScaledObject", the("ScaledObject").name)]["spec"]
    assert ("Deployment", scaler["scaleTargetRef"]["name"]) in bodies
    assert scaler["maxReplicaCount"] >= 1 and scaler["triggers"]


@pytest.mark.parametrize("name", PROFILE_NAMES)
def test_a_profile_renders_valid_manifests(
    name: str, rendered: dict[str, list[dict[str, Any]]], crd_schemas: dict, kubernetes_validate: ModuleType
) -> None:
    for body in rendered[name]:
        assert schema_errors(body, crd_schemas, kubernetes_validate) == [], body["metadata"]["name"]


def readme_footprints() -> dict[str, tuple[int, int]]:
    """The README's GPU table: deployment -> (GPUs while idle, GPUs at full scale)."""
    section = (REPO / "README.md").read_text().split("\n### GPUs\n", 1)[1].split("\n#", 1)[0]
    table = {}
    for line in section.splitlines():
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        match = re.fullmatch(r"`(?:make deploy)(?: PROFILE=([\w-]+))?`", cells[0]) if line.startswith("|") else None
        if match:
            table[match.group(1) or DEFAULT] = (int(cells[1].split()[0]), int(cells[2].split()[0]))
    return table


def test_the_readme_shows_each_footprint(footprints: dict[str, Footprint]) -> None:
    assert readme_footprints() == {name: (gpus.idle, gpus.full) for name, gpus in footprints.items()}


def test_make_deploy_applies_a_profile() -> None:
    recipe = makefile_recipe("deploy")
    assert "$(MANIFESTS)" in recipe and "$(MANIFESTS)" in makefile_recipe("undeploy")


def test_the_jobs_profile_opens_the_job_door_with_the_scoped_store_user(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    """Only the jobs profile gives the public Service store credentials, and only the jobs user's."""
    for name, bodies in rendered.items():
        public = next(b for b in bodies if b["kind"] == "Service" and b["metadata"]["name"] == route_service().name)
        container = public["spec"]["template"]["spec"]["containers"][0]
        secret_names = {source.get("secretRef", {}).get("name") for source in container.get("envFrom", [])}
        stores = {s for s in secret_names if "S3_ACCESS_KEY" in secrets().get(s or "", {})}
        env = {var["name"]: var.get("value") for var in container.get("env", [])}
        if name == "jobs":
            assert stores == {"diarization-jobs-s3"} and env["JOBS_ENABLED"] == "true", (stores, env)
            assert Settings.from_env({**env, "API_KEY": "k"}).http.jobs_enabled
        else:
            assert stores == set() and "JOBS_ENABLED" not in env, name
