#!/usr/bin/env python3
"""Run a local Apache Kafka broker and MinIO server on 127.0.0.1, without containers.

Kafka (KRaft, one combined broker+controller node) runs from Maven Central jars and
MinIO from a binary built with ``go install``; both are installed once into the cache
folder. MinIO publishes the upload bucket's ``s3:ObjectCreated:*`` events to a Kafka
topic. Named instances (``dev``, ``test``, ...) keep their data, logs and pid files in
``$CACHE_DIR/stack/<name>/`` and listen on their own ports, so they can run side by side.

    python local-dev/stack.py install
    python local-dev/stack.py start   [--name NAME] [--port-base N] [--only kafka|minio]
    python local-dev/stack.py stop    [--name NAME] [--only kafka|minio]
    python local-dev/stack.py status  [--name NAME]     # exit 0 if all up, 3 otherwise
    python local-dev/stack.py env     [--name NAME]     # KEY=value connection settings
    python local-dev/stack.py destroy [--name NAME]     # stop and delete the data
    python local-dev/stack.py provision                 # the same, on the servers in the env
    python local-dev/stack.py compose-schema            # path of the Compose spec JSON schema

Only ``start`` and ``provision`` need the ``confluent_kafka`` and ``minio`` packages.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import itertools
import json
import logging
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
import xml.etree.ElementTree as ET
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from consumer.config import cache_dir as configured_cache_dir

# --- What the service sees (its config reads these names) ---------------------------------
INPUT_TOPIC = "audio-uploads"  # MinIO notifications and CloudEvents land here
RESULTS_TOPIC = "diarization-results"
DLQ_TOPIC = "diarization-dlq"
TOPIC_PARTITIONS = {INPUT_TOPIC: 4, RESULTS_TOPIC: 4, DLQ_TOPIC: 1}
UPLOAD_BUCKET = "audio"
RESULTS_BUCKET = "diarization-results"
BUCKETS = (UPLOAD_BUCKET, RESULTS_BUCKET)
S3_ACCESS_KEY = "diarization"
S3_SECRET_KEY = "diarization-local-secret"
ENV_NAMES = (
    "KAFKA_BOOTSTRAP_SERVERS",
    "KAFKA_INPUT_TOPIC",
    "KAFKA_RESULTS_TOPIC",
    "KAFKA_DLQ_TOPIC",
    "S3_ENDPOINT",
    "S3_ACCESS_KEY",
    "S3_SECRET_KEY",
    "S3_SECURE",
    "S3_UPLOAD_BUCKET",
    "S3_RESULTS_BUCKET",
)
CONNECTION_NAMES = (
    "KAFKA_BOOTSTRAP_SERVERS",
    "S3_ENDPOINT",
    "S3_ACCESS_KEY",
    "S3_SECRET_KEY",
    "S3_SECURE",
)  # what `provision` reads

# --- MinIO -> Kafka bucket notification ---------------------------------------------------
NOTIFY_ID = "UPLOADS"  # the target ID in MINIO_NOTIFY_KAFKA_*_<ID>
NOTIFY_ARN = f"arn:minio:sqs::{NOTIFY_ID}:kafka"
NOTIFY_EVENTS = ("s3:ObjectCreated:*",)

# --- Kafka broker settings that do not depend on ports or paths ---------------------------
KAFKA_SETTINGS = {
    "process.roles": "broker,controller",
    "node.id": "1",
    "controller.listener.names": "CONTROLLER",
    "inter.broker.listener.name": "PLAINTEXT",
    "offsets.topic.replication.factor": "1",
    "transaction.state.log.replication.factor": "1",
    "transaction.state.log.min.isr": "1",
    "share.coordinator.state.topic.replication.factor": "1",
    "share.coordinator.state.topic.min.isr": "1",
    "group.initial.rebalance.delay.ms": "0",
    "auto.create.topics.enable": "false",
}
# A one-node broker for development and tests, on a machine it shares with the service: a small
# heap, the client compiler only and the serial collector. Measured on 2 cores: 4.1 s of CPU to
# come up instead of 7.4 s, and 1.7 s a minute idle instead of 2.4 s (a broker's throughput is
# never what a local stack is short of).
KAFKA_JVM_OPTIONS = ("-Xmx512m", "-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC")

# --- Pinned tools -------------------------------------------------------------------------
MINIO_MODULE = "github.com/minio/minio"
MINIO_VERSION = "v0.0.0-20260212201848-7aac2a2c5b7c"  # upstream has no semver tags
COMPOSE_GO_MODULE = "github.com/compose-spec/compose-go/v2"
COMPOSE_GO_VERSION = "v2.16.2"

# --- Ports: MinIO API = base, console = base+1, Kafka = base+2, controller = base+3 -------
# Every base lies below Linux's ephemeral range (32768-60999 by default), from which the
# kernel picks the local port of every outgoing connection and of every listener bound to
# port 0: a fixed port inside it is taken now and then by some other process's socket.
NAMED_PORT_BASES = {"dev": 29090, "test": 29190, "test-2": 29290}  # test-2: the second lane of make test
HASHED_PORT_BASES = range(20000, 29000, 10)  # below the named bases
# Below the hashed bases: 19090 and up, the stack tests' own instances; then the ports of the
# processes the tests and the demo start beside a stack (the shim, a consumer's probes), which
# free_port hands out for the same reason.
SERVICE_PORTS = range(10000, 19000)

LOCAL_DEV = Path(__file__).resolve().parent
KAFKA_POM = LOCAL_DEV / "kafka" / "pom.xml"
KAFKA_LOG4J = LOCAL_DEV / "kafka" / "log4j2.properties"
COMPONENTS = ("kafka", "minio")
START_TIMEOUT_S = 90.0
STOP_TIMEOUT_S = 30.0
JAVA_HINT = "install Java 17+ (Debian: apt-get install openjdk-17-jre-headless)"
GO_HINT = "install Go 1.24+ (Debian 12's golang-go, Go 1.19, is too old)"

log = logging.getLogger("stack")


class StackError(Exception):
    """A problem the user can fix; printed without a traceback."""


# --- Paths and instances ------------------------------------------------------------------
def cache_dir() -> Path:
    """The shared cache folder: ``$CACHE_DIR`` or ``~/.cache/diarization-service``."""
    return configured_cache_dir(os.environ).resolve()


def kafka_version() -> str:
    """The Kafka version pinned in ``kafka/pom.xml`` (the single place it is written)."""
    ns = {"m": "http://maven.apache.org/POM/4.0.0"}
    node = ET.parse(KAFKA_POM).getroot().find("m:properties/m:kafka.version", ns)
    if node is None or not node.text:
        raise StackError(f"{KAFKA_POM} has no <kafka.version> property")
    return node.text.strip()


def kafka_lib_dir(cache: Path) -> Path:
    return cache / "kafka" / kafka_version() / "lib"


def minio_binary(cache: Path) -> Path:
    return cache / "bin" / "minio"


@dataclass(frozen=True)
class Ports:
    """The four ports of one instance, derived from its base."""

    base: int

    @property
    def minio(self) -> int:
        return self.base

    @property
    def minio_console(self) -> int:
        return self.base + 1

    @property
    def kafka(self) -> int:
        return self.base + 2

    @property
    def kafka_controller(self) -> int:
        return self.base + 3

    def of(self, component: str) -> tuple[int, ...]:
        if component == "kafka":
            return (self.kafka, self.kafka_controller)
        return (self.minio, self.minio_console)


@dataclass(frozen=True)
class Instance:
    """One named stack: its folder and ports."""

    name: str
    root: Path
    ports: Ports

    @property
    def kafka_config(self) -> Path:
        return self.root / "kafka" / "server.properties"

    @property
    def kafka_data(self) -> Path:
        return self.root / "kafka" / "data"

    @property
    def minio_data(self) -> Path:
        return self.root / "minio" / "data"

    @property
    def minio_queue(self) -> Path:
        return self.root / "minio" / "queue"

    @property
    def env_file(self) -> Path:
        return self.root / "env"

    @property
    def port_base_file(self) -> Path:
        return self.root / "port-base"

    def log_file(self, component: str) -> Path:
        return self.root / f"{component}.log"

    def pid_file(self, component: str) -> Path:
        return self.root / f"{component}.pid"

    def process_marker(self, component: str) -> str:
        """A string that only this instance's process has on its command line."""
        return str(self.kafka_config if component == "kafka" else self.minio_data)


