"""The browser tier: the results page in Debian's Chromium, against the real shim on the real model.

One shim (gunicorn, the offline bundle, an API key set, as a public deployment runs it) and
one browser serve the whole tier; each test starts from a freshly loaded page.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.browser import Browser, chromium
from tests.support.processes import free_port, start_module, stop, wait_http
from tests.support.results_page import Page, Shim, open_page


@pytest.fixture(scope="session")
def page_shim(tmp_path_factory: pytest.TempPathFactory, settings) -> Iterator[Shim]:
    """``diarization-shim`` on loopback with ``API_KEY`` set."""
    port = free_port()
    key = secrets.token_urlsafe(18)
    log = tmp_path_factory.mktemp("page-shim") / "shim.log"
    env = {
        "PORT": str(port),
        "HOST": "127.0.0.1",
        "DIARIZATION_MODEL": settings.engine.model,
        "HTTP_THREADS": "4",
        "API_KEY": key,
        "RECEIVER_ENABLED": "false",  # the public Service, which serves the page, has no receiver
    }
    process = start_module("http_shim.server", env, log)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{base}/health", process, timeout=120, log=log)
        wait_http(f"{base}/ready", process, timeout=600, log=log)
        yield Shim(base, key, log)
    finally:
        stop(process)


@pytest.fixture(scope="session")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Browser]:
    """One headless Chromium for the tier."""
    with chromium(tmp_path_factory.mktemp("chromium-profile"), tmp_path_factory.mktemp("downloads")) as session:
        yield session


@pytest.fixture(scope="session")
def screenshots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the tier's screenshots go (and, with SCREENSHOTS_DIR, a copy there)."""
    return tmp_path_factory.mktemp("screenshots")


@pytest.fixture
def page(browser: Browser, page_shim: Shim) -> Iterator[Page]:
    """A fresh page holding the API key, as after the user gave it; its console is checked afterwards."""
    browser.console()
    open_page(browser, page_shim, page_shim.key)
    checked = Page(browser, page_shim)
    yield checked
    checked.check_console()
