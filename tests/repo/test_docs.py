"""README's configuration table lists every variable the settings declare, and nothing else."""

from __future__ import annotations

import re
from pathlib import Path

from consumer.config import variables

REPO = Path(__file__).resolve().parents[2]
# Documented in the table, read outside ``Settings``: the reason for each.
NOT_SETTINGS = {
    "CACHE_DIR": "read by consumer.config.cache_dir for the default model, and by make",
    "HF_HUB_OFFLINE": "read by huggingface_hub",
    "GLIBC_TUNABLES": "read by glibc; consumer.memory leaves its policy off where it is set",
}


def documented() -> set[str]:
    """The variables named in the first column of README's "## Configuration" table."""
    readme = (REPO / "README.md").read_text()
    section = readme.split("\n## Configuration\n", 1)[1].split("\n## ", 1)[0]
    rows = [line.split("|")[1] for line in section.splitlines() if line.startswith("| `")]
    return {name for cell in rows for name in re.findall(r"`([A-Z][A-Z0-9_]+)`", cell)}


def declared() -> set[str]:
    """The variables the settings declare."""
    names = {var.name for var in variables()}
    assert len(names) > 40, names
    return names


def test_every_declared_variable_is_in_the_configuration_table():
    assert sorted(declared() - documented()) == []


def test_every_variable_in_the_configuration_table_is_declared():
    assert sorted(documented() - declared() - set(NOT_SETTINGS)) == []
    assert set(NOT_SETTINGS) <= documented() and not set(NOT_SETTINGS) & declared()


def test_readme_starts_with_the_two_commands():
    lines = [line for line in (REPO / "README.md").read_text().splitlines() if line.startswith("make ")]
    assert lines[:2] and lines[0].startswith("make demo") and lines[1].startswith("make test")
    assert "make test" in (REPO / ".ci" / "run").read_text()
