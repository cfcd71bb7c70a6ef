"""Fakes for unit tests: they record state; tests assert on that state (CONVENTIONS: no call-sequence mocks)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from video_ai.domain.errors import VideoAIError
from video_ai.domain.models import (
    FramePoint,
    Job,
    ModelInfo,
    SampledFrame,
    Sampling,
    ScoredPoint,
    SearchFilter,
    Shot,
    Source,
    VideoInfo,
)
from video_ai.domain.ports import FetchedVideo, MediaFile


class FakeFetcher:
    def __init__(self, error: Exception | None = None, s3_etag: str | None = None) -> None:
        self.error = error
        self.s3_etag = s3_etag
        self.fetched: list[Source] = []

    def fetch(self, source: Source, workdir: Path) -> FetchedVideo:
        self.fetched.append(source)
        if self.error is not None:
            raise self.error
        path = workdir / "video.mp4"
        path.write_bytes(b"fake")
        # Like S3VideoFetcher: an S3 source comes with the ETag its download was pinned to.
        etag = self.s3_etag if source.s3 is not None else None
        return FetchedVideo(path=path, sha256="0" * 64, size_bytes=4, etag=etag)


class FakeReader:
    def __init__(self, frames: list[SampledFrame], shots: list[Shot], info: VideoInfo,
                 error_after: VideoAIError | None = None) -> None:
        self._frames = frames
        self._shots = shots
        self._info = info
        self.error_after = error_after
        self.closed = False

    @property
    def info(self) -> VideoInfo:
        return self._info

    def __iter__(self) -> Iterator[SampledFrame]:
        yield from self._frames
        if self.error_after is not None:
            raise self.error_after

    @property
    def shots(self) -> list[Shot]:
        return self._shots

    @property
    def segmentable(self) -> bool:
        return self.segments_supported

    segments_supported = True

    def close(self) -> None:
        self.closed = True


class FakeFrameSource:
    """Frames every second; shot changes every `shot_len` frames; each shot has its own base colour."""

    def __init__(self, n_frames: int = 10, shot_len: int = 5, open_error: VideoAIError | None = None,
                 error_after: VideoAIError | None = None) -> None:
        self.n_frames = n_frames
        self.shot_len = shot_len
        self.open_error = open_error
        self.error_after = error_after
        self.opened = 0
        self.opened_with: list[Path | MediaFile] = []
        self.readers: list[FakeReader] = []

    def open(self, path: Path | MediaFile, sampling: Sampling, image_size: tuple[int, int] | None = None,
             thumbnail_width: int | None = None, start_s: float | None = None,
             end_s: float | None = None, detail_short_side: int | None = None,
             luma_short_side: int | None = None) -> FakeReader:
        self.opened += 1
        self.opened_with.append(path)
        if self.open_error is not None:
            raise self.open_error
        w, h = image_size or (8, 8)
        lo = start_s or 0.0
        hi = end_s if end_s is not None else float("inf")
        # Like a segment reader: local sample indexes and shot ids; global times and frame numbers.
        owned = [i for i in range(self.n_frames) if lo <= i < hi]
        side = detail_short_side
        frames = [
            SampledFrame(index=k, pts_s=float(i), frame_number=i * 25,
                         shot=i // self.shot_len - owned[0] // self.shot_len,
                         image=np.full((h, w, 3), (i // self.shot_len) * 40, dtype=np.uint8),
                         detail=None if side is None else np.full((side, side * w // h, 3), (i // self.shot_len) * 40,
                                                                  dtype=np.uint8))
            for k, i in enumerate(owned)
        ]
        n_shots = (self.n_frames + self.shot_len - 1) // self.shot_len
        shots = [Shot(index=s, start_s=float(s * self.shot_len), end_s=float(min((s + 1) * self.shot_len,
                 self.n_frames)), start_frame=s * self.shot_len * 25,
                 end_frame=min((s + 1) * self.shot_len, self.n_frames) * 25 - 1) for s in range(n_shots)
                 if lo <= s * self.shot_len < hi]
        info = VideoInfo(container="mp4", codec="h264", width=w, height=h, fps=25.0,
                         duration_s=float(self.n_frames), frame_count=self.n_frames * 25)
        reader = FakeReader(frames, shots, info, self.error_after)
        self.readers.append(reader)
        return reader


class FakeEmbedder:
    """Vectors derived from the mean pixel value, so equal images give equal vectors."""

    def __init__(self, dim: int = 4) -> None:
        self.dim = dim
        self.embedded = 0

    @property
    def info(self) -> ModelInfo:
        return ModelInfo(name="fake", version="1", dim=self.dim)

    @property
    def input_size(self) -> tuple[int, int]:
        return (8, 8)

    def embed(self, images: Sequence[np.ndarray]) -> np.ndarray:
        self.embedded += len(images)
        out = np.zeros((len(images), self.dim), dtype=np.float32)
        for row, image in enumerate(images):
            angle = float(image.mean()) / 255.0 * np.pi
            out[row, 0] = np.cos(angle)
            out[row, 1] = np.sin(angle)
        return out


class FakeIndex:
    def __init__(self, error: VideoAIError | None = None) -> None:
        self.points: dict[str, FramePoint] = {}
        self.error = error
        self.upserts = 0

    def ensure_collection(self, model: ModelInfo) -> None:
        return None

    def upsert(self, model: ModelInfo, points: Sequence[FramePoint]) -> None:
        if self.error is not None:
            raise self.error
        self.upserts += 1
        for p in points:
            self.points[p.id] = p

    def _match(self, p: FramePoint, flt: SearchFilter) -> bool:
        pl = p.payload
        return ((flt.tenant is None or pl["tenant"] == flt.tenant)
                and (flt.job_id is None or pl["job_id"] == flt.job_id)
                and (flt.start_s is None or pl["pts_s"] >= flt.start_s)
                and (flt.end_s is None or pl["pts_s"] <= flt.end_s))

    def search(self, model: ModelInfo, vector: np.ndarray, limit: int, flt: SearchFilter) -> list[ScoredPoint]:
        scored = [ScoredPoint(id=p.id, score=float(np.dot(p.vector, vector)), payload=p.payload)
                  for p in self.points.values() if self._match(p, flt)]
        return sorted(scored, key=lambda s: -s.score)[:limit]

    def get_vector(self, model: ModelInfo, point_id: str) -> np.ndarray | None:
        p = self.points.get(point_id)
        return None if p is None else p.vector

    def count(self, model: ModelInfo, flt: SearchFilter) -> int:
        return sum(1 for p in self.points.values() if self._match(p, flt))

    def delete(self, model: ModelInfo, flt: SearchFilter) -> None:
        self.points = {k: p for k, p in self.points.items() if not self._match(p, flt)}

    def job_ids(self, model: ModelInfo) -> set[str]:
        return {str(p.payload["job_id"]) for p in self.points.values()}

    def list_frames(self, model: ModelInfo, job_id: str, tenant: str | None, after_frame: int | None,
                    limit: int) -> list[ScoredPoint]:
        pts = [p for p in self.points.values() if p.payload["job_id"] == job_id
               and (tenant is None or p.payload["tenant"] == tenant)
               and (after_frame is None or p.payload["frame_number"] > after_frame)]
        pts.sort(key=lambda p: p.payload["frame_number"])
        return [ScoredPoint(id=p.id, score=0.0, payload=p.payload) for p in pts[:limit]]

    def set_payloads(self, model: ModelInfo, updates: Sequence[tuple[str, dict[str, Any]]]) -> None:
        for pid, keys in updates:
            point = self.points[pid]
            self.points[pid] = FramePoint(id=pid, vector=point.vector, payload={**point.payload, **keys})

    def close(self) -> None:
        return None


class RecordingNotifier:
    def __init__(self) -> None:
        self.finished: list[Job] = []
        self.replays = 0

    def job_finished(self, job: Job, replay: bool = False) -> None:
        self.finished.append(job)
        self.replays += int(replay)


class RecordingQueue:
    def __init__(self, error: VideoAIError | None = None) -> None:
        self.messages: list[dict[str, Any]] = []
        self.error = error

    def send(self, message: dict[str, Any]) -> None:
        if self.error is not None:
            raise self.error
        self.messages.append(message)


class RecordingMetrics:
    def __init__(self) -> None:
        self.counts: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
        self.observations: dict[str, list[float]] = {}

    def count(self, name: str, value: float = 1.0, **labels: str) -> None:
        key = (name, tuple(sorted(labels.items())))
        self.counts[key] = self.counts.get(key, 0.0) + value

    def observe(self, name: str, value: float, **labels: str) -> None:
        self.observations.setdefault(name, []).append(value)


class S3Call(NamedTuple):
    """One GET a FakeS3Objects served: from which thread, which range, pinned to what, when it started."""

    thread: str
    range: str
    if_match: str | None
    version: str | None
    started: float


class FakeS3Objects:
    """An in-memory S3 client for ranged reads: `get_object(Bucket, Key, Range, IfMatch | VersionId)` and
    `head_object`, with S3's answers (206 + Content-Range, 412 on a stale IfMatch, 416 past the end, 404), the
    requests it served (`ranges`; `calls` also says from which thread, pinned to what, when), `fail_next` to make the
    next GET fail with a given error code and status, `failing` to make every GET fail while set (an outage),
    `fail_ranges` to make every GET of those ranges fail, `delay_s` to make each GET take that long, and `held`:
    GETs of those ranges wait until `release` is set. Safe to call from several threads."""

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str], bytes] = {}
        self.versions: dict[tuple[str, str, str], bytes] = {}
        self.ranges: list[str] = []
        self.calls: list[S3Call] = []
        self.fail_next: tuple[str, int] | None = None
        self.failing: tuple[str, int] | None = None
        self.fail_ranges: dict[str, tuple[str, int]] = {}
        self.delay_s = 0.0
        self.held: set[str] = set()
        self.release = threading.Event()
        self._lock = threading.Lock()

    def put(self, bucket: str, key: str, data: bytes, version: str | None = None) -> str:
        self.objects[(bucket, key)] = data
        if version is not None:
            self.versions[(bucket, key, version)] = data
        return self.etag(data)

    @staticmethod
    def etag(data: bytes) -> str:
        import hashlib

        return f'"{hashlib.md5(data).hexdigest()}"'

    @staticmethod
    def _error(code: str, status: int, operation: str) -> Exception:
        from botocore.exceptions import ClientError

        response: Any = {"Error": {"Code": code, "Message": code}, "ResponseMetadata": {"HTTPStatusCode": status}}
        return ClientError(response, operation)  # botocore's stubs want every ResponseMetadata key; S3 sends fewer

    def _object(self, bucket: str, key: str, version: str | None, if_match: str | None, operation: str) -> bytes:
        data = self.versions.get((bucket, key, version)) if version else self.objects.get((bucket, key))
        if data is None:
            raise self._error("NoSuchVersion" if version else "NoSuchKey", 404, operation)
        if if_match is not None and if_match != self.etag(data):
            raise self._error("PreconditionFailed", 412, operation)
        return data

    def head_object(self, *, Bucket: str, Key: str, VersionId: str | None = None,
                    IfMatch: str | None = None) -> dict[str, Any]:
        data = self._object(Bucket, Key, VersionId, IfMatch, "HeadObject")
        return {"ETag": self.etag(data), "ContentLength": len(data)}

    def get_object(self, *, Bucket: str, Key: str, Range: str, VersionId: str | None = None,
                   IfMatch: str | None = None) -> dict[str, Any]:
        import io

        with self._lock:  # what this GET will answer is decided before it is recorded (tests wait for the record)
            failure, self.fail_next = self.fail_next, None
            failure = failure or self.failing or self.fail_ranges.get(Range)
            self.ranges.append(Range)
            self.calls.append(S3Call(threading.current_thread().name, Range, IfMatch, VersionId, time.monotonic()))
        if Range in self.held:
            self.release.wait()
        if self.delay_s:
            time.sleep(self.delay_s)
        if failure is not None:
            code, status = failure
            raise self._error(code, status, "GetObject")
        data = self._object(Bucket, Key, VersionId, IfMatch, "GetObject")
        first_text, _, last_text = Range.removeprefix("bytes=").partition("-")
        first, last = int(first_text), min(int(last_text), len(data) - 1)
        if first >= len(data):
            raise self._error("InvalidRange", 416, "GetObject")
        return {"Body": io.BytesIO(data[first : last + 1]), "ContentRange": f"bytes {first}-{last}/{len(data)}",
                "ContentLength": last - first + 1, "ETag": self.etag(data)}
