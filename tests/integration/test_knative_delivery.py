"""The receiver under Knative's delivery rules: every scenario's events delivered, dead-lettered or lost.

The shim runs as the cluster-local events Service does (gunicorn on loopback, real MinIO,
the real model, ``MAX_QUEUED_JOBS=1`` as in knative/events-service.yaml, K_SINK, OIDC sender
tokens checked against a JWKS on loopback). ``KnativeSender`` delivers each event the way a
Trigger or KafkaSource does (tests/support/knative_delivery.py). Per scenario the table
counts the inputs whose result reached the results sink or the reply sink (delivered), the
deliveries that went to the dead-letter sink (DLQ) and the inputs with neither (lost).

The sender uses the Trigger's own delivery settings from knative/broker.yaml (retries,
exponential backoff from PT5S, PT5M per attempt), and honours the receiver's ``Retry-After``.
"""

from __future__ import annotations

import json
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest
import requests
import soundfile
import yaml

from tests.support.audio_bytes import encode, tone
from tests.support.credentials import API_AUTH, SENDER_NAMESPACE
from tests.support.knative_delivery import DeliveryResult, DeliverySpec, KnativeSender
from tests.support.oidc import Issuer, RsaKey
from tests.support.processes import REPO
from tests.support.sink import EventSink

pytestmark = pytest.mark.integration
UPLOADED = "dev.diarization.audio.uploaded"
COMPLETED = "dev.diarization.job.completed"
AUDIENCE = "serving.knative.dev/service/diarization/diarization-events"


def iso_seconds(duration: str) -> float:
    """Seconds of an ISO 8601 duration such as ``PT5M``."""
    match = re.fullmatch(r"PT(?:(\d+)H)?(?:(\d+)M)?(?:(\d+)S)?", duration)
    assert match, duration
    hours, minutes, seconds = (int(part or 0) for part in match.groups())
    return hours * 3600 + minutes * 60 + seconds


def trigger_delivery() -> DeliverySpec:
    """The delivery settings of the shipped Trigger."""
    docs = yaml.safe_load_all((REPO / "knative" / "broker.yaml").read_text())
    delivery = next(doc for doc in docs if doc and doc["kind"] == "Trigger")["spec"]["delivery"]
    assert delivery["backoffPolicy"] == "exponential"
    return DeliverySpec(
        retry=delivery["retry"],
        backoff_delay=iso_seconds(delivery["backoffDelay"]),
        timeout=iso_seconds(delivery["timeout"]),
    )


SPEC = trigger_delivery()
# How long an accepted input's result may take to reach K_SINK before it counts as lost:
# the longest job on this audio (30 s) on a loaded CPU, with room to spare.
RESULT_WAIT_S = 900.0
EXCERPT_SECONDS = 8.0


@dataclass
class Row:
    scenario: str
    inputs: int
    delivered: int
    dlq: int
    lost: int
    jobs: int
    attempts: str

    def line(self) -> str:
        return (
            f"{self.scenario:38} {self.inputs:>6} {self.delivered:>9} {self.dlq:>4} {self.lost:>4} "
            f"{self.jobs:>5}  {self.attempts}"
        )


HEADER = f"{'scenario':38} {'inputs':>6} {'delivered':>9} {'DLQ':>4} {'lost':>4} {'jobs':>5}  attempts (statuses)"


def binary(event_id: str, key: str, bucket: str = "audio") -> tuple[dict[str, str], bytes]:
    headers = {
        "ce-specversion": "1.0",
        "ce-id": event_id,
        "ce-source": "/knative-harness",
        "ce-type": UPLOADED,
        "Content-Type": "application/json",
    }
    return headers, json.dumps({"bucket": bucket, "key": key}).encode()


def notification(keys: list[str], sequencer: str) -> tuple[tuple[dict[str, str], bytes], list[str]]:
    """A MinIO notification with one record per key, wrapped as a KafkaSource delivers it; its input ids."""
    records = [
        {
            "eventName": "s3:ObjectCreated:Put",
            "s3": {"bucket": {"name": "audio"}, "object": {"key": key, "sequencer": f"{sequencer}{i}"}},
        }
        for i, key in enumerate(keys)
    ]
    headers = {
        "ce-specversion": "1.0",
        "ce-id": f"partition:0/offset:{sequencer}",
        "ce-source": "/apis/v1/namespaces/diarization/kafkasources/diarization-audio-uploads#audio-uploads",
        "ce-type": "dev.knative.kafka.event",
        "Content-Type": "application/json",
    }
    body = json.dumps({"EventName": "s3:ObjectCreated:Put", "Records": records}).encode()
    return (headers, body), [f"audio/{key}@{sequencer}{i}" for i, key in enumerate(keys)]


