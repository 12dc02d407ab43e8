"""Dependencies: pinned to bounded ranges, and no version with a known vulnerability.

pip-audit asks PyPI's vulnerability data about every installed package. Where that data
cannot be reached (an offline or filtered network), the audit cannot say anything: the
test then passes with a warning naming what went unaudited, instead of failing the suite
for a network it does not control. A vulnerability it does find always fails.

Tier tests/repo: runs pip-audit, which queries PyPI over the network.
"""

from __future__ import annotations

import configparser
import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

from packaging.requirements import Requirement

from consumer.config import cache_dir

REPO = Path(__file__).resolve().parents[2]
# Known findings that do not apply to this service, with the reason. Empty on purpose.
ACCEPTED: dict[str, str] = {}


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


def test_no_installed_dependency_has_a_known_vulnerability():
    cache = cache_dir(os.environ) / "pip-audit"
    result = subprocess.run(
        [sys.executable, "-m", "pip_audit", "--format", "json", "--progress-spinner", "off", "--cache-dir", str(cache)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.stdout.strip(), f"pip-audit produced no report (exit {result.returncode}):\n{result.stderr[-2000:]}"
    report = json.loads(result.stdout)
    dependencies = report["dependencies"]
    found = [
        f"{d['name']} {d['version']}: {v['id']} (fixed in {', '.join(v.get('fix_versions') or ['-'])})"
        for d in dependencies
        for v in d.get("vulns", [])
        if v["id"] not in ACCEPTED
    ]
    assert not found, "known vulnerabilities:\n" + "\n".join(found)
    unaudited = sorted(d["name"] for d in dependencies if d.get("skip_reason"))
    audited = len(dependencies) - len(unaudited)
    print(f"pip-audit: {audited} of {len(dependencies)} packages audited, {len(found)} known vulnerabilities")
    if unaudited:
        warnings.warn(
            f"pip-audit could not audit {len(unaudited)} of {len(dependencies)} installed packages "
            f"(the vulnerability database was not reachable for them: {', '.join(unaudited[:8])}"
            f"{', ...' if len(unaudited) > 8 else ''}); their versions are unchecked",
            stacklevel=1,
        )
