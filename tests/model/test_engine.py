"""Engine contracts: one segmentation pass, no embeddings for VAD, one inference at a time."""

from __future__ import annotations

import threading
import time
from collections import Counter
from contextlib import contextmanager
from itertools import pairwise

import pytest
import soundfile as sf

from consumer.config import EngineSettings
from consumer.engine.pyannote_engine import PyannoteEngine
from consumer.errors import ModelLoadError, ModelNotReadyError
from consumer.options import JobOptions, Task

pytestmark = pytest.mark.model


@contextmanager
def forward_calls(engine):
    """Count forward passes of the segmentation and embedding networks, per thread."""
    pipeline = engine._pipeline
    calls: Counter[str] = Counter()
    log: list[tuple[str, int, float]] = []

    def hook(name):
        def record(module, inputs, output):
            calls[name] += 1
            log.append((name, threading.get_ident(), time.perf_counter()))

        return record

    handles = [
        pipeline._segmentation.model.register_forward_hook(hook("segmentation")),
        pipeline._embedding.model_.register_forward_hook(hook("embedding")),
    ]
    # the shared-chunk path calls the embedding network through chunk_frames, not forward
    original = pipeline._embedding.model_.chunk_frames

    def counted_chunk_frames(waveforms):
        calls["embedding"] += 1
        log.append(("embedding", threading.get_ident(), time.perf_counter()))
        return original(waveforms)

    pipeline._embedding.model_.chunk_frames = counted_chunk_frames
    try:
        yield calls, log
    finally:
        for handle in handles:
            handle.remove()
        del pipeline._embedding.model_.chunk_frames


def _sample_samples(sample):
    samples, rate = sf.read(str(sample[0]), dtype="float32")
    return samples, rate


def test_diarization_runs_segmentation_once_and_vad_never_runs_embeddings(engine, sample):
    samples, rate = _sample_samples(sample)
    with forward_calls(engine) as (calls, _):
        engine.run(samples, rate, JobOptions())
    diarization = dict(calls)
    with forward_calls(engine) as (calls, _):
        engine.run(samples, rate, JobOptions(tasks=frozenset({Task.VAD})))
    vad = dict(calls)
    # speech regions come from the diarization's own segmentation pass: no second pass
    assert diarization["segmentation"] == vad["segmentation"] > 0
    assert diarization["embedding"] > 0
    assert vad.get("embedding", 0) == 0


