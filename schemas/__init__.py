"""JSON Schemas of every event the service reads or writes, shipped as package data."""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any


@cache
def load(name: str) -> dict[str, Any]:
    """The schema ``<name>.json`` of this package, parsed."""
    return json.loads(resources.files(__package__).joinpath(f"{name}.json").read_text())


def names() -> list[str]:
    """Names of all schemas shipped."""
    return sorted(p.name[: -len(".json")] for p in resources.files(__package__).iterdir() if p.name.endswith(".json"))
