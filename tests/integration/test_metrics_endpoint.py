"""GET /metrics of a real app after jobs ran through the real services: the domain series, their counts, promtool."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.fakes import FakeEmbedder, FakeFetcher, FakeFrameSource, FakeIndex, RecordingNotifier, RecordingQueue
from tests.prom import delta as _delta
from tests.prom import samples as _samples
from video_ai.adapters.local_jobs import InMemoryJobRepository
from video_ai.api.app import ApiContext, create_app
from video_ai.api.auth import ApiKeyAuth, hash_key
from video_ai.domain.errors import CorruptMedia
from video_ai.observability import PrometheusMetrics, prometheus_metrics
from video_ai.runtime import Runtime
from video_ai.services.analyze_video import AnalyzeDeps, analyze_video
from video_ai.settings import Settings
from video_ai.workers import job_record_context

KEY = "metrics-test-key-0123"
AUTH = {"Authorization": f"Bearer {KEY}"}
ROOT = Path(__file__).resolve().parents[2]
N_FRAMES = 7

class _Record:
    """The fields job_record_context reads from an SQS record."""

    def __init__(self, body: str, sent_ms: int) -> None:
        self.body = body
        self.message_id = "m-1"
        self.attributes: dict[str, Any] = {"SentTimestamp": str(sent_ms), "ApproximateReceiveCount": "1"}


@pytest.fixture()
def app_ctx(tmp_path: Path) -> Iterator[tuple[TestClient, ApiContext, PrometheusMetrics]]:
    metrics = prometheus_metrics()
    assert isinstance(metrics, PrometheusMetrics)
    settings = Settings.model_validate({"api": {"api_key_hashes": {hash_key(KEY): "t1"}}})
    settings.model.name, settings.model.version, settings.model.dim = "fake", "1", 4
    index, embedder = FakeIndex(), FakeEmbedder()
    ctx = ApiContext(settings=settings, jobs=InMemoryJobRepository(), queue=RecordingQueue(),
                     auth=ApiKeyAuth(settings.api.api_key_hashes), index_factory=lambda: index,
                     embedder_factory=lambda: embedder, metrics=metrics)
    with TestClient(create_app(ctx)) as client:
        yield client, ctx, metrics


def _analyze_deps(ctx: ApiContext, metrics: PrometheusMetrics, tmp_path: Path, **overrides: Any) -> AnalyzeDeps:
    values: dict[str, Any] = dict(jobs=ctx.jobs, fetcher=FakeFetcher(), frames=FakeFrameSource(n_frames=N_FRAMES),
                                  embedder=ctx.embedder(), index=ctx.index(), notifier=RecordingNotifier(),
                                  workdir=tmp_path, metrics=metrics, batch_size=3)
    values.update(overrides)
    return AnalyzeDeps(**values)


def _scrape(client: TestClient) -> str:
    response = client.get("/metrics", headers=AUTH)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return response.text


def test_metrics_after_jobs_show_the_domain_series_with_the_right_counts(
    app_ctx: tuple[TestClient, ApiContext, PrometheusMetrics], tmp_path: Path
) -> None:
    client, ctx, metrics = app_ctx
    before = _samples(_scrape(client))

    ok = client.post("/analyze", json={"video_url": "https://example.com/ok.mp4"}, headers=AUTH).json()["job_id"]
    same = client.post("/analyze", json={"video_url": "https://example.com/ok2.mp4"}, headers=AUTH).json()["job_id"]
    bad = client.post("/analyze", json={"video_url": "https://example.com/bad.mp4"}, headers=AUTH).json()["job_id"]
    runtime = Runtime(ctx.settings, metrics=metrics)
    sent_ms = int((time.time() - 2.0) * 1000)
    with job_record_context(_Record(f'{{"job_id": "{ok}", "tenant": "t1"}}', sent_ms), runtime) as (message, _):
        analyze_video(message.job_id, _analyze_deps(ctx, metrics, tmp_path))
    analyze_video(same, _analyze_deps(ctx, metrics, tmp_path))  # same bytes: answered by reuse
    analyze_video(bad, _analyze_deps(ctx, metrics, tmp_path, fetcher=FakeFetcher(error=CorruptMedia("x"))))
    metrics.count("callback_deliveries", outcome="delivered")
    metrics.count("config_reloads", result="ok")
    assert client.delete(f"/jobs/{bad}", headers=AUTH).status_code == 204

    text = _scrape(client)
    after = _samples(text)
    assert _delta(after, before, "video_ai_jobs_accepted_total") == 3
    assert _delta(after, before, "video_ai_jobs_started_total") == 3
    assert _delta(after, before, "video_ai_jobs_succeeded_total") == 2
    assert _delta(after, before, "video_ai_jobs_reused_total") == 1
    assert _delta(after, before, "video_ai_jobs_failed_total", error_code="corrupt_media") == 1
    assert _delta(after, before, "video_ai_jobs_failed_total", error_code="not_found") == 0
    assert _delta(after, before, "video_ai_jobs_deleted_total") == 1
    # The reused job copied vectors: its frames, video seconds, realtime factor and decode/embed times do not count.
    assert _delta(after, before, "video_ai_frames_indexed_total") == N_FRAMES
    assert _delta(after, before, "video_ai_video_processed_seconds_total") == 1.0 * N_FRAMES
    assert _delta(after, before, "video_ai_callback_deliveries_total", outcome="delivered") == 1
    assert _delta(after, before, "video_ai_config_reloads_total", result="ok") == 1
    for histogram, jobs in (("decode", 1), ("embed", 1), ("index", 2), ("job", 2)):
        assert _delta(after, before, f"video_ai_{histogram}_seconds_count") == jobs
    assert _delta(after, before, "video_ai_realtime_factor_count") == 1
    assert _delta(after, before, "video_ai_queue_wait_seconds_count") == 1
    assert 1.5 < _delta(after, before, "video_ai_queue_wait_seconds_sum") < 60
    assert _delta(after, before, "video_ai_queue_wait_seconds_bucket", le="1.0") == 0
    assert _delta(after, before, "video_ai_queue_wait_seconds_bucket", le="2.5") == 1
    # The HTTP metrics of prometheus-fastapi-instrumentator sit beside the domain ones.
    assert any(name.startswith("http_request") for name, _ in after)
    # No job id (unbounded) in any label.
    assert not any(job_id in text for job_id in (ok, same, bad))


def test_metrics_needs_an_api_key(app_ctx: tuple[TestClient, ApiContext, PrometheusMetrics]) -> None:
    client, _, _ = app_ctx
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers={"x-api-key": KEY}).status_code == 200


def test_apps_built_twice_in_one_process_share_the_series(tmp_path: Path) -> None:
    first, second = prometheus_metrics(), prometheus_metrics()
    assert isinstance(first, PrometheusMetrics) and isinstance(second, PrometheusMetrics)
    before = first.registry.get_sample_value("video_ai_jobs_deleted_total") or 0.0
    first.count("jobs_deleted")
    second.count("jobs_deleted")
    assert first.registry.get_sample_value("video_ai_jobs_deleted_total") == before + 2


def _promtool() -> str:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not installed: run scripts/promtool-check.sh --install (CI does, as root)")
    return promtool


def test_metrics_text_passes_promtool(
    app_ctx: tuple[TestClient, ApiContext, PrometheusMetrics], tmp_path: Path
) -> None:
    promtool = _promtool()
    client, ctx, metrics = app_ctx
    job = client.post("/analyze", json={"video_url": "https://example.com/v.mp4"}, headers=AUTH).json()["job_id"]
    analyze_video(job, _analyze_deps(ctx, metrics, tmp_path))
    text = _scrape(client)
    result = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    script = subprocess.run([str(ROOT / "scripts" / "promtool-check.sh")], input=text, capture_output=True,
                            text=True, timeout=60)
    assert script.returncode == 0, script.stdout + script.stderr


def test_promtool_rejects_a_badly_named_counter() -> None:
    """The lint has teeth: a counter without `_total` fails, so the pass above means something."""
    promtool = _promtool()
    bad = "# HELP video_ai_jobs Jobs.\n# TYPE video_ai_jobs counter\nvideo_ai_jobs 1\n"
    result = subprocess.run([promtool, "check", "metrics"], input=bad, capture_output=True, text=True, timeout=60)
    assert result.returncode != 0 and "_total" in result.stdout + result.stderr


def test_logs_of_a_full_run_carry_the_job_and_no_secret(tmp_path: Path) -> None:
    import io
    import json
    import logging

    from video_ai.observability import RequestIdMiddleware, configure_logging, log_context, register_secret

    signed = "X-Amz-Signature=9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
    webhook_secret = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD"
    register_secret(KEY)
    stream = io.StringIO()
    root, level = logging.getLogger(), logging.getLogger().level
    handler = configure_logging(Settings.model_validate({"logging": {"level": "DEBUG"}}), stream)
    try:
        metrics = prometheus_metrics()
        assert isinstance(metrics, PrometheusMetrics)
        settings = Settings.model_validate({"api": {"api_key_hashes": {hash_key(KEY): "t1"}}})
        index, embedder = FakeIndex(), FakeEmbedder()
        ctx = ApiContext(settings=settings, jobs=InMemoryJobRepository(), queue=RecordingQueue(),
                         auth=ApiKeyAuth(settings.api.api_key_hashes), index_factory=lambda: index,
                         embedder_factory=lambda: embedder, metrics=metrics)
        with TestClient(RequestIdMiddleware(create_app(ctx))) as client:  # type: ignore[arg-type]
            body = {"video_url": f"https://b.s3.amazonaws.com/v.mp4?X-Amz-Algorithm=AWS4-HMAC-SHA256&{signed}",
                    "callback_url": f"https://hooks.example.com/in?token={webhook_secret}"}
            response = client.post("/analyze", json=body, headers={"x-api-key": KEY, "x-request-id": "req-77"})
            assert response.status_code == 202, response.text
            job_id = response.json()["job_id"]
            with log_context.bind(job_id=job_id, tenant="t1", request_id="msg-1"):
                logging.getLogger("video_ai.test").info("received %s with x-api-key: %s", body, KEY)
                analyze_video(job_id, _analyze_deps(ctx, metrics, tmp_path))
                logging.getLogger("video_ai.test").warning("signing callback with %s", webhook_secret)
            client.get("/metrics", headers=AUTH)
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
    output = stream.getvalue()
    lines = [json.loads(line) for line in output.splitlines()]
    assert len(lines) >= 3
    for secret in (KEY, signed.split("=")[1], webhook_secret.removeprefix("whsec_")):
        assert secret not in output
    job_lines = [line for line in lines if line.get("request_id") == "msg-1"]
    assert len(job_lines) >= 2 and all(line["job_id"] == job_id and line["tenant"] == "t1" for line in job_lines)
