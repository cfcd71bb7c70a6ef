"""Notifier on SNS: one "job finished" envelope per terminal job, with attributes subscribers can filter on."""

from __future__ import annotations

import json
from typing import Any

from video_ai.adapters.aws import AwsClients, transient_errors
from video_ai.domain.errors import InvalidRequest
from video_ai.domain.models import Job, JobStatus

MAX_MESSAGE_BYTES = 256 * 1024
EVENT_TYPES = {JobStatus.SUCCEEDED: "job.succeeded", JobStatus.FAILED: "job.failed"}


def job_finished_envelope(job: Job) -> dict[str, Any]:
    """The callback body (DESIGN §3): `{type, job_id, timestamp, data}`; the timestamp is the job's last change, so
    a re-published message is byte-identical."""
    event_type = EVENT_TYPES.get(job.status)
    if event_type is None:
        raise ValueError(f"job {job.job_id} is {job.status.value}, not finished")
    return {"type": event_type, "job_id": job.job_id, "timestamp": job.updated_at, "data": job.public()}


class SnsNotifier:
    def __init__(self, topic_arn: str, clients: AwsClients) -> None:
        self.topic_arn = topic_arn
        self._clients = clients

    def job_finished(self, job: Job, replay: bool = False) -> None:
        envelope = job_finished_envelope(job)
        if replay:
            # Asks the callback function to deliver again even though the job's callback was delivered already.
            envelope["replay"] = True
        message = json.dumps(envelope, separators=(",", ":"), ensure_ascii=False)
        if len(message.encode()) > MAX_MESSAGE_BYTES:
            raise InvalidRequest(f"job {job.job_id}: finished message is over {MAX_MESSAGE_BYTES} bytes")
        attributes = {"type": {"DataType": "String", "StringValue": envelope["type"]}}
        if job.tenant:
            attributes["tenant"] = {"DataType": "String", "StringValue": job.tenant}
        with transient_errors("SNS Publish"):
            self._clients.sns.publish(
                TopicArn=self.topic_arn,
                Message=message,
                MessageAttributes=attributes,  # type: ignore[arg-type]
            )
