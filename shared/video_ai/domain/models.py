"""The job record, frames, shots and search hits (DESIGN §3): one JSON shape for API, CLI and callback."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

if TYPE_CHECKING:
    # Only annotations use numpy: the API's cold path (which never touches pixels) does not pay ~0.25 s for it.
    import numpy as np

# Fixed namespace so point ids are the same on every machine and every run.
POINT_NAMESPACE = uuid.UUID("6f1c3a52-8d0e-4d6b-9a57-2f4e2b7c9e10")


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def point_id(job_id: str, frame_number: int) -> str:
    """uuid5 of job id + frame number: re-processing overwrites a point, never duplicates it."""
    return str(uuid.uuid5(POINT_NAMESPACE, f"{job_id}:{frame_number}"))


class JobStatus(StrEnum):
    QUEUED = "queued"
    PROCESSING = "processing"
    SUCCEEDED = "succeeded"
    FAILED = "failed"

    @property
    def terminal(self) -> bool:
        return self in (JobStatus.SUCCEEDED, JobStatus.FAILED)


# Allowed transitions; anything else is refused by a conditional write.
TRANSITIONS: dict[JobStatus, frozenset[JobStatus]] = {
    JobStatus.QUEUED: frozenset({JobStatus.PROCESSING, JobStatus.FAILED}),
    JobStatus.PROCESSING: frozenset({JobStatus.SUCCEEDED, JobStatus.FAILED}),
    JobStatus.SUCCEEDED: frozenset(),
    JobStatus.FAILED: frozenset(),
}


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class S3Location(_Model):
    bucket: str
    key: str
    version: str | None = None


class Source(_Model):
    url: str | None = None
    s3: S3Location | None = None

    def describe(self) -> str:
        if self.s3 is not None:
            return f"s3://{self.s3.bucket}/{self.s3.key}"
        return self.url or ""


SamplingMode = Literal["fps", "shots", "keyframes"]
# One sample per 1000 s at least: below that a rate is no use on a video of at most a few hours, and DynamoDB cannot
# store a number under 1e-130 (moto read 1e-300 back as 0, which then failed validation: a 500 on GET /jobs/{id}).
MIN_FPS = 0.001


class Sampling(_Model):
    mode: SamplingMode = "fps"
    fps: float = Field(default=1.0, ge=MIN_FPS, le=60)
    max_frames: int | None = Field(default=None, ge=1, le=100_000)


class VideoInfo(_Model):
    container: str
    codec: str
    width: int
    height: int
    rotation: int = 0
    fps: float | None = None
    vfr: bool = False
    duration_s: float
    frame_count: int | None = None


class ModelInfo(_Model):
    name: str
    version: str
    dim: int


class Timings(_Model):
    fetch_s: float = 0.0
    decode_s: float = 0.0
    embed_s: float = 0.0
    index_s: float = 0.0
    total_s: float = 0.0


class ErrorInfo(_Model):
    code: str
    message: str


class CallbackState(_Model):
    status: Literal["pending", "delivered", "failed", "gone"] = "pending"
    attempts: int = 0
    last_status: int | None = None
    last_error: str | None = None
    delivered_at: str | None = None


class CallbackMessage(_Model):
    """The callback as first built for a job's ending: every later attempt, Lambda retry and replay sends this body
    under this id (only the webhook-timestamp and signature are new), as Standard Webhooks receivers expect of one
    message. Private: the callback's `data` is the job, and this would nest it in itself."""

    webhook_id: str
    body: str


class Shot(_Model):
    index: int
    start_s: float
    end_s: float
    start_frame: int
    end_frame: int


# What a job can be asked to find (DESIGN §3). Which of them a deployment can run is the analyzer registry's business
# (video_ai.analyzers); "visual" alone is what every job did before features existed.
Feature = Literal["visual", "labels", "speech", "ocr"]
FEATURES: tuple[Feature, ...] = ("visual", "labels", "speech", "ocr")
DEFAULT_FEATURES: tuple[Feature, ...] = ("visual",)


class FeatureStats(_Model):
    """What one analyzer did for a job: how many things it produced (frames indexed, frames labelled...) and the
    wall seconds spent in it, decode excluded (the decode pass is shared)."""

    count: int = 0
    seconds: float = 0.0


class Label(_Model):
    """An ImageNet class as a word: its index in the model's logits, its name, and a confidence in [0, 1]."""

    class_id: int
    name: str
    confidence: float = Field(
        description="Calibrated probability that the label is right (temperature-scaled softmax of the input that "
        "supports it most; on held-out ImageNet photographs, top labels at 0.8 are right ~80% of the time). A shot's "
        "label takes its best labelled frame's; a frame's labels may add up to more than 1"
    )
    # WordNet hypernyms ("cat", "feline", "animal" for a tabby): filled when served, not stored.
    categories: list[str] | None = None


class FrameLabels(_Model):
    """The top labels of one labelled frame (the analyzer labels only a shot's informative frames)."""

    pts_s: float
    frame_number: int
    shot: int
    labels: list[Label]


class ShotLabels(_Model):
    """A shot's labels aggregated over its labelled frames, on the shot's time range (like Rekognition's and Video
    Intelligence's shot labels); `frames` are the labelled frames behind them."""

    shot: int
    start_s: float
    end_s: float
    labels: list[Label]
    frames: list[FrameLabels] = Field(default_factory=list)


class TextBox(_Model):
    """Where a line of on-screen text sits, as fractions (0..1) of the upright, display-aspect frame."""

    left: float = Field(ge=0.0, le=1.0)
    top: float = Field(ge=0.0, le=1.0)
    width: float = Field(ge=0.0, le=1.0)
    height: float = Field(ge=0.0, le=1.0)


class TextLine(_Model):
    """A line of on-screen text (OCR) over the time it stayed readable: the same text at about the same place on
    consecutive read frames is one line. `pts_s`: the frame it was read best on; `shot`: the shot of `start_s`."""

    text: str
    confidence: float = Field(ge=0.0, le=1.0)
    box: TextBox
    start_s: float
    end_s: float
    shot: int
    pts_s: float


MomentKind = Literal["label", "speech", "ocr"]


class Moment(_Model):
    """Something said, written or seen as words, on the video's clock (DESIGN §3): what the text index stores and
    what `POST /search {text}` finds. `shot` is None where no shot applies (a transcript segment across a cut)."""

    job_id: str
    tenant: str
    kind: MomentKind
    text: str
    start_s: float
    end_s: float
    shot: int | None = None
    confidence: float = Field(ge=0.0, le=1.0)
    # A representative time inside the moment (a label's best frame); None: its start.
    pts_s: float | None = None


MOMENT_NAMESPACE = uuid.UUID("3c9e4f1a-7b2d-4e6f-8a15-9d0c2b7e4f63")


def moment_id(moment: Moment) -> str:
    """uuid5 of what identifies a moment (job, kind, shot, time range, text): re-analysis overwrites, never adds."""
    key = f"{moment.job_id}:{moment.kind}:{moment.shot}:{moment.start_s:.3f}:{moment.end_s:.3f}:{moment.text}"
    return str(uuid.uuid5(MOMENT_NAMESPACE, key))


class MomentHit(_Model):
    """A moment found by `POST /search {text}`; `pts_s` is a representative time (the labelled frame, else the
    moment's start); `matched` the query words found in the moment's text."""

    job_id: str
    kind: MomentKind
    text: str
    start_s: float
    end_s: float
    pts_s: float
    shot: int | None
    score: float
    matched: list[str] = Field(default_factory=list)


@dataclass(slots=True, frozen=True)
class MomentFilter:
    tenant: str | None = None
    job_id: str | None = None
    start_s: float | None = None  # moments overlapping [start_s, end_s]
    end_s: float | None = None
    kinds: tuple[str, ...] = ()


PRIVATE_JOB_FIELDS = frozenset(
    {"shots", "labels", "request_hash", "content_key", "staged_source", "source_etag", "announced_at", "enqueued_at",
     "callback_message"}
)


class Job(_Model):
    job_id: str
    status: JobStatus = JobStatus.QUEUED
    created_at: str = Field(default_factory=utc_now)
    updated_at: str = Field(default_factory=utc_now)
    tenant: str = "default"
    tags: dict[str, str] = Field(default_factory=dict)
    source: Source
    callback_url: str | None = None
    sha256: str | None = None
    sampling: Sampling = Field(default_factory=Sampling)
    video: VideoInfo | None = None
    model: ModelInfo | None = None
    frames_indexed: int = 0
    shots_detected: int = 0
    progress: float = 0.0
    timings: Timings = Field(default_factory=Timings)
    error: ErrorInfo | None = None
    callback: CallbackState | None = None
    callback_message: CallbackMessage | None = None
    reused_from: str | None = None
    # Absent on records older than features: those jobs ran the frame embedder only.
    features: list[Feature] = Field(default_factory=lambda: list(DEFAULT_FEATURES))
    # The language the job's speech is in (ISO 639-1, POST /analyze `language`); None: detected (the speech feature).
    language: str | None = None
    feature_stats: dict[str, FeatureStats] = Field(default_factory=dict)
    warnings: list[str] = Field(default_factory=list)
    segments_total: int = 0
    # A split job's copy of an HTTP(S) source in the service's bucket: its segments read that, not the origin.
    staged_source: Source | None = None
    # The ETag, taken when the job was split, of the S3 object its segments read (the staged copy, else the source
    # in place): every ranged GET of every segment is pinned to it, so no segment reads bytes of an overwrite.
    source_etag: str | None = None
    started_at: str | None = None
    request_hash: str | None = None
    content_key: str | None = None
    # When the "job finished" notification was published (the outbox mark). A finished job without it may never
    # have been announced: the worker crashed between recording the end and publishing it, so a redelivered message
    # publishes it then (services/announce.py).
    announced_at: str | None = None
    # When the job's first message was sent to the jobs queue (submit_job). A job left `queued` without it was
    # created by a process that died before sending (or whose send failed): services/requeue.py sends it then.
    enqueued_at: str | None = None
    # Stored with the record for GET /jobs/{id}/shots; left out of the public record to keep callbacks small.
    shots: list[Shot] = Field(default_factory=list)
    # GET /jobs/{id}/labels; private for the same reason as shots. None: the labels analyzer never ran for this job.
    labels: list[ShotLabels] | None = None

    def public(self) -> dict[str, Any]:
        """The JSON a client sees (API, `--json`, callback `data`)."""
        return self.model_dump(mode="json", exclude=set(PRIVATE_JOB_FIELDS))


class Frame(_Model):
    index: int
    pts_s: float
    frame_number: int
    shot: int
    point_id: str


class SearchHit(_Model):
    job_id: str
    # The sampled frame's index (what `frame: {job_id, index}` and GET /jobs/{id}/frames call `index`); null only for
    # vectors indexed before the payload carried it. `frame_number` is the frame's position in the video stream.
    index: int | None = None
    pts_s: float
    frame_number: int
    shot: int
    score: float


@dataclass(slots=True)
class SampledFrame:
    """A decoded, upright RGB frame chosen by the sampler, with its exact presentation time."""

    index: int
    pts_s: float
    frame_number: int
    shot: int
    image: np.ndarray  # H x W x 3, uint8, RGB, already rotated upright
    thumbnail: np.ndarray | None = None
    # Upright, display aspect kept, short side FrameNeeds.detail_short_side: only when an analyzer asked for it.
    detail: np.ndarray | None = None
    # Upright, display aspect (anamorphic sources widened), grey (luma), short side FrameNeeds.luma_short_side or the
    # source's if smaller: only when an analyzer asked for it (OCR reads it).
    luma: np.ndarray | None = None
    # The image model's class logits for `image`, when an analyzer ran the model on it already (the frame embedder
    # gets them from the same session.run as the vectors), so the labels analyzer need not run it again.
    logits: np.ndarray | None = None


@dataclass(slots=True)
class FramePoint:
    """One vector to store: the frame's embedding plus the payload DESIGN §3 fixes."""

    id: str
    vector: np.ndarray
    payload: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class ScoredPoint:
    id: str
    score: float
    payload: dict[str, Any]


@dataclass(slots=True, frozen=True)
class SearchFilter:
    tenant: str | None = None
    job_id: str | None = None
    start_s: float | None = None
    end_s: float | None = None


def collection_name(model: ModelInfo) -> str:
    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in model.name)
    return f"frames__{safe}__{model.dim}"
