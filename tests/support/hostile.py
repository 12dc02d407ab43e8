"""Builders for the hostile-input corpus (tests/integration/test_hostile_inputs.py).

Everything is generated at test time: broken and odd audio files, events in a
transport-neutral form that each door turns into a Kafka record or an HTTP request,
raw-socket HTTP exchanges (oversized and slow bodies), and process probes (the
gunicorn worker's pid, a process's peak RSS).
"""

from __future__ import annotations

import io
import json
import os
import select
import socket
import struct
import time
import uuid
import zipfile
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
from confluent_kafka import Consumer

from tests.support.audio_bytes import encode, tone, with_data_size

UPLOADED = "dev.diarization.audio.uploaded"
KAFKA_SOURCE = "dev.knative.kafka.event"


# --- audio ----------------------------------------------------------------------------------


def wav(seconds: float = 3.0, rate: int = 16_000, channels: int = 1, **kwargs: Any) -> bytes:
    """A 440 Hz tone as a 16-bit WAV (``subtype`` and ``fmt`` pass through to ``encode``)."""
    return encode(tone(seconds, rate, channels), rate, **kwargs)


def with_magic(data: bytes, magic: bytes) -> bytes:
    """``data`` with its first bytes replaced by ``magic``."""
    return magic + data[len(magic) :]


def with_wave_tag(data: bytes, tag: bytes) -> bytes:
    """A RIFF file whose form type (``WAVE``) is replaced by ``tag``."""
    return data[:8] + tag + data[12:]


def non_finite(value: float, subtype: str) -> bytes:
    """A float WAV with one ``value`` (NaN or ±inf) among valid samples."""
    samples = tone(3)
    samples[len(samples) // 2, 0] = value
    return encode(samples, subtype=subtype)


def noise(seconds: float = 3.0, seed: int = 7) -> bytes:
    """Full-band white noise at -6 dBFS."""
    rng = np.random.default_rng(seed)
    return encode(rng.uniform(-0.5, 0.5, (int(seconds * 16_000), 1)).astype(np.float32))


def clipped(seconds: float = 3.0) -> bytes:
    """A tone driven 12 dB past full scale and hard-clipped: almost a square wave at ±1."""
    return encode(np.clip(tone(seconds, amplitude=4.0), -1.0, 1.0))


def silence(seconds: float) -> bytes:
    """Digital silence as a 16 kHz 16-bit WAV."""
    return encode(np.zeros((int(seconds * 16_000), 1), np.float32))


def mp3() -> bytes:
    """A real MPEG layer III file (libsndfile writes one)."""
    return encode(tone(3), fmt="MP3", subtype="MPEG_LAYER_III")


def zip_of_wav() -> bytes:
    """A ZIP archive holding a valid WAV."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("speech.wav", wav())
    return buffer.getvalue()


def png() -> bytes:
    """A valid 1x1 RGB PNG image."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\x00\xff\x00\x00"))
        + chunk(b"IEND", b"")
    )


def text() -> bytes:
    """Plain UTF-8 text."""
    return b"Minutes of the meeting, 3 March.\nPresent: everyone.\n" * 40


