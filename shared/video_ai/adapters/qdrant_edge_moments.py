"""MomentIndex on Qdrant's embedded engine: one EdgeShard `moments__<text model>__<dim>` under `data_dir/qdrant`.

Each moment is one point with two vectors: `text`, the sentence model's dense vector (cosine), and `keywords`, a
BM25 document vector of its text made by qdrant-edge's own `Bm25` (English stemming and stopwords), stored with the
IDF modifier so the engine weighs rare words up. A search runs both (dense on the query's vector, sparse on the
query's BM25 terms) as prefetches and fuses the two rankings with reciprocal rank fusion: the dense side finds
"feline" for "cat", the keyword side the exact label words.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from qdrant_edge import (
    Bm25,
    Bm25Config,
    CountRequest,
    Distance,
    EdgeConfig,
    EdgeShard,
    EdgeSparseVectorParams,
    EdgeVectorParams,
    FieldCondition,
    Filter,
    FloatIndexParams,
    Fusion,
    KeywordIndexParams,
    MatchAny,
    MatchValue,
    Modifier,
    Point,
    Prefetch,
    Query,
    QueryRequest,
    RangeFloat,
    SearchParams,
    UpdateOperation,
)

from video_ai.adapters.qdrant_common import as_list, facet_values
from video_ai.domain.errors import IndexUnavailable
from video_ai.domain.models import ModelInfo, Moment, MomentFilter, MomentHit, moment_id

DENSE = "text"
SPARSE = "keywords"
UPSERT_CHUNK = 256
RRF_K = 60  # the usual constant: ranks below ~60 contribute little
# Dense candidates below this cosine are not candidates at all: without a floor the dense side returns its nearest
# moments for any text ("xyzzy" -> 0.17 to a tabby), and a query that matches nothing must answer nothing. Measured
# on label texts: right answers 0.30-0.63 ("dog" -> beagle 0.30, "kitten" -> tabby 0.40), nonsense <= 0.2.
MIN_SIMILARITY = 0.3
_CONFIG_FILE = "edge_config.json"
_FIELD_INDEXES: dict[str, Any] = {
    "job_id": KeywordIndexParams(),
    "tenant": KeywordIndexParams(is_tenant=True),
    "kind": KeywordIndexParams(),
    "start_s": FloatIndexParams(),
    "end_s": FloatIndexParams(),
}
_WORD = re.compile(r"[^\W_]+", re.UNICODE)


def moments_collection(model: ModelInfo) -> str:
    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in model.name)
    return f"moments__{safe}__{model.dim}"


def moment_filter(flt: MomentFilter) -> Filter | None:
    must: list[Any] = []
    if flt.tenant is not None:
        must.append(FieldCondition("tenant", match=MatchValue(flt.tenant)))
    if flt.job_id is not None:
        must.append(FieldCondition("job_id", match=MatchValue(flt.job_id)))
    if flt.end_s is not None:
        must.append(FieldCondition("start_s", range=RangeFloat(lte=flt.end_s)))
    if flt.start_s is not None:
        must.append(FieldCondition("end_s", range=RangeFloat(gte=flt.start_s)))
    if flt.kinds:
        must.append(FieldCondition("kind", match=MatchAny(list(flt.kinds))))
    return Filter(must=must) if must else None


def matched_words(query: str, text: str) -> list[str]:
    """The query's words found in a moment's text (case-insensitive whole words, or a word of the text starting with
    the query word: "cats" -> "cat" is not found, "cat" -> "cats" is)."""
    words = {w.lower() for w in _WORD.findall(text)}
    found = []
    for word in dict.fromkeys(w.lower() for w in _WORD.findall(query)):
        if len(word) > 1 and (word in words or any(w.startswith(word) for w in words)):
            found.append(word)
    return found


class QdrantEdgeMoments:
    """Moments on the embedded engine; thread-safe (one lock per shard, like the frames index)."""

    def __init__(self, data_dir: Path, model: ModelInfo, *, exact: bool = False) -> None:
        self._path = Path(data_dir) / "qdrant" / moments_collection(model)
        self._model = model
        self._bm25 = Bm25(Bm25Config(language="english", avg_len=32.0))
        self._params = SearchParams(exact=True) if exact else None
        self._shard: EdgeShard | None = None
        self._lock = threading.Lock()
        self._closed = False

    def _open(self, create: bool) -> EdgeShard | None:
        if self._closed:
            raise IndexUnavailable("the moment index is closed")
        if self._shard is None:
            config = EdgeConfig(
                vectors={DENSE: EdgeVectorParams(size=self._model.dim, distance=Distance.Cosine)},
                sparse_vectors={SPARSE: EdgeSparseVectorParams(modifier=Modifier.Idf)},
            )
            if (self._path / _CONFIG_FILE).exists():
                self._shard = EdgeShard.load(str(self._path), config)
            elif create:
                self._path.mkdir(parents=True, exist_ok=True)
                self._shard = EdgeShard.create(str(self._path), config)
            else:
                return None
            existing = set(self._shard.info().payload_schema)
            for name, params in _FIELD_INDEXES.items():
                if name not in existing:
                    self._shard.update(UpdateOperation.create_field_index(name, params))
        return self._shard

    def upsert(self, moments: Sequence[Moment], vectors: np.ndarray) -> None:
        if len(moments) != len(vectors):
            raise ValueError(f"{len(moments)} moments but {len(vectors)} vectors")
        points = [
            Point(moment_id(m), {DENSE: as_list(v, self._model.dim), SPARSE: self._bm25.embed_document(m.text)},
                  m.model_dump(mode="json"))
            for m, v in zip(moments, vectors, strict=True)
        ]
        if not points:
            return
        with self._lock:
            shard = self._open(create=True)
            assert shard is not None
            for start in range(0, len(points), UPSERT_CHUNK):
                shard.update(UpdateOperation.upsert_points(points[start : start + UPSERT_CHUNK]))
            shard.flush()

    def search(self, text: str, vector: np.ndarray, limit: int, flt: MomentFilter) -> list[MomentHit]:
        if limit <= 0:
            return []
        condition = moment_filter(flt)
        depth = max(limit * 4, 50)  # each side's candidates before fusion
        request = QueryRequest(
            limit=limit,
            prefetches=[
                Prefetch(depth, query=Query.Nearest(as_list(vector, self._model.dim), using=DENSE),
                         filter=condition, params=self._params, score_threshold=MIN_SIMILARITY),
                Prefetch(depth, query=Query.Nearest(self._bm25.embed_query(text), using=SPARSE), filter=condition),
            ],
            query=Fusion.Rrf(k=RRF_K),  # type: ignore[arg-type]  # the stub omits Fusion's nested classes
            with_payload=True,
        )
        with self._lock:
            shard = self._open(create=False)
            if shard is None:
                return []
            hits = shard.query(request)
        out = []
        for hit in hits:
            payload = dict(hit.payload or {})
            moment = Moment.model_validate(payload)
            out.append(MomentHit(job_id=moment.job_id, kind=moment.kind, text=moment.text, start_s=moment.start_s,
                                 end_s=moment.end_s, pts_s=moment.pts_s if moment.pts_s is not None else
                                 moment.start_s, shot=moment.shot, score=float(hit.score),
                                 matched=matched_words(text, moment.text)))
        return out

    def search_side(self, text: str, vector: np.ndarray, limit: int, flt: MomentFilter, side: str) -> list[str]:
        """One side of the fusion alone (`dense` or `keywords`), as texts: benchmarks compare it with exact."""
        query = (Query.Nearest(as_list(vector, self._model.dim), using=DENSE) if side == "dense"
                 else Query.Nearest(self._bm25.embed_query(text), using=SPARSE))
        request = QueryRequest(limit=limit, query=query, filter=moment_filter(flt), with_payload=True,
                               score_threshold=MIN_SIMILARITY if side == "dense" else None)
        with self._lock:
            shard = self._open(create=False)
            hits = shard.query(request) if shard is not None else []
        return [str((h.payload or {}).get("text", "")) for h in hits]

    def count(self, flt: MomentFilter) -> int:
        with self._lock:
            shard = self._open(create=False)
            if shard is None:
                return 0
            return int(shard.count(CountRequest(exact=True, filter=moment_filter(flt))))

    def delete(self, flt: MomentFilter) -> None:
        if flt.job_id is None and flt.tenant is None:
            raise ValueError("delete needs a job_id or a tenant: refusing to empty the moment index")
        condition = moment_filter(flt)
        assert condition is not None
        with self._lock:
            shard = self._open(create=False)
            if shard is None:
                return
            shard.update(UpdateOperation.delete_points_by_filter(condition))
            shard.flush()

    def job_ids(self) -> set[str]:
        with self._lock:
            shard = self._open(create=False)
            return set() if shard is None else facet_values(shard, "job_id")

    def close(self) -> None:
        with self._lock:
            if self._shard is not None and not self._closed:
                self._shard.flush()
                self._shard.close()
            self._shard = None
            self._closed = True
