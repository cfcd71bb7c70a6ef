"""analyze_video: fetch ▶ probe ▶ sample frames ▶ embed in batches ▶ upsert ▶ finish the job ▶ notify."""

from __future__ import annotations

import hashlib
import logging
import math
import queue
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Generator, Iterator, Sequence
from contextlib import closing, contextmanager, suppress
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from video_ai.analyzers import AnalyzerContext, AnalyzerSet
from video_ai.domain.errors import (
    InvalidRequest,
    InvalidTransition,
    JobBusy,
    JobCancelled,
    JobNotFound,
    NoVideoStream,
    RetriesExhausted,
    SourceChanged,
    VideoAIError,
)
from video_ai.domain.models import (
    ErrorInfo,
    FeatureStats,
    Frame,
    Job,
    JobStatus,
    ModelInfo,
    SampledFrame,
    Shot,
    Source,
    Timings,
    VideoInfo,
    utc_now,
)
from video_ai.domain.ports import (
    Analyzer,
    ArtifactStore,
    AudioPass,
    AudioReader,
    AudioSource,
    Embedder,
    FeatureOutput,
    FetchedVideo,
    FrameSource,
    JobQueue,
    JobRepository,
    ListeningRun,
    MediaFile,
    Metrics,
    Notifier,
    NullMetrics,
    NullTracing,
    RangedFile,
    RangedOpener,
    SourceStager,
    Tracing,
    VectorIndex,
    VideoFetcher,
    VideoReader,
)
from video_ai.services.announce import announce, announce_if_unannounced

logger = logging.getLogger(__name__)

ProgressFn = Callable[[float], None]
FrameHook = Callable[[SampledFrame], None]

# How long a run's lease on its job (or segment) lasts without an extension: the worker function's timeout (900 s,
# template.yaml) plus a minute for clock skew. A Lambda invocation cannot outlive its timeout, so a lease taken (or
# extended) inside it is still live whenever its owner is: a live owner never loses its job even where nothing
# extends the lease (a long download). `serve`'s workers have no timeout, so runs extend the lease at their
# checkpoints (every `progress_every` frames, the audio wait's `audio_checkpoint_s`, after the fetch); a lease that
# expires means the owner died (a crash, a timeout) and the next delivery takes the job over. On AWS that next
# delivery comes after the queue's visibility timeout (5,400 s), long after the lease ran out; `serve` clears the
# leases of its previous process at start.
LEASE_S = 960.0


@dataclass(slots=True)
class AnalyzeDeps:
    jobs: JobRepository
    fetcher: VideoFetcher
    frames: FrameSource
    embedder: Embedder
    index: VectorIndex
    notifier: Notifier | None
    workdir: Path
    metrics: Metrics = field(default_factory=NullMetrics)
    tracing: Tracing = field(default_factory=NullTracing)
    batch_size: int = 32
    pipeline_queue: int = 4
    # Long videos: split into segments of this length, each a message of its own on this queue (None: never split).
    segment_queue: JobQueue | None = None
    segment_s: float = 300.0
    # Where a split job's HTTP(S) source is copied for its segments (None: each segment downloads the origin).
    stager: SourceStager | None = None
    # Lets each segment of a split job read only its byte ranges of an S3 source (the staged copy or the object in
    # place), pinned to the ETag taken at the split. None: every segment downloads the whole source.
    ranged: RangedOpener | None = None
    # How often (in sampled frames, whatever the batch size) progress is written and cancellation checked.
    progress_every: int = 128
    # The analyzers jobs may ask for (features). None: the registry's, built on `embedder` and `index`.
    analyzers: AnalyzerSet | None = None
    # The audio pass of analyzers that listen (FrameNeeds.audio). None: they get no audio (their runs say so).
    audio: AudioSource | None = None
    # While the frames are done and an audio pass goes on, cancellation is checked this often (seconds).
    audio_checkpoint_s: float = 5.0
    # A run's lease on its job or segment (LEASE_S above); the clock leases are read on (epoch seconds).
    lease_s: float = LEASE_S
    clock: Callable[[], float] = time.time

    def __post_init__(self) -> None:
        if self.analyzers is None:
            self.analyzers = AnalyzerSet(AnalyzerContext(embedder=self.embedder, index=self.index,
                                                         tracing=self.tracing))

    def artifacts(self) -> ArtifactStore | None:
        return self.analyzers.context.artifacts if self.analyzers is not None else None

    def analyzers_for(self, job: Job) -> list[Analyzer]:
        assert self.analyzers is not None
        return self.analyzers.for_features(list(job.features))


@dataclass(slots=True)
class AnalysisResult:
    job: Job
    frames: list[Frame] = field(default_factory=list)
    shots: list[Shot] = field(default_factory=list)


@dataclass(slots=True)
class _Batch:
    frames: list[SampledFrame]
    decode_s: float


@dataclass(slots=True)
class _Output:
    """One analyzer's output for a pass, a merge or a reuse, with the wall seconds spent in the analyzer."""

    feature: str
    output: FeatureOutput
    seconds: float


_DONE = object()


def _batches(frames: Iterator[SampledFrame], size: int, hook: FrameHook | None) -> Iterator[_Batch]:
    batch: list[SampledFrame] = []
    started = time.perf_counter()
    for frame in frames:
        if hook is not None:
            hook(frame)
        batch.append(frame)
        if len(batch) >= size:
            yield _Batch(batch, time.perf_counter() - started)
            batch = []
            started = time.perf_counter()
    if batch:
        yield _Batch(batch, time.perf_counter() - started)


