"""Who owns a finished job, remembered by the API container, so the thumbnail route can skip the job record.

A job page fetches a thumbnail per visible picture, and each request read the whole job record (a DynamoDB GetItem and
its parse) only to check the tenant: that was 8 of the route's ~10 ms under `serve`. A job's tenant is fixed at submit
and its id is never given to another tenant (random, or uuid5 of the tenant and its idempotency key), so a remembered
owner cannot go stale in a way that leaks: a job deleted by another container simply has no thumbnails left, and the
route falls back to the record (which then answers 404 with the reason).
"""

from __future__ import annotations

import threading
from collections import OrderedDict

from video_ai.domain.models import Job


class FinishedOwners:
    """A bounded LRU of job_id -> tenant for finished jobs (only those: a running job's frames are still coming)."""

    def __init__(self, capacity: int = 4096) -> None:
        self._capacity = capacity
        self._owners: OrderedDict[str, str] = OrderedDict()
        self._lock = threading.Lock()  # sync routes run in a thread pool

    def owner(self, job_id: str) -> str | None:
        with self._lock:
            tenant = self._owners.get(job_id)
            if tenant is not None:
                self._owners.move_to_end(job_id)
            return tenant

    def remember(self, job: Job) -> None:
        if not job.status.terminal:
            return
        with self._lock:
            self._owners[job.job_id] = job.tenant
            self._owners.move_to_end(job.job_id)
            while len(self._owners) > self._capacity:
                self._owners.popitem(last=False)

    def forget(self, job_id: str) -> None:
        with self._lock:
            self._owners.pop(job_id, None)
