"""Speech: word error rate on real recorded speech and throughput, the service beside bare faster-whisper.

    python benchmarks/bench_speech.py [--corpus DIR] [--models tiny.en,base] [--minutes 5] [--skip-wer]
                                      [--skip-speed] [--silence-hours H]

The corpus is real read speech with known words, from public test data (BENCHMARKS.md "Speech" says where each file
comes from and how to get it): in DIR, `jfk.flac` (openai/whisper tests), `OSR_us_000_0034_8k.wav` (Harvard
sentences list 72, from joinly-ai/joinly tests/data), `stereo_diarization.wav` (SYSTRAN/faster-whisper tests/data,
one sentence per channel) and, when present, `cmu_arctic_us_{aew_a0001..axb_a0006}.wav` (CMU ARCTIC, from
LCAV/pyroomacoustics examples/input_samples). Without DIR only the committed JFK excerpt (tests/fixtures/speech).

WER: each utterance goes through the service as an audio-only job (analyze_video, features [speech]: PyAV decode,
Silero VAD, batching, Whisper greedy with word timings), and through bare faster-whisper with the same model files
and its own defaults (`WhisperModel.transcribe(audio)`: beam 5, no VAD, no word timings). Words are compared after
lower-casing and dropping punctuation; WER = edits / reference words, over the whole corpus.

Speed: the corpus's utterances one after the other (no long pauses: speech-dense), repeated to `--minutes`, as one
audio-only file; wall seconds of the service's job against bare faster-whisper on the same file with vad_filter and
word timings on (the same work), in this process, after one warm-up of each; audio seconds per wall second.

Silence (`--silence-hours`): an audio-only FLAC of digital silence that long, through the service (the first model).
"""

from __future__ import annotations

import argparse
import re
import resource
import sys
import tempfile
import time
from pathlib import Path

import av
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "shared"))
sys.path.insert(0, str(ROOT))

from tests.fixtures.speech_media import RATE, make_media  # noqa: E402  (after the path: the file writer the tests use)

JFK_TEXT = "And so my fellow Americans ask not what your country can do for you ask what you can do for your country"
HARVARD_72 = ("A gold ring will please most any girl. The long journey home took a year. She saw a cat in the "
              "neighbor's house. A pink shell was found on the sandy beach. Small children came to see him. The grass "
              "and bushes were wet with dew. The blind man counted his old coins. A severe storm tore down the barn. "
              "She called his name many times. When you hear the bell, come quickly.")
# CMU ARCTIC prompts arctic_a0001-a0006, read by two speakers (aew; axb, Indian English), as pyroomacoustics has them.
ARCTIC = {
    "aew_a0001": "Author of the danger trail, Philip Steels, etc.",
    "aew_a0002": "Not at this particular case, Tom, apologized Whittemore.",
    "aew_a0003": "For the twentieth time that evening the two men shook hands.",
    "axb_a0004": "Lord, but I'm glad to see you again, Phil.",
    "axb_a0005": "Will we ever forget it.",
    "axb_a0006": "God bless 'em, I hope I'll go on seeing them forever.",
}
STEREO = ("He began a confused complaint against the wizard, who had vanished behind the curtain on the left.",
          "The horizon seems extremely distant.")


def words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9']+", text.lower().replace("-", " "))


def edits(ref: list[str], hyp: list[str]) -> int:
    row = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        prev, row[0] = row[0], i
        for j, h in enumerate(hyp, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (r != h))
    return row[-1]


def decode(path: Path, channel: int | None = None) -> np.ndarray:
    with av.open(str(path)) as container:
        layout = "stereo" if channel is not None else "mono"
        resampler = av.AudioResampler(format="fltp", layout=layout, rate=RATE)
        parts = []
        for frame in container.decode(audio=0):
            for out in [*resampler.resample(frame)]:
                parts.append(out.to_ndarray())
        parts += [out.to_ndarray() for out in resampler.resample(None)]
    audio = np.concatenate(parts, axis=1)
    return (audio[channel] if channel is not None else audio[0]).astype(np.float32)


def corpus(directory: Path | None) -> list[tuple[str, np.ndarray, str]]:
    items = [("jfk", decode(ROOT / "tests" / "fixtures" / "speech" / "jfk.flac"), JFK_TEXT)]
    if directory is not None:
        items = [("jfk", decode(directory / "jfk.flac"), JFK_TEXT),
                 ("harvard-72", decode(directory / "OSR_us_000_0034_8k.wav"), HARVARD_72),
                 ("stereo-left", decode(directory / "stereo_diarization.wav", 0), STEREO[0]),
                 ("stereo-right", decode(directory / "stereo_diarization.wav", 1), STEREO[1])]
        items += [(f"arctic-{name}", decode(directory / f"cmu_arctic_us_{name}.wav"), text)
                  for name, text in ARCTIC.items() if (directory / f"cmu_arctic_us_{name}.wav").is_file()]
    return items