def default_port_base(name: str) -> int:
    """``dev`` and ``test`` have fixed bases; other names get a stable hash-based one."""
    if name in NAMED_PORT_BASES:
        return NAMED_PORT_BASES[name]
    return HASHED_PORT_BASES[zlib.crc32(name.encode()) % len(HASHED_PORT_BASES)]


def resolve_instance(name: str, requested: int | None = None) -> Instance:
    """The instance called ``name``; an existing one keeps the port base it was created with."""
    root = cache_dir() / "stack" / name
    stored_file = root / "port-base"
    if stored_file.exists():
        stored = int(stored_file.read_text())
        if requested and requested != stored:
            raise StackError(
                f"instance {name!r} was created with port base {stored}, not {requested}; "
                f"run 'destroy --name {name}' first to change it"
            )
        requested = stored
    return Instance(name, root, Ports(requested or default_port_base(name)))


# --- Connection settings ------------------------------------------------------------------
def connection_env(ports: Ports) -> dict[str, str]:
    """The settings the service reads, for an instance on ``ports``."""
    return {
        "KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{ports.kafka}",
        "KAFKA_INPUT_TOPIC": INPUT_TOPIC,
        "KAFKA_RESULTS_TOPIC": RESULTS_TOPIC,
        "KAFKA_DLQ_TOPIC": DLQ_TOPIC,
        "S3_ENDPOINT": f"127.0.0.1:{ports.minio}",
        "S3_ACCESS_KEY": S3_ACCESS_KEY,
        "S3_SECRET_KEY": S3_SECRET_KEY,
        "S3_SECURE": "false",
        "S3_UPLOAD_BUCKET": UPLOAD_BUCKET,
        "S3_RESULTS_BUCKET": RESULTS_BUCKET,
    }


