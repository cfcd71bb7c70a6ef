"""Callback function: SNS "job finished" -> signed POST to the job's callback_url (retries, then on-failure DLQ)."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Metrics, Tracer
from aws_lambda_powertools.utilities.data_classes import SNSEvent, event_source

from bootstrap import build_runtime
from video_ai.observability import lambda_logger
from video_ai.services.deliver_callback import budget_from_remaining_ms
from video_ai.workers import callback_message

logger = lambda_logger()
tracer = Tracer()
metrics = Metrics()
runtime = build_runtime()


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
@event_source(data_class=SNSEvent)
def handler(event: SNSEvent, context: Any) -> None:
    # SNS invokes asynchronously with one record; a raise makes Lambda retry, then the on-failure destination.
    for record in event.records:
        callback_message(record.sns.message, runtime, budget_from_remaining_ms(context.get_remaining_time_in_millis()))
