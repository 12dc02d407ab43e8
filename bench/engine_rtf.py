#!/usr/bin/env python3
"""Real-time factor and peak memory of the engine, against stock pyannote, on this machine.

Files: pyannote's bundled sample (30 s) and a generated 10-minute, 4-voice conversation.
Configurations, each run in a fresh subprocess so that its peak memory is its own:

- ``engine``: this service's ``PyannoteEngine`` (diarization + speech regions in one call),
  under the service's allocator policy (``consumer.memory``);
- ``stock``: pyannote's stock ``SpeakerDiarization`` with the same two models, the same
  clustering hyper-parameters and the class's default settings (batch sizes 1, embeddings
  over overlapped speech, one network pass per chunk and speaker), diarization only;
- ``stock+vad``: the same, plus pyannote's stock ``VoiceActivityDetection`` pipeline on
  the same segmentation model: how one gets both outputs from stock pyannote.

Each configuration first runs once on the file's first 10 s (warm-up, not counted), then
times ``--repeat`` runs on the sample and one on the long file, and keeps the best. Ratios
are printed because absolute figures move with the machine's load.

    python bench/engine_rtf.py [--repeat 2] [--skip-long] [--json results.json]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("PYANNOTE_METRICS_ENABLED", "0")


def _sample() -> Path:
    import pyannote.audio

    return Path(pyannote.audio.__file__).parent / "sample" / "sample.wav"


def _long_conversation() -> Path:
    from tests.support.conversation import conversation

    return conversation(num_speakers=4, duration=600, seed=7).wav


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _measure(config: str, wav: Path, repeat: int) -> dict:
    """Runs inside the subprocess: load, one cold run, ``repeat`` timed warm runs."""
    import soundfile as sf
    import torch

    from consumer.config import Settings
    from consumer.options import JobOptions

    settings = Settings.from_env(os.environ)
    info = sf.info(str(wav))
    rate, duration = info.samplerate, info.frames / info.samplerate
    started = time.perf_counter()
    if config == "engine":
        from consumer.audio import decode
        from consumer.engine.pyannote_engine import PyannoteEngine
        from consumer.memory import release_free_memory, tune_allocator

        tune_allocator()  # the service's allocator policy, as consumer.wiring applies it
        engine = PyannoteEngine(settings.engine)
        engine.load()

        def job(audio=None) -> int:
            """The consumer's path: the file decoded to a SampleFile, the engine reading it (or ``audio``)."""
            try:
                if audio is not None:
                    return engine.run(audio, rate, JobOptions()).num_speakers
                with open(wav, "rb") as stream, decode(stream, settings.audio).samples as decoded:
                    return engine.run(decoded, rate, JobOptions()).num_speakers
            finally:
                release_free_memory()  # as the service's Analyzer does after each job

    else:
        samples, _ = sf.read(str(wav), dtype="float32")
        from pyannote.audio.pipelines import SpeakerDiarization, VoiceActivityDetection

        from consumer.engine.pipeline import _UnusedPLDA

        bundle = Path(settings.engine.model)
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        stock = SpeakerDiarization(
            segmentation=str(bundle / "segmentation" / "pytorch_model.bin"),
            embedding=str(bundle / "embedding" / "pytorch_model.bin"),
            clustering="AgglomerativeClustering",
            plda=_UnusedPLDA(),  # the stock class insists on one (pyannote-audio#2044)
        ).to(device)
        import yaml

        stock.instantiate(yaml.safe_load((bundle / "config.yaml").read_text())["params"])
        vad = None
        if config == "stock+vad":
            vad = VoiceActivityDetection(segmentation=str(bundle / "segmentation" / "pytorch_model.bin")).to(device)
            vad.instantiate({"min_duration_on": 0.0, "min_duration_off": 0.0})

        def job(audio=samples) -> int:  # stock pyannote, as its users run it: the samples in memory
            file = {"waveform": torch.from_numpy(audio)[None], "sample_rate": rate, "uri": wav.stem}
            speakers = len(stock(file).speaker_diarization.labels())
            if vad is not None:
                vad(file)
            return speakers

    load_seconds = time.perf_counter() - started
    cold_started = time.perf_counter()
    job(sf.read(str(wav), dtype="float32", frames=10 * rate)[0])
    cold = time.perf_counter() - cold_started
    warm = []
    for _ in range(repeat if duration < 120 else 1):
        t = time.perf_counter()
        speakers = job()
        warm.append(time.perf_counter() - t)
    return {
        "config": config,
        "file": wav.name,
        "audio_seconds": round(duration, 2),
        "load_seconds": round(load_seconds, 2),
        "cold_seconds": round(cold, 2),
        "warm_seconds": round(min(warm), 2),
        "rtf": round(min(warm) / duration, 4),
        "speakers": speakers,
        "peak_rss_mib": round(_peak_rss_mib()),
        "torch_threads": torch.get_num_threads(),
    }


def _run_isolated(config: str, wav: Path, repeat: int) -> dict:
    command = [sys.executable, __file__, "--one", config, str(wav), "--repeat", str(repeat)]
    output = subprocess.run(
        command, check=True, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO)}
    )
    return json.loads(output.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--skip-long", action="store_true", help="only the 30 s sample")
    parser.add_argument("--configs", nargs="+", default=["engine", "stock", "stock+vad"])
    parser.add_argument("--json", type=Path, help="also write the rows here")
    parser.add_argument("--one", nargs=2, metavar=("CONFIG", "WAV"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(_measure(args.one[0], Path(args.one[1]), args.repeat)))
        return 0

    wavs = [_sample()] + ([] if args.skip_long else [_long_conversation()])
    rows = []
    for wav in wavs:
        for config in args.configs:
            row = _run_isolated(config, wav, args.repeat)
            rows.append(row)
            print(
                f"{row['file']:40s} {config:10s} audio {row['audio_seconds']:7.1f} s  warm {row['warm_seconds']:7.2f} s"
                f"  RTF {row['rtf']:.3f}  first 10 s {row['cold_seconds']:6.2f} s  load {row['load_seconds']:5.1f} s"
                f"  peak RSS {row['peak_rss_mib']} MiB  speakers {row['speakers']}",
                flush=True,
            )
        by = {r["config"]: r for r in rows if r["file"] == wav.name}
        if "engine" in by:
            for other in ("stock", "stock+vad"):
                if other in by:
                    print(
                        f"  -> {other} / engine time ratio: {by[other]['warm_seconds'] / by['engine']['warm_seconds']:.2f}x"
                    )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
