from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fakes import (
    FakeEmbedder,
    FakeFetcher,
    FakeFrameSource,
    FakeIndex,
    FakeReader,
    RecordingMetrics,
    RecordingNotifier,
)
from video_ai.adapters.local_jobs import InMemoryJobRepository
from video_ai.domain.errors import CorruptMedia, FetchFailed, IndexUnavailable, UnsupportedMedia
from video_ai.domain.models import CallbackState, Job, JobStatus, SampledFrame, SearchFilter, Source, point_id
from video_ai.domain.ports import FetchedVideo
from video_ai.services.analyze_video import AnalyzeDeps, analyze_video


def _deps(tmp_path: Path, **overrides: object) -> AnalyzeDeps:
    values: dict[str, object] = dict(
        jobs=InMemoryJobRepository(), fetcher=FakeFetcher(), frames=FakeFrameSource(), embedder=FakeEmbedder(),
        index=FakeIndex(), notifier=RecordingNotifier(), workdir=tmp_path / "work", metrics=RecordingMetrics(),
        batch_size=3, progress_every=3,
    )
    values.update(overrides)
    return AnalyzeDeps(**values)  # type: ignore[arg-type]


def _queued(deps: AnalyzeDeps, job_id: str = "job-1") -> Job:
    return deps.jobs.create(Job(job_id=job_id, tenant="t1", source=Source(url="https://example.com/v.mp4")))


def test_success_indexes_every_frame_and_notifies_once(tmp_path: Path) -> None:
    deps = _deps(tmp_path)
    _queued(deps)
    result = analyze_video("job-1", deps)
    assert result.job.status is JobStatus.SUCCEEDED
    assert result.job.frames_indexed == 10 and result.job.shots_detected == 2
    index = deps.index
    assert isinstance(index, FakeIndex)
    assert len(index.points) == 10
    assert {p.payload["tenant"] for p in index.points.values()} == {"t1"}
    assert point_id("job-1", 25) in index.points
    notifier = deps.notifier
    assert isinstance(notifier, RecordingNotifier)
    assert [j.status for j in notifier.finished] == [JobStatus.SUCCEEDED]
    stored = deps.jobs.get("job-1")
    assert stored is not None and stored.progress == 1.0 and len(stored.shots) == 2
    assert stored.video is not None and stored.model is not None and stored.sha256 == "0" * 64
    assert [f.pts_s for f in result.frames] == [float(i) for i in range(10)]
    # The temp workdir is gone.
    assert list((tmp_path / "work").iterdir()) == []


def test_rerun_of_finished_job_is_a_no_op(tmp_path: Path) -> None:
    deps = _deps(tmp_path)
    _queued(deps)
    analyze_video("job-1", deps)
    analyze_video("job-1", deps)
    assert isinstance(deps.frames, FakeFrameSource) and deps.frames.opened == 1
    assert isinstance(deps.notifier, RecordingNotifier) and len(deps.notifier.finished) == 1


class _Died(BaseException):
    """The worker's process ending where it stands (not an Exception: nothing on the way up handles it)."""


class DiesOnFirstPublish(RecordingNotifier):
    def __init__(self) -> None:
        super().__init__()
        self.died = False

    def job_finished(self, job: Job, replay: bool = False) -> None:
        if not self.died:
            self.died = True
            raise _Died()
        super().job_finished(job, replay)


def test_death_between_recording_the_end_and_publishing_it_the_redelivery_publishes_it(tmp_path: Path) -> None:
    deps = _deps(tmp_path, notifier=DiesOnFirstPublish())
    _queued(deps)
    with pytest.raises(_Died):
        analyze_video("job-1", deps)
    recorded = deps.jobs.get("job-1")
    assert recorded is not None and recorded.status is JobStatus.SUCCEEDED and recorded.announced_at is None
    analyze_video("job-1", deps)  # the message's redelivery
    assert isinstance(deps.notifier, RecordingNotifier)
    # The job as it was recorded: the same body the lost publish would have carried.
    assert [j.model_dump() for j in deps.notifier.finished] == [recorded.model_dump()]
    stored = deps.jobs.get("job-1")
    assert stored is not None and stored.announced_at is not None
    analyze_video("job-1", deps)  # and once announced, a further redelivery publishes nothing
    assert len(deps.notifier.finished) == 1
    assert isinstance(deps.frames, FakeFrameSource) and deps.frames.opened == 1


def test_a_finished_job_with_callback_state_was_announced_and_is_not_published_again(tmp_path: Path) -> None:
    deps = _deps(tmp_path, notifier=DiesOnFirstPublish())
    _queued(deps)
    with pytest.raises(_Died):
        analyze_video("job-1", deps)
    # Only a published notification starts a delivery: the callback function recorded one (the publish got out just
    # before the death). Publishing again would send a second body, with this callback state in it, under one id.
    deps.jobs.update("job-1", callback=CallbackState(status="pending", attempts=1, last_error="http 503"))
    analyze_video("job-1", deps)
    assert isinstance(deps.notifier, RecordingNotifier) and deps.notifier.finished == []


def test_redelivery_while_processing_overwrites_points_without_duplicates(tmp_path: Path) -> None:
    deps = _deps(tmp_path)
    _queued(deps)
    deps.jobs.transition("job-1", JobStatus.PROCESSING)  # a worker died mid-job
    analyze_video("job-1", deps)
    assert isinstance(deps.index, FakeIndex)
    assert deps.index.count(deps.embedder.info, SearchFilter(job_id="job-1")) == 10


