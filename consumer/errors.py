"""The project's errors: each has a stable machine-readable ``code`` and a ``retryable`` flag.

Not retryable means the input itself is at fault: the job ends with a ``failed`` result
(or a 4xx), and a consumer moves on. Retryable means something around the job is at
fault (storage, broker, model not loaded yet): do not acknowledge, back off, try again.
"""

from __future__ import annotations

from typing import ClassVar


class ServiceError(Exception):
    """Root of every error the service reports to its callers."""

    code: ClassVar[str] = "internal_error"
    retryable: ClassVar[bool] = False
    http_status: ClassVar[int] = 500
    # Where set, ``message`` carries internal detail (exception text, paths, device messages):
    # callers get ``public_text`` instead, and the detail goes to the service's log only.
    detail_is_internal: ClassVar[bool] = False
    public_text: ClassVar[str] = ""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    @property
    def public_message(self) -> str:
        """What callers are told: the message, unless it carries internal detail."""
        return self.public_text if self.detail_is_internal else self.message

    def to_dict(self) -> dict[str, str]:
        """The error as the ``{"code", "message"}`` object used in responses and events."""
        return {"code": self.code, "message": self.public_message}


class InternalError(ServiceError):
    """An exception the service did not expect while handling one input (a bug)."""

    detail_is_internal = True
    public_text = "the service failed on this input (an internal error); its log has the details"


# --- the request or event is malformed (400) -------------------------------------------


class InvalidRequestError(ServiceError):
    """A request is missing a field or has one of the wrong type."""

    code = "invalid_request"
    http_status = 400


class MissingFileError(InvalidRequestError):
    """A multipart upload has no ``file`` field, or more than one."""

    code = "missing_file"


class UnsupportedMediaTypeError(ServiceError):
    """A request body has the wrong content type."""

    code = "unsupported_media_type"
    http_status = 415


class InvalidSpeakerOptionsError(InvalidRequestError):
    """``num_speakers`` / ``min_speakers`` / ``max_speakers`` are not a valid combination."""

    code = "invalid_speaker_options"


class InvalidEventError(InvalidRequestError):
    """An event could not be parsed or does not match its schema."""

    code = "invalid_event"


class UnacceptableKeyError(InvalidEventError):
    """An object key the service does not take (control characters, ``.`` segments, too long
    for its result's name), or one the store refuses to address."""


class UnsupportedEventError(InvalidRequestError):
    """An event is well-formed but of a type or spec version this service does not handle."""

    code = "unsupported_event"


class InvalidTranscriptError(InvalidRequestError):
    """A transcript to attribute does not parse, or its times are negative or out of order."""

    code = "invalid_transcript"


class TranscriptMismatchError(ServiceError):
    """A transcript runs past the end of the audio it is meant to go with."""

    code = "transcript_mismatch"
    http_status = 422


class InvalidVoiceprintError(InvalidRequestError):
    """A voiceprint is not a voiceprint document, or its label is not a usable name."""

    code = "invalid_voiceprint"


class TooManyVoiceprintsError(InvalidRequestError):
    """More voiceprints than one job may match against."""

    code = "too_many_voiceprints"


class VoiceprintModelMismatchError(ServiceError):
    """A voiceprint was made with another embedding model than the one this service runs."""

    code = "voiceprint_model_mismatch"
    http_status = 422


class VoiceprintTooShortError(ServiceError):
    """Enrolment audio holds too little speech to make a voiceprint."""

    code = "voiceprint_too_short"
    http_status = 422


class VoiceprintSpeakersError(ServiceError):
    """Enrolment audio holds more than one speaker, none of them clearly dominant."""

    code = "voiceprint_multiple_speakers"
    http_status = 422


class UnauthorizedError(ServiceError):
    """The API key is missing or wrong."""

    code = "unauthorized"
    http_status = 401


# --- the audio itself is unusable ---------------------------------------------------------


class NotAudioError(ServiceError):
    """The bytes are not in a supported audio or video container (see the README's formats)."""

    code = "not_audio"
    http_status = 415


class CorruptAudioError(ServiceError):
    """The container is recognised but truncated or unreadable."""

    code = "corrupt_audio"
    http_status = 422


class AudioTooShortError(ServiceError):
    """The audio is empty or shorter than the minimum duration."""

    code = "audio_too_short"
    http_status = 422


class AudioTooLongError(ServiceError):
    """The audio is longer than the configured maximum duration."""

    code = "audio_too_long"
    http_status = 422


