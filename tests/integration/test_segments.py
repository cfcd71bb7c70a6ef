"""A long video split into time segments gives the same result as one pass: frames, times, ids, shots."""

from __future__ import annotations

import functools
import random
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.fakes import RecordingNotifier, RecordingQueue
from video_ai.adapters.aws import AwsClients
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


class _CountingFiles(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        return None

    def do_GET(self) -> None:
        self.server.gets.append(self.path)  # type: ignore[attr-defined]
        super().do_GET()


def test_a_split_http_job_downloads_its_origin_once(tmp_path: Path, model_path: Path, moto_clients: AwsClients) -> None:
    """Real parts: an origin on loopback HTTP, the SSRF-guarded fetcher, a staged copy on moto's S3 server, the
    segments reading it back; the origin sees one GET and the result equals the unsplit run."""
    from tests.loopback import running
    from video_ai.adapters.s3_store import S3SourceStager, S3VideoFetcher

    clients = moto_clients
    clients.s3.create_bucket(Bucket="svc-staging-it")
    origin_dir = tmp_path / "origin"
    origin_dir.mkdir()
    make_clip(origin_dir / "long.mp4", duration_s=9.0, fps=25.0, size=(160, 120), shots=[2.5, 6.0], gop=50)
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_CountingFiles, directory=str(origin_dir)))
    server.gets = []  # type: ignore[attr-defined]
    for live in running(server):
        port = int(live.server_address[1])
        url = f"http://127.0.0.1:{port}/long.mp4"
        fetcher = HttpVideoFetcher(NetworkSettings(allow_http=True, allow_private_addresses=True), LimitsSettings(),
                                   s3_fetcher=S3VideoFetcher(clients, LimitsSettings().max_source_bytes),
                                   exempt_endpoints=[("127.0.0.1", port)])
        results = {}
        for name, queue in (("whole", None), ("split", RecordingQueue())):
            deps = _deps(tmp_path / name, model_path, queue, 4.0)
            deps.fetcher = fetcher
            deps.stager = S3SourceStager(clients, "svc-staging-it")
            deps.jobs.create(Job(job_id="job", tenant="t", source=Source(url=url), sampling=Sampling()))
            results[name] = analyze_video("job", deps)
            if queue is not None:
                assert results[name].job.segments_total == 3 and live.gets == ["/long.mp4"] * 2  # whole + split
                for message in queue.messages:
                    analyze_video("job", deps, segment=message["segment"])
                job = deps.jobs.get("job")
                assert job is not None and job.status is JobStatus.SUCCEEDED
                assert job.staged_source is not None and job.staged_source.s3 is not None
                results[name] = AnalysisResult(job=job, shots=job.shots)
            deps.index.close()
        assert live.gets == ["/long.mp4"] * 2  # the three segments read the staged copy, not the origin
    whole, split = results["whole"].job, results["split"].job
    assert split.frames_indexed == whole.frames_indexed == 9
    assert [s.start_frame for s in split.shots] == [s.start_frame for s in whole.shots]
