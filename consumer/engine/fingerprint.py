"""What a model is, by content: a hash of its configuration and weight files.

Stored results are reused only for the same model (``consumer.event_job.result_digest``).
A name says too little: a rebuilt or replaced bundle keeps its directory's name. So the
fingerprint hashes the files themselves: every file of a local pipeline directory (its
``config.yaml`` and model folders), or, for a hub id, every file of the snapshot the HF
cache resolves it to (the same files ``Pipeline.from_pretrained`` loaded). Documentation
files (``*.md``, ``LICENSE*``) do not count. Torch is never imported here.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable
from pathlib import Path

from consumer.engine.model_path import is_local_model
from consumer.errors import ModelLoadError

_CHUNK = 1024 * 1024
_DOCUMENTATION = ("LICENSE", "NOTICE", "README")


def directory_fingerprint(root: Path) -> str:
    """sha256 over the relative path and content of every file under ``root`` (symlinks followed).

    Raises ``ModelLoadError`` when the directory cannot be read or holds no file.
    """
    digest = hashlib.sha256()
    try:
        files = sorted(p for p in root.rglob("*") if p.is_file() and not _is_documentation(p))
        for path in files:
            digest.update(path.relative_to(root).as_posix().encode() + b"\0")
            file_digest = hashlib.sha256()
            with path.open("rb") as handle:
                while chunk := handle.read(_CHUNK):
                    file_digest.update(chunk)
            digest.update(file_digest.digest())
    except OSError as exc:
        raise ModelLoadError(f"cannot read model directory {root}: {exc}") from exc
    if not files:
        raise ModelLoadError(f"model directory {root} holds no files to fingerprint")
    return digest.hexdigest()


def model_fingerprint(model: str) -> str:
    """The fingerprint of ``model``: a local pipeline directory (or its config file), or a hub id.

    A hub id is resolved in the HF cache (it was downloaded when the model loaded), so this is
    called after loading. Raises ``ModelLoadError`` when there is nothing to hash.
    """
    if is_local_model(model):
        path = Path(model).expanduser()
        return directory_fingerprint(path if path.is_dir() else path.parent)
    return directory_fingerprint(_hub_snapshot(model))


def cached(compute: Callable[[], str]) -> Callable[[], str]:
    """``compute`` run once, on first call (thread-safe), its answer returned ever after."""
    guard = threading.Lock()
    answer: list[str] = []

    def once() -> str:
        with guard:
            if not answer:
                answer.append(compute())
            return answer[0]

    return once


def _hub_snapshot(model: str) -> Path:
    """The cached snapshot folder of hub repository ``model`` (the revision its config came from)."""
    from huggingface_hub import try_to_load_from_cache

    config = try_to_load_from_cache(model, "config.yaml")
    if not isinstance(config, str):
        raise ModelLoadError(f"model {model!r} is not in the HF cache: its content cannot be fingerprinted")
    return Path(config).parent


def _is_documentation(path: Path) -> bool:
    return path.suffix.lower() == ".md" or path.name.upper().startswith(_DOCUMENTATION)
