"""``/docs``: Swagger UI, served by the shim itself, renders the shim's own OpenAPI document in Chromium."""

from __future__ import annotations

import requests

from tests.support.browser import Browser
from tests.support.results_page import Shim


def test_the_docs_page_shows_every_operation_of_the_document(browser: Browser, page_shim: Shim) -> None:
    document = requests.get(f"{page_shim.base}/openapi.json", timeout=10).json()
    expected = sorted(
        f"{method.upper()} {path}"
        for path, item in document["paths"].items()
        for method in item
        if method != "parameters"
    )
    browser.console()  # what earlier tests left
    browser.driver.get(f"{page_shim.base}/docs")
    shown = browser.wait_for(
        "const blocks = [...document.querySelectorAll('.opblock-summary')];"
        "return blocks.length >= arguments[0] && blocks.map((b) =>"
        " b.querySelector('.opblock-summary-method').textContent.trim() + ' ' +"
        " b.querySelector('.opblock-summary-path').dataset.path);",
        60,
        len(expected),
    )
    assert sorted(shown) == expected
    assert browser.js("return document.querySelector('.info .title').textContent").startswith(document["info"]["title"])
    # every file came from the shim, and nothing was refused by the page's policy or failed to load
    hosts = browser.js("return [...new Set(performance.getEntriesByType('resource').map((e) => new URL(e.name).host))]")
    assert hosts == [page_shim.base.removeprefix("http://")], hosts
    assert browser.errors() == []
