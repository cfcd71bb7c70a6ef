"""POST /search {text} and the label moments the labels analyzer writes, on fakes (real parts:
tests/integration/test_text_search.py)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from tests.fakes import FakeEmbedder, FakeIndex, RecordingQueue
from tests.unit.test_analyzers import ClassifyingEmbedder, WideFrameSource, _deps, _job
from video_ai.adapters.local_jobs import InMemoryJobRepository
from video_ai.analyzers import AnalyzerContext, AnalyzerSet, MomentStore
from video_ai.api.app import ApiContext, create_app
from video_ai.api.auth import ApiKeyAuth, hash_key
from video_ai.domain.models import Job, ModelInfo, Moment, MomentFilter, MomentHit, Source
from video_ai.services.analyze_video import analyze_video
from video_ai.settings import LabelSettings, Settings


class FakeTextEmbedder:
    def __init__(self) -> None:
        self.texts: list[str] = []

    @property
    def info(self) -> ModelInfo:
        return ModelInfo(name="fake-text", version="1", dim=3)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        self.texts.extend(texts)
        return np.ones((len(texts), 3), dtype=np.float32) / np.sqrt(3)


class FakeMomentIndex:
    """Keeps moments; search is a case-insensitive word match, like the keyword side alone."""

    def __init__(self) -> None:
        self.moments: dict[tuple[str, str, int | None, str], Moment] = {}

    def _keep(self, m: Moment, flt: MomentFilter) -> bool:
        return ((flt.tenant is None or m.tenant == flt.tenant) and (flt.job_id is None or m.job_id == flt.job_id)
                and (not flt.kinds or m.kind in flt.kinds))

    def upsert(self, moments: Sequence[Moment], vectors: np.ndarray) -> None:
        assert len(moments) == len(vectors)
        for m in moments:
            self.moments[(m.job_id, m.kind, m.shot, m.text)] = m

    def search(self, text: str, vector: np.ndarray, limit: int, flt: MomentFilter) -> list[MomentHit]:
        words = set(text.lower().split())
        found = [m for m in self.moments.values() if self._keep(m, flt) and words & set(m.text.lower().split(", "))]
        return [MomentHit(job_id=m.job_id, kind=m.kind, text=m.text, start_s=m.start_s, end_s=m.end_s,
                          pts_s=m.pts_s or m.start_s, shot=m.shot, score=1.0, matched=sorted(words))
                for m in found[:limit]]

    def count(self, flt: MomentFilter) -> int:
        return sum(self._keep(m, flt) for m in self.moments.values())

    def job_ids(self) -> set[str]:
        return {m.job_id for m in self.moments.values()}

    def delete(self, flt: MomentFilter) -> None:
        assert flt.tenant is not None or flt.job_id is not None
        self.moments = {k: m for k, m in self.moments.items() if not self._keep(m, flt)}

    def close(self) -> None:
        return None


def test_the_labels_analyzer_writes_one_moment_per_shot_label_and_a_rerun_replaces_them(tmp_path: Path) -> None:
    moments, texts = FakeMomentIndex(), FakeTextEmbedder()
    embedder = ClassifyingEmbedder()
    index = FakeIndex()
    deps = _deps(tmp_path, embedder=embedder, index=index, analyzers=AnalyzerSet(AnalyzerContext(
        embedder=embedder, index=index, labels=LabelSettings(crops="three", whole_frame=False),
        moments=MomentStore(moments, texts))))
    _job(deps, ["visual", "labels"])
    job = analyze_video("job-1", deps).job
    assert job.labels is not None
    written = sorted(moments.moments.values(), key=lambda m: m.shot or 0)
    assert [(m.shot, m.kind, m.tenant, m.start_s, m.end_s) for m in written] == [(0, "label", "t1", 0.0, 5.0),
                                                                               (1, "label", "t1", 5.0, 10.0)]
    assert written[0].pts_s == 4.0 and texts.texts == [m.text for m in written]
    store = MomentStore(moments, texts)
    store.replace("job-1", "t1", "label", written[:1])
    assert moments.count(MomentFilter(job_id="job-1")) == 1


def test_a_split_job_indexes_its_label_moments_once_on_the_merged_shots(tmp_path: Path) -> None:
    moments = FakeMomentIndex()
    embedder = ClassifyingEmbedder()
    index = FakeIndex()
    queue = RecordingQueue()
    deps = _deps(tmp_path, embedder=embedder, index=index, frames=WideFrameSource(), segment_queue=queue,
                 segment_s=3.0, analyzers=AnalyzerSet(AnalyzerContext(
                     embedder=embedder, index=index, labels=LabelSettings(crops="three", whole_frame=False),
                     moments=MomentStore(moments, FakeTextEmbedder()))))
    _job(deps, ["visual", "labels"], "job")
    analyze_video("job", deps)
    for message in queue.messages[:-1]:
        analyze_video("job", deps, segment=message["segment"])
        assert moments.moments == {}  # segments' shots are their own: nothing indexed before the merge
    analyze_video("job", deps, segment=queue.messages[-1]["segment"])
    assert sorted(m.shot or 0 for m in moments.moments.values()) == [0, 1]


A = {"x-api-key": "key-a"}


@pytest.fixture()
def client() -> Iterator[tuple[TestClient, FakeMomentIndex]]:
    settings = Settings.model_validate({"api": {"api_key_hashes": {hash_key("key-a"): "a", hash_key("key-b"): "b"}}})
    moments, jobs = FakeMomentIndex(), InMemoryJobRepository()
    for tenant in ("a", "b"):
        # Moments of a job with no record are orphans the API never returns (test_sweep_orphans).
        jobs.create(Job(job_id=f"job-{tenant}", tenant=tenant, source=Source(url="https://example.com/v.mp4")))
        moments.upsert([Moment(job_id=f"job-{tenant}", tenant=tenant, kind="label", text="tabby cat, cat, animal",
                               start_s=0, end_s=5, shot=0, confidence=0.9)], np.zeros((1, 3), np.float32))
    ctx = ApiContext(settings=settings, jobs=jobs, queue=RecordingQueue(),
                     auth=ApiKeyAuth(settings.api.api_key_hashes), index_factory=FakeIndex,
                     embedder_factory=FakeEmbedder, moments_factory=lambda: moments,
                     text_embedder_factory=FakeTextEmbedder)
    with TestClient(create_app(ctx, prometheus=False), raise_server_exceptions=False) as c:
        yield c, moments


def test_text_search_finds_only_the_callers_moments(client: tuple[TestClient, FakeMomentIndex]) -> None:
    c, _ = client
    response = c.post("/search", json={"text": "cat", "kinds": ["label"]}, headers=A)
    assert response.status_code == 200
    assert [h["job_id"] for h in response.json()["items"]] == ["job-a"]
    assert c.post("/search", json={"text": "submarine"}, headers=A).json() == {"items": []}


@pytest.mark.parametrize(("body", "field"), [
    ({"text": ""}, "text"), ({"text": " \t "}, "text"), ({"text": "x" * 1001}, "text"),
    ({"text": "cat\x07"}, "text"), ({"text": "cat\x85"}, "text"), ({"text": "cat", "kinds": ["smell"]}, "kinds"),
    ({"text": "cat", "kinds": []}, "kinds"), ({"kinds": ["label"], "frame": {"job_id": "j", "index": 0}}, "body"),
    ({"text": "cat", "frame": {"job_id": "j", "index": 0}}, "body"), ({"text": "cat", "collapse": "shot"}, "body"),
    ({"text": "cat", "image_base64": "AAAA"}, "image_base64"),
])
def test_bad_text_queries_get_422_naming_the_field(client: tuple[TestClient, FakeMomentIndex],
                                                   body: dict[str, object], field: str) -> None:
    c, _ = client
    response = c.post("/search", json=body, headers=A)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["field"].startswith(field)


def test_without_a_text_index_text_search_says_so(client: tuple[TestClient, FakeMomentIndex]) -> None:
    settings = Settings.model_validate({"api": {"api_key_hashes": {hash_key("key-a"): "a"}}})
    ctx = ApiContext(settings=settings, jobs=InMemoryJobRepository(), queue=RecordingQueue(),
                     auth=ApiKeyAuth(settings.api.api_key_hashes), index_factory=FakeIndex,
                     embedder_factory=FakeEmbedder)
    with TestClient(create_app(ctx, prometheus=False), raise_server_exceptions=False) as c:
        response = c.post("/search", json={"text": "cat"}, headers=A)
    assert response.status_code == 422 and response.json()["error"]["field"] == "text"
    assert "not configured" in response.json()["error"]["message"]


def test_text_with_an_image_puts_the_moments_whose_shot_looks_like_it_first() -> None:
    from video_ai.domain.models import SearchHit
    from video_ai.services.search_moments import fuse_with_frames

    def moment(shot: int) -> MomentHit:
        return MomentHit(job_id="j", kind="label", text=f"shot {shot}", start_s=shot, end_s=shot + 1, pts_s=shot,
                         shot=shot, score=0.5)

    def frame(shot: int) -> SearchHit:
        return SearchHit(job_id="j", index=shot, pts_s=shot, frame_number=shot, shot=shot, score=0.9)

    by_text = [moment(0), moment(1), moment(2)]
    fused = fuse_with_frames(by_text, [frame(2), frame(7)], top_k=2)
    assert [m.shot for m in fused] == [2, 0]  # the image's best shot first, then the text's best
    assert fused[0].score > fused[1].score
    assert [m.shot for m in fuse_with_frames(by_text, [], top_k=3)] == [0, 1, 2]  # no image evidence: text order
