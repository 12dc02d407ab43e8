"""A model is known by its content: a replaced bundle with the same name is another model."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from consumer.engine.fingerprint import cached, directory_fingerprint, model_fingerprint
from consumer.errors import ModelLoadError


def _bundle(root: Path, weights: bytes = b"\x00weights-1", threshold: str = "0.62") -> Path:
    (root / "embedding").mkdir(parents=True)
    (root / "segmentation").mkdir()
    (root / "config.yaml").write_text(f"pipeline:\n  name: x\nparams:\n  clustering:\n    threshold: {threshold}\n")
    (root / "embedding" / "pytorch_model.bin").write_bytes(weights)
    (root / "segmentation" / "pytorch_model.bin").write_bytes(b"\x00segmentation")
    (root / "README.md").write_text("how this bundle was made\n")
    return root


def test_the_same_content_under_another_name_is_the_same_model(tmp_path):
    first = _bundle(tmp_path / "offline-default")
    second = shutil.copytree(first, tmp_path / "renamed")
    assert directory_fingerprint(first) == directory_fingerprint(second)
    assert model_fingerprint(str(first)) == model_fingerprint(str(first / "config.yaml"))


@pytest.mark.parametrize(
    "change",
    [
        lambda root: (root / "embedding" / "pytorch_model.bin").write_bytes(b"\x00weights-2"),
        lambda root: (root / "config.yaml").write_text((root / "config.yaml").read_text().replace("0.62", "0.7")),
        lambda root: (root / "segmentation" / "extra.bin").write_bytes(b"more"),
        lambda root: (root / "segmentation" / "pytorch_model.bin").rename(root / "segmentation" / "model.bin"),
    ],
    ids=["weights", "config", "a file added", "a file renamed"],
)
def test_a_replaced_bundle_with_the_same_name_is_another_model(tmp_path, change):
    root = _bundle(tmp_path / "offline-default")
    before = model_fingerprint(str(root))
    change(root)
    assert model_fingerprint(str(root)) != before


def test_documentation_does_not_count(tmp_path):
    root = _bundle(tmp_path / "offline-default")
    before = directory_fingerprint(root)
    (root / "README.md").write_text("rewritten\n")
    (root / "LICENSE").write_text("MIT\n")
    assert directory_fingerprint(root) == before


def test_nothing_to_hash_is_a_load_error(tmp_path):
    with pytest.raises(ModelLoadError):
        directory_fingerprint(tmp_path)
    with pytest.raises(ModelLoadError, match="not in the HF cache"):
        model_fingerprint("nobody/no-such-pipeline-in-the-cache")


def test_cached_computes_once():
    calls: list[int] = []
    once = cached(lambda: str(calls.append(1) or len(calls)))
    assert once() == once() == "1" and calls == [1]
