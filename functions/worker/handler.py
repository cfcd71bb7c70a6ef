"""Worker function: jobs-queue SQS batch -> analyze_video, with partial batch failures."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Metrics, Tracer
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from mangum import Mangum

from bootstrap import build_runtime
from video_ai.api.app import create_app
from video_ai.observability import lambda_logger
from video_ai.services.analyze_video import analyze_video
from video_ai.workers import job_record_context

logger = lambda_logger()
tracer = Tracer()
metrics = Metrics()
runtime = build_runtime()


@tracer.capture_method
def record_handler(record: SQSRecord) -> None:
    with job_record_context(record, runtime, logger) as (message, final_attempt):
        analyze_video(message.job_id, runtime.analyze_deps(), final_attempt=final_attempt, segment=message.segment)


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: Any) -> PartialItemFailureResponse:
    # A processor per invocation: it keeps the batch's outcomes on itself, and `serve` runs several invocations of
    # this module at once (one per worker poller), where a shared one mixed up their failures.
    processor = BatchProcessor(event_type=EventType.SQS)
    return process_partial_response(event=event, record_handler=record_handler, processor=processor, context=context)


# SearchFunction runs this image with CMD handler.http_handler: the API app for the routes that need the model or
# Qdrant (search, frames, delete), sharing this container's composition root.
http = Mangum(create_app(runtime.api_context(), prometheus=False), lifespan="off", api_gateway_base_path="/")


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
@tracer.capture_lambda_handler
@metrics.log_metrics
def http_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    response: dict[str, Any] = http(event, context)
    return response
