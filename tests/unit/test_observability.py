from __future__ import annotations

import ast
import io
import json
import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry, generate_latest

from tests.fakes import FakeEmbedder, FakeFetcher, FakeFrameSource, FakeIndex, RecordingNotifier
from video_ai.adapters.local_jobs import InMemoryJobRepository
from video_ai.domain.models import Job, Source
from video_ai.observability import (
    CATALOGUE,
    REDACTED,
    PrometheusMetrics,
    RedactingFilter,
    RequestIdMiddleware,
    UnknownMetric,
    XRayTracing,
    configure_logging,
    error_codes,
    lambda_logger,
    log_context,
    redact,
    register_secret,
)
from video_ai.services.analyze_video import AnalyzeDeps, analyze_video
from video_ai.settings import Settings

ROOT = Path(__file__).resolve().parents[2]

# ------------------------------------------------------------------------------------------------ catalogue


def _metric_calls() -> list[tuple[str, str, str, set[str]]]:
    """(file:line, method, name, label names) of every `<...>metrics.count/observe("name", ...)` in the code."""
    calls = []
    for path in [*(ROOT / "shared" / "video_ai").rglob("*.py"), *(ROOT / "functions").rglob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and node.func.attr in ("count", "observe")):
                continue
            receiver = ast.unparse(node.func.value)
            if not receiver.endswith("metrics") or not node.args or not isinstance(node.args[0], ast.Constant):
                continue
            labels = {k.arg for k in node.keywords if k.arg is not None and k.arg != "value"}
            calls.append((f"{path.relative_to(ROOT)}:{node.lineno}", node.func.attr, str(node.args[0].value), labels))
    return calls


def test_every_metric_the_code_records_is_in_the_catalogue_with_its_kind_and_labels() -> None:
    calls = _metric_calls()
    assert len(calls) >= 14, calls  # the scan itself works
    for where, method, name, labels in calls:
        spec = CATALOGUE.get(name)
        assert spec is not None, f"{where}: {name!r} is not in CATALOGUE"
        assert spec.kind == ("counter" if method == "count" else "histogram"), where
        assert labels == set(spec.labels), f"{where}: labels {labels} != {spec.labels}"


def test_catalogue_names_are_unique_and_follow_conventions() -> None:
    specs = list(CATALOGUE.values())
    assert len({s.prometheus_name for s in specs}) == len(specs)
    assert len({s.emf_name for s in specs}) == len(specs)
    for spec in specs:
        assert spec.prometheus_name.startswith("video_ai_") and not spec.prometheus_name.endswith("_total")
        if spec.kind == "histogram":
            assert list(spec.buckets) == sorted(spec.buckets) and spec.buckets
        if spec.emf_unit == "Seconds" and spec.kind == "histogram":
            assert spec.prometheus_name.endswith("_seconds")
    assert CATALOGUE["decode_seconds"].buckets[0] == 0.1 and CATALOGUE["decode_seconds"].buckets[-1] == 1800


def test_template_names_the_emf_metrics_the_catalogue_emits() -> None:
    template = (ROOT / "template.yaml").read_text(encoding="utf-8")
    emf_names = {s.emf_name for s in CATALOGUE.values()}
    used = {name for name in ("JobsAccepted", "JobsSucceeded", "JobsFailed", "JobLatency", "RealtimeFactor",
                              "QueueWait", "VideoSecondsProcessed", "FramesIndexed", "CallbackDeliveries")
            if f'MetricName=\\"{name}\\"' in template or f"MetricName: {name}" in template}
    assert used, "template.yaml no longer queries VideoAI metrics by name"
    assert used <= emf_names


# ------------------------------------------------------------------------------------------------ Prometheus


def _value(registry: CollectorRegistry, name: str, **labels: str) -> float:
    value = registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


def test_prometheus_counts_and_observes_under_video_ai_names() -> None:
    registry = CollectorRegistry()
    metrics = PrometheusMetrics(registry)
    metrics.count("jobs_accepted")
    metrics.count("jobs_accepted")
    metrics.count("frames_indexed", 12)
    metrics.count("jobs_failed", error_code="corrupt_media")
    metrics.count("callback_deliveries", outcome="delivered")
    metrics.count("config_reloads", result="rejected")
    metrics.observe("job_seconds", 42.0)
    metrics.observe("realtime_factor", 30.0)
    assert _value(registry, "video_ai_jobs_accepted_total") == 2
    assert _value(registry, "video_ai_frames_indexed_total") == 12
    assert _value(registry, "video_ai_jobs_failed_total", error_code="corrupt_media") == 1
    assert _value(registry, "video_ai_callback_deliveries_total", outcome="delivered") == 1
    assert _value(registry, "video_ai_config_reloads_total", result="rejected") == 1
    assert _value(registry, "video_ai_job_seconds_count") == 1
    assert _value(registry, "video_ai_job_seconds_bucket", le="60.0") == 1
    assert _value(registry, "video_ai_job_seconds_bucket", le="30.0") == 0
    assert _value(registry, "video_ai_realtime_factor_sum") == 30.0


