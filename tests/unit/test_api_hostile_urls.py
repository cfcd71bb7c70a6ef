"""Every hostile URL of the SSRF table is refused at `POST /analyze` with 422 `forbidden_address` naming the field."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from tests.fakes import FakeEmbedder, FakeIndex, RecordingQueue
from tests.fixtures.hostile_urls import HOSTILE_URLS, FakeResolver
from video_ai.adapters.local_jobs import InMemoryJobRepository
from video_ai.adapters.net_guard import NetGuard
from video_ai.api.app import ApiContext, create_app
from video_ai.api.auth import ApiKeyAuth, hash_key
from video_ai.settings import Settings

KEY = "k"


@pytest.fixture(scope="module")
def client() -> Iterator[tuple[TestClient, RecordingQueue]]:
    # Plain http allowed (as in development) so the address check, not the scheme, is what must refuse.
    settings = Settings.model_validate({"profile": "development", "network": {"allow_http": True},
                                        "api": {"api_key_hashes": {hash_key(KEY): "t"}}})
    queue = RecordingQueue()
    ctx = ApiContext(settings=settings, jobs=InMemoryJobRepository(), queue=queue,
                     auth=ApiKeyAuth(settings.api.api_key_hashes), index_factory=FakeIndex,
                     embedder_factory=FakeEmbedder,
                     guard=NetGuard(settings.network, settings.limits, FakeResolver()))
    with TestClient(create_app(ctx), raise_server_exceptions=False) as c:
        yield c, queue


@pytest.mark.parametrize(("url", "why"), HOSTILE_URLS, ids=[why for _, why in HOSTILE_URLS])
@pytest.mark.parametrize("field", ["video_url", "callback_url"])
def test_hostile_url_is_refused_at_submit(client: tuple[TestClient, RecordingQueue], url: str, why: str,
                                          field: str) -> None:
    c, queue = client
    body = {"video_url": "http://public.test/v.mp4", field: url}
    before = len(queue.messages)
    r = c.post("/analyze", json=body, headers={"x-api-key": KEY})
    assert r.status_code == 422, (why, r.text)
    err = r.json()["error"]
    assert err["code"] == "forbidden_address" and err["field"] == field, (why, err)
    assert len(queue.messages) == before


def test_public_url_is_accepted(client: tuple[TestClient, RecordingQueue]) -> None:
    c, _ = client
    r = c.post("/analyze", json={"video_url": "http://public.test/v.mp4", "callback_url": "https://public6.test/h"},
               headers={"x-api-key": KEY})
    assert r.status_code == 202, r.text


@pytest.mark.parametrize(
    ("body", "field", "code"),
    [
        ({"video_url": "ftp://public.test/v.mp4"}, "video_url", "invalid_request"),
        ({"video_url": "http://user:pw@public.test/v.mp4"}, "video_url", "invalid_request"),
        ({"video_url": "http://public.test/v.mp4", "callback_url": "file:///etc/passwd"}, "callback_url",
         "invalid_request"),
        ({"video_url": "http://nxdomain.test/v.mp4"}, "video_url", "invalid_request"),
        ({"s3_uri": "s3://Bad_Bucket/key.mp4"}, "s3_uri", "invalid_request"),
        ({"s3_uri": "s3://bucket-only"}, "s3_uri", "invalid_request"),
    ],
)
def test_bad_scheme_credentials_and_s3_uri(client: tuple[TestClient, RecordingQueue], body: dict[str, str],
                                           field: str, code: str) -> None:
    c, _ = client
    r = c.post("/analyze", json=body, headers={"x-api-key": KEY})
    assert r.status_code == 422, r.text
    assert r.json()["error"]["field"] == field and r.json()["error"]["code"] == code