def test_concurrent_runs_never_overlap_on_the_model(engine, sample):
    samples, rate = _sample_samples(sample)
    clip = samples[: 12 * rate]
    errors: list[BaseException] = []

    def job():
        try:
            engine.run(clip, rate, JobOptions())
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    with forward_calls(engine) as (_, log):
        threads = [threading.Thread(target=job) for _ in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert not errors
    spans: dict[int, tuple[float, float]] = {}
    for _, ident, at in log:
        first, last = spans.get(ident, (at, at))
        spans[ident] = (min(first, at), max(last, at))
    assert len(spans) == 3
    ordered = sorted(spans.values())
    assert all(a_end < b_start for (_, a_end), (b_start, _) in pairwise(ordered))


def test_not_ready_before_load_and_missing_model_is_reported():
    engine = PyannoteEngine(EngineSettings(model="/nonexistent/model-dir"))
    assert not engine.ready
    with pytest.raises(ModelNotReadyError):
        engine.run(None, 16_000, JobOptions())
    with pytest.raises(ModelLoadError, match="does not exist"):
        engine.load()
    assert not engine.ready
    assert engine.error is not None and engine.error.code == "model_load_failed"


def test_loaded_engine_reports_its_device(engine):
    import torch

    assert engine.ready
    assert engine.device == ("cuda" if torch.cuda.is_available() else "cpu")


def test_stage_timings_add_up_to_no_more_than_the_run(engine, sample):
    samples, rate = _sample_samples(sample)
    diarization = engine.run(samples, rate, JobOptions())
    stages = diarization.stages
    assert stages.segmentation > 0 and stages.embeddings > 0 and stages.clustering > 0
    assert stages.segmentation + stages.embeddings + stages.clustering <= diarization.inference_seconds
    vad = engine.run(samples, rate, JobOptions(tasks=frozenset({Task.VAD})))
    assert vad.stages.segmentation > 0
    assert vad.stages.embeddings == vad.stages.clustering == 0
    assert vad.stages.segmentation <= vad.inference_seconds


def _scanned(pipeline, samples, rate):
    """The block-by-block pass of consumer.engine.pipeline over ``samples``, without embeddings."""
    import torch

    from consumer.audio.samples import SampleFile

    with torch.inference_mode(), SampleFile.from_array(samples, rate) as audio:
        return pipeline._scan(audio, embed=False, hook=lambda *_, **__: None)


@pytest.mark.parametrize("seconds", [3.0, 10.0, 29.5, 700.0])
def test_segmentation_matches_pyannotes_sliding_inference(engine, sample, seconds):
    """The block-by-block segmentation (consumer.engine.pipeline) keeps pyannote's own scores, for
    one short padded chunk, exactly one chunk, full batches plus a padded last chunk, and more
    than one block (the sample again and again)."""
    import numpy as np
    import torch
    from pyannote.audio.pipelines import SpeakerDiarization as Stock

    samples, rate = _sample_samples(sample)
    samples = np.tile(samples, int(np.ceil(seconds * rate / len(samples))))[: round(seconds * rate)]
    file = {"waveform": torch.from_numpy(samples)[None], "sample_rate": rate, "uri": "s"}
    pipeline = engine._pipeline
    scan = _scanned(pipeline, samples, rate)
    with torch.inference_mode():
        stock = Stock.get_segmentations(pipeline, file)
    ours = scan.segmentation(0, scan.num_chunks)
    assert ours.shape == stock.data.shape
    assert np.array_equal(ours, stock.data)
    assert (scan.chunks.start, scan.chunks.duration, scan.chunks.step) == (0.0, 10.0, stock.sliding_window.step)


def test_digital_silence_is_scored_once_and_gives_pyannotes_own_scores(engine, sample, monkeypatch):
    """Batches of chunks that are all zeros (a minute on each side of the sample) take the
    model's scores for one silent chunk (consumer.engine.pipeline, change 6): the scores are
    pyannote's own, and the model sees one silent chunk instead of every silent batch."""
    import numpy as np
    import torch
    from pyannote.audio.pipelines import SpeakerDiarization as Stock

    samples, rate = _sample_samples(sample)
    silence = np.zeros(60 * rate, dtype=samples.dtype)
    padded = np.concatenate([silence, samples, silence])
    file = {"waveform": torch.from_numpy(padded)[None], "sample_rate": rate, "uri": "s"}
    pipeline = engine._pipeline
    inferred: list[int] = []
    infer = pipeline._segmentation.infer
    monkeypatch.setattr(pipeline._segmentation, "infer", lambda chunks: inferred.append(len(chunks)) or infer(chunks))
    scan = _scanned(pipeline, padded, rate)
    ours_calls = list(inferred)
    monkeypatch.undo()
    with torch.inference_mode():
        stock = Stock.get_segmentations(pipeline, file)
    assert np.array_equal(scan.segmentation(0, scan.num_chunks), stock.data)
    assert 1 in ours_calls, f"no silent chunk was scored on its own: {ours_calls}"
    assert sum(ours_calls) < scan.num_chunks, f"every chunk went through the model: {ours_calls}"


def test_a_long_recordings_clustering_in_windows_finds_the_same_speakers(engine):
    """Over MAX_CLUSTERED_EMBEDDINGS (the default), the clustering runs in windows (consumer.engine.clustering).

    Real embeddings of a 10-minute 4-voice conversation, as if the recording ran on for
    several times as long (the same conversation again and again): the windowed clustering
    must find the same four speakers and give each chunk's speakers the same clusters as
    pyannote's clustering of the conversation alone.
    """
    import numpy as np
    import soundfile as sf
    import torch

    from consumer.audio.samples import SampleFile
    from consumer.engine.pipeline import MAX_CLUSTERED_EMBEDDINGS
    from tests.support.conversation import conversation

    samples, rate = sf.read(str(conversation(num_speakers=4, duration=600, seed=7).wav), dtype="float32")
    pipeline = engine._pipeline
    with torch.inference_mode(), SampleFile.from_array(samples, rate) as audio:
        scan = pipeline._scan(audio, embed=True, hook=lambda *_, **__: None)
    alone, _ = pipeline._cluster(scan, None, 1, np.inf)
    usable = (scan.clean >= 0.2 * scan.frames_per_chunk) & ~np.isnan(scan.embeddings).any(axis=2)
    assert 0 < usable.sum() <= MAX_CLUSTERED_EMBEDDINGS, "the conversation alone must be clustered whole"
    copies = MAX_CLUSTERED_EMBEDDINGS * 3 // int(usable.sum()) + 1  # then at least three windows
    for field in ("packed", "clean", "active", "embeddings"):
        setattr(scan, field, np.concatenate([getattr(scan, field)] * copies))
    windowed, centroids = pipeline._cluster(scan, None, 1, np.inf)

    valid = alone >= 0  # speakers heard in their chunk
    assert len(np.unique(alone[valid])) == 4
    assert len(centroids) == 4
    for copy in np.split(windowed, copies):
        mapping = {
            a: Counter(copy[valid][alone[valid] == a].tolist()).most_common(1)[0][0] for a in np.unique(alone[valid])
        }
        assert len(set(mapping.values())) == 4, mapping  # one cluster for one cluster
        agree = np.mean([mapping[a] == c for a, c in zip(alone[valid], copy[valid], strict=True)])
        assert agree >= 0.95, f"only {agree:.1%} of the chunks' speakers kept their cluster"
