"""What the engine reports about CUDA at load, and how it refuses a GPU it cannot use."""

from __future__ import annotations

import re
from types import SimpleNamespace

import pytest

from consumer.engine.pyannote_engine import MIN_NVIDIA_DRIVER, _resolve_device, cuda_environment
from consumer.errors import ModelLoadError


class _Device:
    def __init__(self, spec: str) -> None:
        self.type = spec.split(":")[0]


def _torch(cuda_available: bool) -> SimpleNamespace:
    """The few torch attributes the functions read (a stand-in: this is pure logic)."""
    return SimpleNamespace(
        __version__="2.11.0+cu130",
        version=SimpleNamespace(cuda="13.0"),
        cuda=SimpleNamespace(is_available=lambda: cuda_available),
        device=_Device,
    )


def test_cuda_environment_names_torch_cuda_and_the_driver_or_none():
    report = cuda_environment(_torch(cuda_available=False))
    assert report["torch_cuda"] == "13.0"
    assert report["driver_cuda"] is None or re.fullmatch(r"\d+\.\d+", report["driver_cuda"])
    assert report["nvidia_driver"] is None or re.fullmatch(r"[\d.]+", report["nvidia_driver"])


def test_cuda_requested_without_a_usable_device_names_the_driver_floor():
    with pytest.raises(
        ModelLoadError, match=rf"DEVICE=cuda but torch 2.11.0\+cu130 \(CUDA 13.0\).*>= {MIN_NVIDIA_DRIVER}"
    ):
        _resolve_device("cuda", _torch(cuda_available=False))
    assert _resolve_device("auto", _torch(cuda_available=False)).type == "cpu"
    assert _resolve_device("auto", _torch(cuda_available=True)).type == "cuda"
