"""pyannote's sample submitted from the page of a shim that requires an API key, then looked at,
listened to, downloaded and exported.

One submission serves the module (a model run each costs seconds to a minute): the tests
below look at the page it left, in file order; the clicking test comes after those that
read the page as first drawn.
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys

from consumer import transcript as transcripts
from consumer.engine import EngineResult, SpeakerTurn
from consumer.formats import rttm_uri, to_rttm
from tests.support.browser import Browser
from tests.support.results_page import KEY_ITEM, Shim, open_page, save_screenshot, wait_for_result

REFUSED_WITHOUT_KEY = r"/v1/diarize - Failed to load resource: the server responded with a status of 401\b"


@dataclass(frozen=True)
class Submission:
    """What submitting the sample did: the key dialog's reasons, and the API's own answer for the file."""

    asked: tuple[str, ...]
    answer: dict[str, Any]


def give_key(browser: Browser, key: str) -> str:
    """Wait for the page to ask for the key, type ``key``; the reason the dialog gave."""
    browser.wait_for("return document.getElementById('key-dialog').open", 60)
    reason = browser.driver.find_element(By.ID, "key-reason").text
    browser.driver.find_element(By.ID, "key-input").send_keys(key)
    browser.driver.find_element(By.ID, "key-use").click()
    # closed, or asking again (a refused key is asked for again at once)
    browser.wait_for(
        "return !document.getElementById('key-dialog').open"
        " || document.getElementById('key-reason').textContent !== arguments[0]",
        30,
        reason,
    )
    return reason


@pytest.fixture(scope="module")
def submitted(browser: Browser, page_shim: Shim, sample, screenshots: Path) -> Iterator[Submission]:
    """The sample submitted from a page holding no key: asked for one, a wrong key refused, the right one used."""
    browser.console()
    open_page(browser, page_shim, None)
    browser.driver.find_element(By.ID, "file").send_keys(str(sample[0]))
    browser.driver.find_element(By.ID, "submit-button").click()
    asked = (give_key(browser, "not-the-key"), give_key(browser, page_shim.key))
    running = browser.wait_for(
        "return document.getElementById('progress-text').textContent.startsWith('Diarizing') ? 'running'"
        " : window.diarizationPage.result !== null && 'done'",
        120,
    )
    if running == "running":  # the submitted file, while the model runs on it
        save_screenshot(browser, "#submit", "page-submitted.png", screenshots)
    wait_for_result(browser)
    assert browser.errors((REFUSED_WITHOUT_KEY,)) == []
    with sample[0].open("rb") as audio:
        answer = requests.post(
            f"{page_shim.base}/v1/diarize", files={"file": audio}, headers=page_shim.auth, timeout=600
        )
    assert answer.status_code == 200, answer.text
    yield Submission(asked, answer.json())


@pytest.fixture
def clean_console(browser: Browser) -> Iterator[None]:
    """No error in the browser's console during the test."""
    browser.console()
    yield
    assert browser.errors() == []


def test_the_page_asks_for_the_key_and_keeps_it_in_the_tab_only(submitted, browser, page_shim, clean_console):
    refusal = requests.post(f"{page_shim.base}/v1/diarize", timeout=30).json()["error"]["message"]
    # asked with the API's own reason; asked again, saying so, when the key given was refused
    assert submitted.asked == (refusal, f"The service refused this key: {refusal}")
    assert browser.js("return sessionStorage.getItem(arguments[0])", KEY_ITEM) == page_shim.key
    assert browser.js("return [localStorage.length, document.cookie]") == [0, ""]
    urls = browser.js("return [location.href, ...performance.getEntriesByType('resource').map((e) => e.name)]")
    assert any(url.endswith("/v1/diarize") for url in urls)
    assert not [url for url in urls if page_shim.key in url or "not-the-key" in url]
    log = page_shim.log.read_text()
    assert '"path": "/v1/diarize", "status": 401' in log and '"status": 200' in log  # the requests were logged ...
    assert page_shim.key not in log and "not-the-key" not in log  # ... and no key with them


def test_the_timeline_draws_every_turn_of_the_answer_at_its_times(submitted, browser, clean_console):
    segments = submitted.answer["segments"]
    rows = browser.js("return window.diarizationPage.timeline.rows()")
    lanes = {row["label"]: row for row in rows if row["kind"] == "speaker"}
    assert len(lanes) == 2 and set(lanes) == {s["speaker"] for s in segments}
    blocks = browser.js("return window.diarizationPage.timeline.drawnBlocks()")
    assert sorted((b["speaker"], b["start"], b["end"]) for b in blocks) == sorted(
        (s["speaker"], s["start"], s["end"]) for s in segments
    )
    view = browser.js("return window.diarizationPage.timeline.viewRange()")
    assert view["start"] == 0 and view["end"] >= max(s["end"] for s in segments)
    for block in blocks:  # each block on the axis at its turn's times, in its speaker's lane
        assert block["x"] == pytest.approx(view["left"] + block["start"] * view["pxPerSecond"], abs=0.01)
        right = view["left"] + block["end"] * view["pxPerSecond"]
        assert block["x"] + block["width"] == pytest.approx(max(right, block["x"] + 1), abs=0.01)
        lane = lanes[block["speaker"]]
        assert lane["y"] <= block["y"] and block["y"] + block["height"] <= lane["y"] + lane["height"]
    # and the canvas holds them there: the speaker's colour inside each block, none in the gaps of its lane
    inside = [
        [(b["x"] + f * b["width"], b["y"] + dy) for f in (0.2, 0.5, 0.8) for dy in (4, 9, 14)]
        for b in blocks
        if b["width"] >= 3
    ]
    assert inside
    assert all(any(_coloured(p) for p in _pixels(browser, points)) for points in inside)
    gaps = []
    for lane in lanes:
        mine = sorted((b for b in blocks if b["speaker"] == lane), key=lambda b: b["x"])
        gaps += [
            ((a["x"] + a["width"] + b["x"]) / 2, a["y"] + 9)
            for a, b in itertools.pairwise(mine)
            if b["x"] - a["x"] - a["width"] > 6
        ]
    assert gaps and not any(_coloured(p) for p in _pixels(browser, gaps))


