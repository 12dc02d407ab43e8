"""The results page's files: within their size budget, relative URLs only, nothing from another host,
and carried by the wheel the image installs."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from http_shim.results_page import ASSETS

REPO = Path(__file__).resolve().parents[2]
BUDGET = 100 * 1024  # bytes, every file of the page together, uncompressed (README, "The results page")
PAGE_FILES = (".html", ".css", ".js", ".svg")
# The one absolute URL allowed: SVG's namespace, a name that is never fetched.
SVG_NAMESPACE = "http://www.w3.org/2000/svg"


def page_files() -> list[Path]:
    return sorted(p for p in ASSETS.iterdir() if p.suffix in PAGE_FILES)


def test_the_page_weighs_less_than_its_budget():
    sizes = {p.name: p.stat().st_size for p in page_files()}
    assert sum(sizes.values()) <= BUDGET, sizes


def test_every_url_in_the_page_is_relative_and_on_this_host():
    for path in page_files():
        text = path.read_text().replace(SVG_NAMESPACE, "")
        assert not re.search(r"(?i)\b(?:https?:|wss?:|ftp:)?//[a-z0-9]", text), f"{path.name} names another host"
        # a leading slash would drop the path the Route or a proxy serves the shim under
        absolute = re.findall(
            r"""(?:src|href|action)\s*=\s*["']/|(?:fetch|new URL|open)\(\s*[`"']/|from\s+["']/""", text
        )
        assert not absolute, f"{path.name}: {absolute}"


def test_the_wheel_carries_the_page(tmp_path):
    # the image installs the project as a wheel: the page's files must be in it, not only the modules
    for name in ("setup.cfg", "pyproject.toml", "README.md", "MANIFEST.in"):
        shutil.copy(REPO / name, tmp_path / name)
    for package in ("consumer", "http_shim", "schemas"):
        shutil.copytree(REPO / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__"))
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", ".", "-w", "dist"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert built.returncode == 0, built.stderr[-3000:]
    (wheel,) = (tmp_path / "dist").glob("*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {f"http_shim/results_page_assets/{p.name}" for p in page_files()} <= names
