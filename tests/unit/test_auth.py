"""The API key check accepts exactly ``Bearer <key>``."""

import pytest

from consumer.errors import UnauthorizedError
from http_shim.auth import require_bearer


def test_right_key_passes():
    require_bearer("Bearer s3cret-key", "s3cret-key")
    require_bearer("bearer s3cret-key", "s3cret-key")


@pytest.mark.parametrize(
    "header", ["", "Bearer", "Bearer wrong", "Basic s3cret-key", "s3cret-key", "Bearer s3cret-key2"]
)
def test_anything_else_is_refused(header):
    with pytest.raises(UnauthorizedError):
        require_bearer(header, "s3cret-key")


def test_an_empty_key_lets_nobody_in():
    for header in ("Bearer ", "Bearer", ""):
        with pytest.raises(UnauthorizedError):
            require_bearer(header, "")
