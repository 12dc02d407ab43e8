"""The real engine: a pyannote.audio speaker-diarization pipeline behind ``Engine``.

One ``run()`` gives speaker turns and speech regions from a single segmentation pass:
the pipeline's ``speaker_counting`` hook hands over the frame-level count of active
speakers, and speech is wherever that count is above zero. A VAD-only job runs the
segmentation model alone and never computes speaker embeddings.

Failures: a CUDA out-of-memory error is retried once with halved batches; any other
exception fails that input (``InferenceError``), until ``max_consecutive_failures`` inputs
in a row, all different, failed: then the engine, not the input, is at fault (a broken
CUDA context, a corrupt model) and it reports itself broken (``EngineBrokenError``, not
ready) instead of failing more inputs.
"""

from __future__ import annotations

import hashlib
import logging
import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from consumer.audio.samples import SampleFile
from consumer.config import EngineSettings
from consumer.engine import EngineResult, ProgressCallback, Samples, SpeakerTurn, SpeechRegion, StageSeconds
from consumer.engine.confidence import middle, turn_confidences
from consumer.engine.model_path import is_local_model
from consumer.engine.torch_cache import use_torch_cache_dir
from consumer.errors import EngineBrokenError, InferenceError, ModelLoadError, ModelNotReadyError, ServiceError
from consumer.options import JobOptions

log = logging.getLogger(__name__)

# Share of the work done by the segmentation step, for progress reports: embeddings
# dominate a diarization run (measured on CPU: about 4/5 of the time).
_SEGMENTATION_SHARE = 0.2

# (segmentation, embedding) batch sizes by device type, unless configured. On CPU, large
# embedding batches thrash the caches: bench/batch_sizes.py measured 32/2 at 8.1 s against
# 21.3 s for 32/32 on a 120 s conversation (2 cores). A segmentation batch of 16 instead of
# 32 halves the model's temporaries (265 MB instead of 538 MB, held in the heap for reuse:
# consumer.memory) for 3 % more time (7.5 s against 7.3 s for the segmentation of a
# 10-minute file). On GPU, pyannote's shipped 32/32.
BATCH_SIZES = {"cpu": (16, 2), "cuda": (32, 32)}


@dataclass(frozen=True)
class _Inferred:
    """What one inference produced, before it becomes an ``EngineResult``."""

    turns: tuple[SpeakerTurn, ...]
    speech: tuple[SpeechRegion, ...]
    stages: StageSeconds
    centroids: dict[str, np.ndarray]  # output label -> centroid, in the embedding model's space


