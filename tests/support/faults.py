"""Shared checks of the fault tests (``tests/integration/test_faults.py``).

After a fault, whatever it was, the consumer's guarantees must hold for every input:

- none lost: every input has a result event (``…completed`` or ``…failed``);
- exactly one distinct result id per input across all its result events (redelivery may
  repeat an event, never invent a second answer), and every repeat says the same thing;
- no result event that answers none of the inputs: an input answered under another
  identity (its Kafka coordinates, say) would escape the per-input counts above;
- a completed event says what the stored result document says (every field but the
  ``input`` it answers and ``reused``);
- no partial result objects: a job's result JSON (``results/<bucket>/<key>/<digest>.json``)
  is a complete, schema-valid document naming an RTTM that exists and holds its segments;
- the consumer group's committed offsets moved past every input.

``Figures`` are the numbers a fault test prints: inputs, faults injected, events lost,
distinct result ids per input, duplicates seen.
"""

from __future__ import annotations

import json
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import Consumer, TopicPartition
from minio.error import S3Error

import schemas
from consumer.formats import rttm_uri
from tests.support.stack import (
    ReceivedEvent,
    Stack,
    TopicReader,
    cloudevent_headers,
    results_for,
)

COMPLETED = "dev.diarization.job.completed"
FAILED = "dev.diarization.job.failed"


@dataclass(frozen=True)
class Job:
    """One input: the id of its CloudEvent and the object it names."""

    event_id: str
    key: str


@dataclass
class Figures:
    """What one fault test saw; ``print``ed by every test."""

    name: str
    inputs: int
    faults: int
    lost: int = 0
    distinct_ids: dict[str, int] = field(default_factory=dict)
    duplicates: int = 0
    seconds: float = 0.0
    notes: dict[str, object] = field(default_factory=dict)

    def line(self) -> str:
        counts = sorted(set(self.distinct_ids.values())) or ["-"]
        extra = "".join(f" {k}={v}" for k, v in self.notes.items())
        return (
            f"FAULT FIGURES [{self.name}] inputs={self.inputs} faults_injected={self.faults} "
            f"events_lost={self.lost} distinct_result_ids_per_input={'/'.join(map(str, counts))} "
            f"duplicates={self.duplicates} seconds={self.seconds:.1f}{extra}"
        )


class Inputs:
    """Uploads audio objects and produces one ``audio.uploaded`` CloudEvent per object."""

    def __init__(self, stack: Stack, topic: str, prefix: str) -> None:
        self.stack = stack
        self.topic = topic
        self.run = f"faults/{prefix}-{uuid.uuid4().hex[:8]}"
        self.jobs: list[Job] = []

    def submit(self, audio: bytes, name: str | None = None) -> Job:
        """Upload ``audio`` under a fresh key and produce its event (keyed by the object key)."""
        index = len(self.jobs)
        event_id = f"{self.run.rsplit('/', 1)[-1]}-{name or index}"
        # a random part in every key spreads the inputs over the partitions
        job = Job(event_id, f"{self.run}/{name or f'input-{index}'}-{uuid.uuid4().hex[:6]}.wav")
        self.stack.upload(job.key, audio)
        self.send(job)
        self.jobs.append(job)
        return job

    def send(self, job: Job) -> None:
        data = {"bucket": self.stack.env["S3_UPLOAD_BUCKET"], "key": job.key}
        self.stack.produce(self.topic, json.dumps(data).encode(), job.key.encode(), cloudevent_headers(job.event_id))


