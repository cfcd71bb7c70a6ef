"""Stand-ins for Lambda's event source mappings: SQS -> function (partial batch failures) and SNS -> function (async).

Each poller hands the real handler the event shape Lambda would send, from messages received from moto's SQS:
- `SqsPoller`: a batch of SQS records; records named in `batchItemFailures` (or the whole batch if the handler
  raises) stay on the queue and come back after a visibility timeout (shortened locally), while the queue's own
  redrive policy moves a message to its DLQ after `maxReceiveCount` receives, as in AWS.
- `SnsAsyncPoller`: SNS delivers to an SQS queue subscribed to the topic; each notification becomes an SNS event
  invoked asynchronously: on error Lambda retries twice, then sends an on-failure record to the destination queue.
"""

from __future__ import annotations

import base64
import json
import logging
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from video_ai.local.functions import LambdaContext
from video_ai.workers import collecting_busy

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

logger = logging.getLogger(__name__)

Handler = Callable[[dict[str, Any], Any], Any]
ContextFactory = Callable[[], LambdaContext]

# What Lambda puts in a record's `attributes` (standard and FIFO queues).
LAMBDA_SQS_ATTRIBUTES = (
    "ApproximateReceiveCount", "SentTimestamp", "SenderId", "ApproximateFirstReceiveTimestamp",
    "SequenceNumber", "MessageGroupId", "MessageDeduplicationId",
)


def queue_arn(sqs: SQSClient, queue_url: str) -> str:
    attrs = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]
    return attrs["QueueArn"]


def sqs_lambda_record(message: dict[str, Any], source_arn: str, region: str) -> dict[str, Any]:
    """One SQS message as Lambda's SQS event record (camelCase keys, message attributes in Lambda's form)."""
    system = message.get("Attributes", {})
    attributes = {name: system[name] for name in LAMBDA_SQS_ATTRIBUTES if name in system}
    message_attributes: dict[str, Any] = {}
    for name, value in message.get("MessageAttributes", {}).items():
        binary = value.get("BinaryValue")
        message_attributes[name] = {
            "stringValue": value.get("StringValue"),
            "binaryValue": base64.b64encode(binary).decode() if isinstance(binary, bytes) else binary,
            "stringListValues": list(value.get("StringListValues", [])),
            "binaryListValues": list(value.get("BinaryListValues", [])),
            "dataType": value.get("DataType", "String"),
        }
    return {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": message["Body"],
        "attributes": attributes,
        "messageAttributes": message_attributes,
        "md5OfBody": message.get("MD5OfBody", ""),
        "eventSource": "aws:sqs",
        "eventSourceARN": source_arn,
        "awsRegion": region,
    }


def sns_lambda_event(envelope: dict[str, Any], subscription_arn: str) -> dict[str, Any]:
    """An SNS notification (the JSON SNS delivers to an SQS subscriber) as Lambda's SNS event."""
    return {
        "Records": [
            {
                "EventVersion": "1.0",
                "EventSubscriptionArn": subscription_arn,
                "EventSource": "aws:sns",
                "Sns": {
                    "SignatureVersion": envelope.get("SignatureVersion", "1"),
                    "Timestamp": envelope.get("Timestamp", datetime.now(UTC).isoformat()),
                    "Signature": envelope.get("Signature", ""),
                    "SigningCertUrl": envelope.get("SigningCertURL", envelope.get("SigningCertUrl", "")),
                    "MessageId": envelope["MessageId"],
                    "Message": envelope["Message"],
                    "MessageAttributes": envelope.get("MessageAttributes", {}),
                    "Type": envelope.get("Type", "Notification"),
                    "UnsubscribeUrl": envelope.get("UnsubscribeURL", envelope.get("UnsubscribeUrl", "")),
                    "TopicArn": envelope["TopicArn"],
                    "Subject": envelope.get("Subject"),
                },
            }
        ]
    }


def failed_ids(result: Any, message_ids: Sequence[str]) -> set[str]:
    """The records Lambda would leave on the queue for this handler result (partial batch response)."""
    if not isinstance(result, dict) or "batchItemFailures" not in result:
        return set()
    failures = result["batchItemFailures"] or []
    ids = {str(f.get("itemIdentifier", "")) for f in failures if isinstance(f, dict)}
    # Lambda treats an empty or unknown identifier as a failure of the whole batch.
    if any(i not in message_ids for i in ids):
        return set(message_ids)
    return ids