@pytest.mark.parametrize("error", [UnsupportedMedia("not a video"), CorruptMedia("broken moov")])
def test_permanent_error_fails_job_without_raising(tmp_path: Path, error: Exception) -> None:
    deps = _deps(tmp_path, frames=FakeFrameSource(open_error=error))  # type: ignore[arg-type]
    _queued(deps)
    result = analyze_video("job-1", deps)
    assert result.job.status is JobStatus.FAILED
    assert result.job.error is not None and result.job.error.code == error.code  # type: ignore[attr-defined]
    assert isinstance(deps.notifier, RecordingNotifier)
    assert [j.status for j in deps.notifier.finished] == [JobStatus.FAILED]
    metrics = deps.metrics
    assert isinstance(metrics, RecordingMetrics)
    assert metrics.counts[("jobs_failed", (("error_code", error.code),))] == 1  # type: ignore[attr-defined]


def test_error_mid_stream_fails_job_and_closes_reader(tmp_path: Path) -> None:
    frames = FakeFrameSource(error_after=CorruptMedia("decode error at 9.0 s"))
    deps = _deps(tmp_path, frames=frames)
    _queued(deps)
    result = analyze_video("job-1", deps)
    assert result.job.error is not None and result.job.error.code == "corrupt_media"
    assert frames.readers[0].closed


def test_transient_error_raises_and_keeps_job_processing(tmp_path: Path) -> None:
    deps = _deps(tmp_path, index=FakeIndex(error=IndexUnavailable("qdrant down")))
    _queued(deps)
    with pytest.raises(IndexUnavailable):
        analyze_video("job-1", deps)
    job = deps.jobs.get("job-1")
    assert job is not None and job.status is JobStatus.PROCESSING
    assert isinstance(deps.notifier, RecordingNotifier) and deps.notifier.finished == []


def test_transient_error_on_final_attempt_marks_retries_exhausted(tmp_path: Path) -> None:
    deps = _deps(tmp_path, fetcher=FakeFetcher(error=FetchFailed("503 from origin")))
    _queued(deps)
    with pytest.raises(FetchFailed):
        analyze_video("job-1", deps, final_attempt=True)
    job = deps.jobs.get("job-1")
    assert job is not None and job.status is JobStatus.FAILED
    assert job.error is not None and job.error.code == "retries_exhausted"


def test_an_unexpected_error_reaches_the_job_with_its_message_not_only_its_class(tmp_path: Path) -> None:
    # What a second writer on the embedded index used to end as: `gave up after retries: Exception`.
    wal = Exception("failed to open WAL .video-ai/qdrant/x/wal: Can't init WAL: Kind(WouldBlock)")
    deps = _deps(tmp_path, fetcher=FakeFetcher(error=wal))
    _queued(deps)
    with pytest.raises(Exception, match="Can't init WAL"):
        analyze_video("job-1", deps, final_attempt=True)
    job = deps.jobs.get("job-1")
    assert job is not None and job.error is not None and job.error.code == "retries_exhausted"
    assert job.error.message == ("gave up after retries: Exception: failed to open WAL .video-ai/qdrant/x/wal: "
                                 "Can't init WAL: Kind(WouldBlock)")


def test_the_worker_logs_a_failed_attempt_with_its_cause_and_traceback(caplog: pytest.LogCaptureFixture) -> None:
    # powertools' batch processor records a failing record without logging it: the worker's record context does.
    from types import SimpleNamespace

    from video_ai.workers import job_record_context

    record = SimpleNamespace(body='{"job_id": "job-9", "tenant": "t1"}', message_id="m-1",
                             attributes=SimpleNamespace(approximate_receive_count="2", sent_timestamp=None),
                             raw_event={"attributes": {"ApproximateReceiveCount": "2"}})
    runtime = SimpleNamespace(metrics=RecordingMetrics())
    wal = Exception("failed to open WAL: Can't init WAL: Kind(WouldBlock)")
    with caplog.at_level("WARNING", logger="video_ai"):
        with pytest.raises(Exception, match="Can't init WAL"), job_record_context(record, runtime):  # type: ignore[arg-type]
            raise wal
        with pytest.raises(FetchFailed), job_record_context(record, runtime):  # type: ignore[arg-type]
            raise FetchFailed("origin answered 503")
    unexpected = [r for r in caplog.records if r.exc_info and r.exc_info[1] is wal]
    assert len(unexpected) == 1 and unexpected[0].levelname == "ERROR"
    assert "attempt 2 failed unexpectedly" in unexpected[0].getMessage()
    transient = [r for r in caplog.records if "fetch_failed: origin answered 503" in r.getMessage()]
    assert len(transient) == 1 and transient[0].levelname == "WARNING" and transient[0].exc_info is None