def test_known_label_values_are_exported_as_zero_before_any_event() -> None:
    registry = CollectorRegistry()
    PrometheusMetrics(registry)
    assert registry.get_sample_value("video_ai_jobs_failed_total", {"error_code": "not_found"}) == 0
    assert registry.get_sample_value("video_ai_config_reloads_total", {"result": "ok"}) == 0
    assert registry.get_sample_value("video_ai_jobs_accepted_total") == 0


def test_unbounded_label_values_collapse_to_other() -> None:
    registry = CollectorRegistry()
    metrics = PrometheusMetrics(registry)
    metrics.count("jobs_failed", error_code="job 3f2c9e: boom")
    metrics.count("callback_deliveries", outcome="https://hook.example.com/x")
    assert _value(registry, "video_ai_jobs_failed_total", error_code="other") == 1
    assert _value(registry, "video_ai_callback_deliveries_total", outcome="other") == 1
    text = generate_latest(registry).decode()
    assert "3f2c9e" not in text and "hook.example.com" not in text


def test_error_codes_are_the_domain_codes() -> None:
    codes = error_codes()
    assert {"internal_error", "not_found", "job_not_found", "corrupt_media", "retries_exhausted"} <= codes


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda m: m.count("jobs_acepted"), "unknown metric 'jobs_acepted'"),
        (lambda m: m.count("job_seconds", 1.0), "is a histogram: use metrics.observe()"),
        (lambda m: m.observe("jobs_accepted", 1.0), "is a counter: use metrics.count()"),
        (lambda m: m.count("jobs_failed"), "takes labels ['error_code']"),
        (lambda m: m.count("jobs_accepted", job_id="j1"), "takes labels []"),
    ],
)
def test_misuse_is_refused_with_a_clear_error(call: Any, message: str) -> None:
    with pytest.raises(UnknownMetric, match=message.replace("[", r"\[").replace("(", r"\(").replace(")", r"\)")):
        call(PrometheusMetrics(CollectorRegistry()))


def test_repeated_construction_shares_collectors_per_registry() -> None:
    registry = CollectorRegistry()
    PrometheusMetrics(registry).count("jobs_deleted")
    PrometheusMetrics(registry).count("jobs_deleted")  # no "Duplicated timeseries"
    assert _value(registry, "video_ai_jobs_deleted_total") == 2
    other = CollectorRegistry()
    PrometheusMetrics(other).count("jobs_deleted")
    assert _value(other, "video_ai_jobs_deleted_total") == 1 and _value(registry, "video_ai_jobs_deleted_total") == 2


def test_collectors_already_in_a_registry_are_reused_not_registered_twice() -> None:
    """As after importlib.reload of this module: the per-registry cache is gone, the registry still holds them."""
    import video_ai.observability as obs

    registry = CollectorRegistry()
    obs.PrometheusMetrics(registry).count("jobs_started")
    del obs._collectors_by_registry[registry]
    obs.PrometheusMetrics(registry).count("jobs_started")
    assert _value(registry, "video_ai_jobs_started_total") == 2


# ------------------------------------------------------------------------------------------------ redaction

SECRETS = {
    "api_key": "vai_live_9b1c2d3e4f5a6b7c",
    "webhook": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
    "bearer": "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl",
    "amz_signature": "fe5f80f77d5fa3beca038a248ff027d0445342fe2855ddc963176630326f1024",
    "amz_credential": "AKIAIOSFODNN7EXAMPLE",
    "cf_signature": "Nql641NHEUkUaXQHZINK1FZ~SYeUSoBJMxjdgqrzIdzV2gyEXPDNv0pYdWJkflDKJ3xIu7lbwRpSkG98NBlgPi4ZJp"
                    "RRnVX4kXAJK6tdNx6FucDB7OVqzcxkxHsGFd8VCG1BkC-Afh9~lOCMIYHIaiOB6~5jt9w2EOwi6sIIqrg_",
    "token": "tok_5f4dcc3b5aa765d61d8327deb882cf99",
    "qdrant": "qdrant-key-0123456789",
}

