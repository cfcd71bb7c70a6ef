"""VectorIndex on a Qdrant server (or qdrant-client's local mode) through `qdrant-client`.

qdrant_client is imported inside functions only: it alone costs ~1.3 s of import and the API's cold path for
`POST /analyze` must not pay it.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable, Sequence
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from video_ai.adapters.qdrant_common import FACET_LIMIT, as_list, plain, valid_uuid
from video_ai.domain.errors import IndexUnavailable
from video_ai.domain.models import FramePoint, ModelInfo, ScoredPoint, SearchFilter, collection_name

if TYPE_CHECKING:
    from qdrant_client import QdrantClient
    from qdrant_client.http import models as qm

logger = logging.getLogger(__name__)

UPSERT_CHUNK = 256
T = TypeVar("T")


class _Missing(Exception):
    """The collection does not exist (server 404, or local mode's ValueError)."""


def _models() -> Any:
    from qdrant_client.http import models

    return models


def _guarded(fn: Callable[[], T]) -> T:
    """Run one client call; connection failures, timeouts and 5xx become IndexUnavailable (transient)."""
    from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

    try:
        return fn()
    except ResponseHandlingException as err:  # wraps httpx connect/read errors and timeouts
        raise IndexUnavailable(f"qdrant unreachable: {err}") from err
    except UnexpectedResponse as err:
        status = err.status_code or 0
        if status == 404:
            raise _Missing(str(err)) from err
        if status >= 500 or status == 429:
            raise IndexUnavailable(f"qdrant answered {status}: {err.reason_phrase}") from err
        raise
    except ValueError as err:
        # Local mode reports a missing collection as ValueError("Collection x not found").
        if "not found" in str(err):
            raise _Missing(str(err)) from err
        raise
    except (ConnectionError, TimeoutError) as err:
        raise IndexUnavailable(f"qdrant unreachable: {err}") from err


def _filter(flt: SearchFilter, after_frame: int | None = None) -> qm.Filter | None:
    m = _models()
    must: list[Any] = []
    if flt.tenant is not None:
        must.append(m.FieldCondition(key="tenant", match=m.MatchValue(value=flt.tenant)))
    if flt.job_id is not None:
        must.append(m.FieldCondition(key="job_id", match=m.MatchValue(value=flt.job_id)))
    if flt.start_s is not None or flt.end_s is not None:
        must.append(m.FieldCondition(key="pts_s", range=m.Range(gte=flt.start_s, lte=flt.end_s)))
    if after_frame is not None:
        must.append(m.FieldCondition(key="frame_number", range=m.Range(gt=after_frame)))
    result: qm.Filter | None = m.Filter(must=must) if must else None
    return result


class QdrantServerIndex:
    """Qdrant server by URL; the same semantics as QdrantEdgeIndex. A client can be injected (tests: local mode)."""

    def __init__(
        self, url: str, api_key: str | None, timeout_s: float, client: QdrantClient | None = None
    ) -> None:
        if client is None:
            from qdrant_client import QdrantClient

            # check_compatibility=False: it would call the server in the constructor; first use reports failures.
            client = QdrantClient(
                url=url, api_key=api_key, timeout=max(1, math.ceil(timeout_s)), check_compatibility=False
            )
        self._client = client
        self._known: set[str] = set()
        self._lock = threading.Lock()
        # A remote client (httpx) is thread-safe; local mode (`:memory:` or a path) is not: serialise its calls.
        options = getattr(client, "init_options", {}) or {}
        self._serial: threading.Lock | None = (
            threading.Lock() if options.get("location") == ":memory:" or options.get("path") else None
        )

    def _call(self, fn: Callable[[], T]) -> T:
        if self._serial is None:
            return _guarded(fn)
        with self._serial:
            return _guarded(fn)

    def _exists(self, name: str) -> bool:
        if name in self._known:
            return True
        if self._call(lambda: self._client.collection_exists(name)):
            with self._lock:
                self._known.add(name)
            return True
        return False

    def _forget(self, name: str) -> None:
        with self._lock:
            self._known.discard(name)

    def ensure_collection(self, model: ModelInfo) -> None:
        name = collection_name(model)
        if self._exists(name):
            return
        m = _models()
        try:
            self._call(
                lambda: self._client.create_collection(
                    name, vectors_config=m.VectorParams(size=model.dim, distance=m.Distance.COSINE)
                )
            )
            logger.info("created qdrant collection %s", name)
        except Exception as err:
            # Another worker may have created it between our check and our create (409 / "already exists").
            if not self._call(lambda: self._client.collection_exists(name)):
                raise
            logger.debug("collection %s appeared concurrently: %s", name, err)
        indexes: dict[str, Any] = {
            "job_id": m.KeywordIndexParams(type=m.KeywordIndexType.KEYWORD),
            "tenant": m.KeywordIndexParams(type=m.KeywordIndexType.KEYWORD, is_tenant=True),
            "pts_s": m.FloatIndexParams(type=m.FloatIndexType.FLOAT),
            # range: list_frames orders and pages by frame_number (order_by needs a range index on a server).
            "frame_number": m.IntegerIndexParams(type=m.IntegerIndexType.INTEGER, lookup=True, range=True),
        }
        for field_name, schema in indexes.items():
            self._call(partial(self._client.create_payload_index, name, field_name, schema, wait=True))
        with self._lock:
            self._known.add(name)

    def upsert(self, model: ModelInfo, points: Sequence[FramePoint]) -> None:
        if not points:
            return
        self.ensure_collection(model)
        name = collection_name(model)
        m = _models()
        for start in range(0, len(points), UPSERT_CHUNK):
            chunk = [
                m.PointStruct(
                    id=p.id, vector=as_list(p.vector, model.dim), payload={k: plain(v) for k, v in p.payload.items()}
                )
                for p in points[start : start + UPSERT_CHUNK]
            ]
            write = partial(self._client.upsert, name, chunk, wait=True)
            try:
                self._call(write)
            except _Missing:
                # Deleted behind our back since we cached it: recreate once and retry.
                self._forget(name)
                self.ensure_collection(model)
                self._call(write)

    def _read(self, model: ModelInfo, fn: Callable[[str], T], empty: T) -> T:
        name = collection_name(model)
        try:
            if not self._exists(name):
                return empty
            return self._call(lambda: fn(name))
        except _Missing:
            self._forget(name)
            return empty

    def search(self, model: ModelInfo, vector: np.ndarray, limit: int, flt: SearchFilter) -> list[ScoredPoint]:
        if limit <= 0:
            return []
        query = as_list(vector, model.dim)
        query_filter = _filter(flt)

        def run(name: str) -> list[ScoredPoint]:
            response = self._client.query_points(
                name, query=query, limit=limit, query_filter=query_filter, with_payload=True, with_vectors=False
            )
            return [ScoredPoint(id=str(h.id), score=float(h.score), payload=dict(h.payload or {}))
                    for h in response.points]

        return self._read(model, run, [])

    def get_vector(self, model: ModelInfo, point_id: str) -> np.ndarray | None:
        if not valid_uuid(point_id):
            return None

        def run(name: str) -> np.ndarray | None:
            records = self._client.retrieve(name, [point_id], with_payload=False, with_vectors=True)
            if not records or records[0].vector is None:
                return None
            stored: Any = records[0].vector
            if isinstance(stored, dict):  # named vectors: ours is the default (unnamed) one
                stored = stored.get("")
            return None if stored is None else np.asarray(stored, dtype=np.float32)

        return self._read(model, run, None)

    def count(self, model: ModelInfo, flt: SearchFilter) -> int:
        count_filter = _filter(flt)
        return self._read(model, lambda name: int(self._client.count(name, count_filter, exact=True).count), 0)

    def job_ids(self, model: ModelInfo) -> set[str]:
        def run(name: str) -> set[str]:
            response = self._client.facet(name, key="job_id", limit=FACET_LIMIT, exact=True)
            return {str(hit.value) for hit in response.hits if hit.count > 0}

        return self._read(model, run, set())

    def delete(self, model: ModelInfo, flt: SearchFilter) -> None:
        if flt.job_id is None and flt.tenant is None:
            raise ValueError("delete needs a job_id or a tenant: refusing to empty the collection")
        selector = _models().FilterSelector(filter=_filter(flt))
        self._read(model, lambda name: self._client.delete(name, points_selector=selector, wait=True), None)

    def set_payloads(self, model: ModelInfo, updates: Sequence[tuple[str, dict[str, Any]]]) -> None:
        """Merge keys into existing points' payloads; ids not in the collection (deleted meanwhile) are skipped."""
        if not updates:
            return
        m = _models()

        def run(name: str) -> None:
            for start in range(0, len(updates), UPSERT_CHUNK):
                chunk = [(pid, keys) for pid, keys in updates[start : start + UPSERT_CHUNK] if valid_uuid(pid)]
                found = self._client.retrieve(name, [pid for pid, _ in chunk], with_payload=False, with_vectors=False)
                present = {str(r.id) for r in found}
                operations = [
                    m.SetPayloadOperation(
                        set_payload=m.SetPayload(payload={k: plain(v) for k, v in keys.items()}, points=[pid])
                    )
                    for pid, keys in chunk
                    if pid in present
                ]
                if operations:
                    self._client.batch_update_points(name, operations, wait=True)

        self._read(model, run, None)

    def list_frames(
        self, model: ModelInfo, job_id: str, tenant: str | None, after_frame: int | None, limit: int
    ) -> list[ScoredPoint]:
        if limit <= 0:
            return []
        m = _models()
        scroll_filter = _filter(SearchFilter(tenant=tenant, job_id=job_id), after_frame=after_frame)
        order_by = m.OrderBy(key="frame_number", direction=m.Direction.ASC)

        def run(name: str) -> list[ScoredPoint]:
            records, _ = self._client.scroll(
                name, scroll_filter=scroll_filter, limit=limit, order_by=order_by, with_payload=True,
                with_vectors=False,
            )
            return [ScoredPoint(id=str(r.id), score=0.0, payload=dict(r.payload or {})) for r in records]

        return self._read(model, run, [])

    def close(self) -> None:
        self._client.close()