def _prefetch(batches: Iterator[_Batch], depth: int, stop: threading.Event) -> Generator[_Batch, None, None]:
    """Decode in a thread while the caller embeds: PyAV and onnxruntime both release the GIL."""
    slots: queue.Queue[object] = queue.Queue(maxsize=depth)

    def produce() -> None:
        try:
            for batch in batches:
                while not stop.is_set():
                    try:
                        slots.put(batch, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            slots.put(_DONE)
        except BaseException as err:  # re-raised in the consumer, which owns the job's error handling
            slots.put(err)

    producer = threading.Thread(target=produce, name="decode", daemon=True)
    producer.start()
    try:
        while True:
            item = slots.get()
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            assert isinstance(item, _Batch)
            yield item
    finally:
        stop.set()
        # Drain so a producer blocked on put() sees the stop flag and ends.
        while producer.is_alive():
            with suppress(queue.Empty):
                slots.get(timeout=0.05)
        producer.join(timeout=5)


class _LeaseLost(Exception):
    """This run's lease ran out unextended and another run took the job (or segment) over."""


@dataclass(slots=True)
class _Lease:
    """A run's hold on its job (slot "job") or on one segment of a split job ("segment-<i>"): one run at a time."""

    jobs: JobRepository
    job_id: str
    slot: str
    length_s: float
    clock: Callable[[], float]
    holder: str = field(default_factory=lambda: uuid.uuid4().hex)
    taken_at: float = 0.0

    def take(self) -> bool:
        now = self.clock()
        if not self.jobs.take_lease(self.job_id, self.slot, self.holder, now + self.length_s, now):
            return False
        self.taken_at = now
        return True

    def extend(self) -> None:
        """At a checkpoint: written once a quarter of the lease has gone by, so checkpoints stay one read."""
        if self.clock() - self.taken_at >= self.length_s / 4 and not self.take():
            raise _LeaseLost(f"{self.slot} of job {self.job_id} was taken over by another run")

    def release(self) -> None:
        try:
            self.jobs.release_lease(self.job_id, self.slot, self.holder)
        except Exception as err:  # it runs out by itself: a failed release only delays a redelivery's run
            logger.warning("could not release the job's lease: %s", _describe(err), extra={"job_id": self.job_id})


# The running job's lease, for the checkpoints deep in the pass (the orchestrator's thread; each run sets its own).
_LEASE: ContextVar[_Lease | None] = ContextVar("video_ai_job_lease", default=None)


def _extend_lease() -> None:
    lease = _LEASE.get()
    if lease is not None:
        try:
            lease.extend()
        except JobNotFound:
            raise _Cancelled(succeeded=False) from None


class _Cancelled(Exception):
    """The job stopped being this run's: deleted (DELETE /jobs/{id}) or failed meanwhile, or another run of it
    succeeded first (`succeeded`)."""

    def __init__(self, succeeded: bool) -> None:
        super().__init__("succeeded elsewhere" if succeeded else "deleted or failed")
        self.succeeded = succeeded


def analyze_video(
    job_id: str,
    deps: AnalyzeDeps,
    *,
    on_progress: ProgressFn | None = None,
    on_frame: FrameHook | None = None,
    thumbnail_width: int | None = None,
    final_attempt: bool = False,
    segment: int | None = None,
) -> AnalysisResult:
    """Run one job to a terminal state. Permanent errors end it `failed`; transient ones raise for a retry.

    `final_attempt` (the queue's last delivery) turns a transient error into `failed/retries_exhausted` before raising,
    so the job never hangs in `processing` while its message sits in the DLQ.
    """
    job = deps.jobs.get(job_id)
    if job is None:
        raise JobNotFound(f"job {job_id} does not exist")
    if job.status.terminal:
        # A redelivery: usually of a job already done and announced, but the previous attempt may have died between
        # recording the end and publishing it (services/announce.py).
        if deps.notifier is None or not announce_if_unannounced(job, deps.jobs, deps.notifier):
            logger.info("job already %s; nothing to do", job.status.value, extra={"job_id": job_id})
        return AnalysisResult(job=job, shots=job.shots)
    if job.status is JobStatus.QUEUED:
        try:
            job = deps.jobs.transition(job_id, JobStatus.PROCESSING, started_at=utc_now())
            deps.metrics.count("jobs_started")
        except InvalidTransition:
            # A duplicate delivery started it first (or it ended or went meanwhile): the lease decides who runs it.
            current = deps.jobs.get(job_id)
            if current is None or current.status.terminal:
                return AnalysisResult(job=current or job)  # deleted, or ended meanwhile: nothing left to guard
            job = current
    lease = _Lease(deps.jobs, job_id, "job" if segment is None else f"segment-{segment}", deps.lease_s, deps.clock)
    try:
        taken = lease.take()
    except JobNotFound:
        return AnalysisResult(job=job)  # deleted meanwhile
    if not taken:
        # Another run holds a live lease: a duplicate delivery of the message (SQS is at-least-once, and a client's
        # resend of a queued job sends again). A duplicate is the same message (one id): deleting this copy can
        # delete the message, and if that run then died the job would stay `processing` with nothing left to run
        # it. So this copy fails (the attempt, not the job) and comes back after the queue's visibility timeout (6x
        # the worker's 900 s limit), when that run has ended: finished (the redelivery is a no-op) or died (its
        # lease has run out, and the redelivery runs the job again, as after any crash).
        logger.info("job held by another run; this copy of its message is kept for later", extra={"job_id": job_id})
        raise JobBusy(f"job {job_id} is being processed by another run")
    lease_token = _LEASE.set(lease)
    try:
        current = deps.jobs.get(job_id)  # as it is now that this run holds it: the last owner may have ended it
        if current is None or current.status.terminal:
            return AnalysisResult(job=current or job, shots=current.shots if current is not None else [])
        return _run_leased(current, deps, on_progress, on_frame, thumbnail_width, final_attempt, segment)
    finally:
        _LEASE.reset(lease_token)
        lease.release()


def _run_leased(job: Job, deps: AnalyzeDeps, on_progress: ProgressFn | None, on_frame: FrameHook | None,
                thumbnail_width: int | None, final_attempt: bool, segment: int | None) -> AnalysisResult:
    job_id = job.job_id
    started = time.perf_counter()
    workdir = Path(tempfile.mkdtemp(prefix=f"job-{job_id[:8]}-", dir=_ensure_dir(deps.workdir)))
    try:
        if segment is None:
            if job.segments_total > 0 and deps.segment_queue is not None:
                result = _resume_split(job, deps)
            else:
                result = _run(job, deps, workdir, started, on_progress, on_frame, thumbnail_width)
        else:
            with _staged_location_hidden(job):
                result = _run_segment(job, segment, deps, workdir, on_progress)
    except _LeaseLost as lost:
        # Its lease ran out unextended (a stretch longer than the lease with no checkpoint) and another delivery
        # took the job over: that run owns it now, with the same point ids. Stop without touching the job.
        logger.warning("%s; this run stops and its message is kept for later", lost, extra={"job_id": job_id})
        raise JobBusy(f"job {job_id} is being processed by another run") from None
    except _Cancelled as stop:
        if stop.succeeded:
            # Another delivery ran the same job and finished it first (at-least-once: a duplicate message, or the one
            # a crash put back beside a client's resend). Its results have the same point ids: keep them.
            logger.info("job finished by another run meanwhile; this run stops", extra={"job_id": job_id})
            return AnalysisResult(job=deps.jobs.get(job_id) or job)
        # DELETE /jobs/{id} removed the record and the vectors it saw; the batches upserted since go too.
        logger.info("job cancelled while processing", extra={"job_id": job_id})
        for analyzer in deps.analyzers_for(job):
            analyzer.discard(job)
        artifacts = deps.artifacts()
        if artifacts is not None:
            artifacts.delete(job.job_id)
        return AnalysisResult(job=job)
    except JobBusy:
        raise  # another run holds what this one needs (the finalisation): the job is theirs, even on a last attempt
    except VideoAIError as err:
        if err.permanent:
            return AnalysisResult(job=_fail(job, deps, err, started))
        if final_attempt:
            _fail(job, deps, RetriesExhausted(f"gave up after retries: {err.code}: {err.message}"), started)
        raise
    except Exception as err:
        # Not one of ours: its text, not only its class, goes to the job (the caller logs it with its traceback).
        if final_attempt:
            _fail(job, deps, RetriesExhausted(f"gave up after retries: {_describe(err)}"), started)
        raise
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return result


def _describe(err: BaseException) -> str:
    """`Type: message`, one line, bounded: a bare class name tells the reader nothing."""
    text = " ".join(str(err).split())
    return f"{type(err).__name__}: {text}"[:300] if text else f"{type(err).__name__} (no message)"


def _ensure_dir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def _fail(job: Job, deps: AnalyzeDeps, err: VideoAIError, started: float) -> Job:
    logger.warning("job failed: %s: %s", err.code, err.message, extra={"job_id": job.job_id, "error_code": err.code})
    try:
        failed = deps.jobs.transition(
            job.job_id,
            JobStatus.FAILED,
            error=ErrorInfo(code=err.code, message=err.message),
            timings=job.timings.model_copy(update={"total_s": round(time.perf_counter() - started, 4)}),
        )
    except VideoAIError as conflict:
        if conflict.code != "invalid_transition":
            raise
        current = deps.jobs.get(job.job_id)
        return current if current is not None else job
    deps.metrics.count("jobs_failed", error_code=err.code)
    _announce(failed, deps)
    return failed


def _fetch(job: Job, deps: AnalyzeDeps, workdir: Path, timings: Timings, source: Source | None = None) -> FetchedVideo:
    with deps.tracing.span("fetch"):
        t0 = time.perf_counter()
        fetched = deps.fetcher.fetch(source or job.source, workdir)
        timings.fetch_s += time.perf_counter() - t0
    return fetched


def _analyze_pass(
    job: Job,
    deps: AnalyzeDeps,
    analyzers: list[Analyzer],
    reader: VideoReader,
    timings: Timings,
    on_progress: ProgressFn | None,
    on_frame: FrameHook | None,
    span: tuple[float, float],
    media: Callable[[], Path | MediaFile] | None = None,
    audio_span: tuple[float, float | None] = (0.0, None),
) -> tuple[list[_Output], int, int]:
    """Decode (in a thread) and feed every analyzer each batch; progress is the share of `span` (seconds) covered.
    Analyzers that listen get the audio of `audio_span` from `media` (opened anew) in threads of their own.
    Returns each analyzer's output, the number of frames sampled and the last sampled frame_number (-1: none)."""
    runs = [(analyzer, analyzer.start(job)) for analyzer in analyzers]
    seconds = [0.0] * len(runs)
    listening = _listen(deps, [run for analyzer, run in runs if analyzer.needs.audio], media, audio_span)
    try:
        sampled, last_sampled = _frame_pass(job, deps, runs, seconds, reader, timings, on_progress, on_frame, span)
        listening.wait(lambda: _checkpoint(job.job_id, deps, None), deps.audio_checkpoint_s)
    finally:
        listening.stop()
    shots = reader.shots
    outputs: list[_Output] = []
    for i, (analyzer, run) in enumerate(runs):
        t0 = time.perf_counter()
        output = run.finish(shots)
        outputs.append(_Output(analyzer.feature, output, seconds[i] + listening.seconds.get(id(run), 0.0)
                               + time.perf_counter() - t0))
    return outputs, sampled, last_sampled


class _Listening:
    """The audio passes running beside the frame pass, one thread per listening run."""

    def __init__(self) -> None:
        self.threads: list[threading.Thread] = []
        self.errors: list[BaseException] = []
        self.seconds: dict[int, float] = {}
        self.flag = threading.Event()

    def wait(self, checkpoint: Callable[[], None], every_s: float) -> None:
        """Until every pass ends, checking for cancellation meanwhile; a pass's own exception is raised here."""
        for thread in self.threads:
            while thread.is_alive():
                thread.join(timeout=every_s)
                if thread.is_alive():
                    checkpoint()
        if self.errors:
            raise self.errors[0]

    def stop(self) -> None:
        self.flag.set()
        for thread in self.threads:
            thread.join(timeout=30)


def _listen(deps: AnalyzeDeps, runs: list[Any], media: Callable[[], Path | MediaFile] | None,
            span: tuple[float, float | None]) -> _Listening:
    listening = _Listening()
    audio = deps.audio
    if not runs or audio is None or media is None:
        return listening

    def open_audio(start_s: float | None, end_s: float | None) -> AudioReader:
        return audio.open(media(), start_s, end_s)

    def hear(run: ListeningRun) -> None:
        t0 = time.perf_counter()
        try:
            run.listen(AudioPass(open=open_audio, start_s=span[0], end_s=span[1], stop=listening.flag))
        except BaseException as err:  # raised in the orchestrator's thread (wait), which owns the job's errors
            listening.errors.append(err)
        finally:
            listening.seconds[id(run)] = time.perf_counter() - t0

    for run in runs:
        thread = threading.Thread(target=hear, args=(run,), name="audio", daemon=True)
        thread.start()
        listening.threads.append(thread)
    return listening


def _frame_pass(
    job: Job,
    deps: AnalyzeDeps,
    runs: list[tuple[Analyzer, Any]],
    seconds: list[float],
    reader: VideoReader,
    timings: Timings,
    on_progress: ProgressFn | None,
    on_frame: FrameHook | None,
    span: tuple[float, float],
) -> tuple[int, int]:
    stop = threading.Event()
    span_start, span_end = span
    since_checkpoint = 0
    sampled = 0
    last_sampled = -1
    # Closed on the way out, error or not: that stops and joins the decode thread before the caller closes the reader
    # it is reading (closing a reader under that thread fails with "generator already executing" and hides the error).
    with closing(_prefetch(_batches(iter(reader), deps.batch_size, on_frame), deps.pipeline_queue, stop)) as batches:
        for batch in batches:
            timings.decode_s += batch.decode_s
            for i, (_, run) in enumerate(runs):
                t0 = time.perf_counter()
                run.add(batch.frames)
                seconds[i] += time.perf_counter() - t0
            sampled += len(batch.frames)
            last_sampled = max(last_sampled, max(f.frame_number for f in batch.frames))
            covered = batch.frames[-1].pts_s - span_start
            progress = min(0.99, covered / (span_end - span_start)) if span_end > span_start else 0.0
            if on_progress is not None:
                on_progress(progress)
            since_checkpoint += len(batch.frames)
            if since_checkpoint >= deps.progress_every:
                since_checkpoint = 0
                _checkpoint(job.job_id, deps, progress if job.segments_total == 0 else None)
    return sampled, last_sampled


def _apply(outputs: list[_Output], timings: Timings) -> dict[str, Any]:
    """The job-record fields of the analyzers' outputs, with their per-feature stats and warnings; their classic
    timings (embed_s, index_s) are added to `timings`."""
    fields: dict[str, Any] = {}
    stats: dict[str, FeatureStats] = {}
    warnings: list[str] = []
    for item in outputs:
        fields.update(item.output.fields)
        for name, value in item.output.timings.items():
            setattr(timings, name, getattr(timings, name) + value)
        stats[item.feature] = FeatureStats(count=item.output.count, seconds=round(item.seconds, 4))
        warnings.extend(item.output.warnings)
    fields["feature_stats"] = stats
    if warnings:
        fields["warnings"] = list(dict.fromkeys(warnings))
    return fields


def _frames_of(outputs: list[_Output]) -> list[Frame]:
    return [frame for item in outputs for frame in item.output.frames]


def _needs(analyzers: list[Analyzer]) -> dict[str, Any]:
    """Extra frame-source arguments the job's analyzers need (none for the frame embedder alone)."""
    needs: dict[str, Any] = {}
    for name in ("detail_short_side", "thumbnail_width", "luma_short_side"):  # each the largest any analyzer asks
        sizes = [size for a in analyzers if (size := getattr(a.needs, name))]
        if sizes:
            needs[name] = max(sizes)
    return needs


def _rounded(timings: Timings) -> Timings:
    return Timings(**{k: round(v, 4) for k, v in timings.model_dump().items()})


def _should_split(job: Job, deps: AnalyzeDeps, reader: VideoReader) -> bool:
    video = reader.info
    if deps.segment_queue is None or video.duration_s <= deps.segment_s or not reader.segmentable:
        return False
    if isinstance(reader, _AudioOnly):
        return True  # no frames: the sampling's frame budget and modes do not apply
    # max_frames counts across the whole video, so only an unbounded pass can be cut in independent pieces.
    return job.sampling.max_frames is None and job.sampling.mode != "keyframes"


def _run(
    job: Job,
    deps: AnalyzeDeps,
    workdir: Path,
    started: float,
    on_progress: ProgressFn | None,
    on_frame: FrameHook | None,
    thumbnail_width: int | None,
) -> AnalysisResult:
    timings = Timings()
    analyzers = deps.analyzers_for(job)
    fetched = _fetch(job, deps, workdir, timings)
    _extend_lease()  # a download may have taken a good part of the lease
    model = deps.embedder.info
    # An analyzer's `variant` (optional) names what else decides its results, e.g. its settings.
    key = content_key(job, fetched.sha256, model, [str(getattr(a, "variant", "")) for a in analyzers])
    previous = deps.jobs.find_by_content(key)
    if previous is not None and previous.job_id != job.job_id and previous.tenant == job.tenant:
        return _reuse(job, previous, deps, analyzers, key, fetched.sha256, timings, started)
    needs = _needs(analyzers)
    # The caller's width (the CLI's contact sheet) wins: the stored thumbnails are then made from those pictures.
    if thumbnail_width:
        needs["thumbnail_width"] = thumbnail_width
    reader: VideoReader
    try:
        reader = deps.frames.open(fetched.path, job.sampling, image_size=deps.embedder.input_size, **needs)
    except NoVideoStream:
        reader = _audio_only(deps, fetched.path, analyzers)  # or raises it again
    try:
        video = reader.info
        if _should_split(job, deps, reader):
            return _split(job, deps, video, fetched, key)
        deps.jobs.update(job.job_id, video=video, sha256=fetched.sha256, model=model)
        outputs, _, _ = _analyze_pass(job, deps, analyzers, reader, timings, on_progress, on_frame,
                                      (0.0, video.duration_s), media=lambda: fetched.path)
        shots = reader.shots
        video = reader.info  # a full pass knows the frame count and whether the rate varies
    finally:
        reader.close()
    fields = _apply(outputs, timings)
    if isinstance(reader, _AudioOnly):
        fields["warnings"] = [*fields.get("warnings", []), AUDIO_ONLY_WARNING]
    timings.total_s = time.perf_counter() - started
    with deps.tracing.span("notify"):
        done = deps.jobs.transition(
            job.job_id,
            JobStatus.SUCCEEDED,
            video=video,
            shots_detected=len(shots),
            shots=shots,
            timings=_rounded(timings),
            progress=1.0,
            content_key=key,
            **fields,
        )
        _record_success(done, deps)
        _announce(done, deps)
    if on_progress is not None:
        on_progress(1.0)
    return AnalysisResult(job=done, frames=_frames_of(outputs), shots=shots)


AUDIO_ONLY_WARNING = "the file has no video stream: no frames were indexed (its audio was analysed)"
NO_VIDEO = "none"  # the `video.codec` of an audio-only job


class _AudioOnly:
    """The frame pass of a file without a video stream: no frames, no shots; the audio is the job.

    Segmentable: a long one is split by duration like a video (each segment's audio pass seeks to its range, and the
    audio source places samples by their presentation times, so a segment hears exactly its range's samples)."""

    def __init__(self, info: VideoInfo) -> None:
        self.info = info
        self.shots: list[Shot] = []
        self.segmentable = True

    def __iter__(self) -> Iterator[SampledFrame]:
        return iter(())

    def close(self) -> None:
        return None


def _audio_only(deps: AnalyzeDeps, path: Path, analyzers: list[Analyzer]) -> _AudioOnly:
    """A file without a video stream is a job when one of its analyzers listens and it has an audio stream; its
    `video` record says so (codec "none", 0x0) with the audio's length. Else NoVideoStream stands."""
    if deps.audio is None or not any(a.needs.audio for a in analyzers):
        raise NoVideoStream(f"{path.name}: the file has no video stream")
    reader = deps.audio.open(path)
    try:
        info = reader.info
    finally:
        reader.close()
    if info is None:
        raise NoVideoStream(f"{path.name}: the file has neither a video nor an audio stream")
    return _AudioOnly(VideoInfo(container=info.container, codec=NO_VIDEO, width=0, height=0,
                                duration_s=round(info.end_s or 0.0, 3), frame_count=0))


def _is_audio_only(video: VideoInfo) -> bool:
    """The `video` record _audio_only made: how a split job's segments know there are no frames to open."""
    return video.codec == NO_VIDEO and video.width == 0 and video.height == 0


def segment_bounds(duration_s: float, segment_s: float) -> list[tuple[float, float | None]]:
    """[start, end) of each segment; the last one is open-ended so no frame past the probed duration is lost."""
    count = max(1, math.ceil(duration_s / segment_s - 1e-9))
    return [(i * segment_s, (i + 1) * segment_s if i < count - 1 else None) for i in range(count)]


def _split(job: Job, deps: AnalyzeDeps, video: VideoInfo, fetched: FetchedVideo, key: str) -> AnalysisResult:
    """Hand the job to parallel segment invocations; the last one to finish finalises it."""
    assert deps.segment_queue is not None
    bounds = segment_bounds(video.duration_s, deps.segment_s)
    staged = _stage(job, deps, fetched)
    etag = _range_pin(job, deps, staged, fetched)
    deps.jobs.update(job.job_id, video=video, sha256=fetched.sha256, model=deps.embedder.info,
                     segments_total=len(bounds), content_key=key, staged_source=staged, source_etag=etag)
    for segment in range(len(bounds)):
        deps.segment_queue.send({"job_id": job.job_id, "tenant": job.tenant, "segment": segment})
    logger.info("job split into %d segments of %.0f s", len(bounds), deps.segment_s, extra={"job_id": job.job_id})
    deps.metrics.count("jobs_split")
    current = deps.jobs.get(job.job_id)
    return AnalysisResult(job=current or job)


def _stage(job: Job, deps: AnalyzeDeps, fetched: FetchedVideo) -> Source | None:
    """Copy an HTTP(S) source to the service's bucket once, so N segments do not download the origin N times (the
    client's bandwidth and egress). S3 sources and local files (development) are read in place. A failed copy falls
    back to the origin."""
    if deps.stager is None or not (job.source.url or "").lower().startswith(("http://", "https://")):
        return None
    try:
        with deps.tracing.span("stage"):
            return deps.stager.stage(job.job_id, fetched.path)
    except Exception as err:  # staging only saves downloads: the segments can still fetch the origin
        logger.warning("could not stage the source (%s); segments will download the origin", err,
                       extra={"job_id": job.job_id})
        return None


def _range_pin(job: Job, deps: AnalyzeDeps, staged: Source | None, fetched: FetchedVideo) -> str | None:
    """The ETag the segments pin their ranged reads to: the staged copy's, or that of the S3 source in place as the
    first invocation downloaded it (so exactly the bytes its sha256 covers). None: the segments download the whole
    source (no ranged opener, an HTTP origin whose staging failed, a local file, or no ETag to be had)."""
    if deps.ranged is None:
        return None
    if staged is not None:
        try:
            return deps.ranged.pin(staged)
        except Exception as err:  # ranged reads only save bytes: the segments can still download the copy whole
            logger.warning("could not read the staged copy's ETag (%s); segments will download it whole", err,
                           extra={"job_id": job.job_id})
            return None
    return fetched.etag if job.source.s3 is not None else None


@contextmanager
def _staged_location_hidden(job: Job) -> Iterator[None]:
    """An error reading the staged copy names it as such in the job's (public) error: its bucket and key are the
    service's own, like `staged_source`, which never leaves the service either."""
    where = job.staged_source.describe() if job.staged_source is not None else None
    try:
        yield
    except VideoAIError as err:
        if where and where in err.message:
            err.message = err.message.replace(where, "the staged copy of the source")
            err.args = (err.message,)
        raise


def _open_ranged(job: Job, deps: AnalyzeDeps) -> RangedFile | None:
    source = job.staged_source or job.source
    if deps.ranged is None or job.source_etag is None or source.s3 is None:
        return None
    return deps.ranged.open(source, job.source_etag)


def _run_segment(
    job: Job,
    segment: int,
    deps: AnalyzeDeps,
    workdir: Path,
    on_progress: ProgressFn | None,
) -> AnalysisResult:
    if job.video is None or job.segments_total <= 0:
        raise InvalidRequest(f"job {job.job_id} was not split; no segment {segment}", field="segment")
    bounds = segment_bounds(job.video.duration_s, deps.segment_s)
    if not 0 <= segment < len(bounds) or len(bounds) != job.segments_total:
        raise InvalidRequest(f"job {job.job_id} has no segment {segment}", field="segment")
    recorded_before = deps.jobs.segment_results(job.job_id)
    if segment in recorded_before:
        # A redelivered message: this segment is recorded already. When every segment is, the run that recorded the
        # last one may have died before finalising the job, and nothing else would: finalise it now.
        return _finalize_once(job, deps) if len(recorded_before) >= job.segments_total else AnalysisResult(job=job)
    started = time.perf_counter()
    timings = Timings()
    ranged = _open_ranged(job, deps)
    media: Path | MediaFile
    if ranged is not None:
        media = ranged  # integrity: every ranged GET is pinned to the ETag taken at the split (SourceChanged if not)
    else:
        fetched = _fetch(job, deps, workdir, timings, source=job.staged_source)
        _extend_lease()
        if job.sha256 is not None and fetched.sha256 != job.sha256:
            raise SourceChanged(f"the source changed while the job ran (sha256 {fetched.sha256[:12]}…)")
        media = fetched.path
    start_s, end_s = bounds[segment]
    analyzers = deps.analyzers_for(job)
    audio_only = _is_audio_only(job.video)
    try:
        reader: VideoReader
        if audio_only:
            reader = _AudioOnly(job.video)
            unread = [ranged] if ranged is not None else []  # no frame pass reads it: the audio pass does
        else:
            reader = deps.frames.open(media, job.sampling, image_size=deps.embedder.input_size,
                                      start_s=start_s, end_s=end_s, **_needs(analyzers))
            unread = []

        def audio_media() -> Path | MediaFile:
            return (unread.pop() if unread else None) or _open_ranged(job, deps) or media

        try:
            outputs, sampled, last_sampled = _analyze_pass(
                job, deps, analyzers, reader, timings, on_progress, None,
                (start_s, end_s if end_s is not None else job.video.duration_s),
                media=audio_media, audio_span=(start_s, end_s))
            shots = reader.shots
            info = reader.info
        finally:
            reader.close()
    finally:
        if ranged is not None:
            ranged.close()
            # Time spent waiting on S3; the GETs run inside the decode pass, so decode_s includes it too.
            timings.fetch_s += ranged.fetch_seconds
    for item in outputs:
        for name, value in item.output.timings.items():
            setattr(timings, name, getattr(timings, name) + value)
    timings.total_s = time.perf_counter() - started
    result = {
        "segment": segment,
        "start_s": start_s,
        "end_s": end_s,
        "frames": sampled,
        "last_sampled": last_sampled,
        "shots": [s.model_dump(mode="json") for s in shots],
        "timings": _rounded(timings).model_dump(mode="json"),
        "frame_count": info.frame_count,
        "features": {item.feature: item.output.segment for item in outputs},
        "feature_seconds": {item.feature: round(item.seconds, 4) for item in outputs},
        "warnings": [w for item in outputs for w in item.output.warnings],
    }
    if ranged is not None:
        result["bytes_fetched"] = ranged.bytes_fetched
        logger.info("segment %d read %d bytes of the source in %d ranged GETs", segment, ranged.bytes_fetched,
                    ranged.requests, extra={"job_id": job.job_id})
    recorded = deps.jobs.record_segment(job.job_id, segment, result)
    if recorded is None:
        return AnalysisResult(job=job)
    deps.jobs.update(job.job_id, progress=round(min(0.99, recorded / job.segments_total), 4))
    if recorded < job.segments_total:
        return AnalysisResult(job=deps.jobs.get(job.job_id) or job)
    return _finalize_once(job, deps)


def _resume_split(job: Job, deps: AnalyzeDeps) -> AnalysisResult:
    """A split job's own message again: a duplicate delivery, or the redelivery after its splitting run died once the
    split was recorded. The segments carry the job: the ones not recorded yet are sent again (a copy of a segment
    that is running now is turned away by that segment's lease) instead of downloading and splitting it anew."""
    assert deps.segment_queue is not None
    recorded = deps.jobs.segment_results(job.job_id)
    missing = [segment for segment in range(job.segments_total) if segment not in recorded]
    if not missing:
        return _finalize_once(job, deps)
    for segment in missing:
        deps.segment_queue.send({"job_id": job.job_id, "tenant": job.tenant, "segment": segment})
    logger.info("job was split already: %d unrecorded segment(s) sent again", len(missing),
                extra={"job_id": job.job_id})
    return AnalysisResult(job=job)


def _finalize_once(job: Job, deps: AnalyzeDeps) -> AnalysisResult:
    """Finalise a split job under a lease of its own ("finalize"): the last segment in and a redelivered segment
    message that finds every segment recorded do not merge side by side."""
    lease = _Lease(deps.jobs, job.job_id, "finalize", deps.lease_s, deps.clock)
    try:
        taken = lease.take()
    except JobNotFound:
        return AnalysisResult(job=job)  # deleted meanwhile
    if not taken:
        logger.info("job is being finalised by another run", extra={"job_id": job.job_id})
        raise JobBusy(f"job {job.job_id} is being finalised by another run")
    try:
        current = deps.jobs.get(job.job_id)
        if current is None or current.status.terminal:
            return AnalysisResult(job=current or job)
        return _finalize_segments(current, deps)
    finally:
        lease.release()


def merge_segment_shots(results: dict[int, dict[str, Any]], duration_s: float, last_frame: int) -> list[Shot]:
    """Shots of the whole video from each segment's cuts: a segment lists only shots that start inside it."""
    starts: dict[int, float] = {0: 0.0}
    for result in results.values():
        for shot in result["shots"]:
            starts[int(shot["start_frame"])] = float(shot["start_s"])
    ordered = sorted(starts.items())
    shots: list[Shot] = []
    for i, (frame, start) in enumerate(ordered):
        nxt = ordered[i + 1] if i + 1 < len(ordered) else None
        shots.append(Shot(index=i, start_s=start, end_s=nxt[1] if nxt else duration_s, start_frame=frame,
                          end_frame=nxt[0] - 1 if nxt else last_frame))
    return shots


def _finalize_segments(job: Job, deps: AnalyzeDeps) -> AnalysisResult:
    """The last segment in: global shots, then each analyzer merges its segments on them; succeed once."""
    assert job.video is not None
    results = deps.jobs.segment_results(job.job_id)
    ordered = [results[i] for i in sorted(results)]
    frame_counts = [r["frame_count"] for r in ordered if r.get("frame_count")]
    last_frame = max([int(c) - 1 for c in frame_counts] + [int(r.get("last_sampled", -1)) for r in ordered] + [0])
    audio_only = _is_audio_only(job.video)
    # An audio-only job has no pictures, so no shots (as in one pass), not one shot spanning the file.
    shots = [] if audio_only else merge_segment_shots(results, job.video.duration_s, last_frame)
    outputs: list[_Output] = []
    for analyzer in deps.analyzers_for(job):
        t0 = time.perf_counter()
        output = analyzer.merge(job, [r.get("features", {}).get(analyzer.feature, {}) for r in ordered], shots)
        spent = sum(float(r.get("feature_seconds", {}).get(analyzer.feature, 0.0)) for r in ordered)
        outputs.append(_Output(analyzer.feature, output, spent + time.perf_counter() - t0))
    timings = Timings()
    for result in ordered:
        for name, value in result["timings"].items():
            if name != "total_s":
                setattr(timings, name, getattr(timings, name) + float(value))
    fields = _apply([_Output(o.feature, FeatureOutput(count=o.output.count, fields=o.output.fields,
                                                      warnings=o.output.warnings), o.seconds) for o in outputs],
                    timings)  # the segments' timings already hold the analyzers' embed_s/index_s
    segment_warnings = [str(w) for r in ordered for w in r.get("warnings", [])]
    if segment_warnings:
        fields["warnings"] = list(dict.fromkeys(segment_warnings + fields.get("warnings", [])))
    if audio_only:
        fields["warnings"] = [*fields.get("warnings", []), AUDIO_ONLY_WARNING]
    timings.total_s = _seconds_since(job.started_at)
    try:
        done = deps.jobs.transition(
            job.job_id, JobStatus.SUCCEEDED, shots_detected=len(shots), shots=shots,
            timings=_rounded(timings), progress=1.0,
            video=job.video.model_copy(update={"frame_count": last_frame + 1}) if frame_counts else job.video,
            **fields,
        )
    except InvalidTransition:
        current = deps.jobs.get(job.job_id)  # failed or cancelled meanwhile: nothing to finalise
        return AnalysisResult(job=current or job)
    _record_success(done, deps)
    _announce(done, deps)
    return AnalysisResult(job=done, frames=_frames_of(outputs), shots=shots)


def _seconds_since(timestamp: str | None) -> float:
    if timestamp is None:
        return 0.0
    began = datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
    return max(0.0, (datetime.now(UTC) - began).total_seconds())


def content_key(job: Job, sha256: str, model: ModelInfo, variants: Sequence[str] = ()) -> str:
    """Same tenant, same bytes, same sampling, same model, same features, same analyzer variants (and the speech
    language, when the job names one): the same results. Reuse needs all to match, so a job asking for labels never
    gets a result computed without them, nor labels made with other settings (a frames-only job keeps the key it had
    before features existed)."""
    s = job.sampling
    raw = f"{job.tenant}|{sha256}|{s.mode}|{s.fps}|{s.max_frames}|{model.name}|{model.version}|{model.dim}"
    features = sorted(set(job.features))
    if features != ["visual"]:
        raw += "|features=" + ",".join(features)
    for variant in sorted(v for v in variants if v):
        raw += "|" + variant
    if job.language is not None:
        raw += f"|language={job.language}"
    return hashlib.sha256(raw.encode()).hexdigest()


def _reuse(job: Job, previous: Job, deps: AnalyzeDeps, analyzers: list[Analyzer], key: str, sha256: str,
           timings: Timings, started: float) -> AnalysisResult:
    """Each analyzer copies what the finished job found instead of decoding and analysing again."""
    model = previous.model or deps.embedder.info
    outputs: list[_Output] = []
    artifacts = deps.artifacts()
    if artifacts is not None:
        artifacts.copy(previous.job_id, job.job_id)  # before the analyzers, which may read them
    for analyzer in analyzers:
        t0 = time.perf_counter()
        output = analyzer.reuse(job, previous)
        outputs.append(_Output(analyzer.feature, output, time.perf_counter() - t0))
    fields = _apply(outputs, timings)
    timings.total_s = time.perf_counter() - started
    done = deps.jobs.transition(
        job.job_id, JobStatus.SUCCEEDED, sha256=sha256, video=previous.video, model=model,
        shots_detected=previous.shots_detected, shots=previous.shots,
        timings=_rounded(timings), progress=1.0, reused_from=previous.job_id, content_key=key, **fields,
    )
    deps.metrics.count("jobs_reused")
    _record_success(done, deps)
    _announce(done, deps)
    return AnalysisResult(job=done, frames=_frames_of(outputs), shots=previous.shots)


def _announce(job: Job, deps: AnalyzeDeps) -> None:
    if deps.notifier is not None:
        announce(job, deps.jobs, deps.notifier)


def _checkpoint(job_id: str, deps: AnalyzeDeps, progress: float | None) -> None:
    """Write progress (None: a segment, whose progress counts finished segments) and extend the run's lease; a job
    deleted (DELETE /jobs/{id}) or failed meanwhile stops at this batch."""
    current = deps.jobs.get(job_id)
    if current is None or current.status is not JobStatus.PROCESSING:
        raise _Cancelled(succeeded=current is not None and current.status is JobStatus.SUCCEEDED)
    _extend_lease()
    if progress is not None:
        deps.jobs.update(job_id, progress=round(progress, 4))


def _record_success(job: Job, deps: AnalyzeDeps) -> None:
    deps.metrics.count("jobs_succeeded")
    deps.metrics.observe("index_seconds", job.timings.index_s)
    deps.metrics.observe("job_seconds", job.timings.total_s)
    if job.reused_from is not None:
        # Nothing was decoded or embedded (jobs_reused counts it): frames, video seconds, the realtime factor and the
        # decode/embed times would count the first job's work twice and skew their histograms towards zero.
        return
    deps.metrics.count("frames_indexed", float(job.frames_indexed))
    if job.video is not None:
        deps.metrics.count("video_seconds_processed", job.video.duration_s)
        if job.timings.total_s > 0:
            deps.metrics.observe("realtime_factor", job.video.duration_s / job.timings.total_s)
    deps.metrics.observe("decode_seconds", job.timings.decode_s)
    deps.metrics.observe("embed_seconds", job.timings.embed_s)
    for feature, stats in job.feature_stats.items():
        deps.metrics.observe(f"analyzer_{feature}_seconds", stats.seconds)
        deps.metrics.count(f"analyzer_{feature}_items", float(stats.count))


__all__ = ["AnalysisResult", "AnalyzeDeps", "JobCancelled", "NullMetrics", "NullTracing", "analyze_video"]