LINES: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = [
    ("request headers %s", ({"Authorization": f"Bearer {SECRETS['bearer']}", "x-api-key": SECRETS["api_key"]},), {}),
    ("x-api-key: %s", (SECRETS["api_key"],), {}),
    ("Authorization: Bearer %s", (SECRETS["bearer"],), {}),
    ("signing with %s", (SECRETS["webhook"],), {}),
    ("fetching %s", (f"https://b.s3.amazonaws.com/v.mp4?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential="
                     f"{SECRETS['amz_credential']}%2F20260101%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Date=20260101T"
                     f"000000Z&X-Amz-Expires=900&X-Amz-SignedHeaders=host&X-Amz-Signature={SECRETS['amz_signature']}",),
     {}),
    ("fetching https://d1.cloudfront.net/v.mp4?Expires=1767225600&Signature=%s&Key-Pair-Id=K2JCJMDEHXQW5F",
     (SECRETS["cf_signature"],), {}),
    ("callback to https://hooks.example.com/in?token=%s", (SECRETS["token"],), {}),
    ("config loaded", (), {"extra": {"qdrant_api_key": SECRETS["qdrant"], "url": f"https://q/?api_key={SECRETS['qdrant']}"}}),
    ("header list %r", ([("authorization", f"Bearer {SECRETS['bearer']}"), ("x-api-key", SECRETS["api_key"])],), {}),
]


@contextmanager
def _logging_to(settings: Settings) -> Iterator[tuple[io.StringIO, logging.Logger]]:
    stream = io.StringIO()
    root = logging.getLogger()
    level = root.level
    handler = configure_logging(settings, stream)
    try:
        yield stream, logging.getLogger("video_ai.test")
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


def _log_everything(log: logging.Logger) -> None:
    for message, args, kwargs in LINES:
        log.warning(message, *args, **kwargs)
    try:
        raise RuntimeError(f"GET https://b/v.mp4?X-Amz-Signature={SECRETS['amz_signature']} failed "
                           f"with x-api-key={SECRETS['api_key']}")
    except RuntimeError:
        log.exception("fetch failed")
    log.info({"event": "delivery", "headers": {"webhook-secret": SECRETS["webhook"]}})


@pytest.mark.parametrize("json_logs", [True, False])
def test_no_secret_form_reaches_a_log_line(json_logs: bool) -> None:
    settings = Settings.model_validate({"logging": {"json": json_logs}, "qdrant": {"api_key": None}})
    register_secret(SECRETS["qdrant"])
    with _logging_to(settings) as (stream, log):
        _log_everything(log)
    output = stream.getvalue()
    assert output.count("\n") >= len(LINES) + 2
    for name, secret in SECRETS.items():
        assert secret not in output, f"{name} leaked: {output}"
    assert "X-Amz-Signature" not in output  # the whole signed query string goes
    assert output.count(REDACTED) >= len(LINES)
    assert "https://b.s3.amazonaws.com/v.mp4?" in output and "fetch failed" in output
    if json_logs:
        records = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
        assert len(records) == len(LINES) + 2
        assert any("RuntimeError" in str(r.get("exception", "")) for r in records)


def test_redaction_keeps_ordinary_text() -> None:
    for text in ("no webhook secret: set WEBHOOK_SECRET_ARN", "next_token=abc123 is not a token this API issued",
                 "GET https://example.com/v.mp4?v=2&t=10", "job job-1 failed: corrupt_media"):
        assert redact(text) == text


def test_filter_redacts_records_for_any_handler() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RedactingFilter())
    log = logging.getLogger("video_ai.test.filter")
    log.addHandler(handler)
    log.propagate = False
    try:
        log.error("key %s", f"x-api-key={SECRETS['api_key']}", extra={"auth": f"Bearer {SECRETS['bearer']}"})
        try:
            raise ValueError(SECRETS["webhook"])
        except ValueError:
            log.exception("boom")
    finally:
        log.removeHandler(handler)
        log.propagate = True
    out = stream.getvalue()
    assert SECRETS["api_key"] not in out and SECRETS["webhook"] not in out and "ValueError" in out


# ------------------------------------------------------------------------------------------------ log context


def test_job_context_is_on_every_line_and_isolated_per_thread() -> None:
    with _logging_to(Settings()) as (stream, log):
        def job(job_id: str, tenant: str) -> None:
            with log_context.bind(job_id=job_id, tenant=tenant, request_id=f"msg-{job_id}"):
                for step in range(3):
                    log.info("step %d", step)
                    log.info("explicit wins", extra={"tenant": "explicit"})

        threads = [threading.Thread(target=job, args=(f"job-{i}", f"t{i}")) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=10)
        log.info("outside any job")
    records = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert len(records) == 4 * 6 + 1
    for r in records[:-1]:
        assert r["request_id"] == f"msg-{r['job_id']}"
        assert r["tenant"] == ("explicit" if r["message"] == "explicit wins" else f"t{r['job_id'][-1]}")
        assert r["service"] == "video-ai" and r["stage"] == "dev" and r["level"] == "INFO"
    assert "job_id" not in records[-1]