def test_serve_learns_which_records_failed_busy_and_lambda_collects_nothing() -> None:
    # serve's pollers keep a busy record at the queue's visibility timeout; every other failure returns in 2 s.
    from types import SimpleNamespace

    from video_ai.domain.errors import JobBusy
    from video_ai.workers import collecting_busy, job_record_context

    def record(message_id: str) -> Any:
        return SimpleNamespace(body='{"job_id": "job-9", "tenant": "t1"}', message_id=message_id,
                               attributes=SimpleNamespace(approximate_receive_count="1", sent_timestamp=None))

    runtime = SimpleNamespace(metrics=RecordingMetrics())
    with collecting_busy() as busy:
        with pytest.raises(JobBusy), job_record_context(record("m-busy"), runtime):  # type: ignore[arg-type]
            raise JobBusy("held by another run")
        with pytest.raises(FetchFailed), job_record_context(record("m-other"), runtime):  # type: ignore[arg-type]
            raise FetchFailed("origin answered 503")
    assert busy == {"m-busy"}
    with pytest.raises(JobBusy), job_record_context(record("m-lambda"), runtime):  # type: ignore[arg-type]
        raise JobBusy("held by another run")  # outside a collecting block (Lambda): nothing kept, nothing grows
    assert busy == {"m-busy"}


def test_deleted_job_stops_at_next_batch(tmp_path: Path) -> None:
    deps = _deps(tmp_path, frames=FakeFrameSource(n_frames=30))
    _queued(deps)
    jobs = deps.jobs
    seen: list[int] = []

    def delete_after_first_batch(frame: object) -> None:
        seen.append(1)
        if len(seen) == 4:
            jobs.delete("job-1")

    analyze_video("job-1", deps, on_frame=delete_after_first_batch)
    assert isinstance(deps.index, FakeIndex)
    assert len(seen) < 30 and deps.index.points == {}
    assert isinstance(deps.notifier, RecordingNotifier) and deps.notifier.finished == []


def test_a_run_overtaken_by_another_run_that_succeeded_keeps_the_vectors(tmp_path: Path) -> None:
    """Two deliveries of one job ran at once; the other finished first. Its points have the same ids as this run's:
    stopping must not delete them, as it does for a deleted job."""
    deps = _deps(tmp_path, frames=FakeFrameSource(n_frames=30))
    _queued(deps)
    jobs = deps.jobs
    seen: list[int] = []

    def other_run_finishes(frame: object) -> None:
        seen.append(1)
        if len(seen) == 4:
            jobs.transition("job-1", JobStatus.SUCCEEDED, frames_indexed=30)

    result = analyze_video("job-1", deps, on_frame=other_run_finishes)
    assert result.job.status is JobStatus.SUCCEEDED and result.job.frames_indexed == 30
    assert isinstance(deps.index, FakeIndex) and len(seen) < 30 and len(deps.index.points) >= 3
    assert isinstance(deps.notifier, RecordingNotifier) and deps.notifier.finished == []  # the other run announces


def test_progress_reported_and_monotonic(tmp_path: Path) -> None:
    deps = _deps(tmp_path)
    _queued(deps)
    seen: list[float] = []
    analyze_video("job-1", deps, on_progress=seen.append)
    assert seen == sorted(seen) and seen[-1] == 1.0 and all(0.0 <= p <= 1.0 for p in seen)


def test_same_bytes_same_sampling_reuses_vectors_without_decoding(tmp_path: Path) -> None:
    deps = _deps(tmp_path)
    _queued(deps, "first")
    analyze_video("first", deps)
    _queued(deps, "second")
    result = analyze_video("second", deps)
    assert isinstance(deps.frames, FakeFrameSource) and deps.frames.opened == 1  # decoded once, for "first" only
    assert result.job.reused_from == "first" and result.job.frames_indexed == 10
    assert [f.pts_s for f in result.frames] == [float(i) for i in range(10)]
    assert isinstance(deps.index, FakeIndex)
    assert deps.index.count(deps.embedder.info, SearchFilter(job_id="second")) == 10
    assert {p.payload["job_id"] for p in deps.index.points.values()} == {"first", "second"}
    stored = deps.jobs.get("second")
    assert stored is not None and len(stored.shots) == 2


def test_other_tenant_or_other_sampling_does_not_reuse(tmp_path: Path) -> None:
    from video_ai.domain.models import Sampling

    deps = _deps(tmp_path)
    _queued(deps, "first")
    analyze_video("first", deps)
    deps.jobs.create(Job(job_id="other-tenant", tenant="t2", source=Source(url="https://example.com/v.mp4")))
    deps.jobs.create(Job(job_id="other-fps", tenant="t1", source=Source(url="https://example.com/v.mp4"),
                         sampling=Sampling(fps=2.0)))
    assert analyze_video("other-tenant", deps).job.reused_from is None
    assert analyze_video("other-fps", deps).job.reused_from is None
    assert isinstance(deps.frames, FakeFrameSource) and deps.frames.opened == 3


