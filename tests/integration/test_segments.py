"""A long video split into time segments gives the same result as one pass: frames, times, ids, shots."""

from __future__ import annotations

import functools
import hashlib
import random
from concurrent.futures import ThreadPoolExecutor
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.fakes import RecordingNotifier, RecordingQueue
from video_ai.adapters.aws import AwsClients
from video_ai.adapters.file_thumbnails import FileThumbnails
from video_ai.adapters.frame_source import PyAVFrameSource
from video_ai.adapters.http_fetch import HttpVideoFetcher
from video_ai.adapters.local_jobs import InMemoryJobRepository
from video_ai.adapters.onnx_embedder import OnnxEmbedder
from video_ai.adapters.qdrant_edge_index import QdrantEdgeIndex
from video_ai.analyzers import AnalyzerContext, AnalyzerSet
from video_ai.domain.models import Job, JobStatus, S3Location, Sampling, SearchFilter, Source
from video_ai.domain.ports import FetchedVideo, VideoFetcher
from video_ai.samples import PALETTE, Pattern, ShotSpec, make_clip
from video_ai.services.analyze_video import AnalysisResult, AnalyzeDeps, analyze_video
from video_ai.settings import LimitsSettings, ModelSettings, NetworkSettings, SamplingSettings

ROOT = Path(__file__).resolve().parents[2]


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


def _with_thumbnails(deps: AnalyzeDeps) -> AnalyzeDeps:
    store = FileThumbnails(deps.workdir.parent / "thumbs")
    deps.analyzers = AnalyzerSet(AnalyzerContext(embedder=deps.embedder, index=deps.index, thumbnails=store))
    return deps


def _run(deps: AnalyzeDeps, clip: Path, sampling: Sampling) -> AnalysisResult:
    deps.jobs.create(Job(job_id="job", tenant="t", source=Source(url=clip.resolve().as_uri()), sampling=sampling))
    return analyze_video("job", deps)


@pytest.mark.parametrize("sampling", [Sampling(mode="fps", fps=2.0), Sampling(mode="shots")], ids=["fps", "shots"])
def test_split_run_equals_the_unsplit_run(tmp_path: Path, model_path: Path, sampling: Sampling) -> None:
    clip = tmp_path / "long.mp4"
    make_clip(clip, duration_s=13.0, fps=25.0, size=(320, 240), shots=[2.5, 6.0, 9.2], gop=50)
    whole = _with_thumbnails(_deps(tmp_path / "whole", model_path, None, 4.0))
    unsplit = _run(whole, clip, sampling)
    assert unsplit.job.status is JobStatus.SUCCEEDED and unsplit.job.segments_total == 0

    queue = RecordingQueue()
    split = _with_thumbnails(_deps(tmp_path / "split", model_path, queue, 4.0))
    first = _run(split, clip, sampling)
    assert first.job.status is JobStatus.PROCESSING and first.job.segments_total == 4
    messages = list(queue.messages)
    random.Random(3).shuffle(messages)  # segments finish in any order
    results = [analyze_video("job", split, segment=m["segment"]) for m in messages]
    final = next(r for r in results if r.job.status is JobStatus.SUCCEEDED)
    _assert_split_equals_unsplit(whole, unsplit, split, final)
    # Thumbnails: the segments' ones, renumbered by the merge, are the unsplit run's, byte for byte, and no staging
    # copy is left behind.
    store_split = FileThumbnails(tmp_path / "split" / "thumbs")
    store_whole = FileThumbnails(tmp_path / "whole" / "thumbs")
    split_jpegs = [store_split.get("job", f.index) for f in final.frames]
    assert all(split_jpegs) and split_jpegs == [store_whole.get("job", f.index) for f in unsplit.frames]
    assert sorted(p.name for p in (tmp_path / "split" / "thumbs").iterdir()) == ["job"]
    assert not final.job.warnings
    whole.index.close()
    split.index.close()


def _assert_split_equals_unsplit(whole: AnalyzeDeps, unsplit: AnalysisResult, split: AnalyzeDeps,
                                 final: AnalysisResult) -> None:
    """Same frames (point ids, ordinals, times, sample indexes, shots), shots and payloads; one notification."""
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


