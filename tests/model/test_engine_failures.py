"""The real engine failing: out of memory is retried once with halved batches; failures on
several different inputs in a row break the engine, which the shim's ``/ready`` reports."""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import numpy as np
import pytest
import soundfile as sf

from consumer.analyzer import Analyzer
from consumer.config import EngineSettings
from consumer.engine.pyannote_engine import PyannoteEngine
from consumer.errors import EngineBrokenError, InferenceError
from consumer.options import JobOptions, Task
from http_shim import create_app
from tests.support.credentials import authorized

pytestmark = pytest.mark.model


@pytest.fixture
def fresh_engine(settings) -> PyannoteEngine:
    """An engine of the test's own, at the default failure limit (a test may break it, and the
    test run may put this module's tests on any worker in any order).

    Warmed up, as deployed: the warm-up job also probes the embedding model's shortest input,
    with exceptions caught, which a fault injected before would fall into.
    """
    assert settings.engine.max_consecutive_failures == EngineSettings(model="m").max_consecutive_failures == 3
    assert settings.engine.warmup
    engine = PyannoteEngine(settings.engine)
    engine.load()
    return engine


@pytest.fixture(scope="module")
def clips(sample) -> list[np.ndarray]:
    """Four different 8-second inputs."""
    samples, rate = sf.read(str(sample[0]), dtype="float32")
    assert rate == 16_000
    return [samples[start * rate : (start + 8) * rate] for start in (0, 5, 10, 15)]


@contextmanager
def embeddings_raising(engine: PyannoteEngine, error: Callable[[], BaseException]) -> Iterator[list[int]]:
    """Every embedding call raises ``error()`` while it returns a non-None; the embedding batch
    size of each call is recorded."""
    model = engine._pipeline._embedding.model_
    original = model.chunk_frames
    seen: list[int] = []

    def chunk_frames(waveforms):
        seen.append(engine._pipeline.embedding_batch_size)
        raised = error()
        if raised is not None:
            raise raised
        return original(waveforms)

    model.chunk_frames = chunk_frames
    try:
        yield seen
    finally:
        del model.chunk_frames


def _cuda_oom() -> BaseException:
    import torch

    return torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")


def test_out_of_memory_is_retried_once_with_halved_batches(fresh_engine, clips):
    assert fresh_engine.ready
    pipeline = fresh_engine._pipeline
    batches = pipeline.segmentation_batch_size, pipeline.embedding_batch_size
    assert batches[1] >= 2, batches

    with embeddings_raising(
        fresh_engine, lambda: _cuda_oom() if pipeline.embedding_batch_size == batches[1] else None
    ) as seen:
        result = fresh_engine.run(clips[0], 16_000, JobOptions())
    assert result.turns and result.num_speakers >= 1
    assert seen[0] == batches[1] and set(seen[1:]) == {batches[1] // 2}, (batches, seen)
    assert (pipeline.segmentation_batch_size, pipeline.embedding_batch_size) == batches, "batch sizes not restored"

    with embeddings_raising(fresh_engine, lambda: RuntimeError("CUDA error: out of memory")) as seen:
        with pytest.raises(InferenceError, match="out of memory"):
            fresh_engine.run(clips[1], 16_000, JobOptions())
    assert seen == [batches[1], batches[1] // 2], "one retry, with halved batches, then the input fails"
    assert (pipeline.segmentation_batch_size, pipeline.embedding_batch_size) == batches
    assert fresh_engine.ready


def test_failures_on_three_different_inputs_break_the_engine_and_the_shim_is_not_ready(fresh_engine, clips, settings):
    client = authorized(create_app(Analyzer(fresh_engine, settings.audio), settings).test_client())
    assert client.get("/ready").status_code == 200

    def post(clip: np.ndarray, path: str = "/v1/diarize"):
        buffer = io.BytesIO()
        sf.write(buffer, clip, 16_000, format="WAV")
        data = {"file": (io.BytesIO(buffer.getvalue()), "clip.wav")}
        return client.post(path, data=data, content_type="multipart/form-data")

    with embeddings_raising(fresh_engine, lambda: RuntimeError("CUDA error: an illegal memory access")):
        codes = []
        for clip in (clips[0], clips[0], clips[0], clips[1]):  # the same input again and again counts once
            reply = post(clip)
            codes.append((reply.status_code, reply.get_json()["error"]["code"]))
        assert codes == [(500, "inference_failed")] * 4
        assert client.get("/ready").status_code == 200
        # a success in between starts the count again: VAD-only runs no embeddings
        assert post(clips[2], "/v1/vad").status_code == 200
        assert [post(clip).status_code for clip in (clips[2], clips[3])] == [500, 500]
        broken = post(clips[0])
        assert (broken.status_code, broken.get_json()["error"]["code"]) == (503, "engine_broken")

    ready = client.get("/ready")
    assert ready.status_code == 503
    assert ready.get_json()["status"] == "failed" and ready.get_json()["error"]["code"] == "engine_broken"
    assert not fresh_engine.ready and isinstance(fresh_engine.error, EngineBrokenError)
    # broken for good: no further input is failed for it, even one the model would take
    with pytest.raises(EngineBrokenError):
        fresh_engine.run(clips[1], 16_000, JobOptions(tasks=frozenset({Task.VAD})))
    later = post(clips[1])
    assert (later.status_code, later.get_json()["error"]["code"]) == (503, "engine_broken")