class _PollerThread:
    """A named thread that loops until stopped; errors from SQS back off instead of spinning."""

    def __init__(self, name: str, stop: threading.Event) -> None:
        self.name = name
        self._stop = stop
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def join(self, timeout: float) -> bool:
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def _run(self) -> None:
        backoff = 0.5
        while not self._stop.is_set():
            try:
                self.poll_once()
                backoff = 0.5
            except Exception:
                if self._stop.is_set():
                    break
                logger.exception("%s: polling failed; retrying in %.1f s", self.name, backoff)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 10.0)

    def poll_once(self) -> None:
        raise NotImplementedError


class SqsPoller(_PollerThread):
    """SQS queue -> function, `BatchSize` records per invocation, `ReportBatchItemFailures` honoured."""

    def __init__(
        self,
        name: str,
        sqs: SQSClient,
        queue_url: str,
        handler: Handler,
        context_factory: ContextFactory,
        stop: threading.Event,
        *,
        batch_size: int = 1,
        wait_s: int = 1,
        retry_visibility_s: int = 2,
        region: str = "us-east-1",
    ) -> None:
        super().__init__(name, stop)
        self.sqs = sqs
        self.queue_url = queue_url
        self.source_arn = queue_arn(sqs, queue_url)
        self.handler = handler
        self.context_factory = context_factory
        self.batch_size = batch_size
        self.wait_s = wait_s
        self.retry_visibility_s = retry_visibility_s
        self.region = region

    def poll_once(self) -> None:
        # A short long-poll keeps shutdown prompt; Lambda's own poller long-polls for 20 s.
        response = self.sqs.receive_message(
            QueueUrl=self.queue_url, MaxNumberOfMessages=self.batch_size, WaitTimeSeconds=self.wait_s,
            AttributeNames=["All"], MessageAttributeNames=["All"],
        )
        messages = response.get("Messages", [])
        if messages:
            self.dispatch([dict(m) for m in messages])

    def dispatch(self, messages: list[dict[str, Any]]) -> set[str]:
        """Invoke the handler on one batch; delete what succeeded; return the ids left for redelivery."""
        event = {"Records": [sqs_lambda_record(m, self.source_arn, self.region) for m in messages]}
        ids = [m["MessageId"] for m in messages]
        busy: set[str] = set()
        try:
            with collecting_busy() as busy:
                failed = failed_ids(self.handler(event, self.context_factory()), ids)
        except Exception as err:
            if type(err).__name__ == "BatchProcessingError":
                # powertools raises this when every record failed; it has already logged each record's error.
                logger.error("%s: every record of the batch failed", self.name)
            else:
                logger.exception("%s: invocation failed; the whole batch will be retried", self.name)
            failed = set(ids)
        done = [m for m in messages if m["MessageId"] not in failed]
        if done:
            self.sqs.delete_message_batch(
                QueueUrl=self.queue_url,
                Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(done)],
            )
        for message in messages:
            if message["MessageId"] in failed and message["MessageId"] not in busy:
                # The queue's own timeout (6x the function timeout) is right for AWS, far too slow at a desk; a record
                # whose job another run holds keeps it, as on AWS (workers.collecting_busy says why).
                self.sqs.change_message_visibility(QueueUrl=self.queue_url, ReceiptHandle=message["ReceiptHandle"],
                                                   VisibilityTimeout=self.retry_visibility_s)
        if failed - busy:
            logger.info("%s: %d of %d records failed; they return after %d s", self.name, len(failed - busy),
                        len(messages), self.retry_visibility_s)
        if failed & busy:
            logger.info("%s: %d record(s) found their job held by another run; they return after the queue's "
                        "visibility timeout", self.name, len(failed & busy))
        return failed