@pytest.mark.parametrize("ranged", [False, True], ids=["whole-copy", "ranges-of-copy"])
def test_a_split_http_job_downloads_its_origin_once(tmp_path: Path, model_path: Path, moto_clients: AwsClients,
                                                    ranged: bool) -> None:
    """Real parts: an origin on loopback HTTP, the SSRF-guarded fetcher, a staged copy on moto's S3 server, the
    segments reading it back (whole, or by ranges pinned to its ETag); the origin sees one GET and the result equals
    the unsplit run."""
    from tests.loopback import running
    from video_ai.adapters.s3_range_file import S3RangedOpener
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
            deps.ranged = S3RangedOpener(clients) if ranged else None
            deps.jobs.create(Job(job_id="job", tenant="t", source=Source(url=url), sampling=Sampling()))
            results[name] = analyze_video("job", deps)
            if queue is not None:
                assert results[name].job.segments_total == 3 and live.gets == ["/long.mp4"] * 2  # whole + split
                for message in queue.messages:
                    analyze_video("job", deps, segment=message["segment"])
                job = deps.jobs.get("job")
                assert job is not None and job.status is JobStatus.SUCCEEDED
                assert job.staged_source is not None and job.staged_source.s3 is not None
                copy = clients.s3.head_object(Bucket="svc-staging-it", Key=job.staged_source.s3.key)
                assert job.source_etag == (copy["ETag"] if ranged else None)
                read = [r.get("bytes_fetched") for r in deps.jobs.segment_results("job").values()]
                assert read == ([copy["ContentLength"]] * 3 if ranged else [None] * 3)  # smaller than one block
                results[name] = AnalysisResult(job=job, shots=job.shots)
            deps.index.close()
        assert live.gets == ["/long.mp4"] * 2  # the three segments read the staged copy, not the origin
    whole, split = results["whole"].job, results["split"].job
    assert split.frames_indexed == whole.frames_indexed == 9
    assert [s.start_frame for s in split.shots] == [s.start_frame for s in whole.shots]


# Small blocks and runs (8 KiB, up to 32 KiB per GET), so alignment and overshoot stay small beside a segment of a
# ~650 KB clip, as the defaults (512 KiB, up to 8 MiB) do beside a segment of a long video.
RANGES = {"block_size": 8 * 1024, "max_run": 4}


def _even_clip(path: Path, duration_s: float) -> bytes:
    """A clip whose bytes are spread evenly over time (textures of similar bitrate), a keyframe every second."""
    cuts = [c for c in (3.5, 7.0, 11.5, 14.2, 18.0, 21.6, 25.0) if c < duration_s]
    bounds = [0.0, *cuts, duration_s]
    patterns: list[Pattern] = ["dots", "grid", "stripes"]
    shots = [ShotSpec(bounds[i + 1] - bounds[i], patterns[i % 3], PALETTE[i * 3 % len(PALETTE)])
             for i in range(len(bounds) - 1)]
    make_clip(path, duration_s=duration_s, fps=25.0, size=(320, 240), shots=shots, gop=25)
    return path.read_bytes()


class _CountingFetcher:
    """The real fetcher, counting whole downloads."""

    def __init__(self, inner: VideoFetcher) -> None:
        self.inner = inner
        self.fetched: list[Source] = []

    def fetch(self, source: Source, workdir: Path) -> FetchedVideo:
        self.fetched.append(source)
        return self.inner.fetch(source, workdir)


def _s3_deps(tmp_path: Path, model_path: Path, clients: AwsClients, queue: RecordingQueue | None,
             segment_s: float) -> tuple[AnalyzeDeps, _CountingFetcher]:
    """Like the AWS worker: S3 fetcher, jobs in DynamoDB (moto's server), ranged reads of S3 sources."""
    from video_ai.adapters.dynamodb_jobs import DynamoDBJobRepository
    from video_ai.adapters.s3_range_file import S3RangedOpener
    from video_ai.adapters.s3_store import S3VideoFetcher
    from video_ai.local.resources import create_jobs_table

    deps = _deps(tmp_path, model_path, queue, segment_s)
    fetcher = _CountingFetcher(HttpVideoFetcher(NetworkSettings(), LimitsSettings(),
                                                s3_fetcher=S3VideoFetcher(clients, LimitsSettings().max_source_bytes)))
    deps.fetcher = fetcher
    if queue is not None:
        table = create_jobs_table(clients, ROOT / "template.yaml", stage="it")
        deps.jobs = DynamoDBJobRepository(table, clients)
        deps.ranged = S3RangedOpener(clients, **RANGES)
    return deps, fetcher


