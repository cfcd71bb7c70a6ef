"""`serve`'s durable state on a real moto server: what moto holds comes back after its memory is wiped.

moto's reset (`POST /moto-api/reset`) stands in for the process dying: every backend is emptied, as in a fresh
`serve`, and the resources are created again before the restore, as `serve` does at start.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from moto.core.models import DEFAULT_ACCOUNT_ID
from moto.server import ThreadedMotoServer

from tests.conftest import ROOT
from video_ai.adapters.aws import AwsClients
from video_ai.local.durable import INTERRUPTED_LIMIT, DurableState, Restored
from video_ai.local.resources import LocalResources, create_resources

REGION = "us-east-1"


@pytest.fixture()
def moto(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    url = f"http://{host}:{port}"
    yield url
    httpx.post(f"{url}/moto-api/reset")
    server.stop()


def _crash(url: str, clients: AwsClients, state: DurableState, directory: Path) -> tuple[DurableState, Restored]:
    state.close()
    httpx.post(f"{url}/moto-api/reset").raise_for_status()
    fresh = DurableState(directory, DEFAULT_ACCOUNT_ID, REGION)
    fresh.install()
    create_resources(clients, ROOT / "template.yaml", "test")
    return fresh, fresh.restore()


def _crash_and_restart(url: str, clients: AwsClients, state: DurableState, directory: Path) -> DurableState:
    return _crash(url, clients, state, directory)[0]


def _setup(url: str, tmp_path: Path) -> tuple[AwsClients, LocalResources, DurableState]:
    state = DurableState(tmp_path, DEFAULT_ACCOUNT_ID, REGION)
    state.install()
    clients = AwsClients(REGION, endpoint_url=url)
    return clients, create_resources(clients, ROOT / "template.yaml", "test"), state


def test_items_messages_and_objects_come_back_as_they_were(moto: str, tmp_path: Path) -> None:
    clients, res, state = _setup(moto, tmp_path)
    try:
        ddb, sqs, s3 = clients.dynamodb, clients.sqs, clients.s3
        ddb.put_item(TableName=res.table_name, Item={"job_id": {"S": "j1"}, "status": {"S": "queued"}})
        ddb.update_item(TableName=res.table_name, Key={"job_id": {"S": "j1"}},
                        UpdateExpression="SET #s = :s, segment_0 = :b ADD segments_done :one",
                        ExpressionAttributeNames={"#s": "status"},
                        ExpressionAttributeValues={":s": {"S": "processing"}, ":b": {"B": b"\x00\xffzip"},
                                                   ":one": {"N": "1"}})
        ddb.put_item(TableName=res.table_name, Item={"job_id": {"S": "gone"}})
        ddb.delete_item(TableName=res.table_name, Key={"job_id": {"S": "gone"}})
        sqs.send_message(QueueUrl=res.jobs_queue_url, MessageBody='{"job_id":"j1"}',
                         MessageAttributes={"tenant": {"DataType": "String", "StringValue": "acme"}})
        sqs.send_message(QueueUrl=res.jobs_queue_url, MessageBody='{"job_id":"done"}')
        # One message in flight (received, not deleted), one finished (deleted).
        received = sqs.receive_message(QueueUrl=res.jobs_queue_url, MaxNumberOfMessages=10)["Messages"]
        done = next(m for m in received if "done" in m["Body"])
        sqs.delete_message(QueueUrl=res.jobs_queue_url, ReceiptHandle=done["ReceiptHandle"])
        s3.put_object(Bucket=res.uploads_bucket, Key="plain.bin", Body=b"x" * 100)
        part = b"p" * (5 * 1024 * 1024)
        upload = s3.create_multipart_upload(Bucket=res.uploads_bucket, Key="multi.bin")
        etags = [s3.upload_part(Bucket=res.uploads_bucket, Key="multi.bin", UploadId=upload["UploadId"],
                                PartNumber=n, Body=part)["ETag"] for n in (1, 2)]
        s3.complete_multipart_upload(Bucket=res.uploads_bucket, Key="multi.bin", UploadId=upload["UploadId"],
                                     MultipartUpload={"Parts": [{"PartNumber": n, "ETag": e}
                                                                for n, e in zip((1, 2), etags, strict=True)]})
        s3.put_object(Bucket=res.uploads_bucket, Key="deleted.bin", Body=b"d")
        s3.delete_object(Bucket=res.uploads_bucket, Key="deleted.bin")
        multi_etag = s3.head_object(Bucket=res.uploads_bucket, Key="multi.bin")["ETag"]
        before_item = ddb.get_item(TableName=res.table_name, Key={"job_id": {"S": "j1"}})["Item"]

        state = _crash_and_restart(moto, clients, state, tmp_path)

        assert ddb.get_item(TableName=res.table_name, Key={"job_id": {"S": "j1"}})["Item"] == before_item
        assert "Item" not in ddb.get_item(TableName=res.table_name, Key={"job_id": {"S": "gone"}})
        # The in-flight message is visible again at once, with its attributes; the deleted one stays deleted.
        messages = sqs.receive_message(QueueUrl=res.jobs_queue_url, MaxNumberOfMessages=10,
                                       MessageAttributeNames=["All"])["Messages"]
        assert [json.loads(m["Body"]) for m in messages] == [{"job_id": "j1"}]
        assert messages[0]["MessageAttributes"]["tenant"]["StringValue"] == "acme"
        assert s3.get_object(Bucket=res.uploads_bucket, Key="plain.bin")["Body"].read() == b"x" * 100
        head = s3.head_object(Bucket=res.uploads_bucket, Key="multi.bin")
        assert head["ETag"] == multi_etag and head["ContentLength"] == 2 * len(part)  # ranged reads pin this ETag
        assert "deleted.bin" not in {o["Key"] for o in s3.list_objects_v2(Bucket=res.uploads_bucket)["Contents"]}
        # No upload event was replayed for the restored objects: only what was queued before comes back.
        uploads = sqs.receive_message(QueueUrl=res.uploads_queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0)
        assert [m["Body"] for m in uploads.get("Messages", []) if "Records" in json.loads(m["Body"])] == []

        # Restored state is recorded afresh: a second crash brings it back again, and a delete now sticks.
        sqs.delete_message(QueueUrl=res.jobs_queue_url, ReceiptHandle=messages[0]["ReceiptHandle"])
        state = _crash_and_restart(moto, clients, state, tmp_path)
        assert sqs.receive_message(QueueUrl=res.jobs_queue_url, WaitTimeSeconds=0).get("Messages", []) == []
        assert ddb.get_item(TableName=res.table_name, Key={"job_id": {"S": "j1"}})["Item"] == before_item
    finally:
        state.close()


def test_a_message_redriven_to_the_dlq_comes_back_in_the_dlq_only(moto: str, tmp_path: Path) -> None:
    clients, res, state = _setup(moto, tmp_path)
    try:
        sqs = clients.sqs
        sqs.set_queue_attributes(QueueUrl=res.jobs_queue_url, Attributes={"VisibilityTimeout": "0"})
        sqs.send_message(QueueUrl=res.jobs_queue_url, MessageBody="poison")
        for _ in range(6):  # past the template's maxReceiveCount
            sqs.receive_message(QueueUrl=res.jobs_queue_url, WaitTimeSeconds=0)
        state = _crash_and_restart(moto, clients, state, tmp_path)
        assert sqs.receive_message(QueueUrl=res.jobs_queue_url, WaitTimeSeconds=0).get("Messages", []) == []
        dlq = sqs.receive_message(QueueUrl=res.jobs_dlq_url, WaitTimeSeconds=0)["Messages"]
        assert [m["Body"] for m in dlq] == ["poison"]
    finally:
        state.close()


def test_objects_keep_their_content_type_and_metadata(moto: str, tmp_path: Path) -> None:
    clients, res, state = _setup(moto, tmp_path)
    try:
        s3, bucket = clients.s3, res.uploads_bucket
        s3.put_object(Bucket=bucket, Key="put.mp4", Body=b"v" * 10, ContentType="video/mp4",
                      Metadata={"origin": "camera 1"}, CacheControl="no-cache")
        s3.copy_object(Bucket=bucket, Key="copy.webm", CopySource={"Bucket": bucket, "Key": "put.mp4"},
                       MetadataDirective="REPLACE", ContentType="video/webm", Metadata={"copied": "yes"})
        # The page uploads by presigned POST, the Content-Type a form field.
        post = s3.generate_presigned_post(bucket, "posted.mov", Fields={"Content-Type": "video/quicktime"},
                                          Conditions=[{"Content-Type": "video/quicktime"}])
        httpx.post(post["url"], data=post["fields"], files={"file": ("posted.mov", b"m" * 10)}).raise_for_status()
        before = {key: s3.head_object(Bucket=bucket, Key=key) for key in ("put.mp4", "copy.webm", "posted.mov")}
        assert before["posted.mov"]["ContentType"] == "video/quicktime"

        state = _crash_and_restart(moto, clients, state, tmp_path)

        for key, head in before.items():
            after = s3.head_object(Bucket=bucket, Key=key)
            assert (after["ContentType"], after["Metadata"], after["ETag"]) == (
                head["ContentType"], head["Metadata"], head["ETag"]), key
        assert s3.head_object(Bucket=bucket, Key="put.mp4")["CacheControl"] == "no-cache"
        assert s3.get_object(Bucket=bucket, Key="copy.webm")["ContentType"] == "video/webm"
    finally:
        state.close()


def test_messages_keep_their_ids_and_receive_counts_but_a_crash_does_not_count(moto: str, tmp_path: Path) -> None:
    clients, res, state = _setup(moto, tmp_path)
    try:
        sqs, url = clients.sqs, res.jobs_queue_url

        def receive() -> dict[str, tuple[int, str, str]]:
            got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=60,
                                      AttributeNames=["ApproximateReceiveCount"], WaitTimeSeconds=0)
            return {m["Body"]: (int(m["Attributes"]["ApproximateReceiveCount"]), m["MessageId"], m["ReceiptHandle"])
                    for m in got.get("Messages", [])}

        def hand_back(receipt: str) -> None:  # what a failed attempt does (the poller's retry visibility)
            sqs.change_message_visibility(QueueUrl=url, ReceiptHandle=receipt, VisibilityTimeout=0)

        ids = {body: sqs.send_message(QueueUrl=url, MessageBody=body)["MessageId"] for body in ("failed", "running")}
        first = receive()
        hand_back(first["failed"][2])  # its attempt failed: that receive counts
        # "running" is in flight when the process dies: its job did not fail, `serve` stopped under it.

        state = _crash_and_restart(moto, clients, state, tmp_path)

        again = receive()
        assert {body: count for body, (count, _, _) in again.items()} == {"failed": 2, "running": 1}
        assert {body: message_id for body, (_, message_id, _) in again.items()} == ids
        # The counts drive the redrive as before the crash: "failed" has one attempt left (the worker's last), then
        # it goes to the DLQ instead of starting over.
        hand_back(again["failed"][2])
        last = receive()
        assert {body: count for body, (count, _, _) in last.items()} == {"failed": 3}
        hand_back(last["failed"][2])
        assert receive() == {}
        dlq = sqs.receive_message(QueueUrl=res.jobs_dlq_url, WaitTimeSeconds=0)["Messages"]
        assert [m["Body"] for m in dlq] == ["failed"]
    finally:
        state.close()


def test_a_message_in_flight_at_every_one_of_several_crashes_is_held_then_dead_lettered(moto: str,
                                                                                        tmp_path: Path) -> None:
    """What a job that crashes `serve` itself looks like from here: in flight at each crash, in a row."""
    clients, res, state = _setup(moto, tmp_path)
    try:
        sqs, url = clients.sqs, res.jobs_queue_url
        sqs.send_message(QueueUrl=url, MessageBody="poison")
        sqs.send_message(QueueUrl=url, MessageBody="bystander")  # queued at every crash, never in flight
        restored = Restored(items=0, messages=0, objects=0, seconds=0.0)
        for crash in range(INTERRUPTED_LIMIT):
            assert restored.held == (), crash
            taken = sqs.receive_message(QueueUrl=url, VisibilityTimeout=60, WaitTimeSeconds=0)["Messages"]
            assert [m["Body"] for m in taken] == ["poison"]  # the oldest first, as restored
            state, restored = _crash(moto, clients, state, tmp_path)
        assert [(m.body, m.interrupted) for m in restored.held] == [("poison", INTERRUPTED_LIMIT)]
        state.dead_letter(restored.held[0])
        visible = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0, VisibilityTimeout=0)
        assert [m["Body"] for m in visible["Messages"]] == ["bystander"]
        state, restored = _crash(moto, clients, state, tmp_path)  # it stays in the DLQ, and only there
        assert restored.held == ()
        dlq = sqs.receive_message(QueueUrl=res.jobs_dlq_url, WaitTimeSeconds=0)["Messages"]
        assert [m["Body"] for m in dlq] == ["poison"]
        assert [m["Body"] for m in sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10,
                                                       WaitTimeSeconds=0)["Messages"]] == ["bystander"]
    finally:
        state.close()


def test_two_pollers_never_take_the_same_message(moto: str, tmp_path: Path) -> None:
    """moto checks visibility, then marks the receive; a receive waiting to be recorded (another change holds the
    state's lock) must not let a second poller take the same message meanwhile."""
    clients, res, state = _setup(moto, tmp_path)
    try:
        url = res.jobs_queue_url
        clients.sqs.send_message(QueueUrl=url, MessageBody="one")
        pollers = [AwsClients(REGION, endpoint_url=moto).sqs for _ in range(2)]
        taken: list[str] = []

        def poll(sqs: Any) -> None:
            got = sqs.receive_message(QueueUrl=url, WaitTimeSeconds=1, VisibilityTimeout=60)
            taken.extend(m["Body"] for m in got.get("Messages", []))

        threads = [threading.Thread(target=poll, args=(sqs,)) for sqs in pollers]
        with state._lock:  # a slow commit elsewhere
            for thread in threads:
                thread.start()
            time.sleep(0.5)  # both receives are inside moto by now
        for thread in threads:
            thread.join(10)
        assert taken == ["one"]
    finally:
        state.close()


def test_the_crashes_a_message_was_in_flight_at_count_in_a_row_only(moto: str, tmp_path: Path) -> None:
    clients, res, state = _setup(moto, tmp_path)
    try:
        sqs, url = clients.sqs, res.jobs_queue_url
        sqs.send_message(QueueUrl=url, MessageBody="unlucky")

        def crash_with_it(in_flight: bool) -> Restored:
            nonlocal state
            got = sqs.receive_message(QueueUrl=url, VisibilityTimeout=60, WaitTimeSeconds=0)["Messages"]
            if not in_flight:  # its attempt failed and handed it back before the crash
                sqs.change_message_visibility(QueueUrl=url, ReceiptHandle=got[0]["ReceiptHandle"],
                                              VisibilityTimeout=0)
            state, restored = _crash(moto, clients, state, tmp_path)
            return restored

        for _ in range(INTERRUPTED_LIMIT - 1):
            assert crash_with_it(in_flight=True).held == ()
        assert crash_with_it(in_flight=False).held == ()  # the run of crashes ends here
        for _ in range(INTERRUPTED_LIMIT - 1):
            assert crash_with_it(in_flight=True).held == ()
    finally:
        state.close()
