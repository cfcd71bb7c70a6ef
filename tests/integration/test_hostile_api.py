"""Hostile API requests: every one gets a 4xx `{"error": {"code", "message", "field"?}}` naming the problem.

Never a 5xx, never a stack trace, never the hostile input echoed back at length. Most cases run in-process
(TestClient, the real URL guard with a test resolver, fakes behind it); a few go to `video-ai serve` over a real
socket (uvicorn's own body handling), along with a light load run.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from dataclasses import field as dc_field
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from tests.conftest import ROOT
from tests.fakes import FakeEmbedder, FakeIndex, RecordingQueue
from tests.fixtures.hostile_urls import FakeResolver
from tests.integration.serve_helpers import FileServer, ServeProcess, serve_stack
from video_ai.adapters.local_jobs import InMemoryJobRepository
from video_ai.adapters.net_guard import NetGuard
from video_ai.api.app import ApiContext, create_app
from video_ai.api.auth import ApiKeyAuth, hash_key
from video_ai.samples import make_clip
from video_ai.settings import Settings

KEY = "hostile-api-key"
AUTH = {"x-api-key": KEY}
JSON = {"content-type": "application/json", **AUTH}
GOOD_URL = "https://public.test/v.mp4"
LOOPBACK_URL = "http://127.0.0.1:8080/"
TEN_MB = 10 * 1024 * 1024


@dataclass(frozen=True)
class Hostile:
    """One request and what must come back."""

    name: str
    method: str
    path: str
    status: int
    code: str
    field: str | None = None
    body: Any = None  # JSON-encoded unless `raw` is given
    raw: bytes | None = None
    headers: dict[str, str] = dc_field(default_factory=lambda: dict(JSON))
    params: dict[str, str] | None = None


def _deep(depth: int, open_: str, close: str, leaf: str = "1") -> bytes:
    return (open_ * depth + leaf + close * depth).encode()


def _analyze(**extra: Any) -> dict[str, Any]:
    return {"video_url": GOOD_URL, **extra}


CASES: list[Hostile] = [
    # wrong types
    Hostile("video_url is a number", "POST", "/analyze", 422, "invalid_request", "video_url", {"video_url": 5}),
    Hostile("video_url is a list", "POST", "/analyze", 422, "invalid_request", "video_url", {"video_url": [GOOD_URL]}),
    Hostile("no source", "POST", "/analyze", 422, "invalid_request", "video_url", {"callback_url": GOOD_URL}),
    Hostile("both sources", "POST", "/analyze", 422, "invalid_request", "video_url",
            _analyze(s3_uri="s3://b/k.mp4")),
    Hostile("sampling is a string", "POST", "/analyze", 422, "invalid_request", "sampling", _analyze(sampling="fast")),
    Hostile("tags is a list", "POST", "/analyze", 422, "invalid_request", "tags", _analyze(tags=["a"])),
    Hostile("tag value is an object", "POST", "/analyze", 422, "invalid_request", "tags.a", _analyze(tags={"a": {}})),
    Hostile("top-level JSON array", "POST", "/analyze", 422, "invalid_request", "body", [GOOD_URL]),
    Hostile("top-level JSON string", "POST", "/analyze", 422, "invalid_request", "body", GOOD_URL),
    # huge values
    Hostile("1 MB video_url", "POST", "/analyze", 422, "invalid_request", "video_url",
            {"video_url": "https://public.test/" + "a" * 1_000_000}),
    Hostile("1 MB tag value", "POST", "/analyze", 422, "invalid_request", "tags.k",
            _analyze(tags={"k": "v" * 1_000_000})),
    Hostile("10,000 tags", "POST", "/analyze", 422, "invalid_request", "tags",
            _analyze(tags={str(i): "x" for i in range(10_000)})),
    Hostile("10 MB body", "POST", "/analyze", 413, "payload_too_large", "body",
            raw=json.dumps(_analyze(tags={"k": "x" * TEN_MB})).encode()),
    # deep JSON
    Hostile("10,000 nested arrays", "POST", "/analyze", 422, "invalid_json", "body", raw=_deep(10_000, "[", "]")),
    Hostile("10,000 nested objects", "POST", "/analyze", 422, "invalid_json", "body",
            raw=_deep(10_000, '{"a":', "}")),
    Hostile("nested arrays inside video_url", "POST", "/analyze", 422, "invalid_json", "body",
            raw=b'{"video_url": ' + _deep(10_000, "[", "]") + b"}"),
    Hostile("search: 10,000 nested arrays", "POST", "/search", 422, "invalid_json", "body",
            raw=_deep(10_000, "[", "]")),
    # unicode tricks
    Hostile("RTL override in the host", "POST", "/analyze", 422, "invalid_request", "video_url",
            {"video_url": "https://public\u202e.test/v.mp4"}),
    Hostile("NUL in the URL", "POST", "/analyze", 422, "invalid_request", "video_url",
            {"video_url": "https://public.test/v\u0000.mp4"}),
    Hostile("lone surrogate in video_url", "POST", "/analyze", 422, "invalid_request", "video_url",
            raw=b'{"video_url": "https://public.test/\\ud800.mp4"}'),
    Hostile("lone surrogate in a tag", "POST", "/analyze", 422, "invalid_request", "tags",
            raw=b'{"video_url": "https://public.test/v.mp4", "tags": {"k": "\\udfff"}}'),
    Hostile("lone surrogate in a tag key", "POST", "/analyze", 422, "invalid_request", "tags",
            raw=b'{"video_url": "https://public.test/v.mp4", "tags": {"\\ud83d": "v"}}'),
    Hostile("lone surrogate in an s3 key", "POST", "/analyze", 422, "invalid_request", "s3_uri",
            raw=b'{"s3_uri": "s3://bucket/\\udc80.mp4"}'),
    Hostile("lone surrogate in the callback URL", "POST", "/analyze", 422, "invalid_request", "callback_url",
            raw=b'{"video_url": "https://public.test/v.mp4", "callback_url": "https://public.test/\\udc80"}'),
    Hostile("homoglyph host (Cyrillic a) resolves nowhere", "POST", "/analyze", 422, "invalid_request", "video_url",
            {"video_url": "https://public.tes\u0442/v.mp4"}),
    Hostile("fullwidth homoglyph of the metadata IP", "POST", "/analyze", 422, "forbidden_address", "callback_url",
            _analyze(callback_url="http://\uff11\uff16\uff19.254.169.254/")),
    # URL schemes and shapes
    Hostile("file URL", "POST", "/analyze", 422, "invalid_request", "video_url", {"video_url": "file:///etc/passwd"}),
    Hostile("javascript URL", "POST", "/analyze", 422, "invalid_request", "video_url",
            {"video_url": "javascript:alert(1)"}),
    Hostile("credentials in the URL", "POST", "/analyze", 422, "invalid_request", "video_url",
            {"video_url": "https://user:pw@public.test/v.mp4"}),
    Hostile("callback to cloud metadata", "POST", "/analyze", 422, "forbidden_address", "callback_url",
            _analyze(callback_url="http://169.254.169.254/latest/meta-data/")),
    Hostile("s3 URI without a key", "POST", "/analyze", 422, "invalid_request", "s3_uri", {"s3_uri": "s3://bucket"}),
    # sampling
    Hostile("fps 0", "POST", "/analyze", 422, "invalid_request", "sampling.fps", _analyze(sampling={"fps": 0})),
    Hostile("fps 1e400 (infinity)", "POST", "/analyze", 422, "invalid_request", "sampling.fps",
            raw=b'{"video_url": "https://public.test/v.mp4", "sampling": {"fps": 1e400}}'),
    Hostile("fps NaN", "POST", "/analyze", 422, "invalid_request", "sampling.fps",
            raw=b'{"video_url": "https://public.test/v.mp4", "sampling": {"fps": NaN}}'),
    Hostile("max_frames 10^30", "POST", "/analyze", 422, "invalid_request", "sampling.max_frames",
            _analyze(sampling={"max_frames": 10**30})),
    Hostile("unknown sampling mode", "POST", "/analyze", 422, "invalid_request", "sampling.mode",
            _analyze(sampling={"mode": "every"})),
    Hostile("unknown field in sampling", "POST", "/analyze", 422, "invalid_request", "sampling.rate",
            _analyze(sampling={"rate": 2})),
    # unknown fields, bad JSON, content types
    Hostile("unknown field", "POST", "/analyze", 422, "invalid_request", "__proto__", _analyze(__proto__={"x": 1})),
    Hostile("invalid JSON", "POST", "/analyze", 422, "invalid_json", "body", raw=b'{"video_url": '),
    Hostile("empty body", "POST", "/analyze", 422, "invalid_request", "body", raw=b""),
    Hostile("binary garbage", "POST", "/analyze", 422, "invalid_json", "body", raw=bytes(range(256))),
    Hostile("JSON sent as text/plain", "POST", "/analyze", 422, "invalid_request", "body",
            raw=json.dumps(_analyze()).encode(), headers={"content-type": "text/plain", **AUTH}),
    Hostile("form-encoded body", "POST", "/analyze", 422, "invalid_request", "body",
            raw=b"video_url=https%3A%2F%2Fpublic.test%2Fv.mp4",
            headers={"content-type": "application/x-www-form-urlencoded", **AUTH}),
    # Idempotency-Key
    Hostile("Idempotency-Key of 300 characters", "POST", "/analyze", 422, "invalid_request", "Idempotency-Key",
            _analyze(), headers={**JSON, "Idempotency-Key": "k" * 300}),
    Hostile("empty Idempotency-Key", "POST", "/analyze", 422, "invalid_request", "Idempotency-Key", _analyze(),
            headers={**JSON, "Idempotency-Key": ""}),
    Hostile("Idempotency-Key with a control character", "POST", "/analyze", 422, "invalid_request",
            "Idempotency-Key", _analyze(), headers={**JSON, "Idempotency-Key": "a\tb"}),
    # query parameters and paths
    Hostile("limit 0", "GET", "/jobs", 422, "invalid_request", "limit", params={"limit": "0"}),
    Hostile("limit 10^6", "GET", "/jobs", 422, "invalid_request", "limit", params={"limit": "1000000"}),
    Hostile("limit not a number", "GET", "/jobs", 422, "invalid_request", "limit", params={"limit": "ten"}),
    Hostile("next_token of 5,000 characters", "GET", "/jobs", 422, "invalid_request", "next_token",
            params={"next_token": "x" * 5000}),
    Hostile("forged next_token", "GET", "/jobs", 422, "invalid_request", "next_token",
            params={"next_token": "eyJvZmZzZXQiOiAtNX0"}),
    Hostile("job id of 10,000 characters", "GET", "/jobs/" + "j" * 10_000, 404, "job_not_found"),
    Hostile("job id with path traversal", "GET", "/jobs/..%2F..%2Fetc%2Fpasswd", 404, "not_found"),
    # search
    Hostile("search: top_k 0", "POST", "/search", 422, "invalid_request", "top_k",
            {"frame": {"job_id": "j", "index": 0}, "top_k": 0}),
    Hostile("search: not base64", "POST", "/search", 422, "invalid_request", "image_base64",
            {"image_base64": "!!!not base64!!!"}),
    Hostile("search: base64 of an HTML page", "POST", "/search", 422, "invalid_request", "image_base64",
            {"image_base64": "PGh0bWw+PC9odG1sPg=="}),
    # auth and methods
    Hostile("no API key", "POST", "/analyze", 401, "unauthorized", None, _analyze(),
            headers={"content-type": "application/json"}),
    Hostile("Basic auth instead of a key", "POST", "/analyze", 401, "unauthorized", None, _analyze(),
            headers={"content-type": "application/json", "authorization": "Basic dXNlcjpwdw=="}),
    Hostile("PUT /analyze", "PUT", "/analyze", 405, "method_not_allowed", None, _analyze()),
]


def _content(case: Hostile) -> bytes | None:
    if case.raw is not None:
        return case.raw
    return None if case.body is None else json.dumps(case.body).encode()


def check_error(response: httpx.Response, case: Hostile) -> dict[str, Any]:
    """The shape every error has: a 4xx, `{"error": {code, message, field?}}`, short, no traceback."""
    assert response.status_code == case.status, (case.name, response.status_code, response.text[:500])
    assert response.headers["content-type"].startswith("application/json"), case.name
    assert len(response.content) < 2048, (case.name, len(response.content))  # hostile input is not echoed back
    assert "Traceback" not in response.text and 'File "' not in response.text, case.name
    body = response.json()
    assert set(body) == {"error"}, body
    error: dict[str, Any] = body["error"]
    assert set(error) <= {"code", "message", "field"} and isinstance(error["message"], str) and error["message"]
    assert error["code"] == case.code, (case.name, error)
    if case.field is not None:
        assert error.get("field") == case.field, (case.name, error)
    return error


@pytest.fixture(scope="module")
def api() -> Iterator[tuple[TestClient, ApiContext]]:
    settings = Settings.model_validate({"profile": "development", "network": {"allow_http": True},
                                        "api": {"api_key_hashes": {hash_key(KEY): "t"}}})
    settings.model.name, settings.model.version, settings.model.dim = "fake", "1", 4
    ctx = ApiContext(settings=settings, jobs=InMemoryJobRepository(), queue=RecordingQueue(),
                     auth=ApiKeyAuth(settings.api.api_key_hashes), index_factory=FakeIndex,
                     embedder_factory=FakeEmbedder, guard=NetGuard(settings.network, settings.limits, FakeResolver()))
    with TestClient(create_app(ctx), raise_server_exceptions=False) as client:
        yield client, ctx


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_hostile_request_gets_a_4xx_naming_the_problem(api: tuple[TestClient, ApiContext], case: Hostile) -> None:
    client, ctx = api
    assert isinstance(ctx.queue, RecordingQueue)
    queued = len(ctx.queue.messages)
    response = client.request(case.method, case.path, content=_content(case), headers=case.headers,
                              params=case.params)
    check_error(response, case)
    assert len(ctx.queue.messages) == queued  # nothing was accepted


def test_a_chunked_10mb_body_is_refused_without_content_length(api: tuple[TestClient, ApiContext]) -> None:
    client, _ = api
    chunk = b" " * (1024 * 1024)

    def body() -> Iterator[bytes]:
        yield b'{"video_url": "https://public.test/v.mp4"'
        for _ in range(10):
            yield chunk
        yield b"}"

    response = client.post("/analyze", content=body(), headers=JSON)
    check_error(response, Hostile("chunked 10 MB", "POST", "/analyze", 413, "payload_too_large", "body"))


def test_idempotency_key_reused_with_another_body_is_409(api: tuple[TestClient, ApiContext]) -> None:
    client, _ = api
    headers = {**JSON, "Idempotency-Key": "same-key"}
    first = client.post("/analyze", json=_analyze(), headers=headers)
    assert first.status_code == 202, first.text
    assert client.post("/analyze", json=_analyze(), headers=headers).json()["job_id"] == first.json()["job_id"]
    other = client.post("/analyze", json={"video_url": "https://public.test/other.mp4"}, headers=headers)
    check_error(other, Hostile("key reused", "POST", "/analyze", 409, "idempotency_key_reused"))


def test_the_service_still_accepts_good_requests_after_the_corpus(api: tuple[TestClient, ApiContext]) -> None:
    client, _ = api
    response = client.post("/analyze", json=_analyze(sampling={"mode": "keyframes"}), headers=JSON)
    assert response.status_code == 202, response.text


# ---------------------------------------------------------------- over a real socket: `video-ai serve`

SERVE_CASES = [c for c in CASES if c.name in {
    "10 MB body", "10,000 nested arrays", "lone surrogate in video_url", "invalid JSON", "fps NaN",
    "Idempotency-Key of 300 characters", "job id of 10,000 characters", "lone surrogate in a tag",
    "lone surrogate in a tag key", "lone surrogate in an s3 key",
}]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, model_path: Path) -> Iterator[ServeProcess]:
    env = {"VIDEO_AI__MODEL__PATH": str(model_path)}
    with serve_stack(tmp_path_factory.mktemp("serve-api"), level="WARNING", env=env) as proc:
        yield proc


@pytest.mark.parametrize("case", SERVE_CASES, ids=[c.name for c in SERVE_CASES])
def test_hostile_request_through_serve(stack: ServeProcess, case: Hostile) -> None:
    headers = {**case.headers, "x-api-key": stack.info["api_key"]}
    # serve's development profile allows loopback sources: the request then fails only for what the case is about.
    content = _content(case)
    content = content.replace(b"https://public.test/", LOOPBACK_URL.encode()) if content else content
    with httpx.Client(base_url=stack.info["api"], timeout=30) as client:
        response = client.request(case.method, case.path, content=content, headers=headers, params=case.params)
    check_error(response, case)


def _bench_load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_load", ROOT / "benchmarks" / "bench_load.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_light_load_on_serve_loses_no_job(stack: ServeProcess, tmp_path: Path) -> None:
    """40 POST /analyze at concurrency 8 (the benchmark's light form): all accepted, none lost, none stuck."""
    bench = _bench_load()
    make_clip(tmp_path / "load.mp4", duration_s=2.0, fps=10.0, size=(160, 120))
    files = FileServer(tmp_path)
    try:
        result = bench.run_load(stack.info["api"], stack.info["api_key"], [files.url("load.mp4")], total=40,
                                concurrency=8, drain_timeout_s=180.0)
    finally:
        files.close()
    assert result.server_errors == 0 and result.transport_errors == 0, result
    assert result.accepted == 40, result
    assert result.unfinished == [], result
    assert result.statuses.get("succeeded", 0) == 40, result
    assert stack.proc is not None and stack.proc.poll() is None  # serve is still up
