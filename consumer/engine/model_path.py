"""What ``DIARIZATION_MODEL`` names: a local pipeline or a hub id, and how results name it.

A pure rule on the setting's text (and whether such a path exists), shared by the engine,
the model fingerprint and the doors, none of which need the engine to apply it.
"""

from __future__ import annotations

from pathlib import Path


def is_local_model(model: str) -> bool:
    """Whether ``model`` names a local pipeline (an existing path, or one written as a path), not a hub id."""
    return Path(model).expanduser().exists() or model.startswith(("/", ".", "~"))


def model_name(model: str) -> str:
    """How results name the model: a hub id as is, a local directory by its name."""
    return Path(model).expanduser().name if is_local_model(model) else model
