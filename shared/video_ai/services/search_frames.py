"""search_frames: nearest frames to an image or to a stored frame, within one tenant's vectors."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from video_ai.domain.errors import InvalidRequest, NotFound
from video_ai.domain.models import ModelInfo, ScoredPoint, SearchFilter, SearchHit
from video_ai.domain.ports import Embedder, JobRepository, VectorIndex
from video_ai.services.sweep_orphans import known_jobs

# How many candidates to fetch per wanted hit when collapsing to one hit per shot.
COLLAPSE_OVERFETCH = 8


@dataclass(slots=True, frozen=True)
class FrameRef:
    job_id: str
    index: int


@dataclass(slots=True)
class SearchQuery:
    tenant: str
    image: np.ndarray | None = None
    frame: FrameRef | None = None
    top_k: int = 10
    job_id: str | None = None
    start_s: float | None = None
    end_s: float | None = None
    collapse: str | None = None


@dataclass(slots=True)
class SearchDeps:
    index: VectorIndex
    model: ModelInfo
    # Built on first use: the embedder pulls in onnxruntime and the model file.
    embedder: Callable[[], Embedder]
    jobs: JobRepository | None = None


def frame_vector(ref: FrameRef, tenant: str, deps: SearchDeps) -> np.ndarray:
    """The stored vector of a job's `index`-th sampled frame; 404 for another tenant's job."""
    if deps.jobs is not None:
        job = deps.jobs.get(ref.job_id)
        if job is None or job.tenant != tenant:
            raise NotFound(f"job {ref.job_id} not found", field="frame.job_id")
    points = deps.index.list_frames(deps.model, ref.job_id, tenant, None, ref.index + 1)
    if not points:
        # The same words for an unknown job and another tenant's (404, not 403): nothing to tell them apart.
        raise NotFound(f"job {ref.job_id} not found: no frames of it are indexed for this tenant",
                       field="frame.job_id")
    if len(points) <= ref.index or ref.index < 0:
        raise NotFound(f"job {ref.job_id} has {len(points)} sampled frames (index 0 to {len(points) - 1}); "
                       f"no frame {ref.index}", field="frame.index")
    vector = deps.index.get_vector(deps.model, points[ref.index].id)
    if vector is None:
        raise NotFound(f"job {ref.job_id} has no frame {ref.index}", field="frame.index")
    return vector


def search_frames(query: SearchQuery, deps: SearchDeps) -> list[SearchHit]:
    if (query.image is None) == (query.frame is None):
        raise InvalidRequest("give exactly one of image_base64 or frame", field="image_base64")
    if query.start_s is not None and query.end_s is not None and query.end_s < query.start_s:
        raise InvalidRequest("end_s is before start_s", field="end_s")
    if query.image is not None:
        vector = deps.embedder().embed([query.image])[0]
    else:
        assert query.frame is not None
        vector = frame_vector(query.frame, query.tenant, deps)
    flt = SearchFilter(tenant=query.tenant, job_id=query.job_id, start_s=query.start_s, end_s=query.end_s)
    limit = query.top_k * COLLAPSE_OVERFETCH if query.collapse == "shot" else query.top_k
    points = deps.index.search(deps.model, vector, limit, flt)
    if deps.jobs is not None:
        # Orphans (vectors whose job record is gone) are never hits, even before a sweep removes them.
        known = known_jobs((str(p.payload["job_id"]) for p in points), query.tenant, deps.jobs)
        points = [p for p in points if str(p.payload["job_id"]) in known]
    if query.collapse == "shot":
        points = _one_per_shot(points)
    return [_hit(p) for p in points[: query.top_k]]


def _one_per_shot(points: list[ScoredPoint]) -> list[ScoredPoint]:
    seen: set[tuple[str, int]] = set()
    kept: list[ScoredPoint] = []
    for point in points:  # best first, so the first of each shot is its best frame
        key = (str(point.payload["job_id"]), int(point.payload["shot"]))
        if key not in seen:
            seen.add(key)
            kept.append(point)
    return kept


def _hit(point: ScoredPoint) -> SearchHit:
    index = point.payload.get("index")
    return SearchHit(
        job_id=str(point.payload["job_id"]),
        index=None if index is None else int(index),
        pts_s=float(point.payload["pts_s"]),
        frame_number=int(point.payload["frame_number"]),
        shot=int(point.payload["shot"]),
        score=round(float(point.score), 6),
    )
