"""Vectors and moments whose job has no record (deleted while they stayed, or never recorded) are orphans: search
never returns them (`known_jobs`), and `sweep_orphans` deletes them (at `serve`'s start)."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass

from video_ai.domain.models import ModelInfo, MomentFilter, SearchFilter
from video_ai.domain.ports import JobRepository, MomentIndex, VectorIndex

logger = logging.getLogger(__name__)


def known_jobs(job_ids: Iterable[str], tenant: str | None, jobs: JobRepository) -> set[str]:
    """The ids among `job_ids` that name a recorded job (of `tenant`, when given)."""
    ids = set(job_ids)
    if not ids:
        return set()
    return {job_id for job_id, owner in jobs.tenants_of(ids).items() if tenant is None or owner == tenant}


@dataclass(frozen=True, slots=True)
class Swept:
    frame_jobs: tuple[str, ...]
    moment_jobs: tuple[str, ...]


def sweep_orphans(jobs: JobRepository, index: VectorIndex, model: ModelInfo, moments: MomentIndex | None) -> Swept:
    """Delete every point and moment whose job_id has no job record; return the job ids swept."""
    frame_ids = index.job_ids(model)
    moment_ids = moments.job_ids() if moments is not None else set()
    known = known_jobs(frame_ids | moment_ids, None, jobs)
    frame_orphans = tuple(sorted(frame_ids - known))
    moment_orphans = tuple(sorted(moment_ids - known))
    for job_id in frame_orphans:
        index.delete(model, SearchFilter(job_id=job_id))
    if moments is not None:
        for job_id in moment_orphans:
            moments.delete(MomentFilter(job_id=job_id))
    if frame_orphans or moment_orphans:
        logger.info("orphans swept: vectors of %d and moments of %d unknown jobs", len(frame_orphans),
                    len(moment_orphans))
    return Swept(frame_jobs=frame_orphans, moment_jobs=moment_orphans)