def format_env(env: Mapping[str, str]) -> str:
    return "".join(f"{key}={value}\n" for key, value in env.items())


def minio_notify_env(brokers: str, queue_dir: str) -> dict[str, str]:
    """MinIO's environment for the Kafka notification target ``NOTIFY_ID``."""
    return {
        f"MINIO_NOTIFY_KAFKA_ENABLE_{NOTIFY_ID}": "on",
        f"MINIO_NOTIFY_KAFKA_BROKERS_{NOTIFY_ID}": brokers,
        f"MINIO_NOTIFY_KAFKA_TOPIC_{NOTIFY_ID}": INPUT_TOPIC,
        # Events fired while Kafka is down wait here and are sent when it is back.
        f"MINIO_NOTIFY_KAFKA_QUEUE_DIR_{NOTIFY_ID}": queue_dir,
    }


# --- Install ------------------------------------------------------------------------------
def require_tool(tool: str, hint: str) -> str:
    path = shutil.which(tool)
    if path is None:
        raise StackError(f"'{tool}' is not on PATH: {hint}")
    return path


def go_env(cache: Path) -> dict[str, str]:
    """Environment that keeps Go's toolchain choice, modules and build cache inside ``cache``."""
    flags = " ".join(filter(None, [os.environ.get("GOFLAGS", ""), "-modcacherw"]))
    return {
        **os.environ,
        "GOTOOLCHAIN": "local",
        "CGO_ENABLED": "0",
        "GOBIN": str(cache / "bin"),
        "GOPATH": str(cache / "go"),
        "GOMODCACHE": str(cache / "go" / "pkg" / "mod"),
        "GOCACHE": str(cache / "go" / "cache"),
        "GOFLAGS": flags,  # -modcacherw: the module cache can be deleted with rm -rf
    }


