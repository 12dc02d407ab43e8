"""The results page under test: the shim that serves it, a freshly loaded page, what its console may hold."""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from selenium.webdriver.common.by import By

from tests.support.browser import Browser

KEY_ITEM = "diarization-api-key"  # where the page keeps the key (api.js), in sessionStorage
RESULT_TIMEOUT = 600.0  # one model run, on a busy two-core machine included


@dataclass(frozen=True)
class Shim:
    """The shim under test: its address, its API key and its log."""

    base: str
    key: str
    log: Path

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}


def open_page(browser: Browser, shim: Shim, key: str | None) -> None:
    """Load the page from the shim's root (its redirect included), with ``key`` in the tab's session or none.

    From then on, the page's long tasks (over 50 ms each) are collected in ``window.longTasks``.
    """
    browser.driver.get(f"{shim.base}/")
    browser.wait_for("return document.body.dataset.ready === 'true'")
    browser.js(
        "sessionStorage.clear(); if (arguments[0]) sessionStorage.setItem(arguments[1], arguments[0]);", key, KEY_ITEM
    )
    browser.js(
        "window.longTasks = [];"
        "new PerformanceObserver((list) => list.getEntries().forEach((e) => window.longTasks.push(e.duration)))"
        ".observe({type: 'longtask'});"
    )


def wait_for_result(browser: Browser, timeout: float = RESULT_TIMEOUT) -> None:
    """Until the page shows a result; fails with the page's error when it shows one instead."""
    browser.wait_for(
        "return window.diarizationPage.result !== null || !document.getElementById('error').hidden", timeout
    )
    error = browser.driver.find_element(By.ID, "error")
    assert not error.is_displayed(), error.text


@dataclass
class Page:
    """The browser on a freshly loaded page, and the refusals the test provokes on purpose."""

    browser: Browser
    shim: Shim
    expected: list[str] = field(default_factory=list)

    def expect_refusal(self, path: str, status: int) -> None:
        """Chromium logs each refused request as an error: this one is the test's doing."""
        self.expected.append(
            rf"{re.escape(path)} - Failed to load resource: the server responded with a status of {status}\b"
        )

    def check_console(self) -> None:
        """No error in the browser's console but the expected refusals."""
        errors = self.browser.errors(tuple(self.expected))
        assert errors == [], f"errors in the browser's console: {errors}"


def save_screenshot(browser: Browser, selector: str, name: str, folder: Path) -> Path:
    """A PNG of one element of the page, in 256 colours (about 20 KB), into ``folder``.

    With ``SCREENSHOTS_DIR`` set (``make screenshots`` sets it to docs/), a copy goes there too.
    """
    from PIL import Image

    path = folder / name
    browser.driver.find_element(By.CSS_SELECTOR, selector).screenshot(str(path))
    with Image.open(path) as shot:
        shot.convert("RGB").quantize(colors=256, method=Image.Quantize.FASTOCTREE).save(path, optimize=True)
    target = os.environ.get("SCREENSHOTS_DIR")
    if target:
        shutil.copyfile(path, Path(target) / name)
    return path
