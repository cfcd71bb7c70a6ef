"""EMF from a powertools-decorated handler shaped like functions/worker/handler.py, fed events/sqs_job.json."""

from __future__ import annotations

import copy
import json
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aws_lambda_powertools import Metrics
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from tests.fakes import FakeEmbedder, FakeFetcher, FakeFrameSource, FakeIndex, RecordingNotifier
from video_ai.adapters.local_jobs import InMemoryJobRepository
from video_ai.domain.errors import CorruptMedia
from video_ai.domain.models import Job, Source
from video_ai.observability import CATALOGUE, EmfMetrics, emf_documents, lambda_logger, lambda_metrics
from video_ai.runtime import Runtime
from video_ai.services.analyze_video import AnalyzeDeps, analyze_video
from video_ai.settings import Settings
from video_ai.workers import job_record_context

ROOT = Path(__file__).resolve().parents[2]
N_FRAMES = 5


@dataclass
class _Context:
    function_name: str = "video-ai-dev-WorkerFunction"
    memory_limit_in_mb: int = 3008
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:video-ai-dev-WorkerFunction"
    aws_request_id: str = "5f1d6a0e-1111-2222-3333-444455556666"

    def get_remaining_time_in_millis(self) -> int:
        return 600_000


@pytest.fixture(autouse=True)
def _clean_powertools_store(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """powertools Metrics keeps metrics and default dimensions at class level: start and end each test empty."""
    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", "VideoAI")
    monkeypatch.setenv("POWERTOOLS_SERVICE_NAME", "video-ai")
    monkeypatch.setenv("VIDEO_AI__STAGE", "staging")
    store = Metrics()
    store.clear_metrics()
    store.clear_default_dimensions()
    library = logging.getLogger("video_ai")
    saved = (list(library.handlers), library.propagate, library.level)
    yield
    store.clear_metrics()
    store.clear_default_dimensions()
    # lambda_logger() routes the library loggers to its own handler; give them back to the root logger.
    library.handlers[:], library.propagate = saved[0], saved[1]
    library.setLevel(saved[2])


def _sqs_event(job_id: str, sent_ago_s: float) -> dict[str, Any]:
    event: dict[str, Any] = json.loads((ROOT / "events" / "sqs_job.json").read_text(encoding="utf-8"))
    record = copy.deepcopy(event["Records"][0])
    record["body"] = json.dumps({"job_id": job_id, "tenant": "t1"})
    record["attributes"]["SentTimestamp"] = str(int((time.time() - sent_ago_s) * 1000))
    return {"Records": [record]}


def _worker(tmp_path: Path, *, fail: bool = False) -> tuple[Any, Runtime, InMemoryJobRepository]:
    """A handler built like functions/worker/handler.py: module-scope Logger/Metrics, then the runtime."""
    logger = lambda_logger()
    metrics = Metrics()
    processor = BatchProcessor(event_type=EventType.SQS)
    runtime = Runtime(Settings(), metrics=lambda_metrics())  # what functions/worker/bootstrap.py does
    jobs = InMemoryJobRepository()
    frames = FakeFrameSource(n_frames=N_FRAMES, open_error=CorruptMedia("broken moov") if fail else None)
    deps = AnalyzeDeps(jobs=jobs, fetcher=FakeFetcher(), frames=frames, embedder=FakeEmbedder(), index=FakeIndex(),
                       notifier=RecordingNotifier(), workdir=tmp_path, metrics=runtime.metrics, batch_size=2)

    def record_handler(record: SQSRecord) -> None:
        with job_record_context(record, runtime, logger) as (message, final_attempt):
            analyze_video(message.job_id, deps, final_attempt=final_attempt)

    @logger.inject_lambda_context
    @metrics.log_metrics
    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        return process_partial_response(event=event, record_handler=record_handler, processor=processor,
                                        context=context)

    return handler, runtime, jobs


def _metric_names(doc: dict[str, Any]) -> set[str]:
    return {m["Name"] for d in doc["_aws"]["CloudWatchMetrics"] for m in d["Metrics"]}


def _units(doc: dict[str, Any]) -> dict[str, str]:
    return {m["Name"]: m["Unit"] for d in doc["_aws"]["CloudWatchMetrics"] for m in d["Metrics"]}


def test_worker_invocation_prints_emf_with_the_domain_metrics_and_dimensions(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    handler, runtime, jobs = _worker(tmp_path)
    assert isinstance(runtime.metrics, EmfMetrics)
    jobs.create(Job(job_id="job-emf-1", tenant="t1", source=Source(url="https://example.com/v.mp4")))
    result = handler(_sqs_event("job-emf-1", sent_ago_s=3.0), _Context())
    assert result == {"batchItemFailures": []}

    docs = emf_documents(capsys.readouterr().out)
    assert len(docs) == 1, docs  # everything unlabelled rides in the handler's one flush
    doc = docs[0]
    (directive,) = doc["_aws"]["CloudWatchMetrics"]
    assert directive["Namespace"] == "VideoAI"
    # Exactly {service, stage}: the JobLatency p95 alarm in template.yaml addresses this dimension set.
    assert [sorted(d) for d in directive["Dimensions"]] == [["service", "stage"]]
    assert doc["service"] == "video-ai" and doc["stage"] == "staging"
    assert isinstance(doc["_aws"]["Timestamp"], int)
    assert {"JobsStarted", "JobsSucceeded", "FramesIndexed", "VideoSecondsProcessed", "RealtimeFactor",
            "DecodeTime", "EmbedTime", "IndexTime", "JobLatency", "QueueWait"} <= _metric_names(doc)
    units = _units(doc)
    assert units["JobsSucceeded"] == "Count" and units["JobLatency"] == "Seconds" and units["QueueWait"] == "Seconds"
    assert units["RealtimeFactor"] == "None"
    assert doc["FramesIndexed"] in ([float(N_FRAMES)], float(N_FRAMES))
    queue_wait = doc["QueueWait"][0] if isinstance(doc["QueueWait"], list) else doc["QueueWait"]
    assert 2.5 < queue_wait < 60
    # Nothing unbounded rides along as a dimension or a property.
    assert "job-emf-1" not in json.dumps(doc)


def test_labelled_metrics_get_their_own_emf_document_with_the_label_as_dimension(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    handler, _, jobs = _worker(tmp_path, fail=True)
    jobs.create(Job(job_id="job-emf-2", tenant="t1", source=Source(url="https://example.com/v.mp4")))
    handler(_sqs_event("job-emf-2", sent_ago_s=0.5), _Context())
    docs = emf_documents(capsys.readouterr().out)
    failed = [d for d in docs if "JobsFailed" in _metric_names(d)]
    assert len(failed) == 1
    (directive,) = failed[0]["_aws"]["CloudWatchMetrics"]
    assert [sorted(d) for d in directive["Dimensions"]] == [["error_code", "service", "stage"]]
    assert failed[0]["error_code"] == "corrupt_media" and failed[0]["stage"] == "staging"
    flushed = [d for d in docs if "JobsStarted" in _metric_names(d)]
    assert len(flushed) == 1 and "JobsFailed" not in _metric_names(flushed[0])
    assert "JobsSucceeded" not in _metric_names(flushed[0])


def test_metrics_recorded_before_the_handler_runs_are_flushed_by_it(capsys: pytest.CaptureFixture[str]) -> None:
    """Cold-start work (bootstrap) records into the shared store; the first decorated invocation prints it."""
    emf = EmfMetrics()
    emf.count("config_reloads", result="ok")  # labelled: printed at once
    emf.observe("queue_wait_seconds", 1.25)  # unlabelled: waits for the handler's flush
    handler_metrics = Metrics()

    @handler_metrics.log_metrics
    def handler(event: dict[str, Any], context: Any) -> None:
        emf.count("jobs_accepted")

    handler({}, _Context())
    handler({}, _Context())  # the store was emptied by the first flush; default dimensions survive it
    docs = emf_documents(capsys.readouterr().out)
    assert [_metric_names(d) for d in docs] == [{"ConfigReloads"}, {"QueueWait", "JobsAccepted"}, {"JobsAccepted"}]
    assert all(d["stage"] == "staging" and d["service"] == "video-ai" for d in docs)


def test_emf_flush_without_a_handler(capsys: pytest.CaptureFixture[str]) -> None:
    emf = EmfMetrics(stage="prod", service="video-ai")
    emf.count("jobs_deleted", 2)
    emf.flush()
    (doc,) = emf_documents(capsys.readouterr().out)
    assert doc["JobsDeleted"] in ([2.0], 2.0) and doc["stage"] == "prod"


def test_every_catalogue_metric_is_accepted_by_powertools(capsys: pytest.CaptureFixture[str]) -> None:
    """Units and names pass powertools' EMF validation for the whole catalogue."""
    emf = EmfMetrics()
    for spec in CATALOGUE.values():
        labels = {label: "other" for label in spec.labels}
        if spec.kind == "counter":
            emf.count(spec.name, 1.0, **labels)
        else:
            emf.observe(spec.name, 1.0, **labels)
    emf.flush()
    names = set().union(*(_metric_names(d) for d in emf_documents(capsys.readouterr().out)))
    assert names == {s.emf_name for s in CATALOGUE.values()}
