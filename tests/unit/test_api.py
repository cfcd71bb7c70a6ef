from __future__ import annotations

import base64
import io
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from tests.fakes import FakeEmbedder, FakeIndex, RecordingQueue
from video_ai.adapters.local_jobs import InMemoryJobRepository
from video_ai.api.app import ApiContext, create_app
from video_ai.api.auth import hash_key
from video_ai.domain.errors import ForbiddenAddress
from video_ai.domain.models import (
    PRIVATE_JOB_FIELDS,
    CallbackMessage,
    FramePoint,
    JobStatus,
    ModelInfo,
    Shot,
    Source,
    point_id,
)
from video_ai.settings import Settings

KEY_A, KEY_B = "key-tenant-a", "key-tenant-b"


class Guard:
    def check(self, url: str, field: str) -> None:
        if "169.254" in url:
            raise ForbiddenAddress(f"{field}: resolves to a link-local address", field=field)


@pytest.fixture()
def ctx() -> ApiContext:
    settings = Settings.model_validate({"api": {"api_key_hashes": {hash_key(KEY_A): "a", hash_key(KEY_B): "b"}}})
    index = FakeIndex()
    embedder = FakeEmbedder()
    settings.model.name, settings.model.version, settings.model.dim = "fake", "1", 4
    from video_ai.api.auth import ApiKeyAuth

    return ApiContext(settings=settings, jobs=InMemoryJobRepository(), queue=RecordingQueue(),
                      auth=ApiKeyAuth(settings.api.api_key_hashes), index_factory=lambda: index,
                      embedder_factory=lambda: embedder, guard=Guard())


@pytest.fixture()
def client(ctx: ApiContext) -> Iterator[TestClient]:
    with TestClient(create_app(ctx), raise_server_exceptions=False) as c:
        yield c


A = {"x-api-key": KEY_A}
B = {"Authorization": f"Bearer {KEY_B}"}


def test_health_needs_no_key(client: TestClient) -> None:
    assert client.get("/health").json() == {"status": "ok"}


def test_seed_body_is_accepted_and_queued(client: TestClient, ctx: ApiContext) -> None:
    r = client.post("/analyze", json={"video_url": "https://example.com/v.mp4", "callback_url": "https://e.com/h"},
                    headers=A)
    assert r.status_code == 202, r.text
    body = r.json()
    assert body["status"] == "queued" and r.headers["location"] == f"/jobs/{body['job_id']}"
    assert isinstance(ctx.queue, RecordingQueue)
    assert ctx.queue.messages == [{"job_id": body["job_id"], "tenant": "a"}]
    job = client.get(f"/jobs/{body['job_id']}", headers=A).json()
    assert job["status"] == "queued" and job["sampling"]["fps"] == 1.0 and "shots" not in job


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"callback_url": "https://e.com/h"}, "video_url"),
        ({"video_url": 5}, "video_url"),
        ({"video_url": "https://e.com/v.mp4", "colour": "red"}, "colour"),
        ({"video_url": "https://e.com/" + "a" * 2100}, "video_url"),
        ({"video_url": "https://e.com/v.mp4", "sampling": {"fps": -2}}, "sampling.fps"),
        ({"video_url": "https://e.com/v.mp4", "sampling": {"mode": "every"}}, "sampling.mode"),
        ({"video_url": "https://e.com/v.mp4", "callback_url": "http://169.254.169.254/"}, "callback_url"),
        ({"video_url": "https://e.com/v.mp4", "tags": {str(i): "x" for i in range(30)}}, "tags"),
    ],
)
def test_bad_bodies_get_422_naming_the_field(client: TestClient, body: dict[str, object], field: str) -> None:
    r = client.post("/analyze", json=body, headers=A)
    assert r.status_code == 422, r.text
    err = r.json()["error"]
    assert err["field"] == field and err["message"] and err["code"]


