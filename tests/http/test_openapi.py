"""The OpenAPI document against the app's real routes, and the Swagger UI page's files, through Flask's test client."""

from __future__ import annotations

import dataclasses
import re
from html.parser import HTMLParser
from typing import Any

import pytest
from flask import Flask

from consumer import errors
from consumer.config import Secret, Settings
from consumer.wiring import build_service
from http_shim import create_app
from http_shim.errors import HTTP_CODES
from http_shim.openapi import PAGES, openapi_path
from tests.support.credentials import RECEIVER_TOKEN

# Flask answers these for every rule by itself (HEAD like GET, OPTIONS with Allow).
AUTOMATIC_METHODS = {"HEAD", "OPTIONS"}
HTTP_METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}


def _app(settings: Settings, receiver: bool, jobs: bool = False, **http: Any) -> Flask:
    """The app on the service as the shim builds it (its engine not loaded: routes need no model)."""
    configured = dataclasses.replace(
        settings,
        http=dataclasses.replace(settings.http, jobs_enabled=jobs, **http),
        receiver=dataclasses.replace(settings.receiver, enabled=receiver, token=Secret(RECEIVER_TOKEN)),
    )
    service = build_service(configured)
    return create_app(service.analyzer, configured, service.event_job, service.jobs)


def _routes(app: Flask) -> set[tuple[str, str]]:
    return {
        (rule.rule, method)
        for rule in app.url_map.iter_rules()
        for method in (rule.methods or set()) - AUTOMATIC_METHODS
    }


def _operations(document: dict[str, Any]) -> set[tuple[str, str]]:
    return {
        (path, method.upper()) for path, item in document["paths"].items() for method in item if method in HTTP_METHODS
    }


@pytest.mark.parametrize(
    ("receiver", "jobs"), [(True, False), (False, False), (False, True)], ids=["receiver", "public", "jobs"]
)
def test_every_route_is_an_operation_and_every_operation_a_route(settings, receiver, jobs):
    app = _app(settings, receiver, jobs)
    document = app.test_client().get("/openapi.json").get_json()
    routes = _routes(app)
    assert PAGES <= routes, PAGES - routes  # every page named is one the app serves
    api_routes = {(openapi_path(rule), method) for rule, method in routes - PAGES}
    operations = _operations(document)
    assert api_routes - operations == set(), "routes without an operation"
    assert operations - api_routes == set(), "operations without a route"
    assert (("/", "POST") in operations) is receiver
    assert (("/v1/jobs", "POST") in operations) is jobs


def test_the_document_and_its_page_are_public_while_the_api_is_not(settings):
    client = _app(settings, receiver=False).test_client()
    assert client.get("/openapi.json").status_code == 200
    assert client.get("/docs").status_code == 200
    assert client.post("/v1/diarize").status_code == 401
    document = client.get("/openapi.json").get_json()
    keyed = {op for op in _operations(document) if document["paths"][op[0]][op[1].lower()].get("security")}
    assert keyed == {
        ("/v1/diarize", "POST"),
        ("/v1/vad", "POST"),
        ("/v1/voiceprints", "POST"),
        ("/v1/audio/diarization", "POST"),
        ("/metrics", "GET"),
    }
    # what the key guards answers 401 without it, and documents that 401
    for path, method in keyed:
        assert client.open(path, method=method).status_code == 401, path
        assert "401" in document["paths"][path][method.lower()]["responses"], path


def test_an_open_api_documents_no_key(settings):
    client = _app(settings, receiver=False, api_key=Secret(""), api_auth="none").test_client()
    document = client.get("/openapi.json").get_json()
    for path, method in _operations(document):
        operation = document["paths"][path][method.lower()]
        assert "security" not in operation and "401" not in operation["responses"], path


def test_the_receiver_takes_the_sender_token_not_the_api_key(settings):
    app = _app(settings, receiver=True)
    document = app.test_client().get("/openapi.json").get_json()
    assert document["paths"]["/"]["post"]["security"] == [{"senderToken": []}]
    assert document["components"]["securitySchemes"]["senderToken"]["scheme"] == "bearer"


def test_every_documented_error_code_is_one_the_service_has(settings):
    document = _app(settings, receiver=True, jobs=True).test_client().get("/openapi.json").get_json()
    known = {(cls.http_status, cls.code) for cls in _subclasses(errors.ServiceError)}
    known |= {(status, code) for status, code in HTTP_CODES.items()}
    known |= {(400, "incomplete_body"), (503, "incomplete_body")}  # a body cut off: the sync API's and the receiver's
    documented = set()
    for path, method in _operations(document):
        for status, response in document["paths"][path][method.lower()]["responses"].items():
            schema = response.get("content", {}).get("application/json", {}).get("schema", {})
            if schema.get("allOf") == [{"$ref": "#/components/schemas/Error"}]:
                codes = schema["properties"]["error"]["properties"]["code"]["enum"]
                documented |= {(int(status), code) for code in codes}
    assert documented and documented <= known, documented - known
    # every error an analysis can end in is documented on the sync API
    diarize = document["paths"]["/v1/diarize"]["post"]["responses"]
    for cls in (errors.NotAudioError, errors.AudioTooLongError, errors.BusyError, errors.InferenceError):
        assert (
            cls.code
            in diarize[str(cls.http_status)]["content"]["application/json"]["schema"]["properties"]["error"][
                "properties"
            ]["code"]["enum"]
        )


class _References(HTMLParser):
    """Every ``src`` and ``href`` of a page, and whether it has inline scripts."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self.inline_scripts = 0
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        named = dict(attrs)
        self.urls += [value for name, value in attrs if name in ("src", "href") and value]
        self._in_script = tag == "script" and "src" not in named

    def handle_data(self, data: str) -> None:
        if self._in_script and data.strip():
            self.inline_scripts += 1

    def handle_endtag(self, tag: str) -> None:
        self._in_script = False


def test_the_docs_page_loads_only_its_own_files_from_the_shim(settings):
    client = _app(settings, receiver=False).test_client()
    page = client.get("/docs")
    assert page.status_code == 200 and page.mimetype == "text/html"
    references = _References()
    references.feed(page.get_data(as_text=True))
    assert references.urls and references.inline_scripts == 0
    for url in references.urls:
        # relative to /docs, so the page works under any path prefix: no scheme, no host, no root
        assert not re.match(r"^([a-z][a-z0-9+.-]*:|/)", url, re.IGNORECASE), url
        served = client.get(f"/{url}")
        assert served.status_code == 200 and served.data, url
    policy = page.headers["Content-Security-Policy"]
    assert "script-src 'self'" in policy and "unsafe-eval" not in policy and "connect-src 'self'" in policy
    script_src = next(part for part in policy.split("; ") if part.startswith("script-src"))
    assert "unsafe-inline" not in script_src
    # the initializer asks for the document relatively, and for no validator badge from another host
    initializer = client.get("/docs/swagger-initializer.js").get_data(as_text=True)
    assert 'url: "openapi.json"' in initializer and "validatorUrl: null" in initializer
    assert client.get("/docs/../openapi.py").status_code == 404


def _subclasses(cls: type) -> list[type]:
    found = [cls]
    for sub in cls.__subclasses__():
        found += _subclasses(sub)
    return found
