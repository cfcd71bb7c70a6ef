"""Job repositories without AWS: in memory (tests, one process) and JSON files under the data dir (the CLI)."""

from __future__ import annotations

import base64
import json
import os
import tempfile
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from video_ai.domain.errors import (
    Conflict,
    IdempotencyConflict,
    InvalidRequest,
    InvalidTransition,
    JobNotFound,
)
from video_ai.domain.models import TRANSITIONS, CallbackMessage, Job, JobStatus, utc_now


def _plain(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _encode_token(offset: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"o": offset}).encode()).decode().rstrip("=")


def _decode_token(token: str) -> int:
    try:
        padded = token + "=" * (-len(token) % 4)
        offset = json.loads(base64.urlsafe_b64decode(padded.encode()))["o"]
        if not isinstance(offset, int) or offset < 0:
            raise ValueError
        return offset
    except (ValueError, KeyError, TypeError):
        raise InvalidRequest("next_token is not a token this API issued", field="next_token") from None


class InMemoryJobRepository:
    """A JobRepository with the same conditional semantics as DynamoDB, for one process."""

    def __init__(self) -> None:
        self._items: dict[str, dict[str, Any]] = {}
        self._segment_results: dict[str, dict[int, dict[str, Any]]] = {}
        # Run leases, (job_id, slot) -> (holder, until): in memory even for the file-backed variant, whose process
        # is the only one that runs its jobs, so a lease never outlives the run (or the process) that took it.
        self._leases: dict[tuple[str, str], tuple[str, float]] = {}
        self._lock = threading.RLock()

    # Storage hooks, overridden by the file-backed variant.
    def _load(self, job_id: str) -> dict[str, Any] | None:
        return self._items.get(job_id)

    def _store(self, job_id: str, item: dict[str, Any]) -> None:
        self._items[job_id] = item

    def _remove(self, job_id: str) -> None:
        self._items.pop(job_id, None)

    def _all(self) -> Iterator[dict[str, Any]]:
        return iter(list(self._items.values()))

    @contextmanager
    def _locked(self) -> Iterator[None]:
        with self._lock:
            yield

    def create(self, job: Job) -> Job:
        with self._locked():
            if self._load(job.job_id) is not None:
                raise Conflict(f"job {job.job_id} exists already")
            self._store(job.job_id, job.model_dump(mode="json"))
            return job

    def create_idempotent(self, job: Job, idempotency_key: str, request_hash: str) -> tuple[Job, bool]:
        with self._locked():
            existing = self._load(job.job_id)
            if existing is None:
                stored = job.model_copy(update={"request_hash": request_hash})
                self._store(job.job_id, stored.model_dump(mode="json"))
                return stored, True
            if existing.get("request_hash") != request_hash:
                raise IdempotencyConflict(
                    "this Idempotency-Key was used with a different request body", field="Idempotency-Key"
                )
            return Job.model_validate(existing), False

    def get(self, job_id: str) -> Job | None:
        with self._locked():
            item = self._load(job_id)
            return Job.model_validate(item) if item is not None else None

    def tenants_of(self, job_ids: Iterable[str]) -> dict[str, str]:
        with self._locked():
            found = {job_id: self._load(job_id) for job_id in set(job_ids)}
        return {job_id: str(item["tenant"]) for job_id, item in found.items() if item is not None}

    def transition(self, job_id: str, to: JobStatus, **fields: Any) -> Job:
        with self._locked():
            item = self._load(job_id)
            if item is None:
                raise JobNotFound(f"job {job_id} does not exist")
            current = JobStatus(item["status"])
            if to not in TRANSITIONS[current]:
                raise InvalidTransition(f"job {job_id} is {current.value}; cannot become {to.value}")
            updated = {**item, **{k: _plain(v) for k, v in fields.items()}, "status": to.value, "updated_at": utc_now()}
            job = Job.model_validate(updated)
            self._store(job_id, job.model_dump(mode="json"))
            return job

    def update(self, job_id: str, **fields: Any) -> None:
        with self._locked():
            item = self._load(job_id)
            if item is None:
                raise JobNotFound(f"job {job_id} does not exist")
            updated = {**item, **{k: _plain(v) for k, v in fields.items()}, "updated_at": utc_now()}
            self._store(job_id, Job.model_validate(updated).model_dump(mode="json"))

    def keep_callback_message(self, job_id: str, message: CallbackMessage) -> CallbackMessage:
        with self._locked():
            item = self._load(job_id)
            if item is None:
                raise JobNotFound(f"job {job_id} does not exist")
            if item.get("callback_message") is not None:
                return CallbackMessage.model_validate(item["callback_message"])
            self._store(job_id, {**item, "callback_message": message.model_dump(mode="json")})
            return message

    def delete(self, job_id: str) -> None:
        with self._locked():
            self._remove(job_id)
            for key in [key for key in self._leases if key[0] == job_id]:
                del self._leases[key]

    def list_for_tenant(self, tenant: str, limit: int, next_token: str | None) -> tuple[list[Job], str | None]:
        offset = _decode_token(next_token) if next_token else 0
        with self._locked():
            mine = [i for i in self._all() if i.get("tenant") == tenant]
        mine.sort(key=lambda i: (i["created_at"], i["job_id"]), reverse=True)
        page = mine[offset : offset + limit]
        more = offset + limit < len(mine)
        return [Job.model_validate(i) for i in page], (_encode_token(offset + limit) if more else None)

    def find_by_content(self, content_key: str) -> Job | None:
        with self._locked():
            matches = [
                i for i in self._all() if i.get("content_key") == content_key and i.get("status") == "succeeded"
            ]
        if not matches:
            return None
        return Job.model_validate(max(matches, key=lambda i: i["updated_at"]))

    def record_segment(self, job_id: str, segment: int, result: dict[str, Any]) -> int | None:
        with self._locked():
            if self._load(job_id) is None:
                raise JobNotFound(f"job {job_id} does not exist")
            results = self._segment_results.setdefault(job_id, {})
            if segment in results:
                return None
            results[segment] = json.loads(json.dumps(result))
            return len(results)

    def segment_results(self, job_id: str) -> dict[int, dict[str, Any]]:
        with self._locked():
            return dict(self._segment_results.get(job_id, {}))

    def take_lease(self, job_id: str, slot: str, holder: str, until: float, now: float) -> bool:
        with self._locked():
            if self._load(job_id) is None:
                self._leases.pop((job_id, slot), None)
                raise JobNotFound(f"job {job_id} does not exist")
            current = self._leases.get((job_id, slot))
            if current is not None and current[0] != holder and current[1] >= now:
                return False
            self._leases[(job_id, slot)] = (holder, until)
            return True

    def release_lease(self, job_id: str, slot: str, holder: str) -> None:
        with self._locked():
            current = self._leases.get((job_id, slot))
            if current is not None and current[0] == holder:
                del self._leases[(job_id, slot)]

    def lease(self, job_id: str, slot: str) -> tuple[str, float] | None:
        """(holder, until) of a lease, for tests."""
        with self._locked():
            return self._leases.get((job_id, slot))

    def mark_enqueued(self, job_id: str) -> None:
        with self._locked():
            item = self._load(job_id)
            if item is not None:  # not a change a client sees: updated_at stays
                self._store(job_id, {**item, "enqueued_at": utc_now()})

    def unsent(self, created_before: str, limit: int) -> list[Job]:
        with self._locked():
            found = [i for i in self._all() if i.get("status") == JobStatus.QUEUED.value
                     and i.get("enqueued_at") is None and i["created_at"] < created_before]
        found.sort(key=lambda i: (i["created_at"], i["job_id"]))
        return [Job.model_validate(i) for i in found[:limit]]


