"""Asynchronous jobs: ``POST /v1/jobs`` answers 202 with a job; ``GET``/``DELETE /v1/jobs/{id}``.

The job goes through the event pipeline like a bucket upload (``consumer.jobs``): the shim
stores the audio and the job's record, a consumer runs it, and the status is read back from
the store. So a job outlives the shim that took it and is not bound by the HTTP timeout.
"""

from __future__ import annotations

import dataclasses
import io
from datetime import UTC, datetime
from typing import IO

from flask import Blueprint, Response, jsonify, request, url_for

from consumer import transcript as transcripts
from consumer.errors import (
    AccessDeniedError,
    InvalidRequestError,
    InvalidVoiceprintError,
    JobNotCompletedError,
    JobNotFoundError,
)
from consumer.jobs import Jobs, JobStatus
from consumer.options import OPTION_NAMES, StoredObject, parse_options
from consumer.voiceprints import MAX_DOCUMENT_BYTES, parse_known_speakers
from consumer.webhooks import check_url
from http_shim import api, outputs
from http_shim.auth import require_api_key
from http_shim.state import state

blueprint = Blueprint("jobs", __name__, url_prefix="/v1/jobs")

# Options a job carries as object metadata (which S3 caps at 2 KiB); voiceprints and a
# transcript are larger: they are stored as the job's parts (``consumer.jobs.PART_NAMES``).
JOB_OPTIONS = tuple(name for name in OPTION_NAMES if name != "voiceprints")
MAX_PAGE = 100


def _jobs() -> Jobs:
    jobs = state().jobs
    if jobs is None:  # create_app registers this blueprint only with jobs
        raise JobNotFoundError("this shim serves no jobs")
    return jobs


@blueprint.before_request
def authenticate() -> None:
    """Require ``Authorization: Bearer <API_KEY>`` unless the API was opened (``http_shim.auth``)."""
    require_api_key(state().settings)


@blueprint.post("")
def submit() -> tuple[Response, int]:
    """A new job for the uploaded ``file`` (or the ``object`` it names) and its options; 202 with
    the job (``Location``: its URL)."""
    audio, filename, source = _audio()
    fields = {name: request.form[name] for name in JOB_OPTIONS if request.form.get(name, "") != ""}
    options = parse_options(fields)  # 400 before anything is stored
    parts = _parts()
    if "transcript_object" in parts:  # words are attributed against exclusive turns
        options = dataclasses.replace(options, exclusive=True)
    metadata = {name.replace("_", "-"): value for name, value in fields.items()}
    record = {
        "created_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "filename": filename[:255],
        "options": options.to_dict(),
    }
    webhook_url = request.form.get("webhook_url", "")
    if webhook_url:  # the consumer POSTs the outcome there, signed (consumer.webhooks)
        check_url(webhook_url, state().settings.webhooks)
        record["webhook_url"] = webhook_url
    job = _jobs().submit(audio, metadata, record, parts, source)
    body = {**job, "status": "queued", "links": _links(job["id"])}
    response = jsonify(body)
    response.headers["Location"] = body["links"]["self"]
    return response, 202


def _audio() -> tuple[IO[bytes], str, StoredObject | None]:
    """The job's audio: the one ``file`` part, or ``object`` (``<bucket>/<key>``, an object already
    in a bucket of ``S3_ALLOWED_BUCKETS``, which the consumer reads; the shim cannot and does not),
    with an empty stream. Its file name, and the source object when it is one."""
    reference = request.form.get("object", "")
    if not reference:
        upload = api.single_file()
        return upload.stream, upload.filename or "audio", None
    if request.files.getlist("file"):
        raise InvalidRequestError("give a 'file' or an 'object', not both")
    bucket, _, key = reference.partition("/")
    if not bucket or not key:
        raise InvalidRequestError("object must be <bucket>/<key>")
    if bucket not in state().settings.storage.allowed_buckets:
        raise AccessDeniedError(f"bucket {bucket!r} is not one this service reads (S3_ALLOWED_BUCKETS)")
    return io.BytesIO(b""), key.rsplit("/", 1)[-1] or "audio", StoredObject(bucket, key)


def _parts() -> dict[str, bytes]:
    """``voiceprints`` and ``transcript`` (a file part or a form field), checked as ``/v1/diarize``
    checks them (400 before anything is stored): the bytes of the job's parts, by the option they fill."""
    parts = {}
    voiceprints = _part("voiceprints", MAX_DOCUMENT_BYTES + 1)
    if voiceprints is not None:
        if len(voiceprints) > MAX_DOCUMENT_BYTES:
            raise InvalidVoiceprintError(f"voiceprints are larger than {MAX_DOCUMENT_BYTES} bytes")
        parse_known_speakers(voiceprints)
        parts["voiceprints_object"] = voiceprints
    transcript = _part("transcript", transcripts.MAX_TRANSCRIPT_BYTES + 1)
    if transcript is not None:
        transcripts.parse(transcript)
        parts["transcript_object"] = transcript
    return parts


def _part(name: str, max_bytes: int) -> bytes | None:
    upload = request.files.get(name)
    if upload is not None:
        return upload.stream.read(max_bytes)
    text = request.form.get(name, "")
    return text.encode() if text else None


@blueprint.get("")
def recent() -> Response:
    """Recent jobs, newest first: ``limit`` (1-100, default 20) per page, ``cursor`` from ``next_cursor``."""
    raw_limit = request.args.get("limit", "20")
    if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= MAX_PAGE:
        raise InvalidRequestError(f"limit must be an integer from 1 to {MAX_PAGE}")
    found, cursor = _jobs().recent(request.args.get("cursor", ""), int(raw_limit))
    return jsonify({"jobs": [_summary(job) for job in found], "next_cursor": cursor})


@blueprint.get("/<job_id>")
def status(job_id: str) -> Response:
    """The job: ``queued``, ``running`` (progress), ``completed`` (the result) or ``failed`` (the error).

    ``format`` (or ``Accept``) ``rttm``, ``srt``, ``vtt`` or ``diarized_json`` gives a completed
    job's result in that format, as ``/v1/diarize`` gives it (409 ``job_not_completed`` before).
    """
    fmt = outputs.requested_format()
    found = _jobs().status(job_id)
    if fmt == "json":
        return jsonify({**found.to_dict(), "links": _links(job_id)})
    if found.status != "completed" or found.result is None:
        raise JobNotCompletedError(f"job {job_id!r} has no {fmt} result: it is {found.status}")
    if fmt == "rttm":
        rttm = _jobs().rttm(job_id)
        if rttm is None:  # deleted between the two reads
            raise JobNotFoundError(f"there is no job {job_id!r}")
        return Response(rttm, mimetype=outputs.RTTM_MIMETYPE)
    return outputs.render_stored(fmt, found.result)


@blueprint.delete("/<job_id>")
def delete(job_id: str) -> Response:
    """Cancel a queued job, or delete a finished one's audio and results."""
    found = _jobs().delete(job_id)
    return jsonify({"id": job_id, "deleted": True, "status": found.status})


def _summary(job: JobStatus) -> dict[str, object]:
    out = {key: value for key, value in job.to_dict().items() if key != "result"}
    return {**out, "links": _links(str(job.record["id"]))}


def _links(job_id: str) -> dict[str, str]:
    return {"self": url_for("jobs.status", job_id=job_id)}