@dataclass
class Scenario:
    """One fault test's world: its own topics and consumer group, the inputs it submits, the
    consumers it starts, and the check of every guarantee at the end (``check_outcome``).

    Made by the integration tier's ``scenario`` fixture. The results reader opens on first
    use (``results``), so a test can open it after a broker restart.
    """

    stack: Stack
    topics: dict[str, str]
    group: str
    inputs: Inputs
    start_consumer: Callable[..., Any]
    open_reader: Callable[[str], TopicReader]
    consumers: list[Any] = field(default_factory=list)
    _results: TopicReader | None = None

    @property
    def input_topic(self) -> str:
        return self.topics["KAFKA_INPUT_TOPIC"]

    @property
    def results(self) -> TopicReader:
        """A reader of the results topic from its start (opened on first use)."""
        if self._results is None:
            self._results = self.open_reader(self.topics["KAFKA_RESULTS_TOPIC"])
        return self._results

    def consumer(self, env: dict[str, str] | None = None, **options: str) -> Any:
        """Start a consumer on the scenario's topics and group (``env`` adds settings)."""
        started = self.start_consumer({**self.topics, **(env or {})}, self.group, **options)
        self.consumers.append(started)
        return started

    def check(self, figures: Figures, expected: dict[str, str] | None = None, timeout: float = 300) -> Figures:
        """``check_outcome`` over every input submitted, with the consumers' logs for context."""
        return check_outcome(
            self.stack,
            self.results,
            self.inputs.jobs,
            group=self.group,
            input_topic=self.input_topic,
            figures=figures,
            expected=expected,
            timeout=timeout,
            log=self.consumers[-1].log_lines() if self.consumers else "",
        )


def answers(events: list[ReceivedEvent], job: Job) -> list[ReceivedEvent]:
    """The result events (completed or failed, not progress) answering ``job``."""
    return results_for(events, job.event_id)


def pending(results: TopicReader, jobs: Iterable[Job]) -> list[Job]:
    """Jobs without a result event yet (after reading what has arrived)."""
    results.drain(0.5)
    return [job for job in jobs if not answers(results.events, job)]


def wait_for_all(results: TopicReader, jobs: list[Job], timeout: float) -> list[Job]:
    """Read until every job has a result or ``timeout`` passes; the jobs still without one."""
    deadline = time.monotonic() + timeout
    missing = pending(results, jobs)
    while missing and time.monotonic() < deadline:
        missing = pending(results, missing)
    results.drain(3)  # late duplicates, if any
    return pending(results, jobs)


def result_object_problems(stack: Stack, jobs: Iterable[Job]) -> list[str]:
    """Partial or broken result objects of ``jobs``: empty when each has both or neither."""
    problems, unfinished = inspect_result_objects(stack, jobs)
    return problems + unfinished


def inspect_result_objects(stack: Stack, jobs: Iterable[Job]) -> tuple[list[str], list[str]]:
    """(problems, unfinished writes) of the result objects of ``jobs``.

    A run writes its own RTTM (``<digest>.<run>.rttm``) first and the JSON naming it last;
    the JSON is what marks a result as stored. A JSON that is no complete job-completed
    document, names an RTTM that does not exist or disagrees with it, or a second JSON for
    one job (these jobs ask for one option set) is a problem at any time. RTTMs without any
    JSON are a write caught in the middle (a consumer killed between the two PUTs):
    tolerable only while a fault is on. An RTTM no JSON names, beside a JSON, is the
    leftover of an interrupted or concurrent run: never read, not a problem.
    """
    minio = stack.minio()
    bucket = stack.env["S3_RESULTS_BUCKET"]
    problems: list[str] = []
    unfinished: list[str] = []
    for job in jobs:
        objects = result_objects(stack, job)
        documents = {name: body for name, body in objects.items() if name.endswith(".json")}
        rttms = {name for name in objects if name.endswith(".rttm")}
        if not documents:
            if rttms:
                unfinished.append(f"{job.event_id}: only {sorted(rttms)} exist (a run was interrupted)")
            continue
        if len(documents) > 1:
            problems.append(f"{job.event_id}: {len(documents)} result documents for one job: {sorted(documents)}")
        for json_key, document in documents.items():
            try:
                parsed = json.loads(document)
            except ValueError as exc:
                problems.append(f"{job.event_id}: {json_key} is not complete JSON ({exc}): {document[:200]!r}")
                continue
            error = next(iter(schemas.validator("job-completed").iter_errors(parsed)), None)
            if error is not None:
                problems.append(f"{job.event_id}: {json_key} is not a valid job-completed document: {error.message}")
                continue
            if parsed["object"]["key"] != job.key or parsed["results"]["json"] != json_key:
                problems.append(f"{job.event_id}: {json_key} describes another object: {parsed['object']}")
            rttm_key = parsed["results"]["rttm"]
            rttm = _read(minio, bucket, rttm_key)
            if rttm is None:
                problems.append(f"{job.event_id}: {json_key} names {rttm_key}, which does not exist")
                continue
            problems += [
                f"{job.event_id}: {p}" for p in _rttm_mismatch(parsed["segments"], rttm.decode(), rttm_uri(job.key))
            ]
    return problems, unfinished