class FileJobRepository(InMemoryJobRepository):
    """Jobs as JSON files under `<data_dir>/jobs/`, so CLI runs see each other's jobs. One process at a time."""

    def __init__(self, data_dir: Path) -> None:
        super().__init__()
        self._dir = data_dir / "jobs"
        self._dir.mkdir(parents=True, exist_ok=True)

    def _path(self, job_id: str) -> Path:
        safe = "".join(c for c in job_id if c.isalnum() or c == "-")
        return self._dir / f"{safe}.json"

    def _load(self, job_id: str) -> dict[str, Any] | None:
        try:
            data: dict[str, Any] = json.loads(self._path(job_id).read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        # The file name keeps only [A-Za-z0-9-]: "a.b" and "ab" name the same file, but only "ab" is that job.
        return data if data.get("job_id") == job_id else None

    def _store(self, job_id: str, item: dict[str, Any]) -> None:
        fd, tmp = tempfile.mkstemp(dir=self._dir, suffix=".tmp")
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            json.dump(item, out)
        os.replace(tmp, self._path(job_id))

    def _remove(self, job_id: str) -> None:
        self._path(job_id).unlink(missing_ok=True)

    def _all(self) -> Iterator[dict[str, Any]]:
        for path in sorted(self._dir.glob("*.json")):
            try:
                yield json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue
