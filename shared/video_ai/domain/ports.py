"""Ports: what services need from the outside world. Adapters implement them; tests use fakes."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from video_ai.domain.models import (
    CallbackMessage,
    Frame,
    FramePoint,
    Job,
    JobStatus,
    ModelInfo,
    Moment,
    MomentFilter,
    MomentHit,
    S3Location,
    SampledFrame,
    Sampling,
    ScoredPoint,
    SearchFilter,
    Shot,
    Source,
    VideoInfo,
)

if TYPE_CHECKING:
    import numpy as np


class Embedder(Protocol):
    """Turns RGB uint8 images (any size; resized inside) into L2-normalised float32 vectors."""

    @property
    def info(self) -> ModelInfo: ...

    @property
    def input_size(self) -> tuple[int, int]:
        """(width, height) the model wants; frame sources may decode straight to it."""
        ...

    def embed(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """Return an (N, dim) float32 array, each row of unit length."""
        ...


class TextEmbedder(Protocol):
    """Turns texts into L2-normalised float32 vectors (a sentence model; the query and the moments use the same)."""

    @property
    def info(self) -> ModelInfo: ...

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Return an (N, dim) float32 array, each row of unit length."""
        ...


class MomentIndex(Protocol):
    """The text index of moments (DESIGN §1): a dense vector per moment beside a keyword (BM25) representation of
    its text that the index computes itself; search fuses both rankings."""

    def upsert(self, moments: Sequence[Moment], vectors: np.ndarray) -> None: ...

    def search(self, text: str, vector: np.ndarray, limit: int, flt: MomentFilter) -> list[MomentHit]: ...

    def count(self, flt: MomentFilter) -> int: ...

    def delete(self, flt: MomentFilter) -> None:
        """Delete by filter; needs job_id and/or tenant (an empty filter is refused)."""
        ...

    def job_ids(self) -> set[str]:
        """Every job_id some moment names."""
        ...

    def close(self) -> None: ...


class Classifier(Protocol):
    """An image model's class scores: the ImageNet logits the frame embedder's graph computes beside its features."""

    def logits(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """Return (N, classes) float32 raw scores; ValueError when the model has no class output."""
        ...


@dataclass(slots=True, frozen=True)
class FrameNeeds:
    """What an analyzer wants the one decode pass to make of each sampled frame, besides `image` (the model-size
    picture every frame carries): `detail_short_side` asks for `SampledFrame.detail`, an upright copy that keeps the
    display aspect with its short side this long (crops of it are model-size without a resize)."""

    detail_short_side: int | None = None
    # Asks for `SampledFrame.thumbnail`, this many pixels wide (the stored per-frame JPEGs the page shows).
    thumbnail_width: int | None = None
    # Asks for `SampledFrame.luma`: upright, display-aspect grey, short side this long at most (what OCR reads).
    luma_short_side: int | None = None

    # Asks for the source's audio: the run is then a ListeningRun, handed an AudioPass beside the frames. An
    # analyzer that needs audio also makes a file without a video stream a valid job (an audio-only pass).
    audio: bool = False

@dataclass(slots=True, frozen=True)
class ReadLine:
    """One line of text an OCR engine read in an image: its text, a confidence in [0, 1], and its axis-aligned
    bounding box (left, top, right, bottom) in the image's pixels."""

    text: str
    confidence: float
    box: tuple[float, float, float, float]


class TextReader(Protocol):
    """An OCR engine over upright images (H x W grey, uint8), in two steps so a caller can skip recognising lines it
    read before: `detect` finds where lines are, `recognize` reads the given ones."""

    def detect(self, image: np.ndarray) -> list[tuple[float, float, float, float]]:
        """Bounding boxes (left, top, right, bottom, in pixels) of the lines of text, top to bottom."""
        ...

    def recognize(self, image: np.ndarray, boxes: Sequence[tuple[float, float, float, float]]) -> list[ReadLine | None]:
        """One reading per box: its line, or None when nothing legible was read there (below the confidence floor)."""
        ...


@dataclass(slots=True)
class FeatureOutput:
    """What an analyzer hands back at the end of a pass (or of a split job's merge, or of a reuse).

    `count`: its headline number (frames indexed, frames labelled); `fields`: job-record fields it owns, written with
    the job's final transition; `segment`: JSON a segment stores for `Analyzer.merge`; `frames`: the frames indexed
    (the CLI prints them); `timings`: seconds to add to the job's classic Timings fields (embed_s, index_s);
    `warnings`: short sentences for the job's `warnings[]`."""

    count: int = 0
    fields: dict[str, Any] = field(default_factory=dict)
    segment: dict[str, Any] = field(default_factory=dict)
    frames: list[Frame] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


class AnalyzerRun(Protocol):
    """One analyzer over one pass (a whole video or one segment): fed batches in presentation order."""

    def add(self, frames: Sequence[SampledFrame]) -> None: ...

    def finish(self, shots: Sequence[Shot]) -> FeatureOutput:
        """After the last batch; `shots` are the pass's shots (a segment's frames before its first cut have shot
        -1: the merge renumbers them)."""
        ...


# Audio passes hand analyzers mono float32 samples at this rate (what Whisper and Silero VAD take).
AUDIO_RATE = 16_000


@dataclass(slots=True, frozen=True)
class AudioInfo:
    container: str
    codec: str
    sample_rate: int
    channels: int
    # Where the stream starts and ends on the video's clock (a stream may start late); end None: unknown.
    start_s: float
    end_s: float | None


@dataclass(slots=True)
class AudioChunk:
    start_s: float  # the first sample's time on the video's clock (the clock of frame pts_s)
    samples: np.ndarray  # float32, mono, AUDIO_RATE


class AudioReader(Protocol):
    """One decode pass over a file's first audio stream, streamed in chunks (never the whole track in memory)."""

    @property
    def info(self) -> AudioInfo | None:
        """None: the file has no audio stream."""
        ...

    def chunks(self) -> Iterator[AudioChunk]:
        """Chunks in time order within the reader's range; damaged packets are skipped and counted in `warnings`."""
        ...

    @property
    def warnings(self) -> list[str]: ...

    def close(self) -> None: ...


class AudioSource(Protocol):
    def open(self, path: Path | MediaFile, start_s: float | None = None, end_s: float | None = None) -> AudioReader:
        """Probe `path` (a MediaFile is then the reader's to close) and prepare a pass over [start_s, end_s).
        Raises UnsupportedMedia when the file is not a container that can be read at all."""
        ...


@dataclass(slots=True)
class AudioPass:
    """What a ListeningRun gets: a way to open the source's audio over any range (a segment reads a little past its
    own ends, to cut words at a pause), the range this pass owns, and a flag set when the pass is abandoned."""

    open: Callable[[float | None, float | None], AudioReader]
    start_s: float
    end_s: float | None
    stop: threading.Event = field(default_factory=threading.Event)


class ListeningRun(AnalyzerRun, Protocol):
    """The run of an analyzer whose FrameNeeds ask for audio."""

    def listen(self, audio: AudioPass) -> None:
        """The whole audio pass, called in a thread of its own beside the frame pass, before `finish`. Audio
        problems become the run's warnings; it returns early once `audio.stop` is set."""
        ...


class Analyzer(Protocol):
    """One feature (DESIGN §1): an adapter behind this port, chosen per job, loaded lazily, timed and counted by the
    orchestrator. `analyze_video` calls every analyzer of a job alike and never names one. An analyzer may also have
    a `variant` string naming what else decides its results (its settings, a calibration): it joins the job's content
    key, so content-hash reuse never hands back results made otherwise."""

    @property
    def feature(self) -> str: ...

    @property
    def needs(self) -> FrameNeeds: ...

    def start(self, job: Job) -> AnalyzerRun:
        """Prepare a pass (load the model on first use). Raises a VideoAIError to fail the job."""
        ...

    def reuse(self, job: Job, previous: Job) -> FeatureOutput:
        """Content-hash reuse: copy what `previous` (same bytes, same sampling, same features) found to `job`."""
        ...

    def merge(self, job: Job, segments: Sequence[Mapping[str, Any]], shots: Sequence[Shot]) -> FeatureOutput:
        """A split job's finalisation: combine the segments' `FeatureOutput.segment` dicts on the merged shots."""
        ...

    def discard(self, job: Job) -> None:
        """A job cancelled mid-pass (DELETE /jobs/{id}): remove whatever this analyzer stored outside the record."""
        ...


class VideoReader(Protocol):
    """One linear decode pass over a file: metadata first, then sampled frames; shots after the pass."""

    @property
    def info(self) -> VideoInfo: ...

    def __iter__(self) -> Iterator[SampledFrame]: ...

    @property
    def shots(self) -> list[Shot]:
        """Complete once iteration has finished."""
        ...

    @property
    def segmentable(self) -> bool:
        """Whether this file can be decoded in independent time segments (FrameSource.open with start_s/end_s)."""
        ...

    def close(self) -> None: ...


class MediaFile(Protocol):
    """A seekable, read-only binary file a frame source can decode in place of a path (e.g. ranged S3 reads)."""

    @property
    def name(self) -> str: ...

    def readable(self) -> bool: ...

    def seekable(self) -> bool: ...

    def read(self, size: int = -1, /) -> bytes | None: ...

    def seek(self, offset: int, whence: int = 0, /) -> int: ...

    def tell(self) -> int: ...

    def close(self) -> None: ...


class FrameSource(Protocol):
    def open(
        self,
        path: Path | MediaFile,
        sampling: Sampling,
        image_size: tuple[int, int] | None = None,
        thumbnail_width: int | None = None,
        start_s: float | None = None,
        end_s: float | None = None,
        detail_short_side: int | None = None,
        luma_short_side: int | None = None,
    ) -> VideoReader:
        """Probe `path` (a local file, or an open MediaFile the reader then owns and closes) and prepare a pass.
        `detail_short_side`: also give each sampled frame an aspect-keeping `detail` copy (FrameNeeds); likewise
        `luma_short_side` a display-aspect grey `luma` copy.
        Raises UnsupportedMedia / NoVideoStream / CorruptMedia / EmptyVideo, and whatever the MediaFile raises."""
        ...


@dataclass(slots=True)
class FetchedVideo:
    path: Path
    sha256: str
    size_bytes: int
    # S3 sources: the ETag the download was pinned to, i.e. of exactly the bytes `sha256` covers.
    etag: str | None = None


class RangedFile(MediaFile, Protocol):
    """A MediaFile that reads an object by byte ranges, and says how much it read."""

    @property
    def bytes_fetched(self) -> int: ...

    @property
    def requests(self) -> int: ...

    @property
    def fetch_seconds(self) -> float: ...


class RangedOpener(Protocol):
    """Random access to an S3 object, so each segment of a split job reads only the byte ranges it decodes instead
    of downloading the whole object."""

    def pin(self, source: Source) -> str:
        """The object's current ETag, for the segments to pin their reads to. Raises VideoNotFound, FetchFailed."""
        ...

    def open(self, source: Source, etag: str | None) -> RangedFile:
        """A file over the object (no I/O until read). Every read is pinned to `etag` (or the source's version):
        reads raise SourceChanged once the object was overwritten, else VideoNotFound / FetchFailed."""
        ...


class SourceStager(Protocol):
    def stage(self, job_id: str, path: Path) -> Source:
        """Copy a fetched source next to the service (S3) for the segments of a split job to read, so the origin
        is downloaded once, not once per segment. Raises on failure (the caller then falls back to the origin)."""
        ...


class VideoFetcher(Protocol):
    def fetch(self, source: Source, workdir: Path) -> FetchedVideo:
        """Bring the source to a local file under workdir. Raises VideoNotFound, ForbiddenAddress, SourceTooLarge,
        FetchFailed."""
        ...


class VideoLinks(Protocol):
    """Short-lived URLs a browser can play an S3 source from (the page's player)."""

    def presigned_get(self, location: S3Location, expires_s: int) -> str: ...

    def presigned_post(self, location: S3Location, max_bytes: int, content_type: str,
                       expires_s: int) -> tuple[str, dict[str, str]]:
        """(url, form fields) of a browser upload of one object, at most `max_bytes` (S3 enforces the policy)."""
        ...


class ThumbnailStore(Protocol):
    """A small JPEG per sampled frame, keyed by job id and sample index (GET /jobs/{id}/frames/{index}/thumbnail).
    Callers check the tenant (the job record) before reading: the store knows jobs, not tenants."""

    def put(self, job_id: str, index: int, jpeg: bytes) -> None: ...

    def get(self, job_id: str, index: int) -> bytes | None: ...

    def copy(self, from_job: str, to_job: str) -> int:
        """Content-hash reuse: the previous job's thumbnails under the new job's id; returns how many."""
        ...

    def delete(self, job_id: str) -> None: ...


class ArtifactStore(Protocol):
    """A job's results too big for its record (DynamoDB items stop at 400 KB): "transcript.json" (speech), "text.json"
    (OCR), kept beside the thumbnails, copied on content-hash reuse and deleted with the job. Callers check the tenant
    (the job record) before reading: the store knows jobs, not tenants. Names are plain file names."""

    def put(self, job_id: str, name: str, data: bytes) -> None: ...

    def get(self, job_id: str, name: str) -> bytes | None: ...

    def copy(self, from_job: str, to_job: str) -> int:
        """Content-hash reuse: every artifact of the previous job under the new job's id; returns how many."""
        ...

    def delete(self, job_id: str) -> None: ...


class VectorIndex(Protocol):
    def ensure_collection(self, model: ModelInfo) -> None: ...

    def upsert(self, model: ModelInfo, points: Sequence[FramePoint]) -> None: ...

    def search(
        self, model: ModelInfo, vector: np.ndarray, limit: int, flt: SearchFilter
    ) -> list[ScoredPoint]: ...

    def get_vector(self, model: ModelInfo, point_id: str) -> np.ndarray | None: ...

    def count(self, model: ModelInfo, flt: SearchFilter) -> int: ...

    def delete(self, model: ModelInfo, flt: SearchFilter) -> None:
        """Delete by filter; needs job_id and/or tenant (an empty filter is refused, not "delete all")."""
        ...

    def list_frames(
        self, model: ModelInfo, job_id: str, tenant: str | None, after_frame: int | None, limit: int
    ) -> list[ScoredPoint]:
        """A job's points ordered by frame_number, those after `after_frame` only (paging); score is 0.0."""
        ...

    def set_payloads(self, model: ModelInfo, updates: Sequence[tuple[str, dict[str, Any]]]) -> None:
        """Merge payload keys into existing points (point id -> keys); vectors and other keys stay."""
        ...

    def job_ids(self, model: ModelInfo) -> set[str]:
        """Every job_id some point names (the orphan sweep compares them with the job records)."""
        ...

    def close(self) -> None: ...


class JobRepository(Protocol):
    def create(self, job: Job) -> Job:
        """Store a new job; raises Conflict when the id exists already."""
        ...

    def tenants_of(self, job_ids: Iterable[str]) -> dict[str, str]:
        """job_id -> tenant for the ids that name a recorded job (batched reads: search and the orphan sweep)."""
        ...

    def get(self, job_id: str) -> Job | None: ...

    def transition(self, job_id: str, to: JobStatus, **fields: Any) -> Job:
        """Conditional write: only along TRANSITIONS; raises InvalidTransition otherwise."""
        ...

    def update(self, job_id: str, **fields: Any) -> None:
        """Unconditional update of non-status fields (progress, callback state)."""
        ...

    def keep_callback_message(self, job_id: str, message: CallbackMessage) -> CallbackMessage:
        """Store the job's callback message unless it has one: the one kept (the first stored wins), so concurrent
        deliveries of one ending (an SNS duplicate, a replay) all send the same body. JobNotFound if no such job."""
        ...

    def create_idempotent(self, job: Job, idempotency_key: str, request_hash: str) -> tuple[Job, bool]:
        """Create once: same id + same request_hash -> (existing, False); another hash -> IdempotencyConflict."""
        ...

    def list_for_tenant(self, tenant: str, limit: int, next_token: str | None) -> tuple[list[Job], str | None]:
        """The tenant's jobs, newest first; a token this repository did not issue -> InvalidRequest(next_token)."""
        ...

    def find_by_content(self, content_key: str) -> Job | None:
        """The newest succeeded job with this content key (content-hash reuse), or None."""
        ...

    def delete(self, job_id: str) -> None:
        """Remove the record; idempotent."""
        ...

    def record_segment(self, job_id: str, segment: int, result: dict[str, Any]) -> int | None:
        """Store one segment's result and count it, atomically and once: the new count of recorded segments, or
        None when this segment was recorded before (a redelivered message must not count twice)."""
        ...

    def segment_results(self, job_id: str) -> dict[int, dict[str, Any]]:
        """Every recorded segment result of a job, by segment index."""
        ...

    def take_lease(self, job_id: str, slot: str, holder: str, until: float, now: float) -> bool:
        """Hold the run lease `slot` of a job ("job", or "segment-<i>" for a split job's segment) for `holder` until
        `until` (epoch seconds), atomically: taken when free or expired (before `now`), extended when `holder` holds
        it already; False when another holder's lease is live. JobNotFound when the job does not exist."""
        ...

    def release_lease(self, job_id: str, slot: str, holder: str) -> None:
        """Give up `holder`'s lease on `slot`; nothing happens when another holder has it or the job is gone."""
        ...

    def mark_enqueued(self, job_id: str) -> None:
        """Record that the job's message was sent (`enqueued_at`); nothing happens when the job is gone."""
        ...

    def unsent(self, created_before: str, limit: int) -> list[Job]:
        """Jobs still `queued` whose message was never recorded as sent, created before `created_before` (ISO
        time), oldest first, at most `limit`."""
        ...


class JobQueue(Protocol):
    def send(self, message: dict[str, Any]) -> None: ...


class Notifier(Protocol):
    def job_finished(self, job: Job, replay: bool = False) -> None:
        """Publish "job finished"; `replay` re-delivers a callback that was delivered already."""
        ...


class Clock(Protocol):
    def monotonic(self) -> float: ...


class Metrics(Protocol):
    def count(self, name: str, value: float = 1.0, **labels: str) -> None: ...

    def observe(self, name: str, value: float, **labels: str) -> None: ...


class Tracing(Protocol):
    def span(self, name: str) -> AbstractContextManager[Any]: ...


class NullMetrics:
    """Metrics that go nowhere: the default where no sink is wired (unit tests, the CLI)."""

    def count(self, name: str, value: float = 1.0, **labels: str) -> None:
        return None

    def observe(self, name: str, value: float, **labels: str) -> None:
        return None


class NullTracing:
    def span(self, name: str) -> AbstractContextManager[Any]:
        return nullcontext()