def install_kafka(cache: Path) -> None:
    """Copy the broker's jars from Maven Central into the cache, once per pom.xml content."""
    lib = kafka_lib_dir(cache)
    stamp = lib.parent / "installed"
    wanted = KAFKA_POM.read_text()
    if stamp.exists() and stamp.read_text() == wanted:
        log.info("Kafka %s already installed in %s", kafka_version(), lib)
        return
    mvn = require_tool("mvn", "install Maven (Debian: apt-get install maven)")
    require_tool("java", JAVA_HINT)
    log.info("Installing Kafka %s into %s (Maven) ...", kafka_version(), lib)
    shutil.rmtree(lib, ignore_errors=True)
    command = [
        mvn,
        "-B",
        "-q",
        "-f",
        str(KAFKA_POM),
        "dependency:copy-dependencies",
        f"-DoutputDirectory={lib}",
        "-DincludeScope=runtime",
    ]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise StackError(f"Maven failed:\n{result.stdout}{result.stderr}")
    stamp.write_text(wanted)
    log.info("Kafka installed (%d jars)", len(list(lib.glob("*.jar"))))


def install_minio(cache: Path) -> None:
    """Build MinIO with ``go install`` into ``$CACHE_DIR/bin``, once per pinned version."""
    binary = minio_binary(cache)
    stamp = binary.with_name("minio.version")
    if binary.exists() and stamp.exists() and stamp.read_text() == MINIO_VERSION:
        log.info("MinIO %s already installed at %s", MINIO_VERSION, binary)
        return
    go = require_tool("go", GO_HINT)
    log.info("Building MinIO %s with go install (cold: minutes, ~1 GB of module cache) ...", MINIO_VERSION)
    command = [go, "install", f"{MINIO_MODULE}@{MINIO_VERSION}"]
    if subprocess.run(command, env=go_env(cache), cwd=cache, check=False).returncode != 0:
        raise StackError(
            "go install of MinIO failed (see above); if the checksum database cannot be reached, retry with GOSUMDB=off"
        )
    stamp.write_text(MINIO_VERSION)
    log.info("MinIO installed at %s", binary)


def install(cache: Path) -> None:
    cache.mkdir(parents=True, exist_ok=True)
    install_kafka(cache)
    install_minio(cache)


def compose_schema_path(cache: Path) -> Path:
    """The Compose spec JSON schema shipped in the compose-go module (downloaded once)."""
    go = require_tool("go", GO_HINT)
    cache.mkdir(parents=True, exist_ok=True)
    command = [go, "mod", "download", "-json", f"{COMPOSE_GO_MODULE}@{COMPOSE_GO_VERSION}"]
    result = subprocess.run(command, env=go_env(cache), cwd=cache, capture_output=True, text=True, check=False)
    info = json.loads(result.stdout or "{}")
    if result.returncode != 0 or "Error" in info:
        raise StackError(f"go mod download failed: {info.get('Error') or result.stderr}")
    schema = Path(info["Dir"]) / "schema" / "compose-spec.json"
    if not schema.is_file():
        raise StackError(f"{schema} is missing from {COMPOSE_GO_MODULE}@{COMPOSE_GO_VERSION}")
    return schema