def test_a_split_s3_job_read_by_ranges_equals_the_unsplit_run(tmp_path: Path, model_path: Path,
                                                             moto_clients: AwsClients) -> None:
    """Each segment reads only its byte ranges of the S3 object, pinned to the ETag taken at the split; the segments
    run at the same time (as under `serve`); the result is exactly the unsplit run's."""
    clients = moto_clients
    data = _even_clip(tmp_path / "long.mp4", 30.0)
    clients.s3.create_bucket(Bucket="uploads-ranged-it")
    etag = clients.s3.put_object(Bucket="uploads-ranged-it", Key="tenants/t/long.mp4", Body=data)["ETag"]
    source = Source(s3=S3Location(bucket="uploads-ranged-it", key="tenants/t/long.mp4"))
    sampling = Sampling(mode="fps", fps=2.0)

    whole, _ = _s3_deps(tmp_path / "whole", model_path, clients, None, 10.0)
    whole.jobs.create(Job(job_id="job", tenant="t", source=source, sampling=sampling))
    unsplit = analyze_video("job", whole)
    assert unsplit.job.status is JobStatus.SUCCEEDED and unsplit.job.frames_indexed == 60

    queue = RecordingQueue()
    split, fetcher = _s3_deps(tmp_path / "split", model_path, clients, queue, 10.0)
    split.jobs.create(Job(job_id="job", tenant="t", source=source, sampling=sampling))
    first = analyze_video("job", split)
    assert first.job.segments_total == 3 and first.job.source_etag == etag and first.job.staged_source is None
    with ThreadPoolExecutor(max_workers=3) as pool:
        results = list(pool.map(lambda m: analyze_video("job", split, segment=m["segment"]), queue.messages))
    final = next(r for r in results if r.job.status is JobStatus.SUCCEEDED)
    _assert_split_equals_unsplit(whole, unsplit, split, final)
    done = split.jobs.get("job")
    assert done is not None and done.sha256 == hashlib.sha256(data).hexdigest() == unsplit.job.sha256
    assert fetcher.fetched == [source]  # the first invocation's download (sha256, content reuse); no segment's
    fractions = [r["bytes_fetched"] / len(data) for _, r in sorted(split.jobs.segment_results("job").items())]
    # Measured: ~0.45 / 0.58 / 0.51 (a third of the clip, plus the pre-roll GOP, the decoder's look-ahead past the
    # segment's end, FFmpeg's look at the header and block alignment, and the run read ahead after the header's
    # in-order reads, before the seek to the segment: ~0.44 / 0.53 / 0.46 without read-ahead); three whole downloads
    # would be 3.0.
    assert fractions[1] < 0.65 and max(fractions) < 0.65 and sum(fractions) < 1.65, fractions
    whole.index.close()
    split.index.close()


def test_an_object_overwritten_after_the_split_fails_the_job_with_source_changed(
    tmp_path: Path, model_path: Path, moto_clients: AwsClients
) -> None:
    """The segments' ranged GETs are pinned to the split's ETag: new bytes under the key end the job `failed`
    (source_changed) at the first segment, once, with no retry; GET /jobs/{id} never shows the pin."""
    from fastapi.testclient import TestClient

    from video_ai.api.app import ApiContext, create_app
    from video_ai.api.auth import ApiKeyAuth, hash_key
    from video_ai.settings import Settings

    clients = moto_clients
    data = _even_clip(tmp_path / "long.mp4", 9.0)
    clients.s3.create_bucket(Bucket="uploads-ranged-it")
    clients.s3.put_object(Bucket="uploads-ranged-it", Key="v.mp4", Body=data)
    queue = RecordingQueue()
    split, fetcher = _s3_deps(tmp_path / "split", model_path, clients, queue, 4.0)
    source = Source(s3=S3Location(bucket="uploads-ranged-it", key="v.mp4"))
    split.jobs.create(Job(job_id="job", tenant="t", source=source, sampling=Sampling()))
    assert analyze_video("job", split).job.segments_total == 3
    make_clip(tmp_path / "other.mp4", duration_s=9.0, fps=25.0, size=(320, 240), shots=[4.0], gop=25, seed=5)
    clients.s3.put_object(Bucket="uploads-ranged-it", Key="v.mp4", Body=(tmp_path / "other.mp4").read_bytes())

    results = [analyze_video("job", split, segment=m["segment"]) for m in queue.messages]
    job = split.jobs.get("job")
    assert job is not None and job.status is JobStatus.FAILED and job.error is not None
    assert job.error.code == "source_changed" and "changed after the job started" in job.error.message
    assert all(r.job.status is JobStatus.FAILED for r in results) and split.jobs.segment_results("job") == {}
    notifier = split.notifier
    assert isinstance(notifier, RecordingNotifier) and [j.error for j in notifier.finished] == [job.error]
    assert fetcher.fetched == [source]

    settings = Settings()
    ctx = ApiContext(settings=settings, jobs=split.jobs, queue=RecordingQueue(),
                     auth=ApiKeyAuth({hash_key("key-t"): "t"}), index_factory=lambda: split.index,
                     embedder_factory=lambda: split.embedder)
    with TestClient(create_app(ctx)) as api:
        body = api.get("/jobs/job", headers={"x-api-key": "key-t"}).json()
    assert body["status"] == "failed" and body["error"]["code"] == "source_changed"
    assert "source_etag" not in body and job.source_etag is not None and job.source_etag not in str(body)
    split.index.close()