class Harness:
    """The running receiver, its sinks, and the bookkeeping of one scenario after another."""

    def __init__(self, base: str, results: EventSink, sender: KnativeSender) -> None:
        self.base, self.results, self.sender = base, results, sender
        self.rows: list[Row] = []

    def jobs(self) -> float:
        text = requests.get(f"{self.base}/metrics", headers=API_AUTH, timeout=30).text
        return sum(
            float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith("diarization_jobs_total")
        )

    def results_for(self, input_ids: list[str]) -> dict[str, list[dict[str, str]]]:
        """Input id -> the result events (headers) that reached the results sink or the reply sink."""
        found: dict[str, list[dict[str, str]]] = {i: [] for i in input_ids}
        events = [(e.headers, e.body) for e in self.results.accepted] + list(self.sender.replies)
        for headers, body in events:
            input_id = json.loads(body)["input"]["id"]
            if input_id in found:
                found[input_id].append({k.lower(): v for k, v in headers.items()})
        return found

    def run(
        self,
        scenario: str,
        deliveries: list[tuple[tuple[dict[str, str], bytes], list[str]]],
        *,
        sender: KnativeSender | None = None,
        concurrent: bool = False,
        meanwhile: Callable[[list[DeliveryResult]], None] | None = None,
    ) -> tuple[Row, list[DeliveryResult]]:
        """Deliver every message (its input ids alongside); count delivered, DLQ and lost."""
        sender = sender or self.sender
        dlq_before, jobs_before = len(sender.dead_letters), self.jobs()
        results: list[DeliveryResult] = [DeliveryResult() for _ in deliveries]

        def deliver(index: int) -> None:
            (headers, body), _ = deliveries[index]
            sender.deliver(headers, body, results[index])

        threads = [threading.Thread(target=deliver, args=(i,), daemon=True) for i in range(len(deliveries))]
        for thread in threads:
            thread.start()
            if not concurrent:
                thread.join()
        if meanwhile is not None:
            meanwhile(results)
        for thread in threads:
            thread.join()
        input_ids = sorted({i for _, ids in deliveries for i in ids})
        dead = {i for (_, ids), result in zip(deliveries, results, strict=True) if result.dead_letter for i in ids}
        # a delivery answered 202 while its job still ran: its result reaches K_SINK later
        deadline = time.monotonic() + RESULT_WAIT_S
        while time.monotonic() < deadline:
            found = self.results_for(input_ids)
            if all(found[i] or i in dead for i in input_ids):
                break
            time.sleep(0.5)
        time.sleep(0.5)  # a duplicate sent by mistake would have arrived by now
        found = self.results_for(input_ids)
        delivered = sum(1 for i in input_ids if found[i])
        row = Row(
            scenario,
            len(input_ids),
            delivered,
            len(sender.dead_letters) - dlq_before,
            sum(1 for i in input_ids if not found[i] and i not in dead),
            round(self.jobs() - jobs_before),
            " | ".join(",".join(str(s) for s in r.statuses) for r in results),
        )
        for i in input_ids:  # one answer per input, however often it was delivered
            assert len({h["ce-id"] for h in found[i]}) <= 1, (scenario, i, found[i])
        self.rows.append(row)
        print(row.line(), flush=True)
        return row, results


@pytest.fixture(scope="module")
def issuer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Issuer]:
    running = Issuer(tmp_path_factory.mktemp("issuer"))
    yield running
    running.close()