def test_long_video_splits_into_segments_and_equals_the_unsplit_run(tmp_path: Path) -> None:
    import random

    from tests.fakes import RecordingQueue

    whole = _deps(tmp_path / "a", frames=FakeFrameSource(n_frames=11, shot_len=4))
    _queued(whole, "job")
    unsplit = analyze_video("job", whole)

    queue = RecordingQueue()
    split = _deps(tmp_path / "b", frames=FakeFrameSource(n_frames=11, shot_len=4), segment_queue=queue, segment_s=3.0)
    _queued(split, "job")
    first = analyze_video("job", split)
    assert first.job.status is JobStatus.PROCESSING and first.job.segments_total == 4
    assert [m["segment"] for m in queue.messages] == [0, 1, 2, 3]
    messages = list(queue.messages)
    random.Random(7).shuffle(messages)
    results = [analyze_video("job", split, segment=m["segment"]) for m in messages]
    analyze_video("job", split, segment=messages[0]["segment"])  # a redelivered segment counts once
    done = split.jobs.get("job")
    assert done is not None and done.status is JobStatus.SUCCEEDED
    assert isinstance(split.notifier, RecordingNotifier) and len(split.notifier.finished) == 1
    assert done.frames_indexed == unsplit.job.frames_indexed == 11
    assert done.shots == unsplit.shots
    final = next(r for r in results if r.frames)
    assert [(f.point_id, f.pts_s, f.index, f.shot) for f in final.frames] == [
        (f.point_id, f.pts_s, f.index, f.shot) for f in unsplit.frames
    ]
    index_a, index_b = whole.index, split.index
    assert isinstance(index_a, FakeIndex) and isinstance(index_b, FakeIndex)
    assert {k: p.payload for k, p in index_a.points.items()} == {k: p.payload for k, p in index_b.points.items()}


def test_segment_message_for_an_unsplit_job_is_refused(tmp_path: Path) -> None:
    deps = _deps(tmp_path)
    _queued(deps)
    deps.jobs.transition("job-1", JobStatus.PROCESSING)
    result = analyze_video("job-1", deps, segment=2)
    assert result.job.status is JobStatus.FAILED and result.job.error is not None
    assert result.job.error.code == "invalid_request"


def test_stale_job_directories_are_cleaned_once_per_process(tmp_path: Path) -> None:
    from video_ai.composition import clean_workdir

    work = tmp_path / "tmp"
    (work / "job-dead1234-x").mkdir(parents=True)
    (work / "job-dead1234-x" / "video.mp4").write_bytes(b"0" * 100)
    (work / "other").mkdir()
    assert clean_workdir(work) == 1
    assert [p.name for p in work.iterdir()] == ["other"]
    assert clean_workdir(tmp_path / "missing") == 0


class _Stager:
    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self.staged: list[tuple[str, bytes]] = []

    def stage(self, job_id: str, path: Path) -> Source:
        if self.fail:
            raise OSError("AccessDenied")
        self.staged.append((job_id, path.read_bytes()))
        from video_ai.domain.models import S3Location

        return Source(s3=S3Location(bucket="svc", key=f"staging/{job_id}/source"))


def _split_job(tmp_path: Path, source: Source, stager: _Stager) -> tuple[AnalyzeDeps, list[Source]]:
    from tests.fakes import RecordingQueue

    queue = RecordingQueue()
    deps = _deps(tmp_path, frames=FakeFrameSource(n_frames=11, shot_len=4), segment_queue=queue, segment_s=3.0,
                 stager=stager)
    deps.jobs.create(Job(job_id="job", tenant="t1", source=source))
    first = analyze_video("job", deps)
    assert first.job.segments_total == 4
    for message in queue.messages:
        analyze_video("job", deps, segment=message["segment"])
    done = deps.jobs.get("job")
    assert done is not None and done.status is JobStatus.SUCCEEDED and done.frames_indexed == 11
    assert isinstance(deps.fetcher, FakeFetcher)
    return deps, deps.fetcher.fetched


def test_a_split_http_job_downloads_the_origin_once_and_its_segments_read_the_staged_copy(tmp_path: Path) -> None:
    origin = Source(url="https://example.com/v.mp4")
    stager = _Stager()
    deps, fetched = _split_job(tmp_path, origin, stager)
    assert stager.staged == [("job", b"fake")]  # the bytes the first invocation fetched
    staged = Source.model_validate({"s3": {"bucket": "svc", "key": "staging/job/source"}})
    assert fetched == [origin] + [staged] * 4
    job = deps.jobs.get("job")
    assert job is not None and job.staged_source == staged


def test_staging_is_skipped_for_s3_and_local_sources_and_a_failed_copy_falls_back_to_the_origin(tmp_path: Path) -> None:
    s3 = Source.model_validate({"s3": {"bucket": "uploads", "key": "tenants/t1/incoming/v.mp4"}})
    stager = _Stager()
    _, fetched = _split_job(tmp_path / "s3", s3, stager)
    assert stager.staged == [] and fetched == [s3] * 5
    local = Source(url="file:///videos/v.mp4")
    _, fetched = _split_job(tmp_path / "local", local, stager)
    assert stager.staged == [] and fetched == [local] * 5
    origin = Source(url="https://example.com/v.mp4")
    _, fetched = _split_job(tmp_path / "fail", origin, _Stager(fail=True))
    assert fetched == [origin] * 5


class _RangedFile:
    """What a segment reads through: records that it was closed and claims a byte count."""

    name = "source"
    bytes_fetched = 1234
    requests = 2
    fetch_seconds = 0.01

    def __init__(self) -> None:
        self.closed = False

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def read(self, size: int = -1, /) -> bytes:
        return b""

    def seek(self, offset: int, whence: int = 0, /) -> int:
        return 0

    def tell(self) -> int:
        return 0

    def close(self) -> None:
        self.closed = True