# --- Processes ----------------------------------------------------------------------------
def is_alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def running_pid(instance: Instance, component: str) -> int | None:
    """The pid of the instance's running ``component``, or None (stale pid files are removed)."""
    pid_file = instance.pid_file(component)
    try:
        pid = int(pid_file.read_text())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except (OSError, ValueError):
        pid_file.unlink(missing_ok=True)
        return None
    # The command line reads empty for a moment right after exec.
    if (not cmdline or instance.process_marker(component) in cmdline) and is_alive(pid):
        return pid
    pid_file.unlink(missing_ok=True)
    return None


def port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


_port_walks: dict[range, Iterator[int]] = {}


def free_port(ports: range = SERVICE_PORTS) -> int:
    """A port of ``ports`` that nothing on 127.0.0.1 listens on right now. The ports are walked
    round from a random start (two programs on one machine seldom walk in step), so this
    process hands out each one once before it comes back to the first."""
    if ports not in _port_walks:
        start = random.randrange(len(ports))
        _port_walks[ports] = itertools.cycle([*ports[start:], *ports[:start]])
    for _ in ports:
        port = next(_port_walks[ports])
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise StackError(f"no free port on 127.0.0.1 in {ports.start}-{ports.stop - 1}")


def check_ports_free(ports: Iterable[int]) -> None:
    """Fail with a clear message when another process listens on one of ``ports``."""
    for port in ports:
        with socket.socket() as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(("127.0.0.1", port))
            except OSError as exc:
                raise StackError(
                    f"port {port} on 127.0.0.1 is taken ({exc.strerror}); stop what uses it "
                    f"(ss -ltnp 'sport = :{port}') or pick another --port-base"
                ) from None


def spawn(instance: Instance, component: str, argv: list[str], env: Mapping[str, str]) -> None:
    """Start ``argv`` detached in its own session, logging into the instance folder."""
    log_file = instance.log_file(component)
    with log_file.open("ab") as out:
        out.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} starting {component}\n".encode())
        out.flush()
        process = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=dict(env),
            cwd=instance.root,
            start_new_session=True,
        )
    instance.pid_file(component).write_text(f"{process.pid}\n")
    log.info("%s started (pid %d), log: %s", component, process.pid, log_file)


def log_tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def wait_until(
    check: Callable[[], bool], what: str, timeout_s: float, instance: Instance | None = None, component: str = ""
) -> None:
    """Poll ``check()`` until it is true; fail early if the watched process died."""
    deadline = time.monotonic() + timeout_s
    while not check():
        if instance is not None and running_pid(instance, component) is None:
            raise StackError(
                f"{component} exited while starting; last lines of "
                f"{instance.log_file(component)}:\n"
                f"{log_tail(instance.log_file(component))}"
            )
        if time.monotonic() > deadline:
            raise StackError(f"timed out after {timeout_s:.0f}s waiting for {what}")
        time.sleep(0.5)