def result_prefix(stack: Stack, key: str, bucket: str | None = None) -> str:
    """Where the result objects of source object ``bucket/key`` live (README: result objects)."""
    return f"results/{bucket or stack.env['S3_UPLOAD_BUCKET']}/{key}/"


def result_objects(stack: Stack, job: Job, bucket: str | None = None) -> dict[str, bytes]:
    """Every result object (JSONs and RTTMs, by name) of the source object of ``job``."""
    minio = stack.minio()
    results_bucket = stack.env["S3_RESULTS_BUCKET"]
    prefix = result_prefix(stack, job.key, bucket)
    found: dict[str, bytes] = {}
    for item in minio.list_objects(results_bucket, prefix=prefix, recursive=True):
        name = item.object_name
        if name is None or "/" in name[len(prefix) :]:  # results of another key below this one
            continue
        body = _read(minio, results_bucket, name)
        if body is not None:
            found[name] = body
    return found


def _read(minio, bucket: str, key: str) -> bytes | None:
    try:
        response = minio.get_object(bucket, key)
    except S3Error as exc:
        if exc.code in ("NoSuchKey", "NoSuchObject"):
            return None
        raise
    try:
        return response.read()
    finally:
        response.close()
        response.release_conn()


def _rttm_mismatch(segments: list[dict], rttm: str, uri: str) -> list[str]:
    lines = rttm.splitlines()
    if len(lines) != len(segments):
        return [f"the RTTM has {len(lines)} lines, the JSON {len(segments)} segments"]
    problems = []
    for number, (line, segment) in enumerate(zip(lines, segments, strict=True), start=1):
        fields = line.split()
        if len(fields) != 10 or fields[0] != "SPEAKER" or fields[1] != uri:
            problems.append(f"RTTM line {number} is malformed: {line!r}")
            continue
        start, length, speaker = float(fields[3]), float(fields[4]), fields[7]
        off = abs(start - segment["start"]) > 0.0006 or abs(start + length - segment["end"]) > 0.0016
        if off or speaker != segment["speaker"]:
            problems.append(f"RTTM line {number} {line!r} differs from the JSON segment {segment}")
    return problems


