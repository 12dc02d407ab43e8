"""One object-key rule: ``is_acceptable_key`` agrees with the schema's ``key`` pattern."""

from __future__ import annotations

import pytest

import schemas
from consumer.events import is_acceptable_key

KEYS = [
    "a.wav",
    "calls/2024/call 1.wav",
    "..a/b..",
    "a/.b",
    ".hidden",
    "k" * 1024,
    "ünïcode/ключ.wav",
    "a%2F..%2Fb",
    "",
    "k" * 1025,
    "../x",
    "a/../b",
    "a/./b",
    ".",
    "..",
    "a/..",
    "./a",
    "bad\x00key",
    "tab\tkey",
    "del\x7fkey",
    "trailing\n",
    "cr\rkey",
]


@pytest.mark.parametrize("key", KEYS)
def test_the_rule_and_the_schema_agree(key):
    validator = schemas.validator("audio-uploaded")
    schema_accepts = validator.is_valid({"bucket": "audio", "key": key})
    assert is_acceptable_key(key) is schema_accepts, key


def test_the_corpus_has_both_answers():
    assert {is_acceptable_key(k) for k in KEYS} == {True, False}