class UnsupportedSampleRateError(ServiceError):
    """The sample rate is outside the supported range."""

    code = "unsupported_sample_rate"
    http_status = 422


class UnsupportedCodecError(ServiceError):
    """The container is readable but its audio is in a codec that cannot be decoded."""

    code = "unsupported_codec"
    http_status = 422


class NoAudioStreamError(ServiceError):
    """The container has no audio stream (a video without sound), or none at the requested index."""

    code = "no_audio_stream"
    http_status = 422


class NonFiniteAudioError(ServiceError):
    """The audio contains NaN or infinite samples."""

    code = "non_finite_samples"
    http_status = 422


class PayloadTooLargeError(ServiceError):
    """The upload or object is larger than the configured maximum size."""

    code = "payload_too_large"
    http_status = 413


# --- the job refers to something that is not there ----------------------------------------


class ObjectNotFoundError(ServiceError):
    """The bucket or object named by a job does not exist."""

    code = "object_not_found"
    http_status = 422


class AccessDeniedError(ServiceError):
    """The service's credentials may not read the named bucket or object."""

    code = "access_denied"
    http_status = 422


class WebhookUrlRefusedError(InvalidRequestError):
    """A job's ``webhook_url`` is one the service must not call (``consumer.webhooks.check_url``)."""

    code = "webhook_url_refused"


class JobNotFoundError(ServiceError):
    """No job of ``/v1/jobs`` has the id asked for (never submitted, or deleted)."""

    code = "job_not_found"
    http_status = 404


class JobNotCompletedError(ServiceError):
    """A job's result was asked for in a format only a completed job has."""

    code = "job_not_completed"
    http_status = 409


# --- transient: try again later (503) -------------------------------------------------------


class ModelNotReadyError(ServiceError):
    """The model is still loading or warming up."""

    code = "model_not_ready"
    retryable = True
    http_status = 503


class BusyError(ServiceError):
    """Too many jobs are already waiting for the model."""

    code = "busy"
    retryable = True
    http_status = 503


class StorageUnavailableError(ServiceError):
    """The object store could not be reached or answered with a server error."""

    code = "storage_unavailable"
    retryable = True
    http_status = 503


class StoreCredentialsError(StorageUnavailableError):
    """The object store refuses the service itself: its credentials were rotated, disabled or
    expired, or its clock is off. No input is at fault; the job succeeds once that is fixed."""

    code = "storage_credentials_rejected"


class ObjectChangedError(ServiceError):
    """The object was replaced between its stat and its download: the job starts again."""

    code = "object_changed"
    retryable = True
    http_status = 503


class PublishError(ServiceError):
    """A result could not be published (broker or sink unavailable)."""

    code = "publish_failed"
    retryable = True
    http_status = 503


class SenderKeysUnavailableError(ServiceError):
    """The keys that sign the senders' tokens could not be fetched: the token cannot be checked yet."""

    code = "sender_keys_unavailable"
    retryable = True
    http_status = 503


# --- the engine failed on valid input ------------------------------------------------------


class InferenceError(ServiceError):
    """The model raised while processing valid audio."""

    code = "inference_failed"
    http_status = 500
    detail_is_internal = True
    public_text = "the model failed on this audio; the service's log has the details"


class EngineBrokenError(ServiceError):
    """The engine failed on several different inputs in a row: the process is at fault, not
    the inputs. It serves nothing more; a Kafka consumer exits to be restarted."""

    code = "engine_broken"
    retryable = True
    http_status = 503
    detail_is_internal = True
    public_text = "inference failed on several different inputs in a row: the engine, not the input, is at fault"


# --- the service cannot serve at all (not retryable: nothing in this process will change it) --


class ModelLoadError(ServiceError):
    """The configured model could not be loaded (wrong path, no token, no network).

    Not retryable: loading is not tried again in this process, which stays not ready.
    """

    code = "model_load_failed"
    http_status = 503
    detail_is_internal = True
    public_text = "the model could not be loaded; the service's log says why (line 'model load failed')"


# --- the input was tried too often ----------------------------------------------------------


class TooManyAttemptsError(ServiceError):
    """The input's job was started ``MAX_ATTEMPTS`` times and never finished (its consumer died each time)."""

    code = "too_many_attempts"
    http_status = 500


class RunningElsewhereError(ServiceError):
    """Another consumer is running the input's job right now (its partition moved meanwhile)."""

    code = "running_elsewhere"
    retryable = True
    http_status = 503
