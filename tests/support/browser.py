"""Debian's Chromium driven by selenium through Debian's chromedriver, for the browser tier.

Both binaries are named explicitly and must be there (``make system-deps`` installs the
``chromium`` and ``chromium-driver`` packages): selenium never looks for, or downloads, a
driver or a browser. With the driver's path given, selenium skips Selenium Manager; while
the driver starts (the only time selenium would call it), ``SE_MANAGER_PATH`` also names a
file that does not exist, so a call that still reached Selenium Manager would fail at once
instead of going to the network.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
NO_SELENIUM_MANAGER = "selenium-manager-is-never-used"

# Headless, offline and quiet: no sandbox (tests may run as root), no GPU, no QUIC, no
# first-run, sync, component or background requests to any host.
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1280,1800",  # tall enough for the result and its transcript in one screenshot
    "--autoplay-policy=no-user-gesture-required",
    "--mute-audio",
)


@dataclass
class Browser:
    """One Chromium session: run scripts, wait for the page, read its console."""

    driver: webdriver.Chrome
    downloads: Path
    console_seen: list[dict[str, Any]] = field(default_factory=list)

    def js(self, script: str, *args: Any) -> Any:
        return self.driver.execute_script(script, *args)

    def wait_for(self, script: str, timeout: float = 30, *args: Any) -> Any:
        """Poll ``script`` (a ``return`` expression) until it is truthy; its value."""
        deadline = time.monotonic() + timeout
        while True:
            value = self.js(script, *args)
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"not true after {timeout:.0f} s: {script}\nconsole: {self.console()}")
            time.sleep(0.1)

    def console(self) -> list[dict[str, Any]]:
        """The browser's log entries since the last call (chromedriver hands each out once)."""
        entries = self.driver.get_log("browser")
        self.console_seen += entries
        return entries

    def errors(self, expected: tuple[str, ...] = ()) -> list[str]:
        """Severe entries since the last call, less those matching one of ``expected`` (regular expressions).

        ``expected`` names the answers a test provokes on purpose (a 401, a 415): Chromium
        logs each refused request as a network error.
        """
        return [
            entry["message"]
            for entry in self.console()
            if entry["level"] == "SEVERE" and not any(re.search(pattern, entry["message"]) for pattern in expected)
        ]

    def downloaded(self, name: str, timeout: float = 15) -> Path:
        """The file ``name`` once Chromium has finished writing it to the downloads folder."""
        path = self.downloads / name
        deadline = time.monotonic() + timeout
        while not path.is_file() or (self.downloads / f"{name}.crdownload").exists():
            if time.monotonic() > deadline:
                raise AssertionError(f"{name} was not downloaded: {sorted(p.name for p in self.downloads.iterdir())}")
            time.sleep(0.1)
        return path


@contextmanager
def chromium(profile: Path, downloads: Path) -> Iterator[Browser]:
    """A headless Chromium on a fresh profile, downloads going to ``downloads``."""
    for binary, package in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")):
        if not binary.is_file():
            raise AssertionError(f"{binary} is missing: install Debian's {package} (make system-deps)")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (*FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    options.add_experimental_option(
        "prefs", {"download.default_directory": str(downloads), "download.prompt_for_download": False}
    )
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SE_MANAGER_PATH", str(profile / NO_SELENIUM_MANAGER))
        driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
    try:
        yield Browser(driver, downloads)
    finally:
        driver.quit()
