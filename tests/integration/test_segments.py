"""A long video split into time segments gives the same result as one pass: frames, times, ids, shots."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from tests.fakes import RecordingNotifier, RecordingQueue
from video_ai.adapters.frame_source import PyAVFrameSource
from video_ai.adapters.http_fetch import HttpVideoFetcher
from video_ai.adapters.local_jobs import InMemoryJobRepository
from video_ai.adapters.onnx_embedder import OnnxEmbedder
from video_ai.adapters.qdrant_edge_index import QdrantEdgeIndex
from video_ai.domain.models import Job, JobStatus, Sampling, SearchFilter, Source
from video_ai.samples import make_clip
from video_ai.services.analyze_video import AnalysisResult, AnalyzeDeps, analyze_video
from video_ai.settings import LimitsSettings, ModelSettings, NetworkSettings, SamplingSettings


def _deps(data: Path, model_path: Path, queue: RecordingQueue | None, segment_s: float) -> AnalyzeDeps:
    return AnalyzeDeps(
        jobs=InMemoryJobRepository(),
        fetcher=HttpVideoFetcher(NetworkSettings(), LimitsSettings(), allow_local_files=True),
        frames=PyAVFrameSource(SamplingSettings(), LimitsSettings()),
        embedder=OnnxEmbedder(ModelSettings(), model_path),
        index=QdrantEdgeIndex(data),
        notifier=RecordingNotifier(),
        workdir=data / "tmp",
        segment_queue=queue,
        segment_s=segment_s,
    )


def _run(deps: AnalyzeDeps, clip: Path, sampling: Sampling) -> AnalysisResult:
    deps.jobs.create(Job(job_id="job", tenant="t", source=Source(url=clip.resolve().as_uri()), sampling=sampling))
    return analyze_video("job", deps)


@pytest.mark.parametrize("sampling", [Sampling(mode="fps", fps=2.0), Sampling(mode="shots")], ids=["fps", "shots"])
def test_split_run_equals_the_unsplit_run(tmp_path: Path, model_path: Path, sampling: Sampling) -> None:
    clip = tmp_path / "long.mp4"
    make_clip(clip, duration_s=13.0, fps=25.0, size=(320, 240), shots=[2.5, 6.0, 9.2], gop=50)
    whole = _deps(tmp_path / "whole", model_path, None, 4.0)
    unsplit = _run(whole, clip, sampling)
    assert unsplit.job.status is JobStatus.SUCCEEDED and unsplit.job.segments_total == 0

    queue = RecordingQueue()
    split = _deps(tmp_path / "split", model_path, queue, 4.0)
    first = _run(split, clip, sampling)
    assert first.job.status is JobStatus.PROCESSING and first.job.segments_total == 4
    messages = list(queue.messages)
    random.Random(3).shuffle(messages)  # segments finish in any order
    results = [analyze_video("job", split, segment=m["segment"]) for m in messages]
    final = next(r for r in results if r.job.status is JobStatus.SUCCEEDED)
    done = split.jobs.get("job")
    assert done is not None and done.status is JobStatus.SUCCEEDED
    notifier = split.notifier
    assert isinstance(notifier, RecordingNotifier) and len(notifier.finished) == 1

    assert [f.point_id for f in final.frames] == [f.point_id for f in unsplit.frames]
    assert [f.frame_number for f in final.frames] == [f.frame_number for f in unsplit.frames]
    for a, b in zip(final.frames, unsplit.frames, strict=True):
        assert abs(a.pts_s - b.pts_s) < 1e-3 and a.index == b.index and a.shot == b.shot
    assert [s.start_frame for s in done.shots] == [s.start_frame for s in unsplit.shots]
    assert done.frames_indexed == unsplit.job.frames_indexed
    model = split.embedder.info
    assert split.index.count(model, SearchFilter(job_id="job")) == done.frames_indexed
    # Payloads carry the global sample index and shot, exactly as the unsplit run wrote them.
    a = {p.id: p.payload for p in split.index.list_frames(model, "job", "t", None, 1000)}
    b = {p.id: p.payload for p in whole.index.list_frames(model, "job", "t", None, 1000)}
    assert {k: (v["index"], v["shot"], round(v["pts_s"], 3)) for k, v in a.items()} == {
        k: (v["index"], v["shot"], round(v["pts_s"], 3)) for k, v in b.items()
    }
    whole.index.close()
    split.index.close()


def test_containers_without_a_sample_index_are_not_split(tmp_path: Path, model_path: Path) -> None:
    clip = tmp_path / "long.webm"
    make_clip(clip, duration_s=9.0, fps=25.0, size=(160, 120), codec="vp9", shots=[4.0])
    queue = RecordingQueue()
    deps = _deps(tmp_path / "d", model_path, queue, 4.0)
    result = _run(deps, clip, Sampling())
    assert result.job.status is JobStatus.SUCCEEDED and queue.messages == [] and result.job.frames_indexed == 9
    deps.index.close()
