"""MomentIndex on a Qdrant server (or qdrant-client's local mode): the same collection layout and search as
QdrantEdgeMoments (a dense `text` vector, a BM25 `keywords` sparse vector with the IDF modifier, two prefetches fused
by RRF). The BM25 document and query vectors come from qdrant-edge's `Bm25` on this side, so both backends tokenize
and stem alike (qdrant-edge-py is a worker dependency anyway). qdrant_client is imported on first use only.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from video_ai.adapters.qdrant_common import FACET_LIMIT, as_list
from video_ai.adapters.qdrant_edge_moments import (
    DENSE,
    MIN_SIMILARITY,
    SPARSE,
    UPSERT_CHUNK,
    matched_words,
    moments_collection,
)
from video_ai.adapters.qdrant_server_index import _guarded, _Missing
from video_ai.domain.models import ModelInfo, Moment, MomentFilter, MomentHit, moment_id

if TYPE_CHECKING:
    from qdrant_client import QdrantClient

T = TypeVar("T")


def _filter(flt: MomentFilter) -> Any:
    from qdrant_client.http import models as m

    must: list[Any] = []
    if flt.tenant is not None:
        must.append(m.FieldCondition(key="tenant", match=m.MatchValue(value=flt.tenant)))
    if flt.job_id is not None:
        must.append(m.FieldCondition(key="job_id", match=m.MatchValue(value=flt.job_id)))
    if flt.end_s is not None:
        must.append(m.FieldCondition(key="start_s", range=m.Range(lte=flt.end_s)))
    if flt.start_s is not None:
        must.append(m.FieldCondition(key="end_s", range=m.Range(gte=flt.start_s)))
    if flt.kinds:
        must.append(m.FieldCondition(key="kind", match=m.MatchAny(any=list(flt.kinds))))
    return m.Filter(must=must) if must else None


class QdrantServerMoments:
    def __init__(self, url: str, api_key: str | None, timeout_s: float, model: ModelInfo,
                 client: QdrantClient | None = None) -> None:
        from qdrant_edge import Bm25, Bm25Config

        if client is None:
            from qdrant_client import QdrantClient

            client = QdrantClient(url=url, api_key=api_key, timeout=max(1, math.ceil(timeout_s)),
                                  check_compatibility=False)
        self._client = client
        self._model = model
        self._name = moments_collection(model)
        self._bm25 = Bm25(Bm25Config(language="english", avg_len=32.0))
        self._ready = False
        options = getattr(client, "init_options", {}) or {}
        local = options.get("location") == ":memory:" or options.get("path")
        self._serial: threading.Lock | None = threading.Lock() if local else None  # local mode is not thread-safe
        self._lock = threading.Lock()

    def _call(self, fn: Callable[[], T]) -> T:
        if self._serial is None:
            return _guarded(fn)
        with self._serial:
            return _guarded(fn)

    def _ensure(self) -> None:
        from qdrant_client.http import models as m

        with self._lock:
            if self._ready:
                return
            if not self._call(lambda: self._client.collection_exists(self._name)):
                try:
                    self._call(lambda: self._client.create_collection(
                        self._name,
                        vectors_config={DENSE: m.VectorParams(size=self._model.dim, distance=m.Distance.COSINE)},
                        sparse_vectors_config={SPARSE: m.SparseVectorParams(modifier=m.Modifier.IDF)},
                    ))
                except Exception:
                    if not self._call(lambda: self._client.collection_exists(self._name)):
                        raise  # else another worker created it meanwhile
                for key, schema in (("job_id", m.PayloadSchemaType.KEYWORD), ("tenant", m.PayloadSchemaType.KEYWORD),
                                    ("kind", m.PayloadSchemaType.KEYWORD), ("start_s", m.PayloadSchemaType.FLOAT),
                                    ("end_s", m.PayloadSchemaType.FLOAT)):
                    self._call(lambda k=key, s=schema: self._client.create_payload_index(  # type: ignore[misc]
                        self._name, k, s, wait=True))
            self._ready = True

    def _sparse(self, vector: Any) -> Any:
        from qdrant_client.http import models as m

        return m.SparseVector(indices=list(vector.indices), values=list(vector.values))

    def upsert(self, moments: Sequence[Moment], vectors: np.ndarray) -> None:
        from qdrant_client.http import models as m

        if len(moments) != len(vectors):
            raise ValueError(f"{len(moments)} moments but {len(vectors)} vectors")
        if not moments:
            return
        self._ensure()
        points = [
            m.PointStruct(id=moment_id(mo), payload=mo.model_dump(mode="json"),
                          vector={DENSE: as_list(v, self._model.dim),
                                  SPARSE: self._sparse(self._bm25.embed_document(mo.text))})
            for mo, v in zip(moments, vectors, strict=True)
        ]
        for start in range(0, len(points), UPSERT_CHUNK):
            chunk = points[start : start + UPSERT_CHUNK]
            self._call(lambda c=chunk: self._client.upsert(self._name, c, wait=True))  # type: ignore[misc]

    def search(self, text: str, vector: np.ndarray, limit: int, flt: MomentFilter) -> list[MomentHit]:
        from qdrant_client.http import models as m

        if limit <= 0:
            return []
        condition = _filter(flt)
        depth = max(limit * 4, 50)
        prefetch = [
            m.Prefetch(query=as_list(vector, self._model.dim), using=DENSE, limit=depth, filter=condition,
                       score_threshold=MIN_SIMILARITY),
            m.Prefetch(query=self._sparse(self._bm25.embed_query(text)), using=SPARSE, limit=depth,
                       filter=condition),
        ]
        try:
            if not self._call(lambda: self._client.collection_exists(self._name)):
                return []
            response = self._call(lambda: self._client.query_points(
                self._name, prefetch=prefetch, query=m.FusionQuery(fusion=m.Fusion.RRF), limit=limit,
                with_payload=True))
        except _Missing:
            return []
        out = []
        for hit in response.points:
            moment = Moment.model_validate(dict(hit.payload or {}))
            out.append(MomentHit(job_id=moment.job_id, kind=moment.kind, text=moment.text, start_s=moment.start_s,
                                 end_s=moment.end_s, pts_s=moment.pts_s if moment.pts_s is not None else
                                 moment.start_s, shot=moment.shot, score=float(hit.score),
                                 matched=matched_words(text, moment.text)))
        return out

    def count(self, flt: MomentFilter) -> int:
        try:
            if not self._call(lambda: self._client.collection_exists(self._name)):
                return 0
            result = self._call(lambda: self._client.count(self._name, count_filter=_filter(flt), exact=True))
        except _Missing:
            return 0
        return int(result.count)

    def job_ids(self) -> set[str]:
        try:
            if not self._call(lambda: self._client.collection_exists(self._name)):
                return set()
            response = self._call(lambda: self._client.facet(self._name, key="job_id", limit=FACET_LIMIT, exact=True))
        except _Missing:
            return set()
        return {str(hit.value) for hit in response.hits if hit.count > 0}

    def delete(self, flt: MomentFilter) -> None:
        from qdrant_client.http import models as m

        if flt.job_id is None and flt.tenant is None:
            raise ValueError("delete needs a job_id or a tenant: refusing to empty the moment index")
        try:
            if not self._call(lambda: self._client.collection_exists(self._name)):
                return
            self._call(lambda: self._client.delete(self._name, m.FilterSelector(filter=_filter(flt)), wait=True))
        except _Missing:
            return

    def close(self) -> None:
        return None  # the client belongs to whoever made it (the frames index may share the server)
