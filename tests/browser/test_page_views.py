"""The results page on its own: a refused upload, a four-hour result, a transcript following playback."""

from __future__ import annotations

import json
import random

from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.actions.wheel_input import ScrollOrigin
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys

from consumer import transcript as transcripts
from consumer.engine import EngineResult, SpeakerTurn
from consumer.formats import rttm_uri, to_rttm
from tests.support.dense_result import dense_completed
from tests.support.results_page import Page, save_screenshot, wait_for_result
from tests.support.spoken_words import spoken_conversation, verbose_json

FOUR_HOUR_TURNS = 12_500  # a dense four-hour meeting: a turn every 1.15 s


def test_a_text_file_is_refused_with_the_apis_code(page: Page, tmp_path):
    notes = tmp_path / "meeting-notes.txt"
    notes.write_text("Minutes of the meeting. Present: Ada, Linus. Nothing was decided.\n" * 50)
    page.expect_refusal("/v1/diarize", 415)
    driver = page.browser.driver
    driver.find_element(By.ID, "file").send_keys(str(notes))
    driver.find_element(By.ID, "submit-button").click()
    page.browser.wait_for("return !document.getElementById('error').hidden", 120)
    assert driver.find_element(By.ID, "error-code").text == "not_audio"
    assert driver.find_element(By.ID, "error-message").text  # the API's message, shown beside its code
    assert page.browser.js("return window.diarizationPage.result") is None


def test_a_four_hour_result_draws_and_scrolls_without_a_long_task_over_a_second(page: Page, tmp_path):
    document = dense_completed(FOUR_HOUR_TURNS).document
    rng = random.Random(11)
    for segment in document["segments"]:  # as the engine scores them: some doubtful, most clear
        segment["confidence"] = round(rng.betavariate(4, 1.2), 3)
    path = tmp_path / "4h-meeting.json"
    path.write_text(json.dumps(document))
    browser = page.browser
    driver = browser.driver
    driver.find_element(By.ID, "result-file").send_keys(str(path))
    browser.wait_for(
        "const p = window.diarizationPage; return p.result && p.result.turns.length === arguments[0]"
        " && p.timeline.stats.draws > 0",
        60,
        FOUR_HOUR_TURNS,
    )
    assert browser.js("return window.diarizationPage.timeline.drawnCount") == FOUR_HOUR_TURNS  # the whole file in view
    canvas = driver.find_element(By.ID, "timeline")
    origin = ScrollOrigin.from_element(canvas)
    for _ in range(6):  # the wheel zooms in about the pointer ...
        ActionChains(driver).scroll_from_origin(origin, 0, -300).perform()
    zoomed = browser.wait_for(
        "const v = window.diarizationPage.timeline.viewRange(); return v.end - v.start < 600 && v"
    )
    in_view = browser.wait_for("const n = window.diarizationPage.timeline.drawnCount; return n < 1000 && n")
    for _ in range(12):  # ... sideways it pans
        ActionChains(driver).scroll_from_origin(origin, 1500, 0).perform()
    panned = browser.wait_for(
        "const v = window.diarizationPage.timeline.viewRange(); return v.start > arguments[0] && v", 10, zoomed["start"]
    )
    browser.js("document.getElementById('timeline').focus()")
    for key in [Keys.PAGE_DOWN] * 20 + [Keys.END, "-", "-", Keys.HOME, "+", "+", "+", Keys.PAGE_DOWN, "0"]:
        ActionChains(driver).send_keys(key).perform()
    browser.wait_for("return window.diarizationPage.timeline.drawnCount === arguments[0]", 10, FOUR_HOUR_TURNS)
    long_tasks = browser.js("return window.longTasks")
    stats = browser.js("return window.diarizationPage.timeline.stats")
    # zoomed in, it drew only the turns in view (about 400 s of 4 h); panned, the view moved on
    assert 0 < in_view < FOUR_HOUR_TURNS / 20 and panned["start"] > zoomed["start"] > 0
    assert max(long_tasks, default=0) < 1000, (long_tasks, stats)