def test_configure_logging_is_idempotent() -> None:
    root = logging.getLogger()
    before, level = list(root.handlers), root.level
    first = configure_logging(Settings(), io.StringIO())
    second = configure_logging(Settings.model_validate({"logging": {"level": "DEBUG"}}), io.StringIO())
    try:
        assert first not in root.handlers and second in root.handlers
        assert len(root.handlers) == len(before) + 1 and root.level == logging.DEBUG
    finally:
        root.removeHandler(second)
        root.setLevel(level)


def test_log_context_works_as_the_workers_logger_like() -> None:
    from video_ai.workers import LoggerLike

    keys: LoggerLike = log_context
    keys.append_keys(job_id="j9", tenant="t9")
    try:
        assert log_context.current() == {"job_id": "j9", "tenant": "t9"}
    finally:
        keys.remove_keys(["job_id", "tenant"])
    assert log_context.current() == {}


def test_request_id_middleware_tags_lines_and_echoes_the_header() -> None:
    app = FastAPI()
    seen: list[str | None] = []

    @app.get("/x")
    def route() -> dict[str, str]:
        seen.append(log_context.current().get("request_id"))
        return {}

    client = TestClient(RequestIdMiddleware(app))  # type: ignore[arg-type]
    given = client.get("/x", headers={"x-request-id": "abc-123"})
    assert given.headers["x-request-id"] == "abc-123"
    made = client.get("/x", headers={"x-request-id": "bad id\nwith newline"})
    assert made.headers["x-request-id"] != "bad id\nwith newline" and len(made.headers["x-request-id"]) == 32
    assert seen == ["abc-123", made.headers["x-request-id"]]


def test_lambda_logger_routes_library_lines_as_redacted_json(capsys: pytest.CaptureFixture[str]) -> None:
    logger = lambda_logger(service="video-ai-test")
    # conftest's autouse _library_logging_restored puts the `video_ai` loggers back after the test.
    logger.append_keys(job_id="job-7", tenant="t7")
    logging.getLogger("video_ai.services.x").warning("fetching %s", f"https://e/v?token={SECRETS['token']}")
    logger.remove_keys(["job_id", "tenant"])
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines() if x.startswith("{")]
    assert len(lines) == 1
    assert lines[0]["job_id"] == "job-7" and lines[0]["service"] == "video-ai-test"
    assert SECRETS["token"] not in lines[0]["message"]


def test_serve_keeps_each_threads_function_keys_to_itself_in_one_timestamp_format(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # `serve` runs four functions and the API on threads of one process: a line is tagged with its own thread's
    # function, never with the last one any thread injected; its timestamps are the root handler's format.
    import re

    logger = lambda_logger(service="video-ai-test-threads", stream=None, keys_per_thread=True)
    root_stream = io.StringIO()
    ingest_done = threading.Event()

    def ingest() -> None:
        logger.append_keys(function_name="video-ai-dev-ingest", cold_start=True)
        logging.getLogger("video_ai.workers").info("upload queued")
        ingest_done.set()

    thread = threading.Thread(target=ingest)
    thread.start()
    thread.join(10)
    assert ingest_done.is_set()
    logging.getLogger("video_ai.services.submit_job").info("job queued from the API thread")
    with _logging_to(Settings()) as (stream, _):
        coloured = "Started server process [\x1b[36m%d\x1b[0m]"
        logging.getLogger("uvicorn.error").info("Started server process [%d]", 7,
                                                extra={"color_message": coloured})
        root_stream.write(stream.getvalue())
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines() if x.startswith("{")]
    by_message = {line["message"]: line for line in lines}
    assert by_message["upload queued"]["function_name"] == "video-ai-dev-ingest"
    api_line = by_message["job queued from the API thread"]
    assert "function_name" not in api_line and "cold_start" not in api_line
    assert api_line["service"] == "video-ai-test-threads"
    uvicorn_line = json.loads(root_stream.getvalue().splitlines()[-1])
    assert "color_message" not in uvicorn_line and "\x1b" not in root_stream.getvalue()
    rfc3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00$")
    assert all(rfc3339.match(line["timestamp"]) for line in [*lines, uvicorn_line]), lines


# ------------------------------------------------------------------------------------------------ tracing


