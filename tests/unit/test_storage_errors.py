"""An S3 error answer becomes the project's error: missing and denied objects and requests the
store refuses are permanent; timeouts, throttling, server failures, a store refusing the
service's own credentials or clock, and anything refused in the service's results bucket are
retryable."""

from __future__ import annotations

import pytest
from minio.error import S3Error
from urllib3.response import HTTPResponse

from consumer.errors import (
    AccessDeniedError,
    ObjectChangedError,
    ObjectNotFoundError,
    ServiceError,
    StorageUnavailableError,
    StoreCredentialsError,
    UnacceptableKeyError,
)
from consumer.storage import _s3_error

WHERE = "audio/calls/a.wav"


def s3_error(code: str | None, status: int | None, message: str = "the store says no") -> S3Error:
    """What minio raises for an S3 error answer; ``status=None``: a response without a status."""
    response = HTTPResponse(body=b"", status=status) if status is not None else None
    return S3Error(
        response,
        code,
        message,
        f"/{WHERE}",
        "request-1",
        "host-1",  # type: ignore[arg-type]
        bucket_name="audio",
        object_name="calls/a.wav",
    )


def convert(code: str | None, status: int | None, own: bool = False) -> ServiceError:
    error = _s3_error(s3_error(code, status), WHERE, own=own)
    assert WHERE in error.message, error.message
    return error


@pytest.mark.parametrize("code", ["NoSuchKey", "NoSuchBucket", "NoSuchVersion", "NoSuchObject", "ResourceNotFound"])
def test_a_missing_object_is_not_found(code):
    error = convert(code, 404)
    assert type(error) is ObjectNotFoundError and not error.retryable
    assert code in error.message


@pytest.mark.parametrize("code", ["AccessDenied", "AllAccessDisabled", "InvalidObjectState"])
def test_a_forbidden_object_is_access_denied(code):
    error = convert(code, 403)
    assert type(error) is AccessDeniedError and not error.retryable
    assert code in error.message


@pytest.mark.parametrize(("code", "status"), [("NoSuchKey", 503), ("AccessDenied", 500), ("NoSuchBucket", None)])
def test_the_code_decides_before_the_status(code, status):
    expected = ObjectNotFoundError if code.startswith("NoSuch") else AccessDeniedError
    assert type(convert(code, status)) is expected


@pytest.mark.parametrize(
    ("code", "status"),
    [
        ("InvalidBucketName", 400),
        ("InvalidArgument", 400),
        ("MethodNotAllowed", 405),
        ("InvalidRange", 416),
        ("SomethingNew", 499),
        (None, 400),
    ],
)
def test_any_other_4xx_is_an_invalid_event(code, status):
    error = convert(code, status)
    assert type(error) is UnacceptableKeyError and not error.retryable
    assert "refused" in error.message and "the store says no" in error.message


@pytest.mark.parametrize(
    ("code", "status"),
    [
        ("RequestTimeout", 408),
        ("SlowDown", 429),
        ("InternalError", 500),
        ("NotImplemented", 501),
        ("BadGateway", 502),
        ("SlowDown", 503),
        ("ServiceUnavailable", 503),
        ("GatewayTimeout", 504),
        ("XMinioServerNotInitialized", 503),
        (None, 500),
        ("Odd", 399),  # not an error status at all: nothing says the request was at fault
    ],
)
def test_timeouts_throttling_and_server_failures_are_retryable(code, status):
    error = convert(code, status)
    assert type(error) is StorageUnavailableError and error.retryable
    assert "the store says no" in error.message


def test_an_answer_without_a_status_counts_as_a_server_failure():
    error = convert("WeirdCode", None)
    assert type(error) is StorageUnavailableError and error.retryable


CREDENTIALS = [
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "ExpiredToken",
    "InvalidToken",
    "TokenRefreshRequired",
    "RequestTimeTooSkewed",
    "AccountProblem",
    "AuthorizationHeaderMalformed",
]


@pytest.mark.parametrize("own", [False, True])
@pytest.mark.parametrize("code", CREDENTIALS)
def test_a_store_refusing_the_service_itself_is_a_retryable_service_fault(code, own):
    error = convert(code, 403 if code != "AuthorizationHeaderMalformed" else 400, own=own)
    assert type(error) is StoreCredentialsError and error.retryable
    assert isinstance(error, StorageUnavailableError) and error.code == "storage_credentials_rejected"
    assert code in error.message


@pytest.mark.parametrize(
    ("code", "status"),
    [("AccessDenied", 403), ("NoSuchBucket", 404), ("InvalidBucketName", 400), ("QuotaExceeded", 403), (None, 400)],
)
def test_whatever_the_results_bucket_refuses_is_retryable(code, status):
    error = convert(code, status, own=True)
    assert type(error) is StorageUnavailableError and error.retryable


def test_a_missing_result_object_is_not_found():
    assert type(convert("NoSuchKey", 404, own=True)) is ObjectNotFoundError


def test_an_object_replaced_since_its_stat_is_retried():
    error = convert("PreconditionFailed", 412)
    assert type(error) is ObjectChangedError and error.retryable