def test_downloads_of_an_opened_result_are_written_as_the_service_writes_them(page: Page, tmp_path):
    # times whose rounding differs between JavaScript's and Python's rules: exact binary ties
    # (0.0625 s is 62.5 ms; 1.4375 has a 5 in its fourth decimal), values a hair off a tie
    times = [(0.0625, 0.1875), (0.0005, 1.4375), (2.0015, 3.0625), (3.1, 4.0005), (4.25, 7.3125), (7.5, 9.999)]
    segments = [
        {"start": start, "end": end, "speaker": f"SPEAKER_0{i % 2}", "confidence": 0.5}
        for i, (start, end) in enumerate(times)
    ]
    texts = ["Hello <there> & welcome", "", "Tom & Jerry", "a < b > c", "  spaced  ", "last"]
    transcript = {
        "segments": [
            {"start": s["start"], "end": s["end"], "speaker": s["speaker"], "text": text}
            for s, text in zip(segments, texts, strict=True)
        ],
        "words": [],
    }
    document = {"segments": segments, "num_speakers": 2, "object": {"bucket": "audio", "key": "calls/team meeting.wav"}}
    plain = tmp_path / "plain.json"
    plain.write_text(json.dumps(document))
    worded = tmp_path / "worded.json"
    worded.write_text(
        json.dumps({**document, "object": {"bucket": "audio", "key": "calls/with words.mp3"}, "transcript": transcript})
    )
    turns = tuple(SpeakerTurn(s["start"], s["end"], s["speaker"], s["confidence"]) for s in segments)
    said = transcripts.Transcript(
        tuple(transcripts.Segment(s["start"], s["end"], s["text"], (), s["speaker"]) for s in transcript["segments"])
    )
    expected = {
        "team_meeting.rttm": to_rttm(EngineResult(turns, (), 2, 10.0, 0.0), rttm_uri("calls/team meeting.wav")),
        "team_meeting.srt": transcripts.to_srt(transcripts.from_turns(turns)),
        "team_meeting.vtt": transcripts.to_vtt(transcripts.from_turns(turns)),
        "with_words.srt": transcripts.to_srt(said),
        "with_words.vtt": transcripts.to_vtt(said),
    }
    driver = page.browser.driver
    for opened in (plain, worded):
        driver.find_element(By.ID, "result-file").send_keys(str(opened))
        page.browser.wait_for(
            "return window.diarizationPage.result && window.diarizationPage.result.name === arguments[0]",
            10,
            json.loads(opened.read_text())["object"]["key"],
        )
        for kind in ("rttm", "srt", "vtt") if opened is plain else ("srt", "vtt"):
            driver.find_element(By.CSS_SELECTOR, f"[data-save='{kind}']").click()
    for name, text in expected.items():
        assert page.browser.downloaded(name).read_text() == text, name


def test_the_transcript_follows_playback(page: Page, tmp_path, screenshots):
    wav = tmp_path / "conversation.wav"
    sentences = spoken_conversation(wav)
    words = tmp_path / "conversation.verbose.json"
    words.write_text(json.dumps(verbose_json(sentences)))
    driver = page.browser.driver
    driver.find_element(By.ID, "file").send_keys(str(wav))
    driver.find_element(By.ID, "transcript-file").send_keys(str(words))
    driver.find_element(By.ID, "submit-button").click()
    wait_for_result(page.browser)
    answered = page.browser.js("return window.diarizationPage.result.source.transcript.segments")
    rows = page.browser.js(
        "return Array.from(document.querySelectorAll('#transcript .line'),"
        " (r) => [r.dataset.speaker, r.querySelector('.text').textContent])"
    )
    assert rows == [[s["speaker"], s["text"]] for s in answered]
    assert [text for _, text in rows] == [s.text for s in sentences]
    assert len({speaker for speaker, _ in rows}) >= 2
    for k in (len(answered) // 2, 1):  # forwards and back
        segment = answered[k]
        middle = (segment["start"] + segment["end"]) / 2
        page.browser.js("window.diarizationPage.audio.currentTime = arguments[0]", middle)
        current = page.browser.wait_for(
            "const r = document.querySelector('#transcript .line.current');"
            "return r && r.dataset.index === String(arguments[0]) && r.querySelector('.said') && r",
            10,
            k,
        )
        said = current.find_element(By.CSS_SELECTOR, ".said").text
        spoken = [w for w in sentences[k].words if w.start <= middle]
        assert said == spoken[-1].text  # the word being said, highlighted
    save_screenshot(page.browser, "#result", "page-transcript.png", screenshots)
