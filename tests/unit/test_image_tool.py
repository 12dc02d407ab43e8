"""local-dev/image.py's pure parts: the host's Debian mirror from its APT sources, the lock's pins."""

from __future__ import annotations

from pathlib import Path

from tests.support import local_dev

image = local_dev.load("image")

DEB822 = """\
Types: deb
URIs: http://mirror.example/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://mirror.example/debian-security
Suites: bookworm-security
Components: main
"""


def test_the_mirror_comes_from_the_deb822_stanza_of_the_suite(tmp_path: Path) -> None:
    sources = tmp_path / "debian.sources"
    sources.write_text(DEB822)
    assert image.debian_mirror([sources]) == "http://mirror.example/debian"


def test_the_mirror_comes_from_a_one_line_source_with_options(tmp_path: Path) -> None:
    sources = tmp_path / "sources.list"
    sources.write_text(
        "# deb http://old.example/debian bookworm main\n"
        "deb-src http://src.example/debian bookworm main\n"
        "deb [arch=amd64 signed-by=/k.gpg] http://one.example/debian bookworm main contrib\n"
    )
    assert image.debian_mirror([sources]) == "http://one.example/debian"


def test_no_mirror_where_the_host_has_no_source_of_the_suite(tmp_path: Path) -> None:
    ubuntu = tmp_path / "ubuntu.sources"
    ubuntu.write_text("Types: deb\nURIs: http://archive.example/ubuntu\nSuites: noble noble-updates\n")
    deb_src = tmp_path / "src.sources"
    deb_src.write_text("Types: deb-src\nURIs: http://src.example/debian\nSuites: bookworm\n")
    assert image.debian_mirror([ubuntu, deb_src]) is None


def test_the_lock_pins_are_read_as_wheel_names_spell_them(tmp_path: Path) -> None:
    lock = tmp_path / "runtime.lock"
    lock.write_text(
        "# via pyannote-audio\n"
        "pyannote-audio==4.0.7 \\\n    --hash=sha256:00\n"
        "PyYAML==6.0.3 \\\n    --hash=sha256:11\n"
        "zope.interface==7.2 ; python_version >= '3.8' \\\n    --hash=sha256:22\n"
    )
    assert image.lock_pins(lock) == {("pyannote_audio", "4.0.7"), ("pyyaml", "6.0.3"), ("zope_interface", "7.2")}