class _Opener:
    def __init__(self, pin_error: Exception | None = None) -> None:
        self.pin_error = pin_error
        self.pinned: list[Source] = []
        self.opened: list[tuple[Source, str | None]] = []
        self.files: list[_RangedFile] = []

    def pin(self, source: Source) -> str:
        self.pinned.append(source)
        if self.pin_error is not None:
            raise self.pin_error
        return '"staged-etag"'

    def open(self, source: Source, etag: str | None) -> _RangedFile:
        self.opened.append((source, etag))
        self.files.append(_RangedFile())
        return self.files[-1]


def _ranged_split(tmp_path: Path, source: Source, opener: _Opener, stager: _Stager | None = None,
                  frames: FakeFrameSource | None = None) -> AnalyzeDeps:
    from tests.fakes import RecordingQueue

    queue = RecordingQueue()
    deps = _deps(tmp_path, fetcher=FakeFetcher(s3_etag='"source-etag"'), segment_queue=queue, segment_s=3.0,
                 frames=frames or FakeFrameSource(n_frames=11, shot_len=4), stager=stager or _Stager(), ranged=opener)
    deps.jobs.create(Job(job_id="job", tenant="t1", source=source))
    assert analyze_video("job", deps).job.segments_total == 4
    for message in queue.messages:
        analyze_video("job", deps, segment=message["segment"])
    return deps


def test_segments_of_an_s3_source_read_ranges_pinned_to_the_etag_of_the_first_download(tmp_path: Path) -> None:
    s3 = Source.model_validate({"s3": {"bucket": "uploads", "key": "tenants/t1/incoming/v.mp4"}})
    opener = _Opener()
    deps = _ranged_split(tmp_path, s3, opener)
    job = deps.jobs.get("job")
    assert job is not None and job.status is JobStatus.SUCCEEDED and job.frames_indexed == 11
    assert job.source_etag == '"source-etag"' and "source_etag" not in job.public()
    assert isinstance(deps.fetcher, FakeFetcher) and deps.fetcher.fetched == [s3]  # the first invocation only
    assert opener.opened == [(s3, '"source-etag"')] * 4 and opener.pinned == []
    assert all(f.closed for f in opener.files)
    frames = deps.frames
    assert isinstance(frames, FakeFrameSource) and frames.opened_with[1:] == opener.files
    results = deps.jobs.segment_results("job")
    assert sorted(r["bytes_fetched"] for r in results.values()) == [1234] * 4


def test_segments_of_a_staged_http_source_read_ranges_of_the_copy(tmp_path: Path) -> None:
    origin = Source(url="https://example.com/v.mp4")
    opener = _Opener()
    deps = _ranged_split(tmp_path, origin, opener)
    staged = Source.model_validate({"s3": {"bucket": "svc", "key": "staging/job/source"}})
    job = deps.jobs.get("job")
    assert job is not None and job.status is JobStatus.SUCCEEDED
    assert job.staged_source == staged and job.source_etag == '"staged-etag"'
    assert opener.pinned == [staged] and opener.opened == [(staged, '"staged-etag"')] * 4
    assert isinstance(deps.fetcher, FakeFetcher) and deps.fetcher.fetched == [origin]


def test_without_a_pin_segments_download_the_whole_source(tmp_path: Path) -> None:
    from video_ai.domain.errors import VideoNotFound

    origin = Source(url="https://example.com/v.mp4")
    # Staging failed: the origin, as before. The copy's ETag unreadable: the copy, whole. A local file: the file.
    for name, stager, opener, source, downloads in [
        ("origin", _Stager(fail=True), _Opener(), origin, origin),
        ("copy", _Stager(), _Opener(pin_error=VideoNotFound("gone")), origin,
         Source.model_validate({"s3": {"bucket": "svc", "key": "staging/job/source"}})),
        ("local", _Stager(), _Opener(), Source(url="file:///videos/v.mp4"), None),
    ]:
        deps = _ranged_split(tmp_path / name, source, opener, stager)
        job = deps.jobs.get("job")
        assert job is not None and job.status is JobStatus.SUCCEEDED and job.source_etag is None, name
        assert opener.opened == [], name
        assert isinstance(deps.fetcher, FakeFetcher)
        assert deps.fetcher.fetched == [source] + [downloads or source] * 4, name


def test_a_whole_download_with_another_sha256_fails_the_job_with_source_changed(tmp_path: Path) -> None:
    """The segments that download the source whole (no pin) compare its sha256 with the first download's: the same
    code as a ranged read that meets an overwrite."""
    import dataclasses

    from tests.fakes import RecordingQueue

    class ChangingFetcher(FakeFetcher):
        def fetch(self, source: Source, workdir: Path) -> FetchedVideo:
            got = super().fetch(source, workdir)
            return got if len(self.fetched) == 1 else dataclasses.replace(got, sha256="1" * 64)

    queue = RecordingQueue()
    deps = _deps(tmp_path, fetcher=ChangingFetcher(), frames=FakeFrameSource(n_frames=11, shot_len=4),
                 segment_queue=queue, segment_s=3.0)
    deps.jobs.create(Job(job_id="job", tenant="t1", source=Source(url="file:///videos/v.mp4")))
    assert analyze_video("job", deps).job.segments_total == 4
    for message in queue.messages:
        analyze_video("job", deps, segment=message["segment"])
    job = deps.jobs.get("job")
    assert job is not None and job.status is JobStatus.FAILED and job.error is not None
    assert job.error.code == "source_changed" and "changed while the job ran" in job.error.message


