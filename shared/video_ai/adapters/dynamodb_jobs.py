"""JobRepository on DynamoDB: conditional writes keep the lifecycle one-way under at-least-once delivery.

Table (template.yaml): on-demand, key `job_id` (S); GSI `by_tenant` (HASH `tenant` S, RANGE `created_at` S, ALL);
GSI `by_content` (HASH `content_key` S, ALL); sparse GSI `by_unsent` (HASH `unsent` S, RANGE `created_at` S, ALL);
TTL attribute `expires_at`.

Item layout: the Job's JSON with numbers as DynamoDB N (floats written as their shortest repr, so they read back
bit-for-bit), top-level None attributes left out (a NULL-typed GSI key would be refused), nested None as NULL, and
`shots`, `labels` and `callback_message` as zlib-compressed JSON (a long video's lists would otherwise eat the 400 KB
item limit).
Attributes the Job model does not know (`idempotency_key`, `segments_done`, `segments_total`, `expires_at`) stay
in the item only, and so do two kinds of private bookkeeping:
- run leases, `lease_<slot>` = {holder, until} (slot `job`, or `segment-<i>` for each segment of a split job, so
  sibling segments never block each other), taken and extended by conditional writes (analyze_video);
- `unsent`, on a queued job whose message was not yet recorded as sent: written with the new item, removed by
  mark_enqueued and by any transition, so the `by_unsent` index holds only the jobs a dead submitter may have left
  behind and services/requeue.py finds them with a Query, not a table Scan.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import math
import time
import zlib
from collections.abc import Iterable, Mapping
from decimal import Decimal
from functools import cache
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError
from pydantic import BaseModel, TypeAdapter, ValidationError

from video_ai.adapters.aws import AwsClients, error_code, transient_errors
from video_ai.domain.errors import (
    Conflict,
    IdempotencyConflict,
    InvalidRequest,
    InvalidTransition,
    JobNotFound,
)
from video_ai.domain.models import TRANSITIONS, CallbackMessage, Job, JobStatus, utc_now

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.type_defs import AttributeValueTypeDef

TENANT_INDEX = "by_tenant"
CONTENT_INDEX = "by_content"
UNSENT_INDEX = "by_unsent"
UNSENT = "unsent"
LEASE_PREFIX = "lease_"
MAX_PAGE = 1000
BATCH_GET_KEYS = 100  # BatchGetItem's limit per call
# GSI key attributes: DynamoDB refuses an empty string there, so these are validated or left out.
_GSI_KEYS = ("tenant", "created_at", "content_key")
# Set once at creation or by transition(); update() must not touch them.
_IMMUTABLE = frozenset({"job_id", "status", "created_at", "tenant"})
# callback_message is under 20 KB of JSON (deliver_callback.MAX_PAYLOAD_BYTES) that compresses well.
_COMPRESSED = frozenset({"shots", "labels", "callback_message"})
# DynamoDB numbers: 38 significant digits, magnitude 1e-130 .. 9.99e125.
_N_MAX = 1e126
_N_MIN = 1e-130
_MAX_CONTENT_PAGES = 20

AttrValue = dict[str, Any]
Item = dict[str, AttrValue]


def _number(value: float, name: str) -> str:
    if not math.isfinite(value) or abs(value) >= _N_MAX:
        raise InvalidRequest(f"{name}: {value!r} cannot be stored as a DynamoDB number", field=name)
    if value != 0 and abs(value) < _N_MIN:
        return "0"
    # The shortest repr round-trips (float(repr(x)) == x); via Decimal it is spelled as boto3's own serializer does.
    return str(Decimal(repr(value)))


def to_attr(value: Any, name: str = "value") -> AttrValue:
    """Python JSON-ish value -> DynamoDB attribute value (low-level client format)."""
    if value is None:
        return {"NULL": True}
    if isinstance(value, bool):
        return {"BOOL": value}
    if isinstance(value, int):
        return {"N": str(value)}
    if isinstance(value, float):
        return {"N": _number(value, name)}
    if isinstance(value, str):
        return {"S": value}
    if isinstance(value, bytes):
        return {"B": value}
    if isinstance(value, Mapping):
        return {"M": {str(k): to_attr(v, f"{name}.{k}") for k, v in value.items()}}
    if isinstance(value, list | tuple):
        return {"L": [to_attr(v, f"{name}[{i}]") for i, v in enumerate(value)]}
    raise TypeError(f"{name}: cannot store {type(value).__name__} in DynamoDB")


def from_attr(attr: Mapping[str, Any]) -> Any:
    """DynamoDB attribute value -> Python; N becomes int when integral in form, else the exact float."""
    ((kind, value),) = attr.items()
    if kind == "S":
        return value
    if kind == "N":
        text = str(value)
        return float(text) if any(c in text for c in ".eE") else int(text)
    if kind == "BOOL":
        return bool(value)
    if kind == "NULL":
        return None
    if kind == "M":
        return {k: from_attr(v) for k, v in value.items()}
    if kind == "L":
        return [from_attr(v) for v in value]
    if kind == "B":
        return bytes(value)
    if kind == "SS":
        return set(value)
    if kind == "NS":
        return {from_attr({"N": v}) for v in value}
    raise TypeError(f"unexpected DynamoDB type {kind}")


def _pack(name: str, value: Any) -> AttrValue:
    if name in _COMPRESSED:
        return {"B": zlib.compress(json.dumps(value, separators=(",", ":")).encode(), 6)}
    return to_attr(value, name)


def _unpack(name: str, attr: Mapping[str, Any]) -> Any:
    if name in _COMPRESSED and "B" in attr:
        return json.loads(zlib.decompress(bytes(attr["B"])))
    return from_attr(attr)


def job_to_item(job: Job) -> Item:
    data = job.model_dump(mode="json")
    for key in _GSI_KEYS[:2]:
        if not data.get(key):
            raise InvalidRequest(f"{key} must not be empty", field=key)
    return {k: _pack(k, v) for k, v in data.items() if v is not None and not (k in _GSI_KEYS and v == "")}


def item_to_job(item: Mapping[str, Mapping[str, Any]]) -> Job:
    fields = Job.model_fields
    return Job.model_validate({k: _unpack(k, v) for k, v in item.items() if k in fields})


@cache
def _field_adapter(name: str) -> TypeAdapter[Any]:
    annotation = Job.model_fields[name].annotation
    assert annotation is not None
    return TypeAdapter(annotation)


def _field_value(name: str, value: Any) -> Any:
    """Validate a value against the Job field's type, then dump it to JSON-ish (models, enums -> plain)."""
    if name not in Job.model_fields:
        raise TypeError(f"Job has no field {name!r}")
    adapter = _field_adapter(name)
    if isinstance(value, BaseModel):
        value = value.model_dump(mode="python")
    try:
        return adapter.dump_python(adapter.validate_python(value), mode="json")
    except ValidationError as err:
        raise InvalidRequest(f"{name}: {err.errors()[0]['msg']}", field=name) from None


