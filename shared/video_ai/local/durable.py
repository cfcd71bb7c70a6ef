"""`serve`'s durable state: moto keeps everything in memory, so every change it applies is written through to disk.

Three kinds of state matter across a crash, each kept as its latest value in one SQLite file under the data dir
(`<data_dir>/serve/state.sqlite`, WAL, synchronous=FULL) and put back into a fresh moto at the next start:
- DynamoDB items (job records, idempotency keys, segment results): after each put/update/delete, the item's
  state as moto then holds it;
- SQS messages (queued and in flight, the jobs and uploads queues, the callback subscription, the DLQs): a row
  per message from the moment a queue holds it until it is deleted, with its receive count and visibility; a
  redrive to the DLQ moves the row;
- S3 objects (uploads, staged copies): bytes in `<data_dir>/serve/objects/`, with the ETag moto gave them and their
  metadata (Content-Type, Cache-Control, x-amz-meta-*), which the page's player and the downloads rely on.

Why here and not elsewhere: the functions and their adapters talk to moto as they would to AWS, so the durability
lives below that port, inside the moto process, and nothing above it changes. The hooks wrap moto's backend methods
(the one place every path, HTTP or internal such as S3 notifications and SNS fan-out, goes through); each change is
applied and recorded under one lock before moto answers, so a client never sees an acknowledged write that a crash
loses. Restored messages come back under their own ids, visible at once: a job that was being processed runs again
(at-least-once, as on Lambda after a timeout). Its receive count comes back too, less the receive the crash cut short
(the job did not fail; `serve` died under it), so failed attempts still lead to the worker's last attempt and the
DLQ. Crashes are counted apart instead: a message in flight at INTERRUPTED_LIMIT of them in a row (most likely a job
that itself kills `serve`: a decoder crash, the OOM killer) is held back, and `serve` fails its job and dead-letters it.
Snapshotting moto's backends instead would lose whatever changed since the last snapshot; replaying a request log
would replay random receipt handles and upload ids that no longer exist.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS items (tbl TEXT NOT NULL, hash TEXT NOT NULL, rng TEXT NOT NULL, item TEXT NOT NULL,
                                  PRIMARY KEY (tbl, hash, rng));
CREATE TABLE IF NOT EXISTS messages (seq INTEGER PRIMARY KEY AUTOINCREMENT, message_id TEXT NOT NULL UNIQUE,
                                     queue TEXT NOT NULL, body TEXT NOT NULL, attributes TEXT NOT NULL,
                                     receive_count INTEGER NOT NULL DEFAULT 0, visible_at INTEGER NOT NULL DEFAULT 0,
                                     interrupted INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS objects (bucket TEXT NOT NULL, key TEXT NOT NULL, etag TEXT, file TEXT NOT NULL,
                                    metadata TEXT, PRIMARY KEY (bucket, key));
"""
# Columns added since the first release of this file: a data dir written before them gains them, empty.
ADDED_COLUMNS = {
    "messages": {"receive_count": "INTEGER NOT NULL DEFAULT 0", "visible_at": "INTEGER NOT NULL DEFAULT 0",
                 "interrupted": "INTEGER NOT NULL DEFAULT 0"},
    "objects": {"metadata": "TEXT"},
}


BYTES_TAG = "__video_ai_bytes__"


def _dumps(value: Any) -> str:
    """JSON with moto's binary values (bytes, where an update or a map decoded them) kept as tagged base64."""
    def tag(obj: Any) -> Any:
        if isinstance(obj, bytes | bytearray):
            return {BYTES_TAG: base64.b64encode(bytes(obj)).decode()}
        raise TypeError(f"{type(obj).__name__} is not JSON serialisable")
    return json.dumps(value, default=tag)


def _loads(text: str) -> Any:
    return json.loads(text, object_hook=lambda d: base64.b64decode(d[BYTES_TAG]) if set(d) == {BYTES_TAG} else d)