VIDEO = {"video_url": "https://e.com/v.mp4"}


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        # Where the schema says integer or number, booleans and numeric strings are refused (pydantic's lax mode
        # read true as 1 and "5" as 5), and integers refuse 5.0.
        ("/analyze", {**VIDEO, "sampling": {"max_frames": True}}, "sampling.max_frames"),
        ("/analyze", {**VIDEO, "sampling": {"max_frames": "5"}}, "sampling.max_frames"),
        ("/analyze", {**VIDEO, "sampling": {"max_frames": 5.0}}, "sampling.max_frames"),
        ("/analyze", {**VIDEO, "sampling": {"fps": True}}, "sampling.fps"),
        ("/analyze", {**VIDEO, "sampling": {"fps": "2"}}, "sampling.fps"),
        # DynamoDB cannot store 1e-300 (moto read it back as 0 and GET /jobs/{id} failed validation: a 500).
        ("/analyze", {**VIDEO, "sampling": {"fps": 1e-300}}, "sampling.fps"),
        ("/search", {"frame": {"index": False, "job_id": "j"}}, "frame.index"),
        ("/search", {"frame": {"index": "0", "job_id": "j"}}, "frame.index"),
        ("/search", {"frame": {"index": 0, "job_id": "j"}, "top_k": True}, "top_k"),
        ("/search", {"frame": {"index": 0, "job_id": "j"}, "start_s": False}, "start_s"),
        ("/search", {"frame": {"index": 0, "job_id": "j"}, "end_s": "3"}, "end_s"),
        # No job id is empty (DynamoDB refuses an empty key: this was a 500), and no job has 2**64 samples (the
        # index's page size overflowed: a 500).
        ("/search", {"frame": {"index": 0, "job_id": ""}}, "frame.job_id"),
        ("/search", {"frame": {"index": False, "job_id": ""}, "job_id": ""}, "frame.job_id"),
        ("/search", {"frame": {"index": 0, "job_id": "j"}, "job_id": ""}, "job_id"),
        ("/search", {"frame": {"index": 2**64, "job_id": "j"}}, "frame.index"),
    ],
)
def test_numbers_are_strict_and_job_ids_not_empty(
    client: TestClient, path: str, body: dict[str, object], field: str
) -> None:
    r = client.post(path, json=body, headers=A)
    assert r.status_code == 422, r.text
    err = r.json()["error"]
    assert err["code"] == "invalid_request" and err["field"] == field


def test_integers_and_numbers_still_take_plain_json_numbers(client: TestClient) -> None:
    r = client.post("/analyze", json={**VIDEO, "sampling": {"fps": 2, "max_frames": 7}}, headers=A)
    assert r.status_code == 202, r.text
    job = client.get(f"/jobs/{r.json()['job_id']}", headers=A).json()
    assert job["sampling"]["fps"] == 2.0 and job["sampling"]["max_frames"] == 7
    r = client.post("/search", json={"frame": {"index": 0, "job_id": "nope"}, "top_k": 3, "start_s": 1}, headers=A)
    assert r.status_code == 404 and r.json()["error"]["field"] == "frame.job_id"


def test_malformed_json_is_422_not_500(client: TestClient) -> None:
    r = client.post("/analyze", content=b"{not json", headers={**A, "content-type": "application/json"})
    assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_json"


def test_oversized_body_is_413(client: TestClient) -> None:
    r = client.post("/analyze", content=b"x" * (9 * 1024 * 1024), headers={**A, "content-type": "application/json"})
    assert r.status_code == 413 and r.json()["error"]["code"] == "payload_too_large"


def test_missing_or_wrong_key_is_401(client: TestClient) -> None:
    assert client.get("/jobs").status_code == 401
    r = client.get("/jobs", headers={"x-api-key": "nope"})
    assert r.status_code == 401 and r.json()["error"]["code"] == "unauthorized"


def test_idempotency_key(client: TestClient) -> None:
    body = {"video_url": "https://example.com/v.mp4"}
    h = {**A, "Idempotency-Key": "order-42"}
    first = client.post("/analyze", json=body, headers=h).json()
    again = client.post("/analyze", json=body, headers=h).json()
    assert first["job_id"] == again["job_id"]
    r = client.post("/analyze", json={"video_url": "https://example.com/other.mp4"}, headers=h)
    assert r.status_code == 409 and r.json()["error"]["field"] == "Idempotency-Key"
    bad = client.post("/analyze", json=body, headers={**A, "Idempotency-Key": "x" * 300})
    assert bad.status_code == 422 and bad.json()["error"]["field"] == "Idempotency-Key"


def test_other_tenant_sees_404_and_unknown_id_is_404(client: TestClient) -> None:
    job_id = client.post("/analyze", json={"video_url": "https://example.com/v.mp4"}, headers=A).json()["job_id"]
    assert client.get(f"/jobs/{job_id}", headers=B).status_code == 404
    assert client.get("/jobs/nope", headers=A).json()["error"]["code"] == "job_not_found"
    assert client.get("/jobs", headers=B).json()["items"] == []