def test_a_source_changed_during_a_segment_fails_the_job_once(tmp_path: Path) -> None:
    from video_ai.domain.errors import SourceChanged

    s3 = Source.model_validate({"s3": {"bucket": "uploads", "key": "v.mp4"}})
    opener = _Opener()
    frames = FakeFrameSource(n_frames=11, shot_len=4, error_after=SourceChanged("s3://uploads/v.mp4 changed"))
    deps = _ranged_split(tmp_path, s3, opener, frames=frames)  # every segment's pass ends with the error
    job = deps.jobs.get("job")
    assert job is not None and job.status is JobStatus.FAILED and job.error is not None
    assert job.error.code == "source_changed"
    notifier = deps.notifier
    assert isinstance(notifier, RecordingNotifier) and [j.status for j in notifier.finished] == [JobStatus.FAILED]
    assert len(opener.opened) == 1 and opener.files[0].closed  # the other segments found the job failed


class _GeneratorReader(FakeReader):
    """A reader whose frames come from a generator, as PyAV's do: closing it while the decode thread is inside it
    fails ("generator already executing"), so closing must wait for that thread."""

    def __init__(self, base: FakeReader, slow_after: int) -> None:
        super().__init__(base._frames, base._shots, base.info)
        self.slow_after = slow_after
        self._gen = self._generate()

    def _generate(self) -> Iterator[SampledFrame]:
        for i, frame in enumerate(self._frames):
            if i >= self.slow_after:
                time.sleep(0.05)  # the decode thread is busy inside the generator when the embed side fails
            yield frame

    def __iter__(self) -> Iterator[SampledFrame]:
        return self._gen

    def close(self) -> None:
        self._gen.close()  # type: ignore[attr-defined]
        super().close()


def test_an_index_failure_mid_pass_stops_the_decode_thread_before_the_reader_closes(tmp_path: Path) -> None:
    frames = FakeFrameSource(n_frames=12)
    readers: list[_GeneratorReader] = []

    class Source_(FakeFrameSource):
        def open(self, *args: Any, **kwargs: Any) -> FakeReader:
            readers.append(_GeneratorReader(frames.open(*args, **kwargs), slow_after=4))
            return readers[-1]

    deps = _deps(tmp_path, frames=Source_(), index=FakeIndex(error=IndexUnavailable("qdrant down")))
    _queued(deps)
    with pytest.raises(IndexUnavailable):  # the failure itself, not an error from closing the reader under the thread
        analyze_video("job-1", deps)
    assert readers and readers[0].closed


def test_an_error_reading_the_staged_copy_does_not_name_the_services_bucket(tmp_path: Path) -> None:
    from tests.fakes import RecordingQueue
    from video_ai.domain.errors import VideoNotFound

    class StagedCopyGone(FakeFetcher):
        def fetch(self, source: Source, workdir: Path) -> FetchedVideo:
            if source.s3 is not None:
                self.fetched.append(source)
                raise VideoNotFound(f"s3://{source.s3.bucket}/{source.s3.key} does not exist")
            return super().fetch(source, workdir)

    queue = RecordingQueue()
    deps = _deps(tmp_path, fetcher=StagedCopyGone(), frames=FakeFrameSource(n_frames=11, shot_len=4),
                 segment_queue=queue, segment_s=3.0, stager=_Stager())
    deps.jobs.create(Job(job_id="job", tenant="t1", source=Source(url="https://example.com/v.mp4")))
    assert analyze_video("job", deps).job.segments_total == 4
    analyze_video("job", deps, segment=queue.messages[0]["segment"])
    job = deps.jobs.get("job")
    assert job is not None and job.status is JobStatus.FAILED and job.error is not None
    assert job.error.code == "not_found"
    assert job.error.message == "the staged copy of the source does not exist"
    assert "svc" not in job.public()["error"]["message"] and "staging/" not in str(job.public())


def _with_artifacts(deps: AnalyzeDeps, root: Path) -> Any:
    from video_ai.adapters.file_artifacts import FileArtifacts
    from video_ai.analyzers import AnalyzerContext, AnalyzerSet

    store = FileArtifacts(root)
    deps.analyzers = AnalyzerSet(AnalyzerContext(embedder=deps.embedder, index=deps.index, artifacts=store))
    return store


def test_reuse_copies_the_artifacts_and_a_cancelled_job_loses_its_own(tmp_path: Path) -> None:
    deps = _deps(tmp_path, frames=FakeFrameSource(n_frames=30))
    store = _with_artifacts(deps, tmp_path / "artifacts")
    _queued(deps, "first")
    analyze_video("first", deps)
    store.put("first", "transcript.json", b'{"segments": []}')  # as an analyzer of the first pass would have
    _queued(deps, "second")
    assert analyze_video("second", deps).job.reused_from == "first"
    assert store.get("second", "transcript.json") == b'{"segments": []}'

    _queued(deps, "third")
    seen: list[int] = []

    def cancel_mid_pass(frame: object) -> None:
        seen.append(1)
        if len(seen) == 1:
            store.put("third", "text.json", b"{}")
            deps.jobs.delete("third")

    deps.jobs.update("first", content_key="another")  # no reuse for the third
    deps.jobs.update("second", content_key="another")
    analyze_video("third", deps, on_frame=cancel_mid_pass)
    assert 1 <= len(seen) < 30 and store.get("third", "text.json") is None
    assert store.get("first", "transcript.json") is not None


