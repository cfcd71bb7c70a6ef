"""Orphans: vectors and moments whose job has no record are never search hits, and the sweep deletes them."""

from __future__ import annotations

import numpy as np

from tests.fakes import FakeEmbedder, FakeIndex
from tests.unit.test_text_search import FakeMomentIndex, FakeTextEmbedder
from video_ai.adapters.local_jobs import InMemoryJobRepository
from video_ai.domain.models import FramePoint, Job, ModelInfo, Moment, MomentFilter, SearchFilter, Source
from video_ai.services.search_frames import SearchDeps, SearchQuery, search_frames
from video_ai.services.search_moments import TextQuery, TextSearchDeps, search_moments
from video_ai.services.sweep_orphans import sweep_orphans

MODEL = ModelInfo(name="fake", version="1", dim=4)


def _job(jobs: InMemoryJobRepository, job_id: str, tenant: str = "acme") -> None:
    jobs.create(Job(job_id=job_id, tenant=tenant, source=Source(url="https://example.com/v.mp4")))


def _point(job_id: str, frame: int, tenant: str = "acme") -> FramePoint:
    vector = np.array([1.0, 0.1 * frame, 0.0, 0.0], dtype=np.float32)
    payload = {"job_id": job_id, "tenant": tenant, "pts_s": float(frame), "frame_number": frame, "shot": 0}
    return FramePoint(id=f"{job_id}-{frame}", vector=vector, payload=payload)


def _moment(job_id: str, text: str = "tabby, cat, animal") -> Moment:
    return Moment(job_id=job_id, tenant="acme", kind="label", text=text, start_s=0.0, end_s=1.0, shot=0,
                  confidence=0.9)


def _stores() -> tuple[InMemoryJobRepository, FakeIndex, FakeMomentIndex]:
    jobs, index, moments = InMemoryJobRepository(), FakeIndex(), FakeMomentIndex()
    _job(jobs, "kept")
    index.upsert(MODEL, [_point("kept", i) for i in range(3)] + [_point("gone", i) for i in range(3)])
    moments.upsert([_moment("kept"), _moment("gone")], np.zeros((2, 4), dtype=np.float32))
    return jobs, index, moments


def test_search_never_returns_a_hit_whose_job_has_no_record() -> None:
    jobs, index, moments = _stores()
    query = SearchQuery(tenant="acme", image=np.zeros((8, 8, 3), dtype=np.uint8), top_k=10)
    hits = search_frames(query, SearchDeps(index=index, model=MODEL, embedder=FakeEmbedder, jobs=jobs))
    assert {h.job_id for h in hits} == {"kept"} and len(hits) == 3
    # Without a job repository (the CLI's own index) nothing is filtered: the fake really holds the orphan.
    unfiltered = search_frames(query, SearchDeps(index=index, model=MODEL, embedder=FakeEmbedder))
    assert {h.job_id for h in unfiltered} == {"kept", "gone"}
    text = TextQuery(tenant="acme", text="cat")
    assert {m.job_id for m in search_moments(text, TextSearchDeps(index=moments, embedder=FakeTextEmbedder))} == {
        "kept", "gone"}
    found = search_moments(text, TextSearchDeps(index=moments, embedder=FakeTextEmbedder, jobs=jobs))
    assert [m.job_id for m in found] == ["kept"]


def test_another_tenants_job_does_not_make_a_hit_known() -> None:
    jobs, index, _ = _stores()
    _job(jobs, "theirs", tenant="other")
    index.upsert(MODEL, [_point("theirs", 0, tenant="acme")])  # a point mislabelled with our tenant
    query = SearchQuery(tenant="acme", image=np.zeros((8, 8, 3), dtype=np.uint8), top_k=10)
    hits = search_frames(query, SearchDeps(index=index, model=MODEL, embedder=FakeEmbedder, jobs=jobs))
    assert "theirs" not in {h.job_id for h in hits}


def test_sweep_deletes_vectors_and_moments_of_unknown_jobs_only() -> None:
    jobs, index, moments = _stores()
    swept = sweep_orphans(jobs, index, MODEL, moments)
    assert swept.frame_jobs == ("gone",) and swept.moment_jobs == ("gone",)
    assert index.count(MODEL, SearchFilter(job_id="gone")) == 0
    assert index.count(MODEL, SearchFilter(job_id="kept")) == 3
    assert moments.count(MomentFilter(job_id="gone")) == 0 and moments.count(MomentFilter(job_id="kept")) == 1
    again = sweep_orphans(jobs, index, MODEL, moments)
    assert again.frame_jobs == () and again.moment_jobs == ()