class _Update:
    """Builds an UpdateExpression with placeholder names and values for every attribute (many are reserved words)."""

    def __init__(self) -> None:
        self.names: dict[str, str] = {}
        self.values: dict[str, AttrValue] = {}
        self.sets: list[str] = []
        self.removes: list[str] = []

    def name(self, attr: str) -> str:
        placeholder = f"#n{len(self.names)}"
        self.names[placeholder] = attr
        return placeholder

    def value(self, attr: AttrValue) -> str:
        placeholder = f":v{len(self.values)}"
        self.values[placeholder] = attr
        return placeholder

    def set_field(self, name: str, value: Any) -> None:
        plain = _field_value(name, value)
        if plain is None or (name in _GSI_KEYS and plain == ""):
            self.removes.append(self.name(name))
        else:
            self.sets.append(f"{self.name(name)} = {self.value(_pack(name, plain))}")

    def expression(self) -> str:
        parts = []
        if self.sets:
            parts.append("SET " + ", ".join(self.sets))
        if self.removes:
            parts.append("REMOVE " + ", ".join(self.removes))
        return " ".join(parts)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class DynamoDBJobRepository:
    """The jobs table. `token_key` signs list page tokens (defaults to a key derived from the table name: tamper
    evidence, not secrecy); `retention_s` sets the TTL attribute on new jobs."""

    def __init__(
        self,
        table_name: str,
        clients: AwsClients,
        *,
        token_key: bytes | None = None,
        retention_s: int | None = None,
    ) -> None:
        self.table_name = table_name
        self._clients = clients
        self._token_key = token_key or hashlib.sha256(b"video-ai/jobs-page-token/" + table_name.encode()).digest()
        self._retention_s = retention_s

    # -- create -------------------------------------------------------------------------------------------------

    def _put_new(self, item: Item) -> bool:
        """Put `item` unless its job_id exists; False on a clash."""
        if self._retention_s is not None:
            item["expires_at"] = {"N": str(int(time.time()) + self._retention_s)}
        if item.get("status", {}).get("S") == JobStatus.QUEUED.value and "enqueued_at" not in item:
            item[UNSENT] = {"S": JobStatus.QUEUED.value}
        try:
            with transient_errors("DynamoDB PutItem"):
                self._clients.dynamodb.put_item(
                    TableName=self.table_name,
                    Item=item,
                    ConditionExpression="attribute_not_exists(job_id)",
                )
        except ClientError as err:
            if error_code(err) == "ConditionalCheckFailedException":
                return False
            raise
        return True

    def create(self, job: Job) -> Job:
        """Store a new job; raises Conflict when the id exists already."""
        if not self._put_new(job_to_item(job)):
            raise Conflict(f"job {job.job_id} exists already")
        return job

    def create_idempotent(self, job: Job, idempotency_key: str, request_hash: str) -> tuple[Job, bool]:
        """Create once per (tenant, key): same request_hash -> (existing, False); other hash -> IdempotencyConflict."""
        stored = job.model_copy(update={"request_hash": request_hash})
        item = job_to_item(stored)
        item["idempotency_key"] = {"S": idempotency_key}
        # Two rounds: the clashing item may be deleted between our put and our read.
        for _ in range(2):
            if self._put_new(dict(item)):
                return stored, True
            existing = self._get_item(job.job_id)
            if existing is None:
                continue
            if existing.get("request_hash", {}).get("S") != request_hash:
                raise IdempotencyConflict(
                    "this Idempotency-Key was used with a different request body", field="Idempotency-Key"
                )
            return item_to_job(existing), False
        raise Conflict(f"job {job.job_id} is being created and deleted concurrently; retry")

    # -- read ---------------------------------------------------------------------------------------------------

    def _get_item(self, job_id: str) -> Item | None:
        with transient_errors("DynamoDB GetItem"):
            response = self._clients.dynamodb.get_item(
                TableName=self.table_name, Key={"job_id": {"S": job_id}}, ConsistentRead=True
            )
        item: Item | None = response.get("Item")  # type: ignore[assignment]
        return item

    def get(self, job_id: str) -> Job | None:
        if not job_id:
            return None  # DynamoDB refuses an empty key (ValidationException); no job has one
        item = self._get_item(job_id)
        return item_to_job(item) if item is not None else None

    def tenants_of(self, job_ids: Iterable[str]) -> dict[str, str]:
        """BatchGetItem (100 keys a call, job_id and tenant only), unprocessed keys asked again."""
        ids = sorted({job_id for job_id in job_ids if job_id})
        found: dict[str, str] = {}
        for start in range(0, len(ids), BATCH_GET_KEYS):
            keys: list[dict[str, Any]] = [{"job_id": {"S": job_id}} for job_id in ids[start : start + BATCH_GET_KEYS]]
            while keys:
                with transient_errors("DynamoDB BatchGetItem"):
                    response = self._clients.dynamodb.batch_get_item(RequestItems={self.table_name: {
                        "Keys": keys, "ProjectionExpression": "job_id, tenant", "ConsistentRead": True}})
                raw: dict[str, Any] = dict(response)
                for item in raw.get("Responses", {}).get(self.table_name, []):
                    found[str(item["job_id"]["S"])] = str(item.get("tenant", {}).get("S", ""))
                keys = list(raw.get("UnprocessedKeys", {}).get(self.table_name, {}).get("Keys", []))
        return found

    def list_for_tenant(self, tenant: str, limit: int, next_token: str | None) -> tuple[list[Job], str | None]:
        """The tenant's jobs, newest first; `next_token` is opaque and bound to the tenant."""
        if not 1 <= limit <= MAX_PAGE:
            raise InvalidRequest(f"limit must be between 1 and {MAX_PAGE}", field="limit")
        if not tenant:
            return [], None
        kwargs: dict[str, Any] = {}
        if next_token:
            kwargs["ExclusiveStartKey"] = self._decode_token(tenant, next_token)
        # One extra item tells whether another page exists, so the last page never comes back empty.
        with transient_errors("DynamoDB Query"):
            response = self._clients.dynamodb.query(
                TableName=self.table_name,
                IndexName=TENANT_INDEX,
                KeyConditionExpression="#t = :t",
                ExpressionAttributeNames={"#t": "tenant"},
                ExpressionAttributeValues={":t": {"S": tenant}},
                ScanIndexForward=False,
                Limit=limit + 1,
                **kwargs,
            )
        items: list[Item] = response.get("Items", [])  # type: ignore[assignment]
        page = items[:limit]
        # A 1 MB response cut may stop short of limit + 1 items with LastEvaluatedKey set: more may follow.
        more = len(items) > limit or "LastEvaluatedKey" in response
        token = self._encode_token(tenant, page[-1]) if more and page else None
        return [item_to_job(i) for i in page], token

    def find_by_content(self, content_key: str) -> Job | None:
        """The most recently finished succeeded job with this content key (content-hash reuse)."""
        if not content_key:
            return None
        best: Item | None = None
        kwargs: dict[str, Any] = {}
        for _ in range(_MAX_CONTENT_PAGES):
            with transient_errors("DynamoDB Query"):
                response = self._clients.dynamodb.query(
                    TableName=self.table_name,
                    IndexName=CONTENT_INDEX,
                    KeyConditionExpression="content_key = :k",
                    FilterExpression="#s = :ok",
                    ExpressionAttributeNames={"#s": "status"},
                    ExpressionAttributeValues={":k": {"S": content_key}, ":ok": {"S": JobStatus.SUCCEEDED.value}},
                    **kwargs,
                )
            for item in response.get("Items", []):
                if best is None or item["updated_at"]["S"] > best["updated_at"]["S"]:
                    best = item  # type: ignore[assignment]
            last = response.get("LastEvaluatedKey")
            if not last:
                break
            kwargs["ExclusiveStartKey"] = last
        return item_to_job(best) if best is not None else None

    # -- write --------------------------------------------------------------------------------------------------

    def transition(self, job_id: str, to: JobStatus, **fields: Any) -> Job:
        """Conditional write along TRANSITIONS (status IN allowed predecessors); returns the new record."""
        to = JobStatus(to)
        predecessors = sorted(s.value for s, allowed in TRANSITIONS.items() if to in allowed)
        if not predecessors:
            if self._get_item(job_id) is None:
                raise JobNotFound(f"job {job_id} does not exist")
            raise InvalidTransition(f"no job may become {to.value}")
        bad = _IMMUTABLE & fields.keys()
        if bad:
            raise TypeError(f"transition() cannot set {sorted(bad)}")
        stamp = fields.pop("updated_at", None) or utc_now()
        update = _Update()
        for name, value in fields.items():
            update.set_field(name, value)
        update.set_field("status", to.value)
        update.set_field("updated_at", stamp)
        update.removes.append(update.name(UNSENT))  # a job that left `queued` is nobody's to send any more
        status = update.name("status")
        allowed = ", ".join(update.value({"S": p}) for p in predecessors)
        condition = f"attribute_exists(job_id) AND {status} IN ({allowed})"
        new = self._conditional_update(job_id, update, condition)
        if new is None:
            current = self._get_item(job_id)
            if current is None:
                raise JobNotFound(f"job {job_id} does not exist")
            raise InvalidTransition(f"job {job_id} is {current['status']['S']}; cannot become {to.value}")
        return item_to_job(new)

    def update(self, job_id: str, **fields: Any) -> None:
        """Set non-status fields (progress, video, callback state, ...) on an existing job; None removes a field."""
        bad = _IMMUTABLE & fields.keys()
        if bad:
            raise TypeError(f"update() cannot set {sorted(bad)}; use transition() for status")
        stamp = fields.pop("updated_at", None) or utc_now()
        update = _Update()
        for name, value in fields.items():
            update.set_field(name, value)
        update.set_field("updated_at", stamp)
        if self._conditional_update(job_id, update, "attribute_exists(job_id)") is None:
            raise JobNotFound(f"job {job_id} does not exist")

    def keep_callback_message(self, job_id: str, message: CallbackMessage) -> CallbackMessage:
        """Set `callback_message` only where it is absent (updated_at untouched: nothing a client sees changed)."""
        update = _Update()
        update.set_field("callback_message", message)
        if self._conditional_update(job_id, update, f"attribute_exists(job_id) AND attribute_not_exists("
                                                   f"{update.name('callback_message')})") is not None:
            return message
        kept = self.get(job_id)
        if kept is None:
            raise JobNotFound(f"job {job_id} does not exist")
        return kept.callback_message or message

    def _conditional_update(self, job_id: str, update: _Update, condition: str) -> Item | None:
        """Run an UpdateItem; None when the condition failed."""
        # DynamoDB refuses an empty map (an update that only removes).
        values: dict[str, Any] = {"ExpressionAttributeValues": update.values} if update.values else {}
        try:
            with transient_errors("DynamoDB UpdateItem"):
                response = self._clients.dynamodb.update_item(
                    TableName=self.table_name,
                    Key={"job_id": {"S": job_id}},
                    UpdateExpression=update.expression(),
                    ConditionExpression=condition,
                    ExpressionAttributeNames=update.names,
                    ReturnValues="ALL_NEW",
                    **values,
                )
        except ClientError as err:
            if error_code(err) == "ConditionalCheckFailedException":
                return None
            raise
        item: Item = response["Attributes"]  # type: ignore[assignment]
        return item

    def delete(self, job_id: str) -> None:
        """Remove the record; deleting a missing job is not an error."""
        with transient_errors("DynamoDB DeleteItem"):
            self._clients.dynamodb.delete_item(TableName=self.table_name, Key={"job_id": {"S": job_id}})

    def record_segment(self, job_id: str, segment: int, result: dict[str, Any]) -> int | None:
        """`segment_<i>` (compressed JSON) + ADD segments_done, only if `segment_<i>` is not there yet."""
        blob = zlib.compress(json.dumps(result, separators=(",", ":")).encode(), 6)
        try:
            with transient_errors("DynamoDB UpdateItem"):
                response = self._clients.dynamodb.update_item(
                    TableName=self.table_name,
                    Key={"job_id": {"S": job_id}},
                    UpdateExpression="SET #seg = :blob ADD segments_done :one",
                    ConditionExpression="attribute_exists(job_id) AND attribute_not_exists(#seg)",
                    ExpressionAttributeNames={"#seg": f"segment_{int(segment)}"},
                    ExpressionAttributeValues={":blob": {"B": blob}, ":one": {"N": "1"}},
                    ReturnValues="UPDATED_NEW",
                )
        except ClientError as err:
            if error_code(err) == "ConditionalCheckFailedException":
                if self.get(job_id) is None:
                    raise JobNotFound(f"job {job_id} does not exist") from None
                return None
            raise
        return int(response["Attributes"]["segments_done"]["N"])

    def segment_results(self, job_id: str) -> dict[int, dict[str, Any]]:
        with transient_errors("DynamoDB GetItem"):
            item = self._clients.dynamodb.get_item(
                TableName=self.table_name, Key={"job_id": {"S": job_id}}, ConsistentRead=True
            ).get("Item", {})
        return {
            int(name.removeprefix("segment_")): json.loads(zlib.decompress(bytes(value["B"])))
            for name, value in item.items()
            if name.startswith("segment_") and name.removeprefix("segment_").isdigit() and "B" in value
        }

    # -- run leases and the send mark ------------------------------------------------------------------------------

    def take_lease(self, job_id: str, slot: str, holder: str, until: float, now: float) -> bool:
        """SET lease_<slot> = {holder, until} if it is absent, expired or `holder`'s own (one conditional write)."""
        update = _Update()
        lease = update.name(LEASE_PREFIX + slot)
        update.sets.append(f"{lease} = " + update.value(
            {"M": {"holder": {"S": holder}, "until": {"N": _number(until, "until")}}}))
        h, u = update.name("holder"), update.name("until")
        condition = (f"attribute_exists(job_id) AND (attribute_not_exists({lease}) OR {lease}.{u} < "
                     f"{update.value({'N': _number(now, 'now')})} OR {lease}.{h} = {update.value({'S': holder})})")
        if self._conditional_update(job_id, update, condition) is not None:
            return True
        if self._get_item(job_id) is None:
            raise JobNotFound(f"job {job_id} does not exist")
        return False

    def release_lease(self, job_id: str, slot: str, holder: str) -> None:
        update = _Update()
        lease = update.name(LEASE_PREFIX + slot)
        update.removes.append(lease)
        self._conditional_update(job_id, update, f"{lease}.{update.name('holder')} = {update.value({'S': holder})}")

    def clear_leases(self) -> int:
        """Remove every run lease in the table (a full Scan): for `serve`'s start, whose previous process held them
        all and is dead. Never on AWS, where other invocations' leases are live. The number of jobs cleared."""
        cleared = 0
        paginator = self._clients.dynamodb.get_paginator("scan")
        with transient_errors("DynamoDB Scan"):
            pages = list(paginator.paginate(TableName=self.table_name, ConsistentRead=True))
        for page in pages:
            for item in page.get("Items", []):
                names = [name for name in item if name.startswith(LEASE_PREFIX)]
                if not names:
                    continue
                update = _Update()
                update.removes.extend(update.name(name) for name in names)
                self._conditional_update(str(item["job_id"]["S"]), update, "attribute_exists(job_id)")
                cleared += 1
        return cleared

    def leases(self, job_id: str) -> dict[str, tuple[str, float]]:
        """slot -> (holder, until) of a job's leases (tests, diagnostics)."""
        item = self._get_item(job_id) or {}
        return {name.removeprefix(LEASE_PREFIX): (str(value["M"]["holder"]["S"]), float(value["M"]["until"]["N"]))
                for name, value in item.items() if name.startswith(LEASE_PREFIX) and "M" in value}

    def mark_enqueued(self, job_id: str) -> None:
        update = _Update()
        update.sets.append(f"{update.name('enqueued_at')} = {update.value({'S': utc_now()})}")
        update.removes.append(update.name(UNSENT))
        self._conditional_update(job_id, update, "attribute_exists(job_id)")

    def unsent(self, created_before: str, limit: int) -> list[Job]:
        """Query the sparse `by_unsent` index (only unsent queued jobs are in it), oldest first."""
        found: list[Job] = []
        kwargs: dict[str, Any] = {}
        while len(found) < limit:
            with transient_errors("DynamoDB Query"):
                response = self._clients.dynamodb.query(
                    TableName=self.table_name,
                    IndexName=UNSENT_INDEX,
                    KeyConditionExpression="#u = :q AND created_at < :c",
                    ExpressionAttributeNames={"#u": UNSENT},
                    ExpressionAttributeValues={":q": {"S": JobStatus.QUEUED.value}, ":c": {"S": created_before}},
                    Limit=limit,
                    **kwargs,
                )
            for item in response.get("Items", []):
                job = item_to_job(item)
                if job.status is JobStatus.QUEUED and job.enqueued_at is None:
                    found.append(job)
            last = response.get("LastEvaluatedKey")
            if not last:
                break
            kwargs["ExclusiveStartKey"] = last
        return found[:limit]

    def _mac(self, tenant: str, body: bytes) -> bytes:
        return hmac.new(self._token_key, tenant.encode() + b"\x00" + body, hashlib.sha256).digest()[:16]

    def _encode_token(self, tenant: str, last: Item) -> str:
        body = json.dumps({"j": last["job_id"]["S"], "c": last["created_at"]["S"]}, separators=(",", ":")).encode()
        return f"{_b64(body)}.{_b64(self._mac(tenant, body))}"

    def _decode_token(self, tenant: str, token: str) -> dict[str, AttributeValueTypeDef]:
        try:
            body_text, mac_text = token.split(".")
            body = _unb64(body_text)
            if not hmac.compare_digest(_unb64(mac_text), self._mac(tenant, body)):
                raise ValueError("bad signature")
            data = json.loads(body)
            job_id, created_at = data["j"], data["c"]
            if not (isinstance(job_id, str) and isinstance(created_at, str) and job_id and created_at):
                raise ValueError("bad fields")
        except (ValueError, KeyError, TypeError):
            raise InvalidRequest("next_token is not a token this API issued", field="next_token") from None
        return {"job_id": {"S": job_id}, "tenant": {"S": tenant}, "created_at": {"S": created_at}}