class _Subsegment:
    def __init__(self) -> None:
        self.annotations: dict[str, str] = {}

    def put_annotation(self, key: str, value: str) -> None:
        self.annotations[key] = value


class _Provider:
    def __init__(self) -> None:
        self.opened: list[tuple[str, dict[str, str]]] = []

    @contextmanager
    def in_subsegment(self, name: str) -> Iterator[_Subsegment]:
        sub = _Subsegment()
        yield sub
        self.opened.append((name, sub.annotations))


class _Tracer:
    def __init__(self) -> None:
        self.provider = _Provider()


def test_xray_tracing_opens_one_subsegment_per_stage(tmp_path: Path) -> None:
    tracer = _Tracer()
    deps = AnalyzeDeps(jobs=InMemoryJobRepository(), fetcher=FakeFetcher(), frames=FakeFrameSource(n_frames=6),
                       embedder=FakeEmbedder(), index=FakeIndex(), notifier=RecordingNotifier(),
                       workdir=tmp_path, tracing=XRayTracing(tracer), batch_size=3)  # type: ignore[arg-type]
    deps.jobs.create(Job(job_id="job-1", tenant="t", source=Source(url="https://example.com/v.mp4")))
    analyze_video("job-1", deps)
    names = [name for name, _ in tracer.provider.opened]
    assert names[0] == "## fetch" and names[-1] == "## notify"
    assert names.count("## embed") == 2 and {"## index"} <= set(names)
    assert all(ann == {"stage": name.removeprefix("## ")} for name, ann in tracer.provider.opened)


def test_xray_tracing_is_a_no_op_outside_lambda() -> None:
    with XRayTracing().span("decode") as sub:
        sub.put_annotation("k", "v")


# ------------------------------------------------------------------------------------------------ config files

OBS = ROOT / "observability"


def _dashboard_exprs() -> list[str]:
    dashboard = json.loads((OBS / "grafana" / "dashboards" / "video-ai.json").read_text(encoding="utf-8"))
    return [t["expr"] for p in dashboard["panels"] for t in p["targets"]]


def _exported_names() -> set[str]:
    registry = CollectorRegistry()
    PrometheusMetrics(registry)
    return {s.name for family in registry.collect() for s in family.samples}


def test_dashboard_covers_the_required_views_over_existing_series() -> None:
    import re

    import yaml

    dashboard = json.loads((OBS / "grafana" / "dashboards" / "video-ai.json").read_text(encoding="utf-8"))
    titles = " | ".join(p["title"].lower() for p in dashboard["panels"])
    for topic in ("throughput", "error code", "p50 / p95", "realtime factor", "callback", "queue wait"):
        assert topic in titles, topic
    datasource = yaml.safe_load((OBS / "grafana" / "provisioning" / "datasources" / "prometheus.yml").read_text())
    uid = datasource["datasources"][0]["uid"]
    assert all(t["datasource"]["uid"] == uid for p in dashboard["panels"] for t in p["targets"])
    exported = _exported_names()
    used = {name for expr in _dashboard_exprs() for name in re.findall(r"\bvideo_ai_[a-z_]+", expr)}
    assert used and used <= exported, used - exported
    provider = yaml.safe_load((OBS / "grafana" / "provisioning" / "dashboards" / "video-ai.yml").read_text())
    assert provider["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards"


def _promtool_or_skip() -> str:
    import shutil

    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not installed: run scripts/promtool-check.sh --install (CI does, as root)")
    return promtool


def test_dashboard_queries_are_valid_promql(tmp_path: Path) -> None:
    import subprocess

    import yaml

    promtool = _promtool_or_skip()
    rules = [{"record": f"video_ai:dashboard_query_{i}",
              "expr": e.replace("$__rate_interval", "5m").replace("$__range", "1h")}
             for i, e in enumerate(_dashboard_exprs())]
    path = tmp_path / "rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_prometheus_config_scrapes_serve_with_a_bearer_key_file(tmp_path: Path) -> None:
    import subprocess

    import yaml

    config = yaml.safe_load((OBS / "prometheus.yml").read_text(encoding="utf-8"))
    (job,) = config["scrape_configs"]
    assert job["metrics_path"] == "/metrics" and job["authorization"]["type"] == "Bearer"
    assert "credentials" not in job["authorization"]  # the key lives in a file, not in the config
    assert job["static_configs"][0]["targets"] == ["serve:8000"]
    promtool = _promtool_or_skip()
    key = tmp_path / "api_key"
    key.write_text("k\n")
    job["authorization"]["credentials_file"] = str(key)
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    result = subprocess.run([promtool, "check", "config", str(path)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