class SnsAsyncPoller(_PollerThread):
    """SNS topic -> function as an asynchronous invocation: 2 retries, then an on-failure record to a queue."""

    def __init__(
        self,
        name: str,
        sqs: SQSClient,
        subscription_queue_url: str,
        subscription_arn: str,
        handler: Handler,
        context_factory: ContextFactory,
        stop: threading.Event,
        *,
        on_failure_queue_url: str | None,
        function_arn: str,
        retry_delays_s: Sequence[float] = (1.0, 2.0),
        wait_s: int = 1,
    ) -> None:
        super().__init__(name, stop)
        self.sqs = sqs
        self.queue_url = subscription_queue_url
        self.subscription_arn = subscription_arn
        self.handler = handler
        self.context_factory = context_factory
        self.on_failure_queue_url = on_failure_queue_url
        self.function_arn = function_arn
        self.retry_delays_s = tuple(retry_delays_s)
        self.wait_s = wait_s
        self._inflight: set[threading.Thread] = set()
        self._inflight_lock = threading.Lock()

    def poll_once(self) -> None:
        response = self.sqs.receive_message(QueueUrl=self.queue_url, MaxNumberOfMessages=10,
                                            WaitTimeSeconds=self.wait_s)
        for message in response.get("Messages", []):
            try:
                envelope = json.loads(message["Body"])
                event = sns_lambda_event(envelope, self.subscription_arn)
            except (ValueError, KeyError, TypeError):
                logger.error("%s: not an SNS notification; dropped", self.name)
                event = None
            if event is None:
                self.sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=message["ReceiptHandle"])
            else:
                # Lambda's async queue owns the event from here; locally the subscription's message stands for that
                # queue until the invocation ends (delivered or sent to the on-failure destination), so `serve`'s
                # durable state redelivers it after a crash.
                self.invoke_async(event, message["ReceiptHandle"])

    def invoke_async(self, event: dict[str, Any], receipt_handle: str | None = None) -> threading.Thread:
        thread = threading.Thread(target=self._attempts, args=(event, receipt_handle), name=f"{self.name}-invoke",
                                  daemon=True)
        with self._inflight_lock:
            self._inflight.add(thread)
        thread.start()
        return thread

    def _attempts(self, event: dict[str, Any], receipt_handle: str | None = None) -> None:
        request_id = str(uuid.uuid4())
        error: BaseException | None = None
        attempts = 0
        try:
            for delay in (0.0, *self.retry_delays_s):
                if delay and self._stop.wait(delay):
                    # The message stays: the next start delivers the event again.
                    logger.warning("%s: shutting down; event %s abandoned after %d attempts", self.name,
                                   request_id, attempts)
                    return
                attempts += 1
                try:
                    self.handler(event, self.context_factory())
                    break
                except Exception as err:
                    error = err
                    logger.warning("%s: attempt %d failed: %s: %s", self.name, attempts, type(err).__name__, err)
            else:
                self._send_to_destination(event, request_id, attempts, error)
            if receipt_handle is not None:
                self.sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=receipt_handle)
        finally:
            with self._inflight_lock:
                self._inflight.discard(threading.current_thread())

    def _send_to_destination(self, event: dict[str, Any], request_id: str, attempts: int,
                             error: BaseException | None) -> None:
        if self.on_failure_queue_url is None:
            logger.error("%s: retries exhausted; no on-failure destination, event dropped", self.name)
            return
        record = {
            "version": "1.0",
            "timestamp": datetime.now(UTC).isoformat(),
            "requestContext": {"requestId": request_id, "functionArn": f"{self.function_arn}:$LATEST",
                               "condition": "RetriesExhausted", "approximateInvokeCount": attempts},
            "requestPayload": event,
            "responseContext": {"statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled"},
            "responsePayload": {"errorMessage": str(error) if error else "",
                                "errorType": type(error).__name__ if error else "Error"},
        }
        self.sqs.send_message(QueueUrl=self.on_failure_queue_url, MessageBody=json.dumps(record))
        logger.error("%s: retries exhausted after %d attempts; event sent to the on-failure queue", self.name,
                     attempts)

    def join(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        ok = super().join(timeout)
        with self._inflight_lock:
            pending = list(self._inflight)
        for thread in pending:
            thread.join(max(0.0, deadline - time.monotonic()))
            ok = ok and not thread.is_alive()
        return ok