def _finished_job(ctx: ApiContext, client: TestClient, n_frames: int) -> str:
    job_id: str = client.post("/analyze", json={"video_url": "https://example.com/v.mp4"}, headers=A).json()["job_id"]
    model = ModelInfo(name="fake", version="1", dim=4)
    ctx.jobs.transition(job_id, JobStatus.PROCESSING, model=model)
    index = ctx.index()
    index.upsert(model, [FramePoint(id=point_id(job_id, i * 10), vector=np.eye(4, dtype=np.float32)[i % 4],
                                    payload={"job_id": job_id, "tenant": "a", "index": i, "pts_s": i * 0.4,
                                             "frame_number": i * 10, "shot": i // 5, "source": "x"})
                         for i in range(n_frames)])
    ctx.jobs.transition(job_id, JobStatus.SUCCEEDED, frames_indexed=n_frames,
                        shots=[Shot(index=0, start_s=0, end_s=1, start_frame=0, end_frame=24)])
    return job_id


def test_frames_pagination_returns_every_frame_once_in_time_order(client: TestClient, ctx: ApiContext) -> None:
    job_id = _finished_job(ctx, client, 23)
    seen: list[int] = []
    token = None
    pages = 0
    while pages < 20:
        params: dict[str, str | int] = {"limit": 10}
        if token:
            params["next_token"] = token
        page = client.get(f"/jobs/{job_id}/frames", params=params, headers=A).json()
        seen += [f["frame_number"] for f in page["items"]]
        pages += 1
        token = page["next_token"]
        if token is None:
            break
    assert pages == 3 and seen == [i * 10 for i in range(23)]
    assert client.get(f"/jobs/{job_id}/frames", params={"next_token": "garbage!"}, headers=A).status_code == 422
    assert client.get(f"/jobs/{job_id}/frames", params={"limit": 0}, headers=A).status_code == 422
    assert client.get(f"/jobs/{job_id}/shots", headers=A).json()["items"][0]["end_frame"] == 24


def test_search_by_frame_and_isolation(client: TestClient, ctx: ApiContext) -> None:
    job_id = _finished_job(ctx, client, 8)
    r = client.post("/search", json={"frame": {"job_id": job_id, "index": 1}, "top_k": 3}, headers=A)
    assert r.status_code == 200, r.text
    hits = r.json()["items"]
    assert hits[0]["frame_number"] == 10 and hits[0]["score"] == pytest.approx(1.0)
    collapsed = client.post("/search", json={"frame": {"job_id": job_id, "index": 1}, "top_k": 5,
                                             "collapse": "shot"}, headers=A).json()["items"]
    assert len({(h["job_id"], h["shot"]) for h in collapsed}) == len(collapsed)
    assert client.post("/search", json={"frame": {"job_id": job_id, "index": 1}}, headers=B).status_code == 404
    windowed = client.post("/search", json={"frame": {"job_id": job_id, "index": 1}, "top_k": 10, "start_s": 0.5,
                                            "end_s": 1.7}, headers=A).json()["items"]
    assert windowed and all(0.5 <= h["pts_s"] <= 1.7 for h in windowed)
    bad_window = client.post("/search", json={"frame": {"job_id": job_id, "index": 1}, "start_s": 5, "end_s": 1},
                             headers=A)
    assert bad_window.status_code == 422 and bad_window.json()["error"]["field"] == "end_s"


def test_search_by_image_and_bad_image(client: TestClient, ctx: ApiContext) -> None:
    from PIL import Image

    _finished_job(ctx, client, 4)
    buf = io.BytesIO()
    Image.new("RGB", (16, 16), (10, 20, 30)).save(buf, format="PNG")
    ok = client.post("/search", json={"image_base64": base64.b64encode(buf.getvalue()).decode()}, headers=A)
    assert ok.status_code == 200 and len(ok.json()["items"]) == 4
    bad = client.post("/search", json={"image_base64": base64.b64encode(b"GIF89a....").decode()}, headers=A)
    assert bad.status_code == 422 and bad.json()["error"]["field"] == "image_base64"
    # The client learns what is wrong, not Pillow's exception class.
    assert bad.json()["error"]["message"] == "image could not be decoded: the bytes are not a readable PNG or JPEG"
    both = client.post("/search", json={}, headers=A)
    assert both.status_code == 422
    # Another tenant searching with an image sees none of tenant A's vectors.
    other = client.post("/search", json={"image_base64": base64.b64encode(buf.getvalue()).decode()}, headers=B)
    assert other.status_code == 200 and other.json()["items"] == []


def test_delete_removes_vectors_artifacts_and_record_idempotently(client: TestClient, ctx: ApiContext,
                                                                  tmp_path: Path) -> None:
    from video_ai.adapters.file_artifacts import FileArtifacts

    artifacts = FileArtifacts(tmp_path)
    ctx.artifacts_factory = lambda: artifacts
    job_id = _finished_job(ctx, client, 5)
    artifacts.put(job_id, "transcript.json", b"{}")
    assert client.delete(f"/jobs/{job_id}", headers=B).status_code == 204
    assert client.get(f"/jobs/{job_id}", headers=A).status_code == 200  # B could not delete A's job
    assert artifacts.get(job_id, "transcript.json") == b"{}"
    assert client.delete(f"/jobs/{job_id}", headers=A).status_code == 204
    assert client.delete(f"/jobs/{job_id}", headers=A).status_code == 204
    assert client.get(f"/jobs/{job_id}", headers=A).status_code == 404
    index = ctx.index()
    assert isinstance(index, FakeIndex) and index.points == {}
    assert artifacts.get(job_id, "transcript.json") is None


def test_callback_replay_needs_a_finished_job_with_a_callback(client: TestClient, ctx: ApiContext) -> None:
    from tests.fakes import RecordingNotifier

    notifier = RecordingNotifier()
    ctx.notifier_factory = lambda: notifier
    job_id = client.post("/analyze", json={"video_url": "https://e.com/v.mp4", "callback_url": "https://e.com/h"},
                         headers=A).json()["job_id"]
    assert client.post(f"/jobs/{job_id}/callback", headers=A).status_code == 409  # still queued
    ctx.jobs.transition(job_id, JobStatus.FAILED)
    assert client.post(f"/jobs/{job_id}/callback", headers=B).status_code == 404
    r = client.post(f"/jobs/{job_id}/callback", headers=A)
    assert r.status_code == 202 and notifier.replays == 1 and notifier.finished[0].job_id == job_id


def test_the_job_schema_and_record_leave_out_the_private_fields(client: TestClient, ctx: ApiContext) -> None:
    job_id = client.post("/analyze", json={"video_url": "https://e.com/v.mp4"}, headers=A).json()["job_id"]
    ctx.jobs.keep_callback_message(job_id, CallbackMessage(webhook_id="msg_x", body="{}"))
    assert set(client.get(f"/jobs/{job_id}", headers=A).json()) & PRIVATE_JOB_FIELDS == set()
    components = client.get("/openapi.json").json()["components"]["schemas"]
    assert set(components["Job"]["properties"]) & PRIVATE_JOB_FIELDS == set()
    assert "callback_message" in PRIVATE_JOB_FIELDS and "CallbackMessage" not in components


def test_without_index_routes_the_search_function_paths_are_not_served_and_the_rest_are(ctx: ApiContext) -> None:
    app = create_app(ctx, prometheus=False, index_routes=False)
    served = {(m, r.path) for r in app.routes for m in getattr(r, "methods", ())}
    from video_ai.api.app import INDEX_ROUTES

    assert not served & INDEX_ROUTES
    assert {("POST", "/analyze"), ("GET", "/jobs/{job_id}"), ("GET", "/jobs/{job_id}/shots")} <= served
    with TestClient(app, raise_server_exceptions=False) as c:
        job_id = c.post("/analyze", json={"video_url": "https://example.com/v.mp4"}, headers=A).json()["job_id"]
        assert c.get(f"/jobs/{job_id}", headers=A).status_code == 200
        assert c.post("/search", json={"frame": {"job_id": job_id, "index": 0}}, headers=A).status_code == 404
        assert c.delete(f"/jobs/{job_id}", headers=A).status_code == 405


def test_private_job_fields_never_leave_the_service(client: TestClient, ctx: ApiContext) -> None:
    from video_ai.domain.models import PRIVATE_JOB_FIELDS, S3Location

    job_id = client.post("/analyze", json={"video_url": "https://example.com/v.mp4"}, headers=A).json()["job_id"]
    ctx.jobs.update(job_id, staged_source=Source(s3=S3Location(bucket="svc", key=f"staging/{job_id}/source")),
                    content_key="k", source_etag='"e1"')
    body = client.get(f"/jobs/{job_id}", headers=A).json()
    assert body["job_id"] == job_id and not PRIVATE_JOB_FIELDS & body.keys()
    stored = ctx.jobs.get(job_id)
    assert stored is not None and not PRIVATE_JOB_FIELDS & stored.public().keys()
