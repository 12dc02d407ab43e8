"""The results page's routes through Flask's test client: where it is, what it serves, with which headers."""

from __future__ import annotations

import dataclasses
import re

import pytest
from flask import jsonify

from consumer.config import Secret
from http_shim import create_app
from http_shim.results_page import ASSETS


@pytest.fixture(scope="module")
def keyed(analyzer, settings):
    """The app as the public Service runs it: an API key set."""
    with_key = dataclasses.replace(settings, http=dataclasses.replace(settings.http, api_key=Secret("k3y-for-tests")))
    return create_app(analyzer, with_key).test_client()


def test_the_root_and_ui_lead_to_the_page_by_relative_redirects(keyed):
    # relative Locations: behind a path prefix (a proxy, a Route with a path) the prefix is kept
    for path in ("/", "/ui"):
        response = keyed.get(path)
        assert response.status_code == 302 and response.headers["Location"] == "ui/"
    page = keyed.get("/ui/")
    assert page.status_code == 200 and page.mimetype == "text/html"
    assert '<script type="module" src="main.js"></script>' in page.get_data(as_text=True)


def test_the_page_needs_no_key_while_the_api_does(keyed):
    assert keyed.get("/ui/").status_code == 200
    assert keyed.get("/ui/main.js").status_code == 200
    assert keyed.get("/ui/capabilities.json").status_code == 200
    assert keyed.post("/v1/diarize").status_code == 401


def test_every_file_the_page_names_is_served_with_its_type_and_policy(keyed):
    named = referenced_files()
    page_files = {p.name for p in ASSETS.iterdir() if p.suffix in (".html", ".css", ".js", ".svg")}
    assert named == page_files  # every file is used, and every name is a file
    types = {".html": "text/html", ".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml"}
    for name in named:
        response = keyed.get(f"/ui/{name}")
        assert response.status_code == 200, name
        assert response.mimetype == types[name[name.rindex(".") :]] or (
            name.endswith(".js") and response.mimetype == "application/javascript"
        ), (name, response.mimetype)
        policy = response.headers["Content-Security-Policy"]
        assert "script-src 'self'" in policy and "unsafe-inline" not in policy and "unsafe-eval" not in policy
        assert response.headers["X-Content-Type-Options"] == "nosniff"


def test_nothing_outside_the_pages_folder_is_served(keyed):
    for path in ("/ui/../api.py", "/ui/%2e%2e/api.py", "/ui/..%2fapi.py", "/ui/results_page.py", "/ui/nope.js"):
        assert keyed.get(path).status_code == 404, path


def test_capabilities_follow_the_routes(analyzer, settings):
    without = create_app(analyzer, settings).test_client()
    assert without.get("/ui/capabilities.json").get_json() == {
        "jobs": False,
        "max_audio_bytes": settings.audio.max_bytes,
    }
    with_jobs = create_app(analyzer, settings)
    with_jobs.add_url_rule("/v1/jobs", "jobs", lambda: jsonify(jobs=[], next_cursor=None))  # a job door's collection
    assert with_jobs.test_client().get("/ui/capabilities.json").get_json()["jobs"] is True


def referenced_files() -> set[str]:
    """The files the page names: from index.html, then each module's imports and fetches, transitively."""
    found = set()
    todo = ["index.html"]
    while todo:
        name = todo.pop()
        if name in found:
            continue
        found.add(name)
        text = (ASSETS / name).read_text()
        names = re.findall(r'(?:src|href)="([^"#?:]+)"', text) + re.findall(r'from "\./([^"]+)"', text)
        names += re.findall(r'fetch\("([a-z_]+\.[a-z]+)"\)', text)
        todo += [n for n in names if "/" not in n and n != "capabilities.json"]
    return found
