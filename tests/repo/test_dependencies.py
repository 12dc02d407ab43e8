"""Dependencies: pinned to bounded ranges.

Known vulnerabilities are ``make audit``'s (pip-audit over both locks, failing on any package
it could not check): its data comes from services that the machines running ``make test``
may not reach, and an audit that checked nothing must not pass as one that found nothing.
"""

from __future__ import annotations

import configparser
from pathlib import Path

from packaging.requirements import Requirement

REPO = Path(__file__).resolve().parents[2]


def requirements() -> list[Requirement]:
    config = configparser.ConfigParser()
    config.read(REPO / "setup.cfg")
    lines = config["options"]["install_requires"] + config["options.extras_require"]["test"]
    return [Requirement(line) for line in lines.splitlines() if line.strip()]


def test_every_dependency_is_pinned_to_a_bounded_range():
    for requirement in requirements():
        specifiers = list(requirement.specifier)
        bounded = any(s.operator == "<" or (s.operator == "==" and s.version.endswith(".*")) for s in specifiers)
        assert bounded, f"{requirement} has no upper bound"
