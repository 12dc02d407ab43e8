"""JSON Schemas of every event the service reads or writes, shipped as package data.

Schemas refer to each other by ``$id`` (``definitions.json#/$defs/...``); ``validator``
resolves those references within this package only, never over the network.
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any

from jsonschema import Draft202012Validator
from referencing import Registry, Resource


def names() -> list[str]:
    """Names of all schemas shipped (file names without ``.json``)."""
    return sorted(p.name[: -len(".json")] for p in resources.files(__package__).iterdir() if p.name.endswith(".json"))


@cache
def load(name: str) -> dict[str, Any]:
    """The schema ``<name>.json`` of this package, parsed."""
    return json.loads(resources.files(__package__).joinpath(f"{name}.json").read_text())


@cache
def _registry() -> Registry:
    return Registry().with_resources((f"{name}.json", Resource.from_contents(load(name))) for name in names())


@cache
def validator(name: str) -> Draft202012Validator:
    """A validator for schema ``name`` with the package's cross-references resolved."""
    return Draft202012Validator(load(name), registry=_registry())
