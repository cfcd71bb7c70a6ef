"""GET /jobs/{id}/transcript on the app with in-memory fakes: JSON as stored, subtitles players parse, the reason
an empty one is empty, tenants kept apart."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.fakes import FakeEmbedder, FakeIndex, RecordingQueue
from video_ai.adapters.file_artifacts import FileArtifacts
from video_ai.adapters.local_jobs import InMemoryJobRepository
from video_ai.api.app import ApiContext, create_app
from video_ai.api.auth import ApiKeyAuth, hash_key
from video_ai.domain.models import Job, JobStatus, Source
from video_ai.domain.transcript import Transcript, TranscriptSegment, TranscriptWord
from video_ai.settings import Settings

A = {"x-api-key": "key-a"}
B = {"x-api-key": "key-b"}


@pytest.fixture()
def ctx(tmp_path: Path) -> ApiContext:
    settings = Settings.model_validate({"api": {"api_key_hashes": {hash_key("key-a"): "a", hash_key("key-b"): "b"}}})
    store = FileArtifacts(tmp_path)
    return ApiContext(settings=settings, jobs=InMemoryJobRepository(), queue=RecordingQueue(),
                      auth=ApiKeyAuth(settings.api.api_key_hashes), index_factory=FakeIndex,
                      embedder_factory=FakeEmbedder, artifacts_factory=lambda: store)


@pytest.fixture()
def client(ctx: ApiContext) -> Iterator[TestClient]:
    with TestClient(create_app(ctx, prometheus=False), raise_server_exceptions=False) as c:
        yield c


def _job(ctx: ApiContext, job_id: str, features: list[str], status: JobStatus = JobStatus.SUCCEEDED) -> None:
    ctx.jobs.create(Job(job_id=job_id, tenant="a", status=status, source=Source(url="https://example.com/v.mp4"),
                        features=features))  # type: ignore[arg-type]


TRANSCRIPT = Transcript(
    job_id="j1", language="en", language_probability=1.0, model="tiny.en",
    segments=[TranscriptSegment(start_s=3.02, end_s=4.5, text="And so, my fellow Americans", confidence=0.71,
                                words=[TranscriptWord(start_s=3.02, end_s=3.3, text="And", confidence=0.9)]),
              TranscriptSegment(start_s=62.0, end_s=63.25, text="ask not", confidence=0.66, words=[])])


def test_json_vtt_and_srt_of_a_stored_transcript(client: TestClient, ctx: ApiContext) -> None:
    srt = pytest.importorskip("srt")
    webvtt = pytest.importorskip("webvtt")
    _job(ctx, "j1", ["visual", "speech"])
    store = ctx.artifacts()
    assert store is not None
    store.put("j1", "transcript.json", TRANSCRIPT.model_dump_json().encode())
    body = client.get("/jobs/j1/transcript", headers=A).json()
    assert body == TRANSCRIPT.model_dump(mode="json")
    assert set(body) == {"job_id", "language", "language_probability", "model", "segments", "reason"}
    vtt = client.get("/jobs/j1/transcript?format=vtt", headers=A)
    assert vtt.status_code == 200 and vtt.headers["content-type"].startswith("text/vtt")
    cues = webvtt.from_buffer(io.StringIO(vtt.text))
    assert [(c.start, c.end, c.text) for c in cues] == [("00:00:03.020", "00:00:04.500", "And so, my fellow Americans"),
                                                         ("00:01:02.000", "00:01:03.250", "ask not")]
    sub = client.get("/jobs/j1/transcript", params={"format": "srt"}, headers=A)
    assert sub.headers["content-type"].startswith("application/x-subrip")
    subtitles = [(s.start.total_seconds(), s.content) for s in srt.parse(sub.text)]
    assert subtitles == [(3.02, "And so, my fellow Americans"), (62.0, "ask not")]
    assert client.get("/jobs/j1/transcript", headers=B).status_code == 404  # another tenant's job
    bad = client.get("/jobs/j1/transcript?format=txt", headers=A)
    assert bad.status_code == 422 and bad.json()["error"]["field"] == "format"


@pytest.mark.parametrize(("features", "status", "reason"), [
    (["visual"], JobStatus.SUCCEEDED, "the job ran without the speech feature (features: visual)"),
    (["speech"], JobStatus.PROCESSING, "the job is processing; the transcript comes when it succeeds"),
    (["speech"], JobStatus.FAILED, "the job failed before its transcript was made"),
    (["speech"], JobStatus.SUCCEEDED, "no transcript was stored (see the job's warnings)"),
])
def test_an_empty_transcript_says_why(client: TestClient, ctx: ApiContext, features: list[str], status: JobStatus,
                                      reason: str) -> None:
    _job(ctx, "j2", features, status)
    body = client.get("/jobs/j2/transcript", headers=A).json()
    assert body["segments"] == [] and body["reason"] == reason
    assert client.get("/jobs/j2/transcript?format=vtt", headers=A).text.startswith("WEBVTT")


def test_a_job_may_name_the_language_spoken(client: TestClient, ctx: ApiContext) -> None:
    body = {"video_url": "https://example.com/v.mp4", "features": ["visual", "speech"], "language": "fr"}
    accepted = client.post("/analyze", json=body, headers=A)
    assert accepted.status_code == 202, accepted.text
    job = ctx.jobs.get(accepted.json()["job_id"])
    assert job is not None and job.language == "fr"
    assert client.get(f"/jobs/{job.job_id}", headers=A).json()["language"] == "fr"
    for bad in ("French", "FR", "", 7):
        refused = client.post("/analyze", json={**body, "language": bad}, headers=A)
        assert refused.status_code == 422 and refused.json()["error"]["field"] == "language"
