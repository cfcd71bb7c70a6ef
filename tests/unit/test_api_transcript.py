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
from video_ai.domain.transcript import Transcript, TranscriptSegment, TranscriptWord, to_webvtt
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
    assert body == TRANSCRIPT.model_dump(mode="json") | {"next_token": None}  # whole, as before paging existed
    assert set(body) == {"job_id", "language", "language_probability", "model", "segments", "reason", "next_token"}
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


def _long_transcript(ctx: ApiContext, n: int) -> Transcript:
    """A stored transcript of n segments, two timed words each."""
    _job(ctx, "j3", ["speech"])
    segments = [TranscriptSegment(start_s=2.0 * i, end_s=2.0 * i + 1.5, text=f"line {i}", confidence=0.5,
                                  words=[TranscriptWord(start_s=2.0 * i, end_s=2.0 * i + 0.5, text="line",
                                                        confidence=0.9),
                                         TranscriptWord(start_s=2.0 * i + 0.6, end_s=2.0 * i + 1.5, text=str(i),
                                                        confidence=0.8)])
                for i in range(n)]
    transcript = Transcript(job_id="j3", language="en", model="tiny.en", segments=segments)
    store = ctx.artifacts()
    assert store is not None
    store.put("j3", "transcript.json", transcript.model_dump_json().encode())
    return transcript


def test_json_pages_follow_next_token_to_the_whole_transcript(client: TestClient, ctx: ApiContext) -> None:
    stored = _long_transcript(ctx, 7)
    seen: list[dict[str, object]] = []
    token: str | None = None
    for _ in range(10):
        params: dict[str, str | int] = {"limit": 3} | ({"next_token": token} if token else {})
        page = client.get("/jobs/j3/transcript", params=params, headers=A)
        assert page.status_code == 200, page.text
        body = page.json()
        assert (body["job_id"], body["language"], body["model"]) == ("j3", "en", "tiny.en")  # on every page
        assert len(body["segments"]) <= 3
        seen += body["segments"]
        token = body["next_token"]
        if token is None:
            break
    assert seen == [segment.model_dump(mode="json") for segment in stored.segments]
    # A token without limit: every segment from there on.
    rest = client.get("/jobs/j3/transcript", params={"next_token": "5"}, headers=A).json()
    assert [s["text"] for s in rest["segments"]] == ["line 5", "line 6"] and rest["next_token"] is None
    last = client.get("/jobs/j3/transcript", params={"limit": 7}, headers=A).json()
    assert len(last["segments"]) == 7 and last["next_token"] is None


def test_words_false_leaves_out_the_word_timings(client: TestClient, ctx: ApiContext) -> None:
    _long_transcript(ctx, 40)
    whole = client.get("/jobs/j3/transcript", headers=A)
    bare = client.get("/jobs/j3/transcript?words=false", headers=A)
    assert bare.status_code == 200
    segments = bare.json()["segments"]
    assert len(segments) == 40 and all(set(s) == {"start_s", "end_s", "text", "confidence"} for s in segments)
    assert all(len(s["words"]) == 2 for s in whole.json()["segments"])
    assert len(bare.content) < len(whole.content) / 2
    paged = client.get("/jobs/j3/transcript?words=0&limit=2&next_token=2", headers=A).json()
    assert [s["text"] for s in paged["segments"]] == ["line 2", "line 3"] and "words" not in paged["segments"][0]
    assert paged["next_token"] == "4"
    # Subtitles never carry word timings: words=false changes nothing there.
    assert (client.get("/jobs/j3/transcript?format=srt&words=false", headers=A).text ==
            client.get("/jobs/j3/transcript?format=srt", headers=A).text)


@pytest.mark.parametrize(("query", "field"), [
    ("next_token=abc", "next_token"),
    ("next_token=0", "next_token"),
    ("next_token=41", "next_token"),
    ("limit=3&next_token=-1", "next_token"),
    ("limit=0", "limit"),
    ("limit=501", "limit"),
    ("limit=ten", "limit"),
    ("words=maybe", "words"),
    ("format=JSON", "format"),
    ("format=vtt&limit=5", "limit"),
    ("format=srt&next_token=2", "next_token"),
])
def test_bad_paging_input_is_a_422_naming_the_field(client: TestClient, ctx: ApiContext, query: str,
                                                    field: str) -> None:
    _long_transcript(ctx, 40)
    response = client.get(f"/jobs/j3/transcript?{query}", headers=A)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["field"] == field


def test_a_token_on_an_empty_transcript_was_never_issued(client: TestClient, ctx: ApiContext) -> None:
    _job(ctx, "j4", ["visual"])
    assert client.get("/jobs/j4/transcript?limit=5", headers=A).json()["next_token"] is None
    refused = client.get("/jobs/j4/transcript?next_token=1", headers=A)
    assert refused.status_code == 422 and refused.json()["error"]["field"] == "next_token"


def test_subtitles_of_a_long_transcript_stream_whole(client: TestClient, ctx: ApiContext) -> None:
    webvtt = pytest.importorskip("webvtt")
    stored = _long_transcript(ctx, 3000)  # past one 64 KB chunk
    with client.stream("GET", "/jobs/j3/transcript?format=vtt", headers=A) as response:
        assert response.status_code == 200 and "content-length" not in response.headers
        chunks = [chunk for chunk in response.iter_raw()]
    text = b"".join(chunks).decode()
    assert len(chunks) > 1 and text == to_webvtt(stored)
    assert [c.text for c in webvtt.from_buffer(io.StringIO(text))] == [f"line {i}" for i in range(3000)]


def test_every_json_shape_conforms_to_the_openapi_description(client: TestClient, ctx: ApiContext) -> None:
    schemathesis = pytest.importorskip("schemathesis")
    _long_transcript(ctx, 5)
    spec = schemathesis.openapi.from_dict(client.get("/openapi.json").json())
    operation = spec["/jobs/{job_id}/transcript"]["GET"]
    for query in ("", "?limit=2", "?limit=2&next_token=4", "?words=false", "?words=false&limit=1", "?format=vtt"):
        response = client.get(f"/jobs/j3/transcript{query}", headers=A)
        assert response.status_code == 200, (query, response.text)
        operation.validate_response(response)  # raises on a body or content type the description does not allow
    refused = client.get("/jobs/j3/transcript?next_token=x", headers=A)
    assert refused.status_code == 422
    operation.validate_response(refused)