def signal_group(pid: int, signum: int) -> None:
    """Signal the process group ``pid`` leads (it may have exited meanwhile)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signum)


def stop_component(instance: Instance, component: str) -> None:
    """SIGTERM the component's process group, then SIGKILL after ``STOP_TIMEOUT_S``."""
    pid = running_pid(instance, component)
    if pid is None:
        log.info("%s is not running", component)
        return
    log.info("stopping %s (pid %d) ...", component, pid)
    signal_group(pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT_S
    while is_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    if is_alive(pid):
        log.warning("%s did not stop within %.0fs; sending SIGKILL", component, STOP_TIMEOUT_S)
        signal_group(pid, signal.SIGKILL)
        while is_alive(pid):
            time.sleep(0.1)
    instance.pid_file(component).unlink(missing_ok=True)
    log.info("%s stopped", component)


# --- Kafka --------------------------------------------------------------------------------
def kafka_properties(instance: Instance) -> dict[str, str]:
    ports = instance.ports
    return {
        **KAFKA_SETTINGS,
        "listeners": f"PLAINTEXT://127.0.0.1:{ports.kafka},CONTROLLER://127.0.0.1:{ports.kafka_controller}",
        "advertised.listeners": f"PLAINTEXT://127.0.0.1:{ports.kafka}",
        "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
        # Static voters (node.id 1), so the storage is formatted without --standalone.
        "controller.quorum.voters": f"1@127.0.0.1:{ports.kafka_controller}",
        "log.dirs": str(instance.kafka_data),
    }


def java_command(cache: Path, main_class: str, *args: str) -> list[str]:
    java = require_tool("java", JAVA_HINT)
    lib = kafka_lib_dir(cache)
    if not (lib.parent / "installed").exists():
        raise StackError("Kafka is not installed: run 'python local-dev/stack.py install'")
    return [java, *KAFKA_JVM_OPTIONS, f"-Dlog4j2.configurationFile={KAFKA_LOG4J}", "-cp", f"{lib}/*", main_class, *args]


def format_kafka_storage(cache: Path, instance: Instance) -> None:
    """Format the KRaft metadata directory with a fresh cluster id (new data dirs only)."""
    cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
    log.info("formatting Kafka storage %s (cluster id %s)", instance.kafka_data, cluster_id)
    command = java_command(
        cache, "kafka.tools.StorageTool", "format", f"--cluster-id={cluster_id}", "-c", str(instance.kafka_config), "-g"
    )
    with instance.log_file("kafka").open("ab") as out:
        result = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT, check=False)
    if result.returncode != 0:
        raise StackError(
            f"Kafka storage format failed; see {instance.log_file('kafka')}:\n{log_tail(instance.log_file('kafka'))}"
        )


def start_kafka(cache: Path, instance: Instance) -> None:
    instance.kafka_config.parent.mkdir(parents=True, exist_ok=True)
    instance.kafka_config.write_text(format_env(kafka_properties(instance)))
    if not (instance.kafka_data / "meta.properties").exists():
        format_kafka_storage(cache, instance)
    spawn(instance, "kafka", java_command(cache, "kafka.Kafka", str(instance.kafka_config)), os.environ)


def wait_for_kafka(bootstrap: str, timeout_s: float, instance: Instance | None = None) -> None:
    """Wait for the port, then for a metadata answer that lists a broker."""
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient

    host, port = bootstrap.rsplit(":", 1)
    wait_until(lambda: port_open(host, int(port)), f"Kafka port {bootstrap}", timeout_s, instance, "kafka")
    admin = AdminClient({"bootstrap.servers": bootstrap})

    def has_broker() -> bool:
        try:
            return bool(admin.list_topics(timeout=2).brokers)
        except KafkaException:
            return False

    wait_until(has_broker, f"Kafka metadata from {bootstrap}", timeout_s, instance, "kafka")
    log.info("Kafka is ready at %s", bootstrap)


# --- MinIO --------------------------------------------------------------------------------
def start_minio(cache: Path, instance: Instance) -> None:
    binary = minio_binary(cache)
    if not binary.exists():
        raise StackError("MinIO is not installed: run 'python local-dev/stack.py install'")
    for folder in (instance.minio_data, instance.minio_queue):
        folder.mkdir(parents=True, exist_ok=True)
    ports = instance.ports
    env = {
        **os.environ,
        "MINIO_ROOT_USER": S3_ACCESS_KEY,
        "MINIO_ROOT_PASSWORD": S3_SECRET_KEY,
        **minio_notify_env(f"127.0.0.1:{ports.kafka}", str(instance.minio_queue)),
    }
    argv = [
        str(binary),
        "server",
        str(instance.minio_data),
        "--address",
        f"127.0.0.1:{ports.minio}",
        "--console-address",
        f"127.0.0.1:{ports.minio_console}",
    ]
    spawn(instance, "minio", argv, env)


def minio_live(endpoint: str) -> bool:
    try:
        with urllib.request.urlopen(f"http://{endpoint}/minio/health/live", timeout=2) as reply:
            status: int = reply.status
    except (urllib.error.URLError, OSError):
        return False
    return status == 200


