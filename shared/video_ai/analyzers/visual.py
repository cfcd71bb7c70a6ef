"""The "visual" analyzer: the frame embedder. Every sampled frame becomes one vector in `frames__<model>__<dim>`."""

from __future__ import annotations

import bisect
import logging
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from video_ai.domain.models import (
    Frame,
    FramePoint,
    Job,
    ModelInfo,
    SampledFrame,
    ScoredPoint,
    SearchFilter,
    Shot,
    point_id,
)
from video_ai.domain.ports import Embedder, FeatureOutput, FrameNeeds, ThumbnailStore, Tracing, VectorIndex

if TYPE_CHECKING:
    import numpy as np

    from video_ai.analyzers import AnalyzerContext

logger = logging.getLogger(__name__)
REUSE_PAGE = 256
# The page shows shots as ~180 px tiles; 192 px JPEGs at quality 80 are 4-8 KB each.
THUMBNAIL_WIDTH = 192
THUMBNAIL_QUALITY = 80


class VisualAnalyzer:
    """Also keeps the job's thumbnails (one JPEG per sampled frame) when the context has a store: the visual
    feature's frames are the job's frames, and the pass already decoded them."""

    feature = "visual"

    def __init__(self, context: AnalyzerContext) -> None:
        self.embedder: Embedder = context.embedder
        self.index: VectorIndex = context.index
        self.tracing: Tracing = context.tracing
        self.thumbnails: ThumbnailStore | None = context.thumbnails
        self.needs = FrameNeeds(thumbnail_width=THUMBNAIL_WIDTH if self.thumbnails is not None else None)

    def start(self, job: Job) -> VisualRun:
        model = self.embedder.info
        with self.tracing.span("index"):
            self.index.ensure_collection(model)
        return VisualRun(self, job, model)

    def reuse(self, job: Job, previous: Job) -> FeatureOutput:
        """Copy the previous job's vectors under this job's point ids instead of decoding and embedding again."""
        model = previous.model or self.embedder.info
        self.index.ensure_collection(model)
        frames: list[Frame] = []
        after: int | None = None
        t0 = time.perf_counter()
        while True:
            page = self.index.list_frames(model, previous.job_id, previous.tenant, after, REUSE_PAGE)
            points: list[FramePoint] = []
            for old in page:
                vector = self.index.get_vector(model, old.id)
                if vector is None:
                    continue
                number = int(old.payload["frame_number"])
                pid = point_id(job.job_id, number)
                payload = {**old.payload, "job_id": job.job_id, "tenant": job.tenant, "source": job.source.describe()}
                points.append(FramePoint(id=pid, vector=vector, payload=payload))
                frames.append(Frame(index=int(old.payload["index"]), pts_s=float(old.payload["pts_s"]),
                                    frame_number=number, shot=int(old.payload["shot"]), point_id=pid))
            if points:
                self.index.upsert(model, points)
            if len(page) < REUSE_PAGE:
                break
            after = int(page[-1].payload["frame_number"])
        if self.thumbnails is not None:
            self.thumbnails.copy(previous.job_id, job.job_id)
        return FeatureOutput(count=len(frames), frames=frames, fields={"frames_indexed": len(frames)},
                             timings={"index_s": time.perf_counter() - t0})

    def merge(self, job: Job, segments: Sequence[Mapping[str, Any]], shots: Sequence[Shot]) -> FeatureOutput:
        """Global sample indexes and shot ids on every point of a split job (segments numbered theirs locally)."""
        model = job.model or self.embedder.info
        points = self.all_points(job, model)
        shot_starts = [s.start_frame for s in shots]
        updates: list[tuple[str, dict[str, Any]]] = []
        frames: list[Frame] = []
        for rank, point in enumerate(points):
            number = int(point.payload["frame_number"])
            shot = bisect.bisect_right(shot_starts, number) - 1
            if point.payload.get("index") != rank or point.payload.get("shot") != shot:
                updates.append((point.id, {"index": rank, "shot": shot}))
            frames.append(Frame(index=rank, pts_s=float(point.payload["pts_s"]), frame_number=number, shot=shot,
                                point_id=point.id))
        if updates:
            self.index.set_payloads(model, updates)
        warnings = self._renumber_thumbnails(job, frames)
        return FeatureOutput(count=len(points), frames=frames, fields={"frames_indexed": len(points)},
                             warnings=warnings)

    def _renumber_thumbnails(self, job: Job, frames: Sequence[Frame]) -> list[str]:
        """Segments stored thumbnails by frame number (their sample indexes are their own): file them under the
        job's global sample indexes, as an unsplit run does."""
        store = self.thumbnails
        if store is None:
            return []
        staging = segment_thumbnails_id(job.job_id)
        missing = 0
        try:
            for frame in frames:
                jpeg = store.get(staging, frame.frame_number)
                if jpeg is None:
                    missing += 1
                else:
                    store.put(job.job_id, frame.index, jpeg)
            store.delete(staging)
        except Exception as err:
            logger.warning("thumbnails not renumbered: %s", err, extra={"job_id": job.job_id})
            return [f"thumbnails not stored: {type(err).__name__}: {str(err)[:200]}"]
        return [f"{missing} of {len(frames)} thumbnails missing"] if missing else []

    def all_points(self, job: Job, model: ModelInfo) -> list[ScoredPoint]:
        points: list[ScoredPoint] = []
        after: int | None = None
        while True:
            page = self.index.list_frames(model, job.job_id, job.tenant, after, REUSE_PAGE)
            points.extend(page)
            if len(page) < REUSE_PAGE:
                return points
            after = int(page[-1].payload["frame_number"])

    def discard(self, job: Job) -> None:
        self.index.delete(self.embedder.info, SearchFilter(tenant=job.tenant, job_id=job.job_id))
        if self.thumbnails is not None:
            self.thumbnails.delete(job.job_id)
            self.thumbnails.delete(segment_thumbnails_id(job.job_id))