class _RacedJobs(InMemoryJobRepository):
    """Another run of the job (a duplicate delivery of its message) starts it, and takes its lease, just before this
    one does."""

    def transition(self, job_id: str, to: JobStatus, **fields: Any) -> Job:
        current = self.get(job_id)
        if to is JobStatus.PROCESSING and current is not None and current.status is JobStatus.QUEUED:
            super().transition(job_id, JobStatus.PROCESSING)  # the other run's start
            now = time.time()
            assert self.take_lease(job_id, "job", "the-other-run", now + 900, now)
        return super().transition(job_id, to, **fields)


@pytest.mark.parametrize("final_attempt", [False, True])
def test_a_duplicate_that_loses_the_race_to_start_its_job_keeps_its_message(tmp_path: Path,
                                                                               final_attempt: bool) -> None:
    # Returning normally would delete this copy, which may be the message itself: if the run that won then died,
    # the job would hang in `processing`. A transient error keeps the copy on the queue; the job is not touched.
    from video_ai.domain.errors import JobBusy

    deps = _deps(tmp_path, jobs=_RacedJobs())
    _queued(deps)
    with pytest.raises(JobBusy) as raised:
        analyze_video("job-1", deps, final_attempt=final_attempt)
    assert not raised.value.permanent
    stored = deps.jobs.get("job-1")
    assert stored is not None and stored.status is JobStatus.PROCESSING and stored.error is None
    assert isinstance(deps.frames, FakeFrameSource) and deps.frames.opened == 0
    assert isinstance(deps.notifier, RecordingNotifier) and deps.notifier.finished == []


def test_a_duplicate_that_finds_its_job_ended_by_the_winner_lets_its_message_go(tmp_path: Path) -> None:
    class _EndedJobs(InMemoryJobRepository):
        def transition(self, job_id: str, to: JobStatus, **fields: Any) -> Job:
            current = self.get(job_id)
            if to is JobStatus.PROCESSING and current is not None and current.status is JobStatus.QUEUED:
                super().transition(job_id, JobStatus.PROCESSING)
                super().transition(job_id, JobStatus.SUCCEEDED)  # the winner finished meanwhile
            return super().transition(job_id, to, **fields)

    deps = _deps(tmp_path, jobs=_EndedJobs())
    _queued(deps)
    assert analyze_video("job-1", deps).job.status is JobStatus.SUCCEEDED


def test_a_duplicate_that_finds_the_job_processing_under_a_live_lease_does_not_run_it(tmp_path: Path) -> None:
    # The duplicate arrives after the owner started: the job is `processing`, not `queued`. Without the lease it ran
    # the job beside its owner (and on its final attempt could fail a job the owner was about to finish).
    from video_ai.domain.errors import JobBusy

    clock = [1000.0]
    deps = _deps(tmp_path, lease_s=60.0, clock=lambda: clock[0])
    _queued(deps)
    jobs = deps.jobs
    assert isinstance(jobs, InMemoryJobRepository)
    jobs.transition("job-1", JobStatus.PROCESSING)
    assert jobs.take_lease("job-1", "job", "owner", 1060.0, 1000.0)
    for final_attempt in (False, True):
        with pytest.raises(JobBusy):
            analyze_video("job-1", deps, final_attempt=final_attempt)
    stored = jobs.get("job-1")
    assert stored is not None and stored.status is JobStatus.PROCESSING and stored.error is None
    assert isinstance(deps.frames, FakeFrameSource) and deps.frames.opened == 0
    assert jobs.lease("job-1", "job") == ("owner", 1060.0)  # untouched

    clock[0] = 1061.0  # the owner died (a crash, a timeout): its lease ran out unextended
    result = analyze_video("job-1", deps)
    assert result.job.status is JobStatus.SUCCEEDED and result.job.frames_indexed == 10
    assert jobs.lease("job-1", "job") is None  # released at the end
    assert isinstance(deps.notifier, RecordingNotifier) and len(deps.notifier.finished) == 1


def test_a_run_extends_its_lease_at_its_checkpoints_and_stops_when_it_lost_it(tmp_path: Path) -> None:
    from video_ai.domain.errors import JobBusy

    clock = [0.0]
    seen: list[tuple[float, float]] = []
    jobs = InMemoryJobRepository()

    def tick(progress: float) -> None:  # once a batch, before its checkpoint; each batch takes 20 s
        lease = jobs.lease("job-1", "job")
        if lease is not None:
            seen.append((clock[0], lease[1]))
        clock[0] += 20.0

    deps = _deps(tmp_path, jobs=jobs, lease_s=40.0, clock=lambda: clock[0])
    _queued(deps)
    assert analyze_video("job-1", deps, on_progress=tick).job.status is JobStatus.SUCCEEDED
    assert len(seen) >= 4 and seen[0] == (0.0, 40.0)
    assert all(until > now for now, until in seen)  # live all along, 80 s of batches on a 40 s lease
    assert seen[-1][1] > 80.0 and jobs.lease("job-1", "job") is None

    # A run whose lease ran out with no checkpoint in time, and was taken over, stops without touching the job.
    _queued(deps, "job-2")
    jobs.update("job-1", content_key="another")  # no reuse: job-2 decodes

    def taken_over(progress: float) -> None:
        clock[0] += 20.0
        if jobs.lease("job-2", "job") != ("the-other-run", 10_000.0):
            jobs._leases[("job-2", "job")] = ("the-other-run", 10_000.0)

    with pytest.raises(JobBusy):
        analyze_video("job-2", deps, on_progress=taken_over)
    stored = jobs.get("job-2")
    assert stored is not None and stored.status is JobStatus.PROCESSING and stored.error is None
    assert jobs.lease("job-2", "job") == ("the-other-run", 10_000.0)  # the new owner's, not released by this run