def end_offsets(bootstrap: str, topic: str) -> dict[int, int]:
    """The high watermark of every partition of ``topic``."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"faults-{uuid.uuid4().hex}"})
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        return {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in partitions}
    finally:
        consumer.close()


def wait_committed_past_all(
    stack: Stack, group: str, topic: str, timeout: float = 60
) -> tuple[dict[int, int], dict[int, int]]:
    """(committed, ends) once the group committed the end of every partition, or at ``timeout``."""
    ends = end_offsets(stack.bootstrap, topic)
    deadline = time.monotonic() + timeout
    while True:
        committed = stack.committed(group, topic)
        if not _behind(committed, ends) or time.monotonic() > deadline:
            return committed, ends
        time.sleep(1)


def _behind(committed: dict[int, int], ends: dict[int, int]) -> dict[int, tuple[int | None, int]]:
    """Partitions holding records the group has not committed past: partition -> (committed, end)."""
    return {p: (committed.get(p), end) for p, end in ends.items() if end > 0 and committed.get(p, -1) < end}


def check_outcome(
    stack: Stack,
    results: TopicReader,
    jobs: list[Job],
    *,
    group: str,
    input_topic: str,
    figures: Figures,
    expected: dict[str, str] | None = None,
    timeout: float = 300,
    log: str = "",
) -> Figures:
    """Wait for every job's result, then assert the guarantees (see the module docstring).

    ``expected`` maps event ids to the result type they must get (default: completed).
    Prints ``figures`` before asserting, so the numbers show whatever the verdict.
    """
    started = time.monotonic()
    lost = wait_for_all(results, jobs, timeout)
    events = results.events
    figures.inputs = len(jobs)
    figures.lost = len(lost)
    wrong: list[str] = []
    for job in jobs:
        mine = answers(events, job)
        figures.distinct_ids[job.event_id] = len({event.id for event in mine})
        figures.duplicates += max(0, len(mine) - 1)
        want = (expected or {}).get(job.event_id, COMPLETED)
        kinds = {event.type for event in mine}
        if mine and kinds != {want}:
            wrong.append(f"{job.event_id}: result types {sorted(kinds)}, expected only {want}")
        if len({json.dumps(_stable(event.data), sort_keys=True) for event in mine}) > 1:
            wrong.append(f"{job.event_id}: its {len(mine)} result events do not all say the same thing")
        for event in mine:
            validator = schemas.validator("job-completed" if event.type == COMPLETED else "job-failed")
            error = next(iter(validator.iter_errors(event.data)), None)
            if error is not None:
                wrong.append(f"{job.event_id}: result event {event.id} is not schema-valid: {error.message}")
    ids = {job.event_id for job in jobs}
    strays = [
        f"{event.type} {event.id} answers {event.data['input']}"
        for event in events
        if event.type in (COMPLETED, FAILED) and event.data["input"]["id"] not in ids
    ]
    objects = result_object_problems(stack, jobs)
    stored_vs_event = _stored_matches_events(stack, events, jobs)
    committed, ends = wait_committed_past_all(stack, group, input_topic)
    figures.notes.setdefault("committed", committed)
    figures.notes.setdefault("end_offsets", ends)
    figures.seconds += time.monotonic() - started
    print(figures.line(), flush=True)

    tail = f"\n--- consumer log (tail)\n{log[-6000:]}" if log else ""
    assert not lost, f"{len(lost)} input(s) lost, no result event: {[job.event_id for job in lost]}{tail}"
    several = {k: v for k, v in figures.distinct_ids.items() if v != 1}
    assert not several, f"inputs with other than one distinct result id: {several}{tail}"
    assert not wrong, "\n".join(wrong) + tail
    assert not strays, "result events answering no input (a second identity?):\n" + "\n".join(strays) + tail
    assert not objects, "partial or broken result objects:\n" + "\n".join(objects) + tail
    assert not stored_vs_event, "\n".join(stored_vs_event) + tail
    behind = _behind(committed, ends)
    assert not behind, f"committed offsets did not move past every input: partition: (committed, end) {behind}{tail}"
    return figures


def _stable(data: dict) -> dict:
    """Event data without what legitimately differs between repeats: a redelivered input
    is answered from the stored result, marked ``reused``."""
    return {k: v for k, v in data.items() if k != "reused"}


def _answer(document: dict) -> dict:
    """What a result says, whichever input asked for it and whether it was reused."""
    return {name: value for name, value in document.items() if name not in ("input", "reused")}


def _stored_matches_events(stack: Stack, events: list[ReceivedEvent], jobs: list[Job]) -> list[str]:
    """A completed event carries the stored document's result; a failed input has no result objects."""
    minio = stack.minio()
    bucket = stack.env["S3_RESULTS_BUCKET"]
    problems = []
    for job in jobs:
        mine = answers(events, job)
        if not mine:
            continue
        if mine[0].type == COMPLETED:
            json_key = mine[0].data["results"]["json"]
            stored = _read(minio, bucket, json_key)
            if stored is None:
                problems.append(f"{job.event_id}: completed, but {json_key} does not exist")
                continue
            document, said = _answer(json.loads(stored)), _answer(mine[0].data)
            differing = sorted(name for name in document.keys() | said.keys() if document.get(name) != said.get(name))
            if differing:
                problems.append(f"{job.event_id}: the completed event differs from the stored result in {differing}")
        else:
            documents = [name for name in result_objects(stack, job) if name.endswith(".json")]
            if documents:
                problems.append(f"{job.event_id}: failed, but result objects {documents} exist")
    return problems


