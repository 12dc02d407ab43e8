"""Weigh the results page and time its timeline in Chromium on long results.

Prints the page's files (bytes, and gzipped for comparison: the shim sends them as they
are) and, for results of 1, 4 and 8 hours as the service stores them (dense: a turn every
1.15 s among 12 speakers, a confidence on every turn; ``tests/support/dense_result.py``),
opened in the page as a result document the way a user opens one:

- ``open``: reading, parsing and laying out the document, up to the page showing it;
- ``first frame``: drawing the whole file once (every turn is in view);
- ``frames``: redrawing while playback moves the cursor over the whole file, and while
  zoomed to ten minutes and panned from the start to the end (mean / max per frame);
- the longest task the page ran (PerformanceObserver ``longtask``; none means none over 50 ms).

The page's files are served by a static file server from a copy of
``http_shim/results_page_assets`` (no model is needed to draw a result). Debian's
``chromium`` and ``chromium-driver`` as the browser tier uses them.

    PYTHONPATH=. $CACHE_DIR/venv/bin/python bench/results_page.py [--hours 1 4 8]
"""

from __future__ import annotations

import argparse
import functools
import gzip
import json
import random
import shutil
import tempfile
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from selenium.webdriver.common.by import By

from http_shim.results_page import ASSETS
from tests.support.browser import chromium
from tests.support.dense_result import dense_completed

TURN_EVERY = 14_400 / 12_500  # seconds: the dense four-hour result's pace

FRAMES = """
const done = arguments[arguments.length - 1];
const t = window.diarizationPage.timeline;
const frame = () => new Promise((resolve) => requestAnimationFrame(() => requestAnimationFrame(resolve)));
const times = { whole: [], zoomed: [] };
(async () => {
  t.fit();
  await frame();
  for (let i = 0; i <= 60; i++) {  // playback over the whole file: the cursor moves, every turn in view
    t.setTime((t.duration * i) / 60);
    await frame();
    times.whole.push(t.stats.lastMs);
  }
  t.fit();
  t.zoom(t.duration / 600, 0);
  await frame();
  const span = t.plotWidth / t.pps;
  for (let s = 0; s < t.duration; s += span / 2) {  // ten minutes in view, panned to the end
    t.panBy(span / 2);
    await frame();
    times.zoomed.push(t.stats.lastMs);
  }
  done(times);
})();
"""


def page_copy(folder: Path) -> Path:
    """The page's files under ``folder/ui`` with the capabilities a shim without a job door gives."""
    ui = folder / "ui"
    shutil.copytree(ASSETS, ui, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    (ui / "capabilities.json").write_text(json.dumps({"jobs": False, "max_audio_bytes": 536870912}))
    return ui


def weigh() -> None:
    print("file               bytes   gzipped")
    total = zipped = 0
    for path in sorted(p for p in ASSETS.iterdir() if p.suffix in (".html", ".css", ".js", ".svg")):
        size, small = path.stat().st_size, len(gzip.compress(path.read_bytes(), 9))
        total, zipped = total + size, zipped + small
        print(f"{path.name:16} {size:7d} {small:9d}")
    print(f"{'total':16} {total:7d} {zipped:9d}\n")


def result_file(hours: float, folder: Path) -> tuple[Path, int]:
    """A dense result of ``hours`` hours with confidences, written as JSON; the path and its turn count."""
    turns = round(hours * 3600 / TURN_EVERY)
    document = dense_completed(turns).document
    rng = random.Random(11)
    for segment in document["segments"]:
        segment["confidence"] = round(rng.betavariate(4, 1.2), 3)
    path = folder / f"{hours:g}h.json"
    path.write_text(json.dumps(document))
    return path, turns


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hours", type=float, nargs="+", default=[1, 4, 8])
    args = parser.parse_args()
    weigh()
    with tempfile.TemporaryDirectory() as temp:
        folder = Path(temp)
        page_copy(folder)
        handler = functools.partial(_QuietHandler, directory=str(folder))
        server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        url = f"http://127.0.0.1:{server.server_address[1]}/ui/"
        print(
            "result   turns  JSON MB   open ms  first frame ms  whole-file frames ms  zoomed frames ms  longest task ms"
        )
        with chromium(folder / "profile", folder / "downloads") as browser:
            browser.driver.set_script_timeout(300)
            for hours in args.hours:
                path, turns = result_file(hours, folder)
                browser.driver.get(url)
                browser.wait_for("return document.body.dataset.ready === 'true'")
                browser.js(
                    "window.longTasks = []; new PerformanceObserver((l) => l.getEntries()"
                    ".forEach((e) => window.longTasks.push(e.duration))).observe({type: 'longtask'});"
                )
                browser.driver.find_element(By.ID, "result-file").send_keys(str(path))
                browser.wait_for("return window.diarizationPage.timeline.stats.draws > 0", 120)
                opened = browser.js("return performance.getEntriesByName('result-opened').at(-1).duration")
                first = browser.js("return window.diarizationPage.timeline.stats.lastMs")
                frames = browser.driver.execute_async_script(FRAMES)
                longest = max(browser.js("return window.longTasks"), default=0)
                whole, zoomed = frames["whole"], frames["zoomed"]
                print(
                    f"{hours:>4g} h {turns:7d} {path.stat().st_size / 1e6:8.1f} {opened:9.0f} {first:15.1f}"
                    f"   {sum(whole) / len(whole):7.1f} / {max(whole):6.1f}   {sum(zoomed) / len(zoomed):6.1f} / {max(zoomed):5.1f}"
                    f"   {longest:12.0f}"
                )
        server.shutdown()


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


if __name__ == "__main__":
    main()