# Crashes of `serve` a message may be in flight at before it is held back from its queue. Above three on purpose: a
# host restarted three times while one job runs is an operator's bad afternoon, not a poison message (and the
# issue's fault test kills `serve` three times during a burst); a job that crashes `serve` itself reaches five within
# a minute of restarts.
INTERRUPTED_LIMIT = 5


@dataclass(frozen=True, slots=True)
class HeldMessage:
    """A message in flight at `interrupted` crashes in a row, kept out of its queue at the restore."""

    message_id: str
    queue: str
    body: str
    interrupted: int


@dataclass(frozen=True, slots=True)
class Restored:
    items: int
    messages: int
    objects: int
    seconds: float
    held: tuple[HeldMessage, ...] = ()


class DurableState:
    """Write-through persistence of moto's DynamoDB items, SQS messages and S3 objects for one account and region."""

    def __init__(self, directory: Path, account_id: str, region: str) -> None:
        self.directory = directory
        self.objects_dir = directory / "objects"
        self.objects_dir.mkdir(parents=True, exist_ok=True)
        self.account_id = account_id
        self.region = region
        self._db = sqlite3.connect(directory / "state.sqlite", check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(SCHEMA)
        for table, columns in ADDED_COLUMNS.items():
            present = {row[1] for row in self._db.execute(f"PRAGMA table_info({table})")}
            for name, definition in columns.items():
                if name not in present:
                    self._db.execute(f"ALTER TABLE {table} ADD COLUMN {name} {definition}")
        self._lock = threading.RLock()
        self._muted = False
        self._originals: list[tuple[type, str, Any]] = []
        self._receive_locks: dict[str, threading.Lock] = {}

    # ------------------------------------------------------------------ backends

    def _dynamodb(self) -> Any:
        from moto.dynamodb.models import dynamodb_backends

        return dynamodb_backends[self.account_id][self.region]

    def _sqs(self) -> Any:
        from moto.sqs.models import sqs_backends

        return sqs_backends[self.account_id][self.region]

    def _s3(self) -> Any:
        from moto.s3.models import s3_backends

        return s3_backends[self.account_id]["aws"]

    # ------------------------------------------------------------------ hooks

    def install(self) -> None:
        """Wrap moto's write paths (process-wide; `uninstall` puts the originals back)."""
        from moto.dynamodb.models import DynamoDBBackend
        from moto.s3.models import FakeKey, S3Backend
        from moto.sqs.models import Message, Queue, SQSBackend

        state = self

        def wrap(cls: type, name: str, make: Callable[[Any], Any]) -> None:
            original = getattr(cls, name)
            self._originals.append((cls, name, original))
            setattr(cls, name, make(original))

        def item_writer(original: Any, key_of: Callable[[Any, str, tuple[Any, ...], dict[str, Any]], Any]) -> Any:
            def hooked(backend: Any, table_name: str, *args: Any, **kwargs: Any) -> Any:
                with state._lock:
                    result = original(backend, table_name, *args, **kwargs)
                    if not state._muted:
                        state._record_item(backend, table_name, key_of(backend, table_name, args, kwargs))
                    return result
            return hooked

        def put_key(backend: Any, table: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
            attrs = args[0] if args else kwargs["item_attrs"]
            t = backend.get_table(table)
            key = {t.hash_key_attr: attrs[t.hash_key_attr]}
            if t.range_key_attr:
                key[t.range_key_attr] = attrs[t.range_key_attr]
            return key

        def key_arg(backend: Any, table: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
            return args[0] if args else kwargs["key"]

        wrap(DynamoDBBackend, "put_item", lambda o: item_writer(o, put_key))
        wrap(DynamoDBBackend, "update_item", lambda o: item_writer(o, key_arg))
        wrap(DynamoDBBackend, "delete_item", lambda o: item_writer(o, key_arg))

        def add_message(original: Any) -> Any:
            def hooked(queue: Any, message: Any) -> None:
                with state._lock:
                    original(queue, message)
                    if not state._muted and any(m is message for m in queue._messages):
                        state._upsert_message(queue.name, message)
            return hooked

        def delete_message(original: Any) -> Any:
            def hooked(queue: Any, receipt_handle: str) -> None:
                with state._lock:
                    ids = [m.id for m in queue._messages if m.had_receipt_handle(receipt_handle)]
                    original(queue, receipt_handle)
                    if not state._muted:
                        state._delete_messages(ids)
            return hooked

        wrap(Queue, "add_message", add_message)
        wrap(Queue, "delete_message", delete_message)

        def mark_received(original: Any) -> Any:
            def hooked(message: Any, *args: Any, **kwargs: Any) -> None:
                with state._lock:
                    original(message, *args, **kwargs)
                    if not state._muted:
                        state._record_receive(message)
            return hooked

        def change_visibility(original: Any) -> Any:
            def hooked(backend: Any, queue_name: str, receipt_handle: str, *args: Any, **kwargs: Any) -> None:
                with state._lock:
                    original(backend, queue_name, receipt_handle, *args, **kwargs)
                    if not state._muted:
                        for message in backend.get_queue(queue_name)._messages:
                            if message.had_receipt_handle(receipt_handle):
                                state._record_receive(message)
            return hooked

        # A receive counts (ApproximateReceiveCount, the redrive to the DLQ, the worker's last attempt) and makes the
        # message invisible; ChangeMessageVisibility (a failed attempt handed back) ends that early.
        wrap(Message, "mark_received", mark_received)
        wrap(SQSBackend, "change_message_visibility", change_visibility)

        def receive_message(original: Any) -> Any:
            def hooked(backend: Any, queue_name: str, count: int, wait_seconds_timeout: int, *args: Any) -> Any:
                # moto checks a message's visibility and then marks it received with no lock between: two pollers
                # could both take one message, and recording the receive (a commit) widened that window enough
                # for the crash test to see a job's only message deleted by the copy's worker while the other
                # worker still ran it. One scan at a time per queue; the long poll waits outside the lock.
                queue = backend.get_queue(queue_name)
                lock = state._receive_locks.setdefault(queue_name, threading.Lock())
                deadline = time.monotonic() + (wait_seconds_timeout or 0)
                while True:
                    with lock:
                        result = original(backend, queue_name, count, 0, *args)
                    remaining = deadline - time.monotonic()
                    if result or remaining <= 0:
                        return result
                    queue.wait_for_messages(min(1.0, remaining))
            return hooked

        wrap(SQSBackend, "receive_message", receive_message)

        def put_object(original: Any) -> Any:
            def hooked(backend: Any, bucket_name: str, key_name: str, *args: Any, **kwargs: Any) -> Any:
                with state._lock:
                    key = original(backend, bucket_name, key_name, *args, **kwargs)
                    if not state._muted:
                        state._record_object(bucket_name, key_name, key)
                    return key
            return hooked

        def delete_object(original: Any) -> Any:
            def hooked(backend: Any, bucket_name: str, key_name: str, *args: Any, **kwargs: Any) -> Any:
                with state._lock:
                    result = original(backend, bucket_name, key_name, *args, **kwargs)
                    # A versioned bucket keeps a delete marker as the key's latest version.
                    if not state._muted and not isinstance(backend.get_bucket(bucket_name).keys.get(key_name), FakeKey):
                        state._forget_object(bucket_name, key_name)
                    return result
            return hooked

        wrap(S3Backend, "put_object", put_object)
        wrap(S3Backend, "delete_object", delete_object)

        def set_metadata(original: Any) -> Any:
            def hooked(key: Any, *args: Any, **kwargs: Any) -> None:
                with state._lock:
                    original(key, *args, **kwargs)
                    if not state._muted:
                        state._record_metadata(key)
            return hooked

        # Content-Type and x-amz-meta-* are set on the stored key after put_object returns (PUT, POST, copy,
        # multipart completion), still before moto answers.
        wrap(FakeKey, "set_metadata", set_metadata)

    def uninstall(self) -> None:
        for cls, name, original in reversed(self._originals):
            setattr(cls, name, original)
        self._originals.clear()

    def close(self) -> None:
        self.uninstall()
        with self._lock:
            self._db.close()

    # ------------------------------------------------------------------ records

    @staticmethod
    def _key_text(value: Any) -> str:
        return json.dumps(value, sort_keys=True, separators=(",", ":"))

    def _record_item(self, backend: Any, table_name: str, key: dict[str, Any]) -> None:
        table = backend.get_table(table_name)
        hash_text = self._key_text(key[table.hash_key_attr])
        range_text = self._key_text(key[table.range_key_attr]) if table.range_key_attr else ""
        item = backend.get_item(table_name, key)
        if item is None:
            self._db.execute("DELETE FROM items WHERE tbl=? AND hash=? AND rng=?", (table_name, hash_text, range_text))
        else:
            self._db.execute("INSERT OR REPLACE INTO items (tbl, hash, rng, item) VALUES (?, ?, ?, ?)",
                             (table_name, hash_text, range_text, _dumps(item.to_json()["Attributes"])))

    def _upsert_message(self, queue_name: str, message: Any) -> None:
        # A redrive re-adds the same message to the DLQ: the row moves (one row per message id).
        self._db.execute("INSERT INTO messages (message_id, queue, body, attributes) VALUES (?, ?, ?, ?) "
                         "ON CONFLICT(message_id) DO UPDATE SET queue=excluded.queue",
                         (message.id, queue_name, message.body, _dumps(message.message_attributes)))

    def _record_receive(self, message: Any) -> None:
        self._db.execute("UPDATE messages SET receive_count=?, visible_at=? WHERE message_id=?",
                         (message.approximate_receive_count, int(message.visible_at), message.id))

    def _delete_messages(self, ids: list[str]) -> None:
        self._db.executemany("DELETE FROM messages WHERE message_id=?", [(i,) for i in ids])

    def _object_file(self, bucket: str, key: str) -> Path:
        return self.objects_dir / hashlib.sha256(f"{bucket}\x00{key}".encode()).hexdigest()

    def _record_object(self, bucket: str, key_name: str, key: Any) -> None:
        path = self._object_file(bucket, key_name)
        tmp = path.with_suffix(".tmp")
        with open(tmp, "wb") as out:
            out.write(key.value)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
        self._db.execute("INSERT OR REPLACE INTO objects (bucket, key, etag, file, metadata) VALUES (?, ?, ?, ?, ?)",
                         (bucket, key_name, key.etag.strip('"'), path.name, _dumps(dict(key.metadata))))

    def _record_metadata(self, key: Any) -> None:
        bucket = self._s3().buckets.get(key.bucket_name)
        if bucket is not None and bucket.keys.get(key.name) is key:  # not an older version or a key being built
            self._db.execute("UPDATE objects SET metadata=? WHERE bucket=? AND key=?",
                             (_dumps(dict(key.metadata)), key.bucket_name, key.name))

    def _forget_object(self, bucket: str, key: str) -> None:
        self._db.execute("DELETE FROM objects WHERE bucket=? AND key=?", (bucket, key))
        self._object_file(bucket, key).unlink(missing_ok=True)

    def pending_bodies(self, queue_name: str) -> list[str]:
        """The bodies of the messages a queue holds (queued or in flight), as recorded."""
        with self._lock:
            rows = self._db.execute("SELECT body FROM messages WHERE queue=? ORDER BY seq", (queue_name,)).fetchall()
        return [str(body) for (body,) in rows]

    # ------------------------------------------------------------------ restore

    @contextmanager
    def _muting(self) -> Iterator[None]:
        with self._lock:
            self._muted = True
            try:
                yield
            finally:
                self._muted = False

    def restore(self) -> Restored:
        """Put the recorded state back into moto (its resources exist already): items and objects (with their
        metadata) as they were, messages in their original order under their own ids, visible at once.

        A message keeps its receive count, so a job's attempts that failed before the crash still count towards the
        DLQ and the worker's last attempt. The receive a crash cut short does not count: the job did not fail,
        `serve` stopped under it (a message still invisible when recorded was in flight). Such crashes are counted
        apart, and a message in flight at INTERRUPTED_LIMIT of them in a row, in a queue with a DLQ, is held back
        (`Restored.held`): the caller settles its job, then `dead_letter` moves it."""
        from moto.sqs.models import Message

        started = time.monotonic()
        items = objects = messages = 0
        ddb, s3, sqs = self._dynamodb(), self._s3(), self._sqs()
        now_ms = time.time() * 1000
        with self._muting():
            for table_name, item in self._db.execute("SELECT tbl, item FROM items").fetchall():
                if table_name not in ddb.tables:
                    logger.warning("durable state: table %s no longer exists; its items are skipped", table_name)
                    continue
                ddb.put_item(table_name, _loads(item))
                items += 1
            for bucket, key, etag, name, metadata in self._db.execute(
                    "SELECT bucket, key, etag, file, metadata FROM objects").fetchall():
                if bucket not in s3.buckets:
                    logger.warning("durable state: bucket %s no longer exists; its objects are skipped", bucket)
                    continue
                try:
                    value = (self.objects_dir / name).read_bytes()
                except FileNotFoundError:
                    logger.warning("durable state: object s3://%s/%s lost its bytes; skipped", bucket, key)
                    continue
                # No notification: the upload's event, if it was not handled, is a queue message restored below.
                stored = s3.put_object(bucket, key, value, etag=etag, disable_notification=True)
                if metadata:
                    stored.set_metadata(_loads(metadata))
                objects += 1
            rows = self._db.execute("SELECT message_id, queue, body, attributes, receive_count, visible_at, "
                                    "interrupted FROM messages ORDER BY seq").fetchall()
            held: list[HeldMessage] = []
            self._db.execute("BEGIN")
            for message_id, queue_name, body, attributes, receive_count, visible_at, interrupted in rows:
                queue = sqs.queues.get(queue_name)
                if queue is None:
                    logger.warning("durable state: queue %s no longer exists; a message is dropped", queue_name)
                    self._db.execute("DELETE FROM messages WHERE message_id=?", (message_id,))
                    continue
                cut_short = visible_at > now_ms
                interrupted = interrupted + 1 if cut_short else 0
                self._db.execute("UPDATE messages SET interrupted=? WHERE message_id=?", (interrupted, message_id))
                if interrupted >= INTERRUPTED_LIMIT and queue.dead_letter_queue is not None:
                    held.append(HeldMessage(message_id, queue_name, body, interrupted))
                    continue
                # Under its own id: a crash during the restore neither loses nor doubles it.
                message = Message(message_id, body)
                message.message_attributes = _loads(attributes)
                message.mark_sent()
                message.approximate_receive_count = max(0, receive_count - (1 if cut_short else 0))
                queue.add_message(message)
                self._record_receive(message)  # visible now, with the count it has now
                messages += 1
            self._db.execute("COMMIT")
        return Restored(items=items, messages=messages, objects=objects, seconds=time.monotonic() - started,
                        held=tuple(held))

    def dead_letter(self, held: HeldMessage) -> None:
        """Move a held message to its queue's DLQ (recorded there: it stays in the DLQ across restarts)."""
        from moto.sqs.models import Message

        queue = self._sqs().queues[held.queue]
        attributes, receive_count = self._db.execute("SELECT attributes, receive_count FROM messages "
                                                     "WHERE message_id=?", (held.message_id,)).fetchone()
        message = Message(held.message_id, held.body)
        message.message_attributes = _loads(attributes)
        message.mark_sent()
        message.approximate_receive_count = receive_count
        with self._lock:
            queue.dead_letter_queue.add_message(message)  # recorded by the hook: the row moves to the DLQ
            self._db.execute("UPDATE messages SET interrupted=0, visible_at=0 WHERE message_id=?", (held.message_id,))