class PyannoteEngine:
    """Loads one pyannote pipeline and runs jobs on it, one at a time."""

    def __init__(self, settings: EngineSettings) -> None:
        self._settings = settings
        self._pipeline: Any = None
        self._device = "cpu"
        self._ready = threading.Event()
        self._error: ServiceError | None = None
        self._lock = threading.Lock()
        self._failed_inputs: list[str] = []  # the inputs of the current run of failures, in order
        self._broken: EngineBrokenError | None = None
        # stage timings of the run in progress (written under ``_lock`` by _diarize/_detect_speech)
        self._embedding_model = ""

    @property
    def ready(self) -> bool:
        """True once the model is loaded and warmed up, and until it breaks."""
        return self._ready.is_set() and self._broken is None

    @property
    def device(self) -> str:
        """``cpu`` or ``cuda`` (the device type the model runs on)."""
        return self._device

    @property
    def error(self) -> ServiceError | None:
        """Why the engine broke, or why the last ``load()`` failed, if either happened."""
        return self._broken or self._error

    @property
    def embedding_model(self) -> str:
        """sha256 of the embedding model's weights, once loaded (see ``Engine``)."""
        return self._embedding_model

    def load(self) -> None:
        """Load the pipeline, move it to its device and warm it up; blocks. Raises ``ModelLoadError``."""
        try:
            self._load()
        except ServiceError as exc:
            self._error = exc
            raise
        except Exception as exc:
            self._error = ModelLoadError(f"cannot load model {self._settings.model!r}: {type(exc).__name__}: {exc}")
            raise self._error from exc

    def _load(self) -> None:
        started = time.perf_counter()
        if self._settings.torch_cache_dir:
            use_torch_cache_dir(self._settings.torch_cache_dir)
        import torch
        from pyannote.audio.telemetry import set_telemetry_metrics

        set_telemetry_metrics(False)  # the service never phones home
        if self._settings.torch_threads:
            torch.set_num_threads(self._settings.torch_threads)
        cuda = cuda_environment(torch)
        log.info(
            "torch %s, built for CUDA %s; NVIDIA driver %s (CUDA %s)",
            torch.__version__,
            cuda["torch_cuda"],
            cuda["nvidia_driver"],
            cuda["driver_cuda"],
            extra=cuda,
        )
        device = _resolve_device(self._settings.device, torch)
        if device.type == "cpu" and cuda["driver_cuda"] is not None:
            log.warning(
                "an NVIDIA driver is present but torch cannot use it: torch %s needs a driver for "
                "CUDA %s or newer (NVIDIA driver >= %s for CUDA 13); running on CPU",
                torch.__version__,
                cuda["torch_cuda"],
                MIN_NVIDIA_DRIVER,
            )
        pipeline = _load_pipeline(self._settings.model, self._settings.hf_token.value or None)
        segmentation_batch, embedding_batch = BATCH_SIZES.get(device.type, BATCH_SIZES["cpu"])
        pipeline.segmentation_batch_size = self._settings.segmentation_batch_size or segmentation_batch
        pipeline.embedding_batch_size = self._settings.embedding_batch_size or embedding_batch
        pipeline.to(device)
        self._pipeline = pipeline
        self._embedding_model = weights_digest(pipeline)
        self._device = device.type
        loaded = time.perf_counter()
        if self._settings.warmup:
            self._warm_up()
        self._ready.set()
        log.info(
            "model ready",
            extra={
                "model": self._settings.model,
                "device": str(device),
                "batch_sizes": [pipeline.segmentation_batch_size, pipeline.embedding_batch_size],
                "load_seconds": round(loaded - started, 3),
                "warmup_seconds": round(time.perf_counter() - loaded, 3),
            },
        )

    def run(
        self,
        samples: np.ndarray | Samples,
        sample_rate: int,
        options: JobOptions,
        progress: ProgressCallback | None = None,
    ) -> EngineResult:
        """Diarize (or only detect speech in) mono float32 ``samples``; see ``Engine``.

        Raises ``EngineBrokenError`` once the engine broke, also on the call that broke it.
        """
        if self._broken is not None:
            raise self._broken
        if not self.ready:
            raise ModelNotReadyError("the model is still loading")
        with self._lock, _on_disk(samples, sample_rate) as audio:
            if self._broken is not None:  # broke while this call waited
                raise self._broken
            try:
                result = self._run_locked(audio, options, progress)
            except InferenceError as exc:
                self._count_failure(_input_id(audio, options), exc)
                raise
            self._failed_inputs.clear()
            return result

    def _count_failure(self, input_id: str, error: InferenceError) -> None:
        """Count a failed input; raise ``EngineBrokenError`` when too many different ones failed in a row.

        The same input failing again (a client retrying it) does not count twice: one bad
        input must not take the engine down.
        """
        if input_id not in self._failed_inputs:
            self._failed_inputs.append(input_id)
        limit = self._settings.max_consecutive_failures
        if len(self._failed_inputs) < limit:
            return
        self._broken = EngineBrokenError(
            f"inference failed on {limit} different inputs in a row; the engine is broken, "
            f"not the inputs (last error: {error.message})"
        )
        log.critical("engine broken", extra={"error_code": self._broken.code, "error": self._broken.message})
        raise self._broken from error

    def _run_locked(self, samples: Samples, options: JobOptions, progress: ProgressCallback | None) -> EngineResult:
        import torch

        started = time.perf_counter()

        def infer() -> _Inferred:
            with torch.inference_mode():
                if options.diarize:
                    return self._diarize(samples, options, progress)
                return self._detect_speech(samples, progress)

        try:
            try:
                inferred = infer()
            except Exception as exc:
                if not is_out_of_memory(exc):
                    raise
                log.warning("out of memory; retrying once with halved batches", extra={"error": str(exc)[:300]})
                if torch.cuda.is_available():
                    torch.cuda.empty_cache()
                with halved_batches(self._pipeline):
                    inferred = infer()
        except ServiceError:
            raise
        except Exception as exc:  # the model failing on valid input must not kill the worker
            log.exception("inference failed")
            raise InferenceError(f"the model failed on this audio: {type(exc).__name__}: {exc}") from exc
        if progress is not None:
            progress(1.0)
        return EngineResult(
            turns=inferred.turns,
            speech=inferred.speech,
            num_speakers=len({t.speaker for t in inferred.turns}),
            duration=samples.duration,
            inference_seconds=time.perf_counter() - started,
            stages=inferred.stages,
            centroids=inferred.centroids,
        )

    def _diarize(self, samples: Samples, options: JobOptions, progress: ProgressCallback | None) -> _Inferred:
        captured: dict[str, Any] = {}
        stages = _StageRecorder(progress, {"segmentation": _SEGMENTATION_SHARE, "embeddings": 1 - _SEGMENTATION_SHARE})

        def hook(step: str, artefact: Any, *args: Any, **kwargs: Any) -> None:
            if step == "speaker_counting":
                # copied: the pipeline later caps this count
                captured["count"] = type(artefact)(artefact.data.copy(), artefact.sliding_window)
            stages(step, artefact, *args, **kwargs)

        output = diarize(
            self._pipeline,
            samples,
            num_speakers=options.num_speakers,
            min_speakers=options.min_speakers,
            max_speakers=options.max_speakers,
            hook=hook,
        )
        annotation = output.exclusive_speaker_diarization if options.exclusive else output.speaker_diarization
        tracks = [(segment, str(label)) for segment, _, label in annotation.itertracks(yield_label=True)]
        labels = [str(label) for label in output.speaker_diarization.labels()]  # the centroids' order
        centroids = output.speaker_embeddings
        confidences: list[float | None] = [None] * len(tracks)
        by_label: dict[str, np.ndarray] = {}
        scored = time.perf_counter()
        if (  # centroids in the embedding model's own space (not, say, a PLDA's)
            centroids is not None
            and len(labels)
            and np.shape(centroids) == (len(labels), self._pipeline._embedding.dimension)
        ):
            by_label = {label: np.asarray(c, dtype=np.float32) for label, c in zip(labels, centroids, strict=True)}
            confidences = list(self._confidences(samples, tracks, labels, centroids, lambda: hook("confidence", None)))
        spent = StageSeconds(
            segmentation=stages.spent.get("segmentation", 0.0),
            embeddings=stages.spent.get("embeddings", 0.0),
            clustering=stages.spent.get("clustering", 0.0),
            confidence=time.perf_counter() - scored,
        )
        turns = tuple(
            SpeakerTurn(round(segment.start, 3), round(segment.end, 3), label, confidence)
            for (segment, label), confidence in zip(tracks, confidences, strict=True)
        )
        return _Inferred(turns, self._speech_regions(captured["count"]), spent, by_label)

    def _confidences(
        self,
        samples: Samples,
        tracks: list[tuple[Any, str]],
        labels: list[str],
        centroids: np.ndarray,
        beat: Callable[[], None],
    ) -> list[float]:
        """Each track's confidence: its middle embedded and compared with the centroids (``confidence``);
        ``beat`` after every batch."""
        import torch

        embedding = self._pipeline._embedding
        rate = samples.sample_rate
        spans = [middle(segment.start, segment.end) for segment, _ in tracks]
        embeddings = np.full((len(spans), np.shape(centroids)[-1]), np.nan, dtype=np.float32)
        batch = max(1, self._pipeline.embedding_batch_size)
        for first in range(0, len(spans), batch):
            group = [
                samples.read(round(start * rate), round(end * rate)) for start, end in spans[first : first + batch]
            ]
            length = max(len(p) for p in group)
            if length < embedding.min_num_samples:
                continue
            waveforms = torch.zeros(len(group), 1, length)
            masks = torch.zeros(len(group), length)
            for i, piece in enumerate(group):
                waveforms[i, 0, : len(piece)] = torch.from_numpy(piece)
                masks[i, : len(piece)] = 1.0
            embeddings[first : first + len(group)] = embedding(waveforms, masks=masks)
            beat()
        index = {label: i for i, label in enumerate(labels)}
        return turn_confidences(embeddings, [index[label] for _, label in tracks], np.asarray(centroids))

    def _detect_speech(self, samples: Samples, progress: ProgressCallback | None) -> _Inferred:
        stages = _StageRecorder(progress, {"segmentation": 0.95})
        count = speech_count(self._pipeline, samples, stages)
        spent = StageSeconds(segmentation=stages.spent.get("segmentation", 0.0))
        return _Inferred(turns=(), speech=self._speech_regions(count), stages=spent, centroids={})

    def _speech_regions(self, count: Any) -> tuple[SpeechRegion, ...]:
        """Speech wherever at least one speaker is active, gaps shorter than the pipeline's merged."""
        from pyannote.audio.utils.signal import Binarize
        from pyannote.core import SlidingWindowFeature

        active = SlidingWindowFeature((count.data > 0).astype(np.float32), count.sliding_window)
        binarize = Binarize(onset=0.5, offset=0.5, min_duration_off=self._pipeline.segmentation.min_duration_off)
        timeline = binarize(active).get_timeline().support()
        return tuple(SpeechRegion(start=round(s.start, 3), end=round(s.end, 3)) for s in timeline)

    def _warm_up(self) -> None:
        """Run one short real job so that the first request does not pay for lazy initialisation."""
        with SampleFile.from_array(_warmup_audio(), 16_000) as samples:
            self._run_locked(samples, JobOptions(), progress=None)


