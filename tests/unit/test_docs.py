"""The README documents every environment variable the code reads, and nothing it does not."""

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
READ = re.compile(r'_(?:str|int|float|bool)\(\s*env,\s*"([A-Z0-9_]+)"')


def variables_read() -> set[str]:
    return set(READ.findall((REPO / "consumer" / "config.py").read_text()))


def test_every_variable_the_code_reads_is_in_the_readme():
    readme = (REPO / "README.md").read_text()
    documented = set(re.findall(r"`([A-Z][A-Z0-9_]+)`", readme))
    names = variables_read()
    assert len(names) > 40, names
    assert sorted(names - documented) == []


def test_readme_starts_with_the_two_commands():
    lines = [line for line in (REPO / "README.md").read_text().splitlines() if line.startswith("make ")]
    assert lines[:2] and lines[0].startswith("make demo") and lines[1].startswith("make test")
    assert "make test" in (REPO / ".ci" / "run").read_text()