class Service:
    """The service's path for an audio-only job with features [speech]."""

    def __init__(self, model: str, work: Path) -> None:
        from tests.fakes import FakeEmbedder, FakeIndex
        from video_ai.adapters.audio_source import PyAVAudioSource
        from video_ai.adapters.file_artifacts import FileArtifacts
        from video_ai.adapters.frame_source import PyAVFrameSource
        from video_ai.adapters.http_fetch import HttpVideoFetcher
        from video_ai.adapters.local_jobs import InMemoryJobRepository
        from video_ai.analyzers import AnalyzerContext, AnalyzerSet
        from video_ai.services.analyze_video import AnalyzeDeps
        from video_ai.settings import LimitsSettings, NetworkSettings, SamplingSettings, SpeechSettings

        self.artifacts = FileArtifacts(work / "artifacts")
        embedder, index = FakeEmbedder(), FakeIndex()  # never used: no visual feature
        self.deps = AnalyzeDeps(
            jobs=InMemoryJobRepository(),
            fetcher=HttpVideoFetcher(NetworkSettings(), LimitsSettings(), allow_local_files=True),
            frames=PyAVFrameSource(SamplingSettings(), LimitsSettings()), embedder=embedder, index=index,
            notifier=None, workdir=work / "tmp", audio=PyAVAudioSource(),
            analyzers=AnalyzerSet(AnalyzerContext(embedder=embedder, index=index, artifacts=self.artifacts,
                                                  speech=SpeechSettings(model=model))))  # type: ignore[arg-type]
        self.runs = 0

    def transcribe(self, path: Path) -> str:
        from video_ai.domain.models import Job, Source
        from video_ai.domain.transcript import Transcript
        from video_ai.services.analyze_video import analyze_video

        self.runs += 1
        job_id = f"bench-{self.runs}"
        self.deps.jobs.create(Job(job_id=job_id, source=Source(url=path.resolve().as_uri()), features=["speech"]))
        job = analyze_video(job_id, self.deps).job
        assert job.status.value == "succeeded", job.error
        raw = self.artifacts.get(job_id, "transcript.json")
        assert raw is not None
        return " ".join(s.text for s in Transcript.model_validate_json(raw).segments)


def bare_model(model: str) -> object:
    from faster_whisper import WhisperModel

    from video_ai.adapters.whisper_transcriber import WEIGHTS, weight_files

    return WhisperModel(f"bare-{model}", device="cpu", compute_type="int8", cpu_threads=2,
                        files=weight_files(WEIGHTS[model]))


def bare_text(model: object, audio: np.ndarray, **options: object) -> str:
    segments, _ = model.transcribe(audio, language="en", **options)  # type: ignore[attr-defined]
    return " ".join(s.text.strip() for s in segments)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--corpus", type=Path)
    parser.add_argument("--models", default="tiny.en,base")
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--skip-wer", action="store_true")
    parser.add_argument("--skip-speed", action="store_true")
    parser.add_argument("--silence-hours", type=float, default=0.0)
    args = parser.parse_args()
    items = corpus(args.corpus)
    total_s = sum(len(a) for _, a, _ in items) / RATE
    print(f"corpus: {len(items)} utterances, {total_s:.1f} s, "
          f"{sum(len(words(t)) for _, _, t in items)} reference words")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        files = [make_media(work / f"{name}.flac", video_s=None, audio=audio, audio_codec="flac")
                 for name, audio, _ in items]
        for model in args.models.split(","):
            service = Service(model, work / model)
            bare = bare_model(model)
            if not args.skip_wer:
                ref_n, errs = 0, {"service": 0, "bare": 0}
                for (name, audio, text), path in zip(items, files, strict=True):
                    ref = words(text)
                    got = {"service": service.transcribe(path), "bare": bare_text(bare, audio)}
                    ref_n += len(ref)
                    for who, hyp in got.items():
                        errs[who] += edits(ref, words(hyp))
                    print(f"  {model:8s} {name:13s} service {edits(ref, words(got['service'])):2d} "
                          f"bare {edits(ref, words(got['bare'])):2d} edits / {len(ref)} | {got['service'][:70]}")
                print(f"WER {model}: service {errs['service'] / ref_n:.3f} ({errs['service']}/{ref_n}), bare "
                      f"faster-whisper {errs['bare'] / ref_n:.3f} ({errs['bare']}/{ref_n})")
            if not args.skip_speed:
                speech = np.concatenate([a for _, a, _ in items])
                dense = np.tile(speech, int(np.ceil(args.minutes * 60 * RATE / len(speech))))[: int(args.minutes * 60
                                                                                                     * RATE)]
                long_path = make_media(work / f"dense-{model}.flac", video_s=None, audio=dense,
                                       audio_codec="flac")
                seconds = len(dense) / RATE
                service.transcribe(files[0])  # warm-up (the model is loaded)
                bare_text(bare, speech[: RATE * 5], vad_filter=True, word_timestamps=True)
                t0 = time.perf_counter()
                service.transcribe(long_path)
                t_service = time.perf_counter() - t0
                t0 = time.perf_counter()
                bare_text(bare, decode(long_path), vad_filter=True, word_timestamps=True, beam_size=1)
                t_bare = time.perf_counter() - t0
                print(f"speed {model}: {seconds:.0f} s of speech-dense audio: service {t_service:.1f} s "
                      f"({seconds / t_service:.1f}x realtime), bare faster-whisper (beam 1, VAD, word timings) "
                      f"{t_bare:.1f} s ({seconds / t_bare:.1f}x); ratio service/bare {t_service / t_bare:.2f}")
        if args.silence_hours > 0:
            from tests.fixtures.speech_media import make_silence

            silent = make_silence(work / "silence.flac", args.silence_hours * 3600)
            service = Service(args.models.split(",")[0], work / "silence")
            service.transcribe(files[0])  # warm-up
            t0 = time.perf_counter()
            text = service.transcribe(silent)
            took = time.perf_counter() - t0
            print(f"silence: {args.silence_hours:g} h of digital silence in {took:.1f} s "
                  f"({args.silence_hours * 3600 / took:.0f}x realtime), transcript {text!r}")
    print(f"peak RSS of this process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")


if __name__ == "__main__":
    main()