def excerpt(path, seconds: float = EXCERPT_SECONDS) -> bytes:
    """The first seconds of real speech (both speakers talk in them): short jobs, many scenarios."""
    samples, rate = soundfile.read(path, dtype="float32")
    return encode(samples[: int(seconds * rate)], rate)


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def test_knative_delivery_scenarios(stack, start_shim, sample, issuer: Issuer, tmp_path) -> None:
    run = uuid.uuid4().hex[:8]
    sample_bytes = excerpt(sample[0])
    keys = {name: f"knd/{run}/{name}.wav" for name in ("ok", "dup", "store", "sink", "b0", "b1", "b2", "b3")}
    keys |= {f"m{i}": f"knd/{run}/multi-{i}.wav" for i in range(3)}
    for key in keys.values():
        stack.upload(key, sample_bytes)
    keys["corrupt"] = f"knd/{run}/corrupt.wav"
    stack.upload(keys["corrupt"], encode(tone(3))[:4000])

    results = EventSink()
    try:
        base = start_shim(
            K_SINK=results.url,
            MAX_QUEUED_JOBS="1",  # as in knative/events-service.yaml: one job running, one waiting
            RECEIVER_OIDC_ISSUER=issuer.url,
            RECEIVER_OIDC_AUDIENCE=AUDIENCE,
            RECEIVER_OIDC_ALLOWED_SUBJECTS=SENDER_NAMESPACE,
        )
        sender = KnativeSender(f"{base}/", SPEC, token=lambda: issuer.token(AUDIENCE))
        harness = Harness(base, results, sender)
        print("\n" + HEADER, flush=True)

        def one(event_id: str, key: str, bucket: str = "audio") -> tuple[tuple[dict[str, str], bytes], list[str]]:
            return binary(event_id, key, bucket), [event_id]

        harness.run("success", [one(f"{run}-ok", keys["ok"])])
        harness.run("bad audio (corrupt file)", [one(f"{run}-bad", keys["corrupt"])])
        harness.run("missing object", [one(f"{run}-missing", f"knd/{run}/nowhere.wav")])

        busy, busy_results = harness.run(
            "busy (4 at once, 2 job slots)",
            [one(f"{run}-b{i}", keys[f"b{i}"]) for i in range(4)],
            concurrent=True,
        )
        assert any(status == 503 for r in busy_results for status in r.statuses), "no delivery met a busy receiver"

        def store_back(results_so_far: list[DeliveryResult]) -> None:
            wait_until(lambda: any(503 in r.statuses for r in results_so_far), 120, "a 503 while the store is down")
            stack.restart("minio")

        stack.stop(only="minio")
        store, store_results = harness.run(
            "store down, then up", [one(f"{run}-store", keys["store"])], concurrent=True, meanwhile=store_back
        )

        def sink_back(_: list[DeliveryResult]) -> None:
            wait_until(lambda: len(results.received) > len(results.accepted), 120, "the sink refusing a result")
            results.status = 202

        results.status = 503
        sink, sink_results = harness.run(
            "sink down, then up", [one(f"{run}-sink", keys["sink"])], concurrent=True, meanwhile=sink_back
        )
        assert 503 in sink_results[0].statuses

        message, ids = notification([keys[f"m{i}"] for i in range(3)], f"{run}M")
        multi, multi_results = harness.run("multi-record, one record transient", [(message, ids)])
        assert multi_results[0].statuses[0] == 503, "the third record should have found no free slot"
        assert multi.jobs == 3, "records already done were computed again on the retry"

        duplicate = one(f"{run}-dup", keys["dup"])
        dup, _ = harness.run("duplicate delivery", [duplicate, duplicate])
        assert len(harness.results_for([f"{run}-dup"])[f"{run}-dup"]) == 1, "the duplicate was sent twice"
        assert dup.jobs == 1

        impostor = RsaKey(tmp_path, issuer.key.kid)
        forgers = [
            KnativeSender(f"{base}/", SPEC),  # no token at all
            KnativeSender(f"{base}/", SPEC, token=lambda: issuer.token("serving.knative.dev/service/other/x")),
            KnativeSender(f"{base}/", SPEC, token=lambda: issuer.token(AUDIENCE, key=impostor)),
            KnativeSender(f"{base}/", SPEC, token=lambda: issuer.unsigned(AUDIENCE)),
        ]
        forged_rows = [
            harness.run(f"forged event ({why})", [one(f"{run}-forged-{n}", keys["ok"])], sender=forger)
            for n, (why, forger) in enumerate(
                zip(("no token", "other audience", "other key", "alg none"), forgers, strict=True)
            )
        ]
    finally:
        results.close()

    print("\n" + HEADER + "\n" + "\n".join(row.line() for row in harness.rows), flush=True)
    for row in harness.rows:
        if row.scenario.startswith("forged"):
            assert (row.delivered, row.dlq, row.lost, row.jobs) == (0, 1, 0, 0), row
        else:
            assert (row.delivered, row.dlq, row.lost) == (row.inputs, 0, 0), row
    assert all(r[1][0].statuses == [401] for r in forged_rows)
    assert store_results[0].statuses[0] == 503 and store.jobs == 1
    assert busy.delivered == 4 and sink.jobs == 1


def test_reply_mode_results_reach_the_reply_sink(stack, start_shim, sample, issuer: Issuer) -> None:
    """Behind a Broker/Trigger (no K_SINK) the result is the reply event, which Knative routes on."""
    run = uuid.uuid4().hex[:8]
    key = f"knd/{run}/reply.wav"
    stack.upload(key, excerpt(sample[0]))
    base = start_shim(
        RECEIVER_OIDC_ISSUER=issuer.url,
        RECEIVER_OIDC_AUDIENCE=AUDIENCE,
        RECEIVER_OIDC_ALLOWED_SUBJECTS=SENDER_NAMESPACE,
    )
    sender = KnativeSender(f"{base}/", SPEC, token=lambda: issuer.token(AUDIENCE))
    harness = Harness(base, EventSink(), sender)
    try:
        row, results = harness.run("success, Broker reply", [(binary(f"{run}-r", key), [f"{run}-r"])])
        missing, _ = harness.run(
            "missing object, Broker reply", [(binary(f"{run}-m", f"knd/{run}/no.wav"), [f"{run}-m"])]
        )
    finally:
        harness.results.close()
    print("\n" + HEADER + "\n" + "\n".join(r.line() for r in harness.rows), flush=True)
    assert (row.delivered, row.dlq, row.lost) == (1, 0, 0) and (missing.delivered, missing.dlq, missing.lost) == (
        1,
        0,
        0,
    )
    assert results[0].reply is not None and results[0].reply[0]["ce-type"] == COMPLETED
    assert [json.loads(body)["input"]["id"] for _, body in sender.replies] == [f"{run}-r", f"{run}-m"]
    assert json.loads(sender.replies[1][1])["error"]["code"] == "object_not_found"