def test_a_segment_lease_does_not_block_its_siblings_nor_a_redelivery_of_itself_once_expired(tmp_path: Path) -> None:
    from tests.fakes import RecordingQueue
    from video_ai.domain.errors import JobBusy

    queue = RecordingQueue()
    clock = [0.0]
    deps = _deps(tmp_path, frames=FakeFrameSource(n_frames=11, shot_len=4), segment_queue=queue, segment_s=3.0,
                 lease_s=60.0, clock=lambda: clock[0])
    _queued(deps)
    assert analyze_video("job-1", deps).job.segments_total == 4
    jobs = deps.jobs
    assert isinstance(jobs, InMemoryJobRepository)
    assert jobs.lease("job-1", "job") is None  # the splitting run let go of the job
    assert jobs.take_lease("job-1", "segment-0", "a-live-run", 60.0, 0.0)  # segment 0 is being run elsewhere
    with pytest.raises(JobBusy):
        analyze_video("job-1", deps, segment=0)
    for segment in (1, 2, 3):  # its siblings run beside it
        assert analyze_video("job-1", deps, segment=segment).job.status is JobStatus.PROCESSING
    clock[0] = 61.0  # that run died
    assert analyze_video("job-1", deps, segment=0).job.status is JobStatus.SUCCEEDED


def test_a_split_jobs_own_message_again_resends_only_unrecorded_segments_without_downloading(tmp_path: Path) -> None:
    from tests.fakes import RecordingQueue

    queue = RecordingQueue()
    deps = _deps(tmp_path, frames=FakeFrameSource(n_frames=11, shot_len=4), segment_queue=queue, segment_s=3.0)
    _queued(deps)
    assert analyze_video("job-1", deps).job.segments_total == 4
    fetcher = deps.fetcher
    assert isinstance(fetcher, FakeFetcher) and len(fetcher.fetched) == 1
    for segment in (0, 2):
        analyze_video("job-1", deps, segment=segment)
    sent = len(queue.messages)
    # A duplicate of the job's own message (or its redelivery after the splitting run died past the split).
    assert analyze_video("job-1", deps).job.status is JobStatus.PROCESSING
    assert [m["segment"] for m in queue.messages[sent:]] == [1, 3]
    assert len(fetcher.fetched) == 1 + 2  # the two segment runs' downloads; the duplicate downloaded nothing
    for segment in (1, 3):
        analyze_video("job-1", deps, segment=segment)
    stored = deps.jobs.get("job-1")
    assert stored is not None and stored.status is JobStatus.SUCCEEDED
    assert isinstance(deps.notifier, RecordingNotifier) and len(deps.notifier.finished) == 1


def test_a_job_whose_last_segment_run_died_before_finalising_is_finalised_by_a_redelivery(tmp_path: Path) -> None:
    from tests.fakes import RecordingQueue
    from video_ai.domain.errors import JobBusy

    class DiesAfterTheLastRecord(InMemoryJobRepository):
        armed = True

        def record_segment(self, job_id: str, segment: int, result: dict[str, Any]) -> int | None:
            count = super().record_segment(job_id, segment, result)
            if count == 4 and self.armed:
                self.armed = False
                raise _Died  # recorded, never finalised: the job would stay `processing` for good
            return count

    clock = [0.0]
    deps = _deps(tmp_path, jobs=DiesAfterTheLastRecord(), frames=FakeFrameSource(n_frames=11, shot_len=4),
                 segment_queue=RecordingQueue(), segment_s=3.0, clock=lambda: clock[0])
    _queued(deps)
    analyze_video("job-1", deps)
    for segment in range(3):
        analyze_video("job-1", deps, segment=segment)
    with pytest.raises(_Died):
        analyze_video("job-1", deps, segment=3)
    stored = deps.jobs.get("job-1")
    assert stored is not None and stored.status is JobStatus.PROCESSING
    # Another run is finalising (its lease is live): the redelivery keeps its message, even on its last attempt.
    jobs = deps.jobs
    assert isinstance(jobs, InMemoryJobRepository)
    assert jobs.take_lease("job-1", "finalize", "another-run", 100.0, 0.0)
    with pytest.raises(JobBusy):
        analyze_video("job-1", deps, segment=1, final_attempt=True)
    assert (stored := jobs.get("job-1")) is not None and stored.status is JobStatus.PROCESSING
    clock[0] = 101.0  # that run died too
    assert analyze_video("job-1", deps, segment=1).job.status is JobStatus.SUCCEEDED
    assert isinstance(deps.notifier, RecordingNotifier) and len(deps.notifier.finished) == 1