class _StageRecorder:
    """A pipeline hook that keeps each stage's seconds (``seconds=``) in ``spent`` and reports
    progress: the fractions done of the stages in ``weights``, weighted. Every call reports,
    stage ends too: that is the job's heartbeat (consumer.deadline)."""

    def __init__(self, progress: ProgressCallback | None, weights: dict[str, float]) -> None:
        self.spent: dict[str, float] = {}
        self._progress = progress
        self._weights = weights
        self._done = dict.fromkeys(weights, 0.0)

    def __call__(
        self,
        step: str,
        artefact: Any,
        file: Any = None,
        total: int | None = None,
        completed: int | None = None,
        seconds: float | None = None,
    ) -> None:
        if seconds is not None:
            self.spent[step] = seconds
        if total and step in self._done:
            self._done[step] = (completed or 0) / total
        if self._progress is not None:
            self._progress(sum(weight * self._done[name] for name, weight in self._weights.items()))


def is_out_of_memory(exc: BaseException) -> bool:
    """Whether ``exc`` is an accelerator running out of memory (``torch.cuda.OutOfMemoryError``,
    or a ``RuntimeError`` saying so, as older torch and other backends raise)."""
    return type(exc).__name__ == "OutOfMemoryError" or (
        isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()
    )


@contextmanager
def halved_batches(pipeline: Any) -> Iterator[None]:
    """The pipeline's segmentation and embedding batch sizes halved (at least 1) for a while."""
    sizes = pipeline.segmentation_batch_size, pipeline.embedding_batch_size
    pipeline.segmentation_batch_size = max(1, sizes[0] // 2)
    pipeline.embedding_batch_size = max(1, sizes[1] // 2)
    try:
        yield
    finally:
        pipeline.segmentation_batch_size, pipeline.embedding_batch_size = sizes


def weights_digest(pipeline: Any) -> str:
    """sha256 over the embedding model's parameters (names, shapes, bytes), in name order;
    empty for a pipeline without a speaker-embedding model."""
    embedding = getattr(pipeline, "_embedding", None)
    model = getattr(embedding, "model_", None)
    if model is None or not hasattr(model, "state_dict"):
        return ""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        array = tensor.detach().cpu().contiguous().numpy()
        digest.update(f"{name}:{array.dtype}:{array.shape}".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def _input_id(samples: Samples, options: JobOptions) -> str:
    """Tells inputs apart for counting failures: the audio's length and 64 short windows spread
    over it, with the options (hashing all of a day of audio would take a minute)."""
    digest = hashlib.sha256()
    for start in np.linspace(0, max(0, len(samples) - 1024), 64).astype(np.int64):
        digest.update(samples.read(int(start), int(start) + 1024).tobytes())
    digest.update(f"{len(samples)}/{samples.sample_rate}/{sorted(options.to_dict().items())}".encode())
    return digest.hexdigest()


@contextmanager
def _on_disk(samples: np.ndarray | Samples, sample_rate: int) -> Iterator[Samples]:
    """``samples`` read a window at a time: themselves, or a ``SampleFile`` copy of in-memory ones, deleted after."""
    if not isinstance(samples, np.ndarray):
        yield samples
        return
    with SampleFile.from_array(samples, sample_rate) as copy:
        yield copy


def diarize(pipeline: Any, samples: Samples, *, hook: Callable[..., None], **speakers: int | None) -> Any:
    """``pipeline``'s ``DiarizeOutput`` for ``samples``: the service's own pipeline streams them
    (``consumer.engine.pipeline``); any other pyannote pipeline gets them in memory, and its
    stage ends, which it reports with their artefacts, become the stage times."""
    from consumer.engine.pipeline import SpeakerDiarization, in_memory

    if isinstance(pipeline, SpeakerDiarization):
        return pipeline.diarize(samples, hook=hook, **speakers)
    return pipeline(in_memory(samples), hook=_timed(hook), **speakers)


def speech_count(pipeline: Any, samples: Samples, hook: Callable[..., None]) -> Any:
    """(frames, 1) count of active speakers, from the segmentation alone (see ``diarize``)."""
    from consumer.engine.pipeline import SpeakerDiarization, in_memory

    if isinstance(pipeline, SpeakerDiarization):
        return pipeline.speech_count(samples, hook=hook)
    started = time.perf_counter()
    segmentations = pipeline.get_segmentations(in_memory(samples), hook=hook)
    hook("segmentation", None, seconds=time.perf_counter() - started)
    return pipeline.speaker_count(segmentations, pipeline._segmentation.model.receptive_field, warm_up=(0.0, 0.0))


def _timed(hook: Callable[..., None]) -> Callable[..., None]:
    """``hook``, also told each stage's time (``seconds=``) when pyannote hands over its artefact."""
    stages = {"segmentation": "segmentation", "embeddings": "embeddings", "discrete_diarization": "clustering"}
    last = [time.perf_counter()]

    def timed(step: str, artefact: Any, *args: Any, **kwargs: Any) -> None:
        hook(step, artefact, *args, **kwargs)
        if step in stages and kwargs.get("total") is None:
            now = time.perf_counter()
            hook(stages[step], None, seconds=now - last[0])
            last[0] = now

    return timed


# PyPI's torch 2.11 wheels are CUDA 13 builds; CUDA 13 needs this NVIDIA driver or newer.
MIN_NVIDIA_DRIVER = "580"


def cuda_environment(torch: Any) -> dict[str, str | None]:
    """The CUDA torch was built for, and the node's NVIDIA driver (None where there is none).

    Read without initialising CUDA: the driver's CUDA version from ``cuDriverGetVersion``
    in ``libcuda.so.1``, the driver's own version from ``/proc/driver/nvidia/version``.
    """
    import ctypes

    driver_cuda = None
    try:
        version = ctypes.c_int(0)
        if ctypes.CDLL("libcuda.so.1").cuDriverGetVersion(ctypes.byref(version)) == 0:
            driver_cuda = f"{version.value // 1000}.{version.value % 1000 // 10}"
    except OSError:
        pass  # no driver library: not a GPU node
    nvidia_driver = None
    try:
        match = re.search(r"Kernel Module\s+(?:for \S+\s+)?([\d.]+)", Path("/proc/driver/nvidia/version").read_text())
        nvidia_driver = match.group(1) if match else None
    except OSError:
        pass
    return {"torch_cuda": torch.version.cuda, "driver_cuda": driver_cuda, "nvidia_driver": nvidia_driver}


def _resolve_device(requested: str, torch: Any) -> Any:
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(requested)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ModelLoadError(
            f"DEVICE={requested} but torch {torch.__version__} (CUDA {torch.version.cuda}) finds no usable "
            f"CUDA device: check the node's NVIDIA driver (>= {MIN_NVIDIA_DRIVER} for CUDA 13) and the GPU request"
        )
    return device


def _load_pipeline(model: str, token: str | None) -> Any:
    """A pipeline from a local directory or config file, else from the hub (or its cache) by id."""
    from pyannote.audio import Pipeline

    path = Path(model).expanduser()
    try:
        if not is_local_model(model):
            pipeline = Pipeline.from_pretrained(model, token=token)
        elif path.exists():
            pipeline = Pipeline.from_pretrained(path)
        else:
            raise ModelLoadError(f"model directory {model} does not exist (run `make models` for the offline bundle)")
    except ServiceError:
        raise
    except Exception as exc:
        raise ModelLoadError(
            f"cannot load model {model!r}: {type(exc).__name__}: {exc}. A hub id needs network access "
            "and HF_TOKEN (or HF_HUB_OFFLINE=1 with the model in the HF cache); a local model is a "
            "directory holding config.yaml"
        ) from exc
    if pipeline is None:
        raise ModelLoadError(f"cannot load model {model!r}: the hub refused it (gated? set HF_TOKEN)")
    return pipeline


def _warmup_audio() -> np.ndarray:
    """15 s of the speech sample that ships with pyannote.audio, as 16 kHz float32.

    Read as a file of the package, never by importing ``pyannote.audio.sample``: that import
    decodes the sample through torchcodec, which needs FFmpeg's shared libraries, and the
    image has none (see the Containerfile).
    """
    import soundfile as sf

    with resources.files("pyannote.audio").joinpath("sample", "sample.wav").open("rb") as wav:
        samples, rate = sf.read(wav, dtype="float32", frames=15 * 16_000)
    assert rate == 16_000, rate
    return samples