class S3Proxy:
    """A TCP proxy in front of the real MinIO that can play an object store answering 503.

    Forwarding is byte for byte, so S3 signatures (which cover the Host header the client
    sent, the proxy's address) stay valid. While ``unavailable`` is set, every new request
    is answered ``503 XMinioServerNotInitialized`` with ``Retry-After: 60``: what MinIO
    itself answers while it starts or shuts down. While ``silent`` is set, the store accepts
    connections and requests and never answers any (new or kept-alive connections alike).
    """

    RETRY_AFTER = 60

    def __init__(self, upstream: str) -> None:
        host, port = upstream.rsplit(":", 1)
        self.upstream = (host, int(port))
        self.unavailable = threading.Event()
        self.silent = threading.Event()
        self.refused = 0  # requests answered 503
        self._server = socket.create_server(("127.0.0.1", 0))
        self._server.settimeout(0.5)
        self._closed = threading.Event()
        threading.Thread(target=self._accept, name="s3-proxy", daemon=True).start()

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self._server.getsockname()[1]}"

    def close(self) -> None:
        self._closed.set()
        self._server.close()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            target = self._refuse if self.unavailable.is_set() else self._forward
            threading.Thread(target=target, args=(client,), daemon=True).start()

    def _refuse(self, client: socket.socket) -> None:
        with client:
            client.settimeout(10)
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = client.recv(65536)
                if not chunk:
                    return
                head += chunk
            header, _, body = head.partition(b"\r\n\r\n")
            lines = header.decode("latin-1").split("\r\n")
            length = next(
                (int(v) for k, _, v in (line.partition(":") for line in lines[1:]) if k.lower() == "content-length"), 0
            )
            while len(body) < length:
                chunk = client.recv(65536)
                if not chunk:
                    break
                body += chunk
            payload = (
                b""
                if lines[0].startswith("HEAD ")
                else (
                    b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>XMinioServerNotInitialized</Code>'
                    b"<Message>Server not initialized yet, please try again.</Message></Error>"
                )
            )
            self.refused += 1
            client.sendall(
                b"HTTP/1.1 503 Service Unavailable\r\n"
                + f"Retry-After: {self.RETRY_AFTER}\r\nContent-Type: application/xml\r\n".encode()
                + f"Content-Length: {len(payload)}\r\nConnection: close\r\n\r\n".encode()
                + payload
            )

    def _forward(self, client: socket.socket) -> None:
        try:
            upstream = socket.create_connection(self.upstream, timeout=10)
        except OSError:
            client.close()
            return
        upstream.settimeout(None)
        client.settimeout(None)

        def pump(source: socket.socket, sink: socket.socket) -> None:
            try:
                while chunk := source.recv(65536):
                    if not self.silent.is_set():  # silent: requests are swallowed, never answered
                        sink.sendall(chunk)
            except OSError:
                pass
            finally:
                for end in (source, sink):
                    try:
                        end.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass

        threading.Thread(target=pump, args=(upstream, client), daemon=True).start()
        pump(client, upstream)
        client.close()
        upstream.close()