def test_downloads_are_the_formats_the_api_writes(submitted, browser, clean_console):
    turns = tuple(
        SpeakerTurn(s["start"], s["end"], s["speaker"], s.get("confidence")) for s in submitted.answer["segments"]
    )
    result = EngineResult(turns, (), submitted.answer["num_speakers"], 30.0, 0.0)
    as_transcript = transcripts.from_turns(turns)
    expected = {
        "sample.json": None,
        "sample.rttm": to_rttm(result, rttm_uri("sample.wav")),
        "sample.srt": transcripts.to_srt(as_transcript),
        "sample.vtt": transcripts.to_vtt(as_transcript),
    }
    for button, name in zip(("json", "rttm", "srt", "vtt"), expected, strict=True):
        browser.driver.find_element(By.CSS_SELECTOR, f"[data-save='{button}']").click()
        text = browser.downloaded(name).read_text()
        if name.endswith(".json"):
            assert json.loads(text) == submitted.answer
        else:
            assert text == expected[name]


def test_the_html_export_draws_the_same_timeline_without_the_service(submitted, browser, clean_console):
    browser.driver.find_element(By.CSS_SELECTOR, "[data-save='html']").click()
    export = browser.downloaded("sample.timeline.html")
    html = export.read_text()
    # self-contained: nothing named to fetch, no module imported
    assert not re.search(r"\b(src|href)\s*=|url\(|@import|\bimport\s*[({\"']|https?://", html), html[:2000]
    page = browser.driver.current_window_handle
    browser.driver.switch_to.new_window("tab")
    try:
        browser.driver.get(export.as_uri())
        browser.wait_for("return window.diarizationExport && window.diarizationExport.timeline.stats.draws > 0")
        blocks = browser.js("return window.diarizationExport.timeline.drawnBlocks()")
        assert sorted((b["speaker"], b["start"], b["end"]) for b in blocks) == sorted(
            (s["speaker"], s["start"], s["end"]) for s in submitted.answer["segments"]
        )
        assert browser.js("return performance.getEntriesByType('resource').length") == 0
        assert browser.js("return document.querySelectorAll('audio, video').length") == 0
    finally:
        browser.driver.close()
        browser.driver.switch_to.window(page)


def test_clicking_a_turn_plays_it_and_the_keys_move_between_turns(submitted, browser, screenshots, clean_console):
    turns = browser.js("return window.diarizationPage.result.turns")
    # the longest turn with two after it: playback stays inside it while the test looks
    k = max(range(len(turns) - 2), key=lambda i: turns[i]["end"] - turns[i]["start"])
    box = browser.js("return window.diarizationPage.timeline.box(arguments[0])", k)
    canvas = browser.driver.find_element(By.ID, "timeline")
    size = canvas.size
    x = box["x"] + min(box["width"] / 2, 20) - size["width"] / 2
    y = box["y"] + box["height"] / 2 - size["height"] / 2
    ActionChains(browser.driver).move_to_element_with_offset(canvas, round(x), round(y)).click().perform()
    playing = browser.js(
        "const a = window.diarizationPage.audio; return [a.currentTime, a.paused, window.diarizationPage.selected]"
    )
    assert turns[k]["start"] <= playing[0] <= turns[k]["end"]
    assert playing[1:] == [False, k]  # it plays, from that turn
    assert turns[k]["speaker"] in browser.driver.find_element(By.ID, "now-speaking").text

    ActionChains(browser.driver).send_keys(" ").perform()  # pause
    browser.wait_for("return window.diarizationPage.audio.paused")
    for key, expected in ((Keys.ARROW_RIGHT, k + 1), (Keys.ARROW_RIGHT, k + 2), (Keys.ARROW_LEFT, k + 1)):
        ActionChains(browser.driver).send_keys(key).perform()
        at = browser.js("return [window.diarizationPage.audio.currentTime, window.diarizationPage.selected]")
        assert at == [pytest.approx(turns[expected]["start"], abs=1e-3), expected]
        assert turns[expected]["start"] <= at[0] <= turns[expected]["end"]
    save_screenshot(browser, "#result", "page-timeline.png", screenshots)  # a turn chosen, the cursor on it


def _pixels(browser: Browser, points: list[tuple[float, float]]) -> list[list[int]]:
    """The timeline canvas's RGBA at each point (CSS pixels)."""
    return browser.js(
        "const c = document.getElementById('timeline'); const r = c.width / c.getBoundingClientRect().width;"
        "const g = c.getContext('2d');"
        "return arguments[0].map(([x, y]) => Array.from(g.getImageData(Math.floor(x * r), Math.floor(y * r), 1, 1).data));",
        [list(p) for p in points],
    )


def _coloured(rgba: list[int]) -> bool:
    """A speaker's colour (however pale its confidence makes it), not white, grey or black."""
    r, g, b, _ = rgba
    return max(r, g, b) - min(r, g, b) > 12
