"""Webhook signing and the request-forgery guard of ``consumer.webhooks`` (pure logic)."""

from __future__ import annotations

import ipaddress

import pytest

from consumer.config import Settings, SettingsError, WebhookSettings, webhook_signing_key
from consumer.errors import WebhookUrlRefusedError
from consumer.webhooks import RETRY_DELAYS, check_url, sign

DEFAULTS = WebhookSettings()


def test_the_signature_is_the_reference_librarys_own_test_vector():
    """standard-webhooks/libraries/python/tests/test_webhooks.py, ``test_sign_function``."""
    key = webhook_signing_key("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
    signature = sign(key, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, '{"test": 2432232314}')
    assert signature == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


@pytest.mark.parametrize(
    "value",
    ["MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "whsec_", "whsec_c2hvcnQ=", "whsec_!!!not base64!!!"],
)
def test_a_webhook_secret_that_is_not_a_whsec_secret_stops_the_service(value):
    with pytest.raises(SettingsError, match="WEBHOOK_SECRET"):
        Settings.from_env({"WEBHOOK_SECRET": value})


def test_the_retries_last_about_a_day():
    assert 22 * 3600 < sum(RETRY_DELAYS) < 24 * 3600


def _resolving(table: dict[str, list[str]]):
    def resolve(host: str) -> list[str]:
        if host in table:
            return table[host]
        try:
            return [str(ipaddress.ip_address(host))]
        except ValueError:
            raise WebhookUrlRefusedError(f"the webhook's host {host!r} does not resolve") from None

    return resolve


PUBLIC = _resolving(
    {
        "hooks.example.com": ["93.184.215.14"],
        "rebound.example.com": ["10.0.0.7"],
        "split.example.com": ["93.184.215.14", "10.8.0.9"],
        "kubernetes.default.svc": ["172.30.0.1"],
        "receiver.tools.svc": ["10.8.1.1"],
    }
)


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://hooks.example.com/done", "must be https"),
        ("ftp://hooks.example.com/done", "must be https"),
        ("https://127.0.0.1/done", "non-public address"),
        ("https://[::1]:8443/done", "non-public address"),
        ("https://10.1.2.3/done", "non-public address"),
        ("https://192.168.1.20/done", "non-public address"),
        ("https://172.16.0.1/done", "non-public address"),
        ("https://100.64.0.1/done", "non-public address"),  # carrier-grade NAT
        ("https://169.254.169.254/latest/meta-data", "non-public address"),  # cloud metadata
        ("https://[fd00::1]/done", "non-public address"),
        ("https://0.0.0.0/done", "non-public address"),
        ("https://rebound.example.com/done", "non-public address"),  # a public name, a private address
        ("https://split.example.com/done", "non-public address"),  # every address counts
        ("https://kubernetes.default.svc/api", "cluster-internal"),
        ("https://minio/done", "cluster-internal"),
        ("https://printer.local/done", "cluster-internal"),
        ("https://user:secret@hooks.example.com/done", "credentials"),
        ("https:///done", "no host"),
        ("https://hooks.example.com:99999/done", "not a URL"),
    ],
)
def test_a_url_the_service_must_not_call_is_refused_at_the_defaults(url, reason):
    with pytest.raises(WebhookUrlRefusedError, match=reason) as refused:
        check_url(url, DEFAULTS, PUBLIC)
    assert refused.value.code == "webhook_url_refused" and refused.value.http_status == 400


def test_a_public_https_url_is_taken():
    check_url("https://hooks.example.com/diarization?tenant=7", DEFAULTS, PUBLIC)


def test_the_allow_list_opens_named_hosts_addresses_and_networks_only():
    opened = WebhookSettings(allowed_hosts=frozenset({"127.0.0.1", "receiver.tools.svc", "10.8.0.0/16"}))
    check_url("https://127.0.0.1:9443/hook", opened, PUBLIC)
    check_url("https://receiver.tools.svc/hook", opened, PUBLIC)
    check_url("https://10.8.3.4/hook", opened, PUBLIC)
    check_url("https://receiver.tools.svc/hook", WebhookSettings(allowed_hosts=frozenset({"10.8.0.0/16"})), PUBLIC)
    for url in (
        "https://10.9.0.1/hook",
        "https://[::1]/hook",
        "https://other.tools.svc/hook",
        "https://split.example.com/",
    ):
        with pytest.raises(WebhookUrlRefusedError):
            check_url(url, opened, PUBLIC)
    with pytest.raises(WebhookUrlRefusedError, match="must be https"):
        check_url("http://127.0.0.1:9000/hook", opened, PUBLIC)  # the scheme is a choice of its own
    check_url("http://127.0.0.1:9000/hook", WebhookSettings(allowed_hosts=opened.allowed_hosts, allow_http=True))


def test_a_name_that_does_not_resolve_is_refused():
    def nowhere(host: str) -> list[str]:
        raise WebhookUrlRefusedError(f"the webhook's host {host!r} does not resolve")

    with pytest.raises(WebhookUrlRefusedError, match="does not resolve"):
        check_url("https://no-such-host.example/hook", DEFAULTS, nowhere)
