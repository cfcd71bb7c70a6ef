"""The orchestrator's audio pass, with fakes: listening analyzers get the audio beside the frames, an audio-only file
is a job only for them, a cancelled job stops its audio pass, and a listener's own error is the job's."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.fakes import FakeEmbedder, FakeFetcher, FakeFrameSource, FakeIndex, RecordingNotifier
from video_ai.adapters.local_jobs import InMemoryJobRepository
from video_ai.analyzers import AnalyzerContext, AnalyzerSet
from video_ai.domain.errors import NoVideoStream
from video_ai.domain.models import Job, JobStatus, SampledFrame, Sampling, Shot, Source
from video_ai.domain.ports import AudioChunk, AudioInfo, AudioPass, FeatureOutput, FrameNeeds, MediaFile
from video_ai.services.analyze_video import AUDIO_ONLY_WARNING, AnalyzeDeps, analyze_video


class FakeAudioReader:
    def __init__(self, has_audio: bool, seconds: int, start_s: float | None, end_s: float | None) -> None:
        self.info = AudioInfo("mp4", "aac", 16_000, 1, 0.0, float(seconds)) if has_audio else None
        self.range = (start_s, end_s)
        self.seconds = seconds
        self.warnings: list[str] = []
        self.closed = False

    def chunks(self) -> Iterator[AudioChunk]:
        lo = int(self.range[0] or 0)
        hi = min(self.seconds, int(self.range[1]) if self.range[1] is not None else self.seconds)
        for t in range(lo, hi):
            yield AudioChunk(float(t), np.zeros(16_000, np.float32))

    def close(self) -> None:
        self.closed = True


class FakeAudioSource:
    def __init__(self, has_audio: bool = True, seconds: int = 10) -> None:
        self.has_audio = has_audio
        self.seconds = seconds
        self.opened: list[tuple[Path | MediaFile, float | None, float | None]] = []

    def open(self, path: Path | MediaFile, start_s: float | None = None,
             end_s: float | None = None) -> FakeAudioReader:
        self.opened.append((path, start_s, end_s))
        return FakeAudioReader(self.has_audio, self.seconds, start_s, end_s)


class ListeningRun:
    def __init__(self, analyzer: Listener) -> None:
        self.analyzer = analyzer
        self.heard: list[float] = []
        self.frames = 0

    def add(self, frames: Sequence[SampledFrame]) -> None:
        self.frames += len(frames)

    def listen(self, audio: AudioPass) -> None:
        self.analyzer.passes.append((audio.start_s, audio.end_s))
        if self.analyzer.error is not None:
            raise self.analyzer.error
        reader = audio.open(audio.start_s, audio.end_s)
        try:
            for chunk in reader.chunks():
                if audio.stop.is_set():
                    self.analyzer.stopped.set()
                    return
                self.heard.append(chunk.start_s)
                time.sleep(self.analyzer.chunk_delay_s)
        finally:
            reader.close()

    def finish(self, shots: Sequence[Shot]) -> FeatureOutput:
        return FeatureOutput(count=len(self.heard), fields={}, warnings=[f"heard {len(self.heard)} s"])


class Listener:
    """An analyzer that counts the seconds of audio it hears."""

    feature = "speech"
    needs = FrameNeeds(audio=True)

    def __init__(self, error: Exception | None = None, chunk_delay_s: float = 0.0) -> None:
        self.error = error
        self.chunk_delay_s = chunk_delay_s
        self.passes: list[tuple[float, float | None]] = []
        self.stopped = threading.Event()
        self.discarded = 0

    def start(self, job: Job) -> ListeningRun:
        return ListeningRun(self)

    def reuse(self, job: Job, previous: Job) -> FeatureOutput:
        return FeatureOutput()

    def merge(self, job: Job, segments: Sequence[Mapping[str, Any]], shots: Sequence[Shot]) -> FeatureOutput:
        return FeatureOutput()

    def discard(self, job: Job) -> None:
        self.discarded += 1


def _deps(tmp_path: Path, listener: Listener, audio: FakeAudioSource, **overrides: Any) -> AnalyzeDeps:
    embedder, index = FakeEmbedder(), FakeIndex()
    values: dict[str, Any] = dict(
        jobs=InMemoryJobRepository(), fetcher=FakeFetcher(), frames=FakeFrameSource(), embedder=embedder,
        index=index, notifier=RecordingNotifier(), workdir=tmp_path / "work", batch_size=3, progress_every=3,
        analyzers=AnalyzerSet(AnalyzerContext(embedder=embedder, index=index), overrides={"speech": listener}),
        audio=audio)
    values.update(overrides)
    return AnalyzeDeps(**values)


def _job(deps: AnalyzeDeps, features: list[str]) -> str:
    deps.jobs.create(Job(job_id="job", tenant="t", source=Source(url="https://example.com/v.mp4"),
                         features=features))  # type: ignore[arg-type]
    return "job"


def test_a_listener_hears_the_whole_track_beside_the_frames(tmp_path: Path) -> None:
    listener, audio = Listener(), FakeAudioSource(seconds=12)
    deps = _deps(tmp_path, listener, audio)
    result = analyze_video(_job(deps, ["visual", "speech"]), deps)
    assert result.job.status is JobStatus.SUCCEEDED and result.job.frames_indexed == 10
    assert listener.passes == [(0.0, None)] and [p[1:] for p in audio.opened] == [(0.0, None)]
    assert result.job.feature_stats["speech"].count == 12 and "heard 12 s" in result.job.warnings


def test_an_audio_only_file_is_a_job_for_a_listener_only(tmp_path: Path) -> None:
    listener = Listener()
    no_video = FakeFrameSource(open_error=NoVideoStream("v.mp4: the file has no video stream"))
    deps = _deps(tmp_path, listener, FakeAudioSource(seconds=7), frames=no_video)
    done = analyze_video(_job(deps, ["visual", "speech"]), deps).job
    assert done.status is JobStatus.SUCCEEDED and done.frames_indexed == 0 and done.shots_detected == 0
    assert done.video is not None and done.video.codec == "none" and done.video.duration_s == 7.0
    assert AUDIO_ONLY_WARNING in done.warnings and done.feature_stats["speech"].count == 7

    for audio, features in ((FakeAudioSource(), ["visual"]), (FakeAudioSource(has_audio=False), ["speech"])):
        deps = _deps(tmp_path, Listener(), audio, frames=no_video)
        failed = analyze_video(_job(deps, features), deps).job
        assert failed.status is JobStatus.FAILED and failed.error is not None
        assert failed.error.code == "no_video_stream"


def test_a_cancelled_job_stops_its_audio_pass(tmp_path: Path) -> None:
    listener = Listener(chunk_delay_s=0.05)
    deps = _deps(tmp_path, listener, FakeAudioSource(seconds=10_000), audio_checkpoint_s=0.05)
    job_id = _job(deps, ["speech"])
    threading.Timer(0.3, deps.jobs.delete, args=(job_id,)).start()
    started = time.perf_counter()
    analyze_video(job_id, deps)
    assert time.perf_counter() - started < 5 and listener.stopped.is_set() and listener.discarded == 1


def test_a_listeners_own_error_is_the_jobs(tmp_path: Path) -> None:
    deps = _deps(tmp_path, Listener(error=RuntimeError("model exploded")), FakeAudioSource())
    with pytest.raises(RuntimeError, match="model exploded"):
        analyze_video(_job(deps, ["visual", "speech"]), deps, final_attempt=True)
    failed = deps.jobs.get("job")
    assert failed is not None and failed.status is JobStatus.FAILED and failed.error is not None
    assert "model exploded" in failed.error.message


def test_a_segment_hears_its_own_range(tmp_path: Path) -> None:
    from tests.fakes import RecordingQueue

    listener, audio, queue = Listener(), FakeAudioSource(seconds=10), RecordingQueue()
    deps = _deps(tmp_path, listener, audio, segment_queue=queue, segment_s=4.0)
    analyze_video(_job(deps, ["speech"]), deps)
    for message in queue.messages:
        analyze_video("job", deps, segment=message["segment"])
    assert sorted(listener.passes, key=lambda p: p[0]) == [(0.0, 4.0), (4.0, 8.0), (8.0, None)]
    done = deps.jobs.get("job")
    assert done is not None and done.status is JobStatus.SUCCEEDED


@pytest.mark.parametrize("sampling", [Sampling(), Sampling(mode="keyframes"), Sampling(max_frames=5)],
                         ids=["default", "keyframes", "max_frames"])
def test_a_long_audio_only_file_is_split_by_duration(tmp_path: Path, sampling: Sampling) -> None:
    """No frames, so the sampling's frame budget and modes do not keep it whole: segments of segment_s over the
    probed audio duration, each hearing its range, finalised as an audio-only job."""
    from tests.fakes import RecordingQueue

    listener, audio, queue = Listener(), FakeAudioSource(seconds=10), RecordingQueue()
    no_video = FakeFrameSource(open_error=NoVideoStream("v.m4a: the file has no video stream"))
    deps = _deps(tmp_path, listener, audio, frames=no_video, segment_queue=queue, segment_s=4.0)
    deps.jobs.create(Job(job_id="job", tenant="t", source=Source(url="https://example.com/v.m4a"),
                         features=["visual", "speech"], sampling=sampling))
    first = analyze_video("job", deps).job
    assert first.status is JobStatus.PROCESSING and first.segments_total == 3 and listener.passes == []
    for message in reversed(queue.messages):
        analyze_video("job", deps, segment=message["segment"])
    assert sorted(listener.passes, key=lambda p: p[0]) == [(0.0, 4.0), (4.0, 8.0), (8.0, None)]
    assert no_video.opened == 1  # the first invocation's probe; the segments know the file has no video
    done = deps.jobs.get("job")
    assert done is not None and done.status is JobStatus.SUCCEEDED and done.frames_indexed == 0
    assert done.video is not None and done.video.codec == "none" and done.shots_detected == 0
    assert done.warnings[-1] == AUDIO_ONLY_WARNING and done.warnings.count(AUDIO_ONLY_WARNING) == 1


def test_a_short_audio_only_file_is_not_split(tmp_path: Path) -> None:
    from tests.fakes import RecordingQueue

    queue = RecordingQueue()
    no_video = FakeFrameSource(open_error=NoVideoStream("v.m4a: the file has no video stream"))
    deps = _deps(tmp_path, Listener(), FakeAudioSource(seconds=4), frames=no_video, segment_queue=queue,
                 segment_s=4.0)
    done = analyze_video(_job(deps, ["speech"]), deps).job
    assert done.status is JobStatus.SUCCEEDED and done.segments_total == 0 and queue.messages == []
