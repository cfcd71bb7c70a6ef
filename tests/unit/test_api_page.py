"""The page's routes and the light routes behind it, on the app with fakes: headers, uploads, playback links."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from tests.fakes import RecordingQueue
from video_ai.adapters.local_jobs import InMemoryJobRepository
from video_ai.api.app import ApiContext, create_app
from video_ai.api.auth import ApiKeyAuth, hash_key
from video_ai.domain.models import Job, JobStatus, S3Location, Source
from video_ai.settings import Settings

KEY = "key-a"
A = {"x-api-key": KEY}


class Links:
    """VideoLinks that records what it signed."""

    def __init__(self) -> None:
        self.posts: list[tuple[S3Location, int, str]] = []

    def presigned_get(self, location: S3Location, expires_s: int) -> str:
        return f"https://s3.example/{location.bucket}/{location.key}?expires={expires_s}"

    def presigned_post(self, location: S3Location, max_bytes: int, content_type: str,
                       expires_s: int) -> tuple[str, dict[str, str]]:
        self.posts.append((location, max_bytes, content_type))
        return f"https://s3.example/{location.bucket}", {"key": location.key}


def _client(settings: dict[str, object], links: Links | None) -> tuple[TestClient, ApiContext]:
    config = Settings.model_validate({"api": {"api_key_hashes": {hash_key(KEY): "a"}}, **settings})
    ctx = ApiContext(settings=config, jobs=InMemoryJobRepository(), queue=RecordingQueue(),
                     auth=ApiKeyAuth(config.api.api_key_hashes), index_factory=lambda: None,  # type: ignore[arg-type,return-value]
                     embedder_factory=lambda: None,  # type: ignore[arg-type,return-value]
                     links_factory=(lambda: links) if links is not None else None)  # type: ignore[arg-type,return-value]
    return TestClient(create_app(ctx, prometheus=False, index_routes=False), raise_server_exceptions=False), ctx


@pytest.fixture()
def links() -> Links:
    return Links()


@pytest.fixture()
def deployed(links: Links) -> Iterator[tuple[TestClient, ApiContext]]:
    client, ctx = _client({"aws": {"uploads_bucket": "ups", "endpoint_url": None}}, links)
    with client:
        yield client, ctx


def test_the_page_needs_no_key_and_allows_s3_only_besides_itself(deployed: tuple[TestClient, ApiContext]) -> None:
    client, _ = deployed
    page = client.get("/ui/")
    assert page.status_code == 200
    csp = page.headers["content-security-policy"]
    assert "connect-src 'self' https://*.amazonaws.com;" in csp and "default-src 'none'" in csp
    assert client.get("/ui/app.js").headers["content-type"].startswith("text/javascript")
    assert client.get("/ui/nope.js").json()["error"]["code"] == "not_found"
    local, _ = _client({"aws": {"uploads_bucket": "ups", "endpoint_url": "http://127.0.0.1:4566/x"}}, None)
    with local:
        assert "connect-src 'self' http://127.0.0.1:4566;" in local.get("/ui/").headers["content-security-policy"]
    assert "/ui/" not in str(client.get("/openapi.json").json()["paths"])


def test_uploads_are_scoped_capped_and_suffixed(deployed: tuple[TestClient, ApiContext], links: Links) -> None:
    client, ctx = deployed
    ticket = client.post("/uploads", json={"filename": "C:\\\\clips\\\\Holiday 2024.MOV", "size": 5,
                                           "content_type": "video/quicktime"}, headers=A)
    assert ticket.status_code == 201
    body = ticket.json()
    assert body["key"].startswith("tenants/a/uploads/") and body["key"].endswith("/Holiday-2024.mov")
    assert links.posts[0][1:] == (ctx.settings.limits.max_source_bytes, "video/quicktime")
    too_big = client.post("/uploads", json={"filename": "a.mp4", "size": ctx.settings.limits.max_source_bytes + 1},
                          headers=A)
    assert too_big.status_code == 413 and too_big.json()["error"]["field"] == "size"
    wrong = client.post("/uploads", json={"filename": "a.exe", "size": 5}, headers=A)
    assert wrong.status_code == 422 and wrong.json()["error"]["field"] == "filename"
    assert client.post("/uploads", json={"filename": "a.mp4", "size": 5}).status_code == 401
    bad_type = client.post("/uploads", json={"filename": "a.mp4", "size": 5, "content_type": "x\r\ny"}, headers=A)
    assert bad_type.status_code == 422 and bad_type.json()["error"]["field"] == "content_type"


def test_uploads_without_a_bucket_say_so() -> None:
    client, _ = _client({}, Links())
    with client:
        answer = client.post("/uploads", json={"filename": "a.mp4", "size": 5}, headers=A)
    assert answer.status_code == 404 and "not configured" in answer.json()["error"]["message"]


def test_video_links_for_s3_url_and_other_tenants(deployed: tuple[TestClient, ApiContext]) -> None:
    client, ctx = deployed
    ctx.jobs.create(Job(job_id="s3-job", tenant="a", source=Source(s3=S3Location(bucket="ups", key="k.mp4"))))
    ctx.jobs.create(Job(job_id="url-job", tenant="a", source=Source(url="https://example.com/v.mp4")))
    ctx.jobs.create(Job(job_id="theirs", tenant="b", source=Source(url="https://example.com/v.mp4")))
    s3 = client.get("/jobs/s3-job/video", headers=A).json()
    assert s3 == {"url": "https://s3.example/ups/k.mp4?expires=3600", "kind": "presigned_s3", "expires_in": 3600}
    assert client.get("/jobs/url-job/video", headers=A).json() == {
        "url": "https://example.com/v.mp4", "kind": "source_url", "expires_in": None}
    assert client.get("/jobs/theirs/video", headers=A).status_code == 404
    assert client.get("/jobs/s3-job/frames/0/thumbnail", headers=A).json()["error"]["message"].endswith(
        "this deployment stores no thumbnails")


class CountingJobs(InMemoryJobRepository):
    """The in-memory repository, counting record reads."""

    def __init__(self) -> None:
        super().__init__()
        self.reads = 0

    def get(self, job_id: str) -> Job | None:
        self.reads += 1
        return super().get(job_id)


class DictThumbnails:
    def __init__(self) -> None:
        self.jpegs: dict[tuple[str, int], bytes] = {}

    def put(self, job_id: str, index: int, jpeg: bytes) -> None:
        self.jpegs[(job_id, index)] = jpeg

    def get(self, job_id: str, index: int) -> bytes | None:
        return self.jpegs.get((job_id, index))

    def copy(self, from_job: str, to_job: str) -> int:
        return 0

    def delete(self, job_id: str) -> None:
        self.jpegs = {k: v for k, v in self.jpegs.items() if k[0] != job_id}


class NoVectors:
    """The one VectorIndex call DELETE /jobs/{id} makes."""

    def delete(self, model: object, where: object) -> None:
        return None


def test_thumbnails_of_a_finished_job_skip_its_record_yet_stay_scoped_to_the_tenant() -> None:
    jobs, store = CountingJobs(), DictThumbnails()
    config = Settings.model_validate({"api": {"api_key_hashes": {hash_key(KEY): "a", hash_key("key-b"): "b"}}})
    ctx = ApiContext(settings=config, jobs=jobs, queue=RecordingQueue(), auth=ApiKeyAuth(config.api.api_key_hashes),
                     index_factory=lambda: NoVectors(), embedder_factory=lambda: None,  # type: ignore[arg-type,return-value]
                     thumbnails_factory=lambda: store)
    source = Source(url="https://example.com/v.mp4")
    jobs.create(Job(job_id="done", tenant="a", source=source, status=JobStatus.SUCCEEDED, frames_indexed=3))
    jobs.create(Job(job_id="running", tenant="a", source=source, status=JobStatus.PROCESSING))
    for job_id in ("done", "running"):
        for index in range(3):
            store.put(job_id, index, f"{job_id}{index}".encode())
    with TestClient(create_app(ctx, prometheus=False), raise_server_exceptions=False) as client:
        assert [client.get(f"/jobs/done/frames/{i}/thumbnail", headers=A).content for i in range(3)] == [
            b"done0", b"done1", b"done2"]
        assert jobs.reads == 1  # the first request read the record; the finished job's owner is remembered
        assert client.get("/jobs/running/frames/0/thumbnail", headers=A).content == b"running0"
        assert client.get("/jobs/running/frames/1/thumbnail", headers=A).content == b"running1"
        assert jobs.reads == 3  # a running job's record is read every time
        other = client.get("/jobs/done/frames/0/thumbnail", headers={"x-api-key": "key-b"})
        assert other.status_code == 404 and other.json()["error"]["code"] == "job_not_found"
        assert client.get("/jobs/done/frames/0/thumbnail").status_code == 401
        past = client.get("/jobs/done/frames/3/thumbnail", headers=A)
        assert past.status_code == 404 and past.json()["error"]["message"].endswith("the job has 3 frames")
        # Deleted by another container: this one still remembers the owner, but nothing is left to serve.
        store.delete("done")
        jobs.delete("done")
        assert client.get("/jobs/done/frames/0/thumbnail", headers=A).status_code == 404
        jobs.create(Job(job_id="gone", tenant="a", source=source, status=JobStatus.SUCCEEDED, frames_indexed=1))
        store.put("gone", 0, b"x")
        assert client.get("/jobs/gone/frames/0/thumbnail", headers=A).status_code == 200
        assert client.delete("/jobs/gone", headers=A).status_code == 204
        assert ctx.owners.owner("gone") is None
