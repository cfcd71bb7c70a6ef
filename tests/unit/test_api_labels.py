"""POST /analyze `features` and GET /jobs/{id}/labels on the app with in-memory fakes."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from tests.fakes import FakeEmbedder, FakeIndex, RecordingQueue
from video_ai.adapters.local_jobs import InMemoryJobRepository
from video_ai.api.app import ApiContext, create_app
from video_ai.api.auth import ApiKeyAuth, hash_key
from video_ai.domain.models import FrameLabels, JobStatus, Label, ShotLabels
from video_ai.settings import Settings

A = {"x-api-key": "key-a"}
B = {"x-api-key": "key-b"}


@pytest.fixture()
def ctx() -> ApiContext:
    settings = Settings.model_validate({"api": {"api_key_hashes": {hash_key("key-a"): "a", hash_key("key-b"): "b"}},
                                       "analysis": {"features": ["visual"]}})
    return ApiContext(settings=settings, jobs=InMemoryJobRepository(), queue=RecordingQueue(),
                      auth=ApiKeyAuth(settings.api.api_key_hashes), index_factory=FakeIndex,
                      embedder_factory=FakeEmbedder)


@pytest.fixture()
def client(ctx: ApiContext) -> Iterator[TestClient]:
    with TestClient(create_app(ctx, prometheus=False), raise_server_exceptions=False) as c:
        yield c


def _submit(client: TestClient, **extra: object) -> str:
    response = client.post("/analyze", json={"video_url": "https://example.com/v.mp4", **extra}, headers=A)
    assert response.status_code == 202, response.text
    job_id: str = response.json()["job_id"]
    return job_id


def _shot(index: int) -> ShotLabels:
    label = Label(class_id=286 + index, name=f"class {index}", confidence=0.5)
    return ShotLabels(shot=index, start_s=index * 2.0, end_s=index * 2.0 + 2, labels=[label],
                      frames=[FrameLabels(pts_s=index * 2.0 + 1, frame_number=index * 50 + 25, shot=index,
                                          labels=[label])])


def test_features_are_recorded_on_the_job_and_default_from_config(client: TestClient, ctx: ApiContext) -> None:
    default = ctx.jobs.get(_submit(client))
    chosen = ctx.jobs.get(_submit(client, features=["labels", "visual", "labels"]))
    assert default is not None and default.features == ["visual"]
    assert chosen is not None and chosen.features == ["labels", "visual"]
    assert client.get(f"/jobs/{chosen.job_id}", headers=A).json()["features"] == ["labels", "visual"]
    ctx.settings.analysis.features = ["labels"]  # a config reload applies to new jobs
    reloaded = ctx.jobs.get(_submit(client))
    assert reloaded is not None and reloaded.features == ["labels"]


@pytest.mark.parametrize("features", [[], ["smell"], ["Speech"], "labels", [1]])
def test_bad_features_get_422_naming_the_field(client: TestClient, features: object) -> None:
    response = client.post("/analyze", json={"video_url": "https://example.com/v.mp4", "features": features},
                           headers=A)
    assert response.status_code == 422
    assert response.json()["error"]["field"].startswith("features")


def test_labels_page_through_the_shots_of_a_labelled_job(client: TestClient, ctx: ApiContext) -> None:
    job_id = _submit(client, features=["visual", "labels"])
    ctx.jobs.transition(job_id, JobStatus.PROCESSING)
    ctx.jobs.transition(job_id, JobStatus.SUCCEEDED, labels=[_shot(i) for i in range(5)])
    seen: list[int] = []
    token = None
    while True:
        params: dict[str, str | int] = {"limit": 2} | ({"next_token": token} if token else {})
        page = client.get(f"/jobs/{job_id}/labels", params=params, headers=A).json()
        seen += [item["shot"] for item in page["items"]]
        assert page["reason"] is None
        token = page["next_token"]
        if token is None:
            break
    assert seen == [0, 1, 2, 3, 4]
    first = client.get(f"/jobs/{job_id}/labels", headers=A).json()["items"][0]
    assert {k: first["labels"][0][k] for k in ("class_id", "name", "confidence")} == {
        "class_id": 286, "name": "class 0", "confidence": 0.5}
    assert {"cat", "feline"} <= set(first["labels"][0]["categories"])  # cougar, widened by WordNet
    assert first["frames"][0]["frame_number"] == 25 and (first["start_s"], first["end_s"]) == (0.0, 2.0)
    assert "labels" not in client.get(f"/jobs/{job_id}", headers=A).json()  # private: callbacks stay small
    assert client.get(f"/jobs/{job_id}/labels", headers=B).status_code == 404
    bad = client.get(f"/jobs/{job_id}/labels", params={"next_token": "9"}, headers=A)
    assert bad.status_code == 422 and bad.json()["error"]["field"] == "next_token"


def test_a_job_without_labels_answers_an_empty_page_with_the_reason(client: TestClient, ctx: ApiContext) -> None:
    plain = _submit(client)
    page = client.get(f"/jobs/{plain}/labels", headers=A)
    assert page.status_code == 200
    assert page.json() == {"items": [], "next_token": None,
                           "reason": "the job ran without the labels feature (features: visual)"}
    queued = _submit(client, features=["labels"])
    body = client.get(f"/jobs/{queued}/labels", headers=A).json()
    assert body["items"] == [] and body["reason"] == "the job is queued; labels come when it succeeds"
    ctx.jobs.transition(queued, JobStatus.FAILED)
    failed = client.get(f"/jobs/{queued}/labels", headers=A).json()
    assert failed["items"] == [] and failed["reason"] == "the job failed before its labels were made"