def wait_for_minio(endpoint: str, timeout_s: float, instance: Instance | None = None) -> None:
    wait_until(lambda: minio_live(endpoint), f"MinIO at {endpoint}", timeout_s, instance, "minio")
    log.info("MinIO is ready at %s", endpoint)


# --- Topics, buckets, notification --------------------------------------------------------
def ensure_topics(bootstrap: str) -> None:
    """Create the missing topics; fail if an existing one has other partition counts."""
    from confluent_kafka import KafkaError, KafkaException
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})
    existing = admin.list_topics(timeout=10).topics
    missing = [
        NewTopic(topic, num_partitions=count, replication_factor=1)
        for topic, count in TOPIC_PARTITIONS.items()
        if topic not in existing
    ]
    futures = admin.create_topics(missing, operation_timeout=30) if missing else {}
    for topic, future in futures.items():
        try:
            future.result()
            log.info("created topic %s (%d partitions)", topic, TOPIC_PARTITIONS[topic])
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise
    # a new topic reaches the metadata a moment after it is created
    deadline = time.monotonic() + 30
    topics = admin.list_topics(timeout=10).topics
    while not all(topic in topics for topic in TOPIC_PARTITIONS) and time.monotonic() < deadline:
        time.sleep(0.2)
        topics = admin.list_topics(timeout=10).topics
    for topic, count in TOPIC_PARTITIONS.items():
        if topic not in topics:
            raise StackError(f"topic {topic} was created but does not show in the broker's metadata")
        if len(topics[topic].partitions) != count:
            raise StackError(
                f"topic {topic} has {len(topics[topic].partitions)} partitions, "
                f"expected {count}; destroy the instance to recreate it"
            )


def ensure_buckets(endpoint: str, access_key: str, secret_key: str, secure: bool) -> None:
    """Create the buckets and route the upload bucket's new objects to Kafka."""
    from minio import Minio
    from minio.notificationconfig import NotificationConfig, QueueConfig

    client = Minio(endpoint, access_key=access_key, secret_key=secret_key, secure=secure)
    for bucket in BUCKETS:
        if not client.bucket_exists(bucket_name=bucket):
            client.make_bucket(bucket_name=bucket)
            log.info("created bucket %s", bucket)
    config = NotificationConfig(
        queue_config_list=[
            QueueConfig(queue=NOTIFY_ARN, events=list(NOTIFY_EVENTS), config_id="1"),
        ]
    )
    client.set_bucket_notification(bucket_name=UPLOAD_BUCKET, config=config)
    log.info("bucket %s notifies %s on %s", UPLOAD_BUCKET, NOTIFY_ARN, ", ".join(NOTIFY_EVENTS))


def create_resources(env: Mapping[str, str]) -> None:
    """Create the topics, buckets and notification for the running Kafka and MinIO in ``env``."""
    ensure_topics(env["KAFKA_BOOTSTRAP_SERVERS"])
    ensure_buckets(env["S3_ENDPOINT"], env["S3_ACCESS_KEY"], env["S3_SECRET_KEY"], env["S3_SECURE"].lower() == "true")


def provision(env: Mapping[str, str]) -> None:
    """Wait for Kafka and MinIO named by ``env`` (e.g. in Compose), then create resources."""
    missing = [name for name in CONNECTION_NAMES if not env.get(name)]
    if missing:
        raise StackError(f"missing settings: {', '.join(missing)}")
    wait_for_kafka(env["KAFKA_BOOTSTRAP_SERVERS"], START_TIMEOUT_S)
    wait_for_minio(env["S3_ENDPOINT"], START_TIMEOUT_S)
    create_resources(env)