def long_silent_flac(seconds: float, rate: int = 8_000) -> bytes:
    """A genuinely long FLAC of silence: tiny on disk, refused from its header's duration."""
    buffer = io.BytesIO()
    block = np.zeros(rate * 60, np.int16)
    with sf.SoundFile(buffer, "w", rate, 1, "PCM_16", format="FLAC") as out:
        for _ in range(int(seconds // 60)):
            out.write(block)
        out.write(block[: int(seconds % 60 * rate)])
    return buffer.getvalue()


def huge_declared_size() -> bytes:
    """10 ms of samples under a data chunk that declares almost 4 GiB."""
    return with_data_size(wav(0.01), 0xFFFF_FFF0)


def claims_more_than_present(declared_seconds: float = 10.0) -> bytes:
    """1 s of samples under a header declaring ``declared_seconds``."""
    return with_data_size(wav(1.0), int(declared_seconds * 16_000 * 2))


def write_silent_wav(path: Path, seconds: int, rate: int = 16_000, chunk_seconds: int = 60) -> int:
    """Stream a 16-bit mono WAV of digital silence to ``path`` in chunks; its size in bytes."""
    data_bytes = seconds * rate * 2
    header = b"RIFF" + struct.pack("<I", 36 + data_bytes) + b"WAVE"
    header += b"fmt " + struct.pack("<IHHIIHH", 16, 1, 1, rate, rate * 2, 2, 16)
    header += b"data" + struct.pack("<I", data_bytes)
    zeros = bytes(chunk_seconds * rate * 2)
    with path.open("wb") as out:
        out.write(header)
        left = data_bytes
        while left > 0:
            out.write(zeros[: min(left, len(zeros))])
            left -= len(zeros)
    return len(header) + data_bytes


# --- events ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Message:
    """One input for the event doors, before it is a Kafka record or an HTTP request.

    ``attributes`` set: a binary-mode CloudEvent (attribute name -> value, without the
    ``ce_``/``ce-`` prefix; bytes values are sent as they are, Kafka only). Otherwise the
    body travels alone, with ``content_type`` if given. ``input_id`` is the ``input.id``
    its result event must carry; ``None`` for messages that are no event at all, whose
    result is found by the Kafka record key instead.
    """

    body: bytes
    attributes: dict[str, str | bytes] | None = None
    content_type: str | None = "application/json"
    input_id: str | None = None

    def kafka(self) -> list[tuple[str, bytes]]:
        """Kafka record headers."""
        headers = [(f"ce_{k}", v if isinstance(v, bytes) else v.encode()) for k, v in (self.attributes or {}).items()]
        if self.content_type:
            headers.append(("content-type", self.content_type.encode()))
        return headers

    def http(self) -> dict[str, str]:
        """HTTP request headers."""
        headers: dict[str, str] = {}
        for name, value in (self.attributes or {}).items():
            if isinstance(value, bytes):
                raise TypeError(f"attribute {name} has raw bytes: Kafka only")
            headers[f"ce-{name}"] = value
        if self.content_type:
            headers["Content-Type"] = self.content_type
        return headers


def binary_event(event_id: str, data: Any, **attributes: str | bytes) -> Message:
    """A binary-mode ``audio.uploaded`` CloudEvent; ``data`` is JSON-encoded unless it is bytes."""
    body = data if isinstance(data, bytes) else json.dumps(data).encode()
    attrs: dict[str, str | bytes] = {"specversion": "1.0", "id": event_id, "source": "/hostile", "type": UPLOADED}
    attrs.update(attributes)
    return Message(body, attrs, input_id=event_id)


def structured_event(event_id: Any, data: Any, pad: int = 0, **fields: Any) -> Message:
    """A structured-mode CloudEvent; ``pad`` adds that many spaces of JSON whitespace."""
    event = {
        "specversion": "1.0",
        "id": event_id,
        "source": "/hostile",
        "type": UPLOADED,
        "datacontenttype": "application/json",
        "data": data,
        **fields,
    }
    body = json.dumps(event).encode()
    if pad:
        body = body[:-1] + b" " * pad + b"}"
    return Message(body, None, "application/cloudevents+json", input_id=event_id if isinstance(event_id, str) else None)


def notification(
    bucket: str, raw_key: str, sequencer: str, event_name: str = "s3:ObjectCreated:Put", metadata: dict | None = None
) -> Message:
    """A MinIO bucket notification; ``raw_key`` is sent as is (MinIO URL-encodes keys)."""
    obj: dict[str, Any] = {"key": raw_key, "size": 1000, "eTag": "0123abcd", "sequencer": sequencer}
    if metadata is not None:
        obj["userMetadata"] = metadata
    record = {"eventName": event_name, "eventSource": "minio:s3", "s3": {"bucket": {"name": bucket}, "object": obj}}
    body = json.dumps({"EventName": event_name, "Key": f"{bucket}/{raw_key}", "Records": [record]}).encode()
    return Message(body, None, "application/json", input_id=f"{bucket}/{raw_key}@{sequencer}")


def kafka_source_wrapped(event_id: str, inner: Message) -> Message:
    """A notification as a Knative KafkaSource delivers it: a binary CloudEvent around the record."""
    attrs: dict[str, str | bytes] = {
        "specversion": "1.0",
        "id": event_id,
        "source": "/kafkasource",
        "type": KAFKA_SOURCE,
    }
    return Message(inner.body, attrs, "application/json", input_id=inner.input_id)


def raw(body: bytes, content_type: str | None = "application/json") -> Message:
    """Bytes that are no event."""
    return Message(body, None, content_type, input_id=None)


# --- raw HTTP -------------------------------------------------------------------------------


@dataclass
class RawAnswer:
    """What a raw-socket exchange got back."""

    status: int | None  # None: no answer (connection closed, reset, or still waiting at the bound)
    body: bytes
    closed: bool  # the server closed or reset the connection
    sent: int  # body bytes sent before the answer (or the close) came
    seconds: float
    headers: dict[str, str] = field(default_factory=dict)

    def json(self) -> Any:
        return json.loads(self.body)

    def __str__(self) -> str:
        what = f"HTTP {self.status} {self.body[:200]!r}" if self.status else ("closed" if self.closed else "no answer")
        return f"{what} after {self.seconds:.1f} s, {self.sent} body bytes sent"


def chunked(pieces: Iterable[bytes]) -> Iterator[bytes]:
    """``pieces`` in HTTP/1.1 chunked framing, with the final empty chunk."""
    for piece in pieces:
        yield f"{len(piece):x}\r\n".encode() + piece + b"\r\n"
    yield b"0\r\n\r\n"


def raw_exchange(
    port: int, head: bytes, pieces: Iterable[bytes], gap: float = 0.0, bound: float = 60.0, half_close: bool = False
) -> RawAnswer:
    """Send ``head``, then ``pieces`` one by one ``gap`` seconds apart, stopping as soon as
    the server answers or closes; then read the answer until ``bound`` seconds have passed.
    ``half_close``: shut the sending side once the pieces are sent (the client is done)."""
    started = time.monotonic()
    deadline = started + bound
    sent = 0
    with socket.create_connection(("127.0.0.1", port), timeout=bound) as sock:
        try:
            sock.sendall(head)
            for piece in pieces:
                if time.monotonic() >= deadline:
                    break
                readable, _, _ = select.select([sock], [], [], gap)
                if readable:  # an answer, or a close: stop sending
                    break
                sock.sendall(piece)
                sent += len(piece)
            if half_close:
                sock.shutdown(socket.SHUT_WR)
        except (BrokenPipeError, ConnectionResetError):
            pass
        return _read_answer(sock, started, deadline, sent)


def _read_answer(sock: socket.socket, started: float, deadline: float, sent: int) -> RawAnswer:
    buffer = b""
    closed = False
    while True:
        head, sep, rest = buffer.partition(b"\r\n\r\n")
        if sep:
            lines = head.decode("latin-1").split("\r\n")
            headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
            length = int(headers.get("content-length", "0"))
            if len(rest) >= length or closed:
                status = int(lines[0].split()[1])
                return RawAnswer(status, rest[:length], closed, sent, time.monotonic() - started, headers)
        if closed:
            return RawAnswer(None, buffer, True, sent, time.monotonic() - started)
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return RawAnswer(None, buffer, False, sent, time.monotonic() - started)
        sock.settimeout(remaining)
        try:
            data = sock.recv(65536)
        except TimeoutError:
            return RawAnswer(None, buffer, False, sent, time.monotonic() - started)
        except ConnectionResetError:
            data = b""
        if not data:
            closed = True
        buffer += data


def request_head(method: str, path: str, headers: dict[str, str]) -> bytes:
    """An HTTP/1.1 request line and headers, ending with the blank line."""
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", *(f"{k}: {v}" for k, v in headers.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def multipart_file_head(boundary: str, filename: str = "audio.wav") -> bytes:
    """The start of a multipart body: the ``file`` part's headers, before its bytes."""
    return (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{filename}"\r\n'
        "Content-Type: audio/wav\r\n\r\n"
    ).encode()


# --- topics -------------------------------------------------------------------------------


def read_raw(bootstrap: str, topic: str, seconds: float) -> list[tuple[bytes | None, bytes | None, dict[str, bytes]]]:
    """Every record of ``topic`` that arrives within ``seconds``, undecoded: (key, value, headers).

    For the dead-letter topic, whose records keep their original (possibly broken) headers.
    """
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": f"raw-{uuid.uuid4().hex}", "auto.offset.reset": "earliest"}
    )
    consumer.subscribe([topic])
    records = []
    deadline = time.monotonic() + seconds
    try:
        while time.monotonic() < deadline:
            message = consumer.poll(0.2)
            if message is not None and not message.error():
                records.append((message.key(), message.value(), dict(message.headers() or [])))
    finally:
        consumer.close()
    return records


# --- processes ------------------------------------------------------------------------------


def children(pid: int) -> set[int]:
    """The pids whose parent is ``pid`` (e.g. a gunicorn master's workers)."""
    found = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        # the command name is in parentheses and may hold spaces: the ppid follows the last ')'
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            found.add(int(entry))
    return found


def peak_rss_bytes(pid: int) -> int:
    """``VmHWM`` of ``pid``: the most resident memory it has held so far."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            value, unit = line.split()[1:3]
            assert unit == "kB", line
            return int(value) * 1024
    raise AssertionError(f"no VmHWM in /proc/{pid}/status")