class VisualRun:
    """Embed each batch and upsert its points at once (one vector per sampled frame)."""

    def __init__(self, analyzer: VisualAnalyzer, job: Job, model: ModelInfo) -> None:
        self._analyzer = analyzer
        self._job = job
        self._model = model
        self._source = job.source.describe()
        self.frames: list[Frame] = []
        self.embed_s = 0.0
        self.index_s = 0.0
        self._thumbnails = analyzer.thumbnails
        self._warnings: list[str] = []

    def add(self, frames: Sequence[SampledFrame]) -> None:
        tracing = self._analyzer.tracing
        with tracing.span("embed"):
            t0 = time.perf_counter()
            vectors = self._embed(frames)
            self.embed_s += time.perf_counter() - t0
        points, new_frames = frame_points(self._job, frames, vectors, self._source)
        with tracing.span("index"):
            t0 = time.perf_counter()
            self._analyzer.index.upsert(self._model, points)
            self.index_s += time.perf_counter() - t0
        self.frames.extend(new_frames)
        self._store_thumbnails(frames)

    def _store_thumbnails(self, frames: Sequence[SampledFrame]) -> None:
        """A by-product: a store that fails stops the thumbnails (with a job warning), never the job."""
        if self._thumbnails is None:
            return
        try:
            for frame in frames:
                if frame.thumbnail is not None:
                    self._thumbnails.put(*thumbnail_key(self._job, frame), encode_thumbnail(frame.thumbnail))
        except Exception as err:
            logger.warning("thumbnails not stored: %s", err, extra={"job_id": self._job.job_id})
            self._warnings.append(f"thumbnails not stored: {type(err).__name__}: {str(err)[:200]}")
            self._thumbnails = None

    def _embed(self, frames: Sequence[SampledFrame]) -> np.ndarray:
        """Vectors; the class logits of the same run ride along on the frames when the model has them (free for
        the labels analyzer, which would otherwise run the model on these images again)."""
        images = [f.image for f in frames]
        with_logits = getattr(self._analyzer.embedder, "embed_with_logits", None)
        if with_logits is None:
            return self._analyzer.embedder.embed(images)
        vectors, logits = with_logits(images)
        if logits is not None:
            for frame, row in zip(frames, logits, strict=True):
                frame.logits = row
        out: np.ndarray = vectors
        return out

    def finish(self, shots: Sequence[Shot]) -> FeatureOutput:
        n = len(self.frames)
        return FeatureOutput(count=n, frames=self.frames, fields={"frames_indexed": n}, segment={"frames": n},
                             timings={"embed_s": self.embed_s, "index_s": self.index_s}, warnings=self._warnings)


def frame_points(
    job: Job, frames: Sequence[SampledFrame], vectors: np.ndarray, source_label: str
) -> tuple[list[FramePoint], list[Frame]]:
    points: list[FramePoint] = []
    out: list[Frame] = []
    for frame, vector in zip(frames, vectors, strict=True):
        pid = point_id(job.job_id, frame.frame_number)
        points.append(
            FramePoint(
                id=pid,
                vector=vector,
                payload={
                    "job_id": job.job_id,
                    "tenant": job.tenant,
                    "index": frame.index,
                    "pts_s": frame.pts_s,
                    "frame_number": frame.frame_number,
                    "shot": frame.shot,
                    "source": source_label,
                },
            )
        )
        out.append(Frame(index=frame.index, pts_s=frame.pts_s, frame_number=frame.frame_number, shot=frame.shot,
                         point_id=pid))
    return points, out


def segment_thumbnails_id(job_id: str) -> str:
    """Where a split job's segments keep thumbnails by frame number until the merge renumbers them."""
    return f"{job_id}__segments"


def thumbnail_key(job: Job, frame: SampledFrame) -> tuple[str, int]:
    return (segment_thumbnails_id(job.job_id), frame.frame_number) if job.segments_total else (job.job_id, frame.index)


def encode_thumbnail(rgb: np.ndarray) -> bytes:
    """A JPEG at most THUMBNAIL_WIDTH wide (the CLI's contact sheet asks the decoder for wider pictures)."""
    import cv2

    height, width = rgb.shape[:2]
    if width > THUMBNAIL_WIDTH:
        size = (THUMBNAIL_WIDTH, max(2, round(height * THUMBNAIL_WIDTH / width)))
        rgb = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
    ok, jpeg = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, THUMBNAIL_QUALITY])
    if not ok:
        raise ValueError("could not encode a thumbnail")
    return bytes(jpeg.tobytes())
