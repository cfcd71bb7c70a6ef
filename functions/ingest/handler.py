"""Ingest function: uploads-queue SQS batch (S3 ObjectCreated notifications) -> submit_job, partial failures.

The same zip serves JobsDeadLetterFunction (`dead_letter_handler`): jobs-DLQ batch -> the jobs end `failed`, and
JobsRequeueFunction (`requeue_handler`, on a schedule): jobs left queued and never sent are sent. Both are light (no
model, no Qdrant), so they live here rather than on the worker's image."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Metrics, Tracer
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from bootstrap import build_runtime
from video_ai.observability import lambda_logger
from video_ai.workers import dead_letter_record, ingest_record, requeue_scheduled

logger = lambda_logger()
tracer = Tracer()
metrics = Metrics()
runtime = build_runtime()


def record_handler(record: SQSRecord) -> None:
    ingest_record(record.body, runtime)


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: Any) -> PartialItemFailureResponse:
    # A processor per invocation, as in the worker: it holds the batch's outcomes, and invocations may overlap.
    processor = BatchProcessor(event_type=EventType.SQS)
    return process_partial_response(event=event, record_handler=record_handler, processor=processor, context=context)


def dead_letter_record_handler(record: SQSRecord) -> None:
    dead_letter_record(record.body, runtime)


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def dead_letter_handler(event: dict[str, Any], context: Any) -> PartialItemFailureResponse:
    # A record that fails (DynamoDB or SNS unavailable) stays on the DLQ and comes back after its visibility timeout.
    processor = BatchProcessor(event_type=EventType.SQS)
    return process_partial_response(event=event, record_handler=dead_letter_record_handler, processor=processor,
                                    context=context)


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def requeue_handler(event: dict[str, Any], context: Any) -> dict[str, int]:
    # An EventBridge schedule: a raise fails the invocation (logged, retried by EventBridge); the next run finds the
    # same jobs anyway.
    return {"sent": requeue_scheduled(runtime)}