# --- Commands -----------------------------------------------------------------------------
def start(instance: Instance, only: str | None) -> None:
    """Start what is not running (Kafka first: MinIO connects to it), wait, then provision."""
    cache = cache_dir()
    components = [only] if only else list(COMPONENTS)
    stopped = [component for component in components if running_pid(instance, component) is None]
    for component in stopped:
        check_ports_free(instance.ports.of(component))
    instance.root.mkdir(parents=True, exist_ok=True)
    instance.port_base_file.write_text(f"{instance.ports.base}\n")
    env = connection_env(instance.ports)
    instance.env_file.write_text(format_env(env))
    for component in components:
        if component not in stopped:
            log.info("%s already running (pid %s)", component, running_pid(instance, component))
        elif component == "kafka":
            start_kafka(cache, instance)
        else:
            start_minio(cache, instance)
        if component == "kafka":
            wait_for_kafka(env["KAFKA_BOOTSTRAP_SERVERS"], START_TIMEOUT_S, instance)
        else:
            wait_for_minio(env["S3_ENDPOINT"], START_TIMEOUT_S, instance)
    if only is None:
        create_resources(env)
    log.info("stack %r is up; settings in %s", instance.name, instance.env_file)


def stop(instance: Instance, only: str | None) -> None:
    """Stop MinIO before Kafka, so that MinIO's last events can still be delivered."""
    for component in [only] if only else reversed(COMPONENTS):
        stop_component(instance, component)


def status(instance: Instance) -> int:
    """Print what runs; 0 if every component is up, 3 otherwise."""
    print(f"stack {instance.name!r} in {instance.root} (port base {instance.ports.base})")
    up = True
    for component in COMPONENTS:
        pid = running_pid(instance, component)
        ports = instance.ports.of(component)
        listening = pid is not None and port_open("127.0.0.1", ports[0])
        up &= listening
        state = f"up (pid {pid})" if listening else "starting" if pid else "down"
        print(f"  {component:<6} {state:<16} ports {', '.join(map(str, ports))}  log {instance.log_file(component)}")
    return 0 if up else 3


def destroy(instance: Instance) -> None:
    stop(instance, None)
    shutil.rmtree(instance.root, ignore_errors=True)
    log.info("deleted %s", instance.root)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("install", help="install Kafka jars and build MinIO (once)")
    commands.add_parser(
        "provision", help=f"create topics/buckets on the servers named by {', '.join(CONNECTION_NAMES)}"
    )
    commands.add_parser("compose-schema", help="print the Compose spec JSON schema's path")
    for name, text in [
        ("start", "start the stack"),
        ("stop", "stop the stack"),
        ("status", "show what runs"),
        ("env", "print connection settings"),
        ("destroy", "stop the stack and delete its data"),
    ]:
        command = commands.add_parser(name, help=text)
        command.add_argument("--name", default="dev", help="instance name (default: dev)")
        if name in ("start", "env", "status"):
            command.add_argument(
                "--port-base",
                type=int,
                help="first of 4 ports (default: env STACK_PORT_BASE, or derived from the name)",
            )
        if name in ("start", "stop"):
            command.add_argument("--only", choices=COMPONENTS, help="act on one component (start skips provisioning)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="stack: %(message)s", stream=sys.stderr)
    args = parse_args(argv)
    try:
        if args.command == "install":
            install(cache_dir())
        elif args.command == "provision":
            provision(os.environ)
        elif args.command == "compose-schema":
            print(compose_schema_path(cache_dir()))
        else:
            requested = getattr(args, "port_base", None)
            if "port_base" in args and requested is None:
                requested = int(os.environ.get("STACK_PORT_BASE") or 0) or None
            instance = resolve_instance(args.name, requested)
            if args.command == "start":
                start(instance, args.only)
            elif args.command == "stop":
                stop(instance, args.only)
            elif args.command == "status":
                return status(instance)
            elif args.command == "env":
                print(format_env(connection_env(instance.ports)), end="")
            elif args.command == "destroy":
                destroy(instance)
    except StackError as exc:
        log.error("error: %s", exc)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
