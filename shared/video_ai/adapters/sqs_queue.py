"""JobQueue on a standard SQS queue: one JSON message per job (at-least-once; consumers are idempotent)."""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel

from video_ai.adapters.aws import AwsClients, transient_errors
from video_ai.domain.errors import InvalidRequest

MAX_MESSAGE_BYTES = 256 * 1024


def _json_default(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def encode_message(message: dict[str, Any]) -> str:
    body = json.dumps(message, separators=(",", ":"), ensure_ascii=False, default=_json_default)
    if len(body.encode()) > MAX_MESSAGE_BYTES:
        raise InvalidRequest(f"queue message is over {MAX_MESSAGE_BYTES} bytes")
    return body


class SqsJobQueue:
    """Sends job messages; string values of `attribute_keys` in the message are copied to message attributes."""

    def __init__(self, queue_url: str, clients: AwsClients, attribute_keys: tuple[str, ...] = ("tenant",)) -> None:
        self.queue_url = queue_url
        self._clients = clients
        self._attribute_keys = attribute_keys

    def send(self, message: dict[str, Any]) -> None:
        body = encode_message(message)
        attributes = {
            key: {"DataType": "String", "StringValue": value}
            for key in self._attribute_keys
            if isinstance(value := message.get(key), str) and value
        }
        with transient_errors("SQS SendMessage"):
            if attributes:
                self._clients.sqs.send_message(
                    QueueUrl=self.queue_url, MessageBody=body, MessageAttributes=attributes  # type: ignore[arg-type]
                )
            else:
                self._clients.sqs.send_message(QueueUrl=self.queue_url, MessageBody=body)
