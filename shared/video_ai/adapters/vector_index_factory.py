"""Build the VectorIndex adapter the settings ask for; the adapter modules are imported only when chosen."""

from __future__ import annotations

from video_ai.domain.ports import VectorIndex
from video_ai.settings import Settings


def build_vector_index(settings: Settings) -> VectorIndex:
    """`qdrant.backend`: "edge" -> embedded engine under data_dir; "server" -> Qdrant server by URL."""
    qdrant = settings.qdrant
    if qdrant.backend == "server":
        from video_ai.adapters.qdrant_server_index import QdrantServerIndex

        api_key = qdrant.api_key.get_secret_value() if qdrant.api_key is not None else None
        return QdrantServerIndex(qdrant.server_url(), api_key, qdrant.timeout_s)
    from video_ai.adapters.qdrant_edge_index import HnswSettings, QdrantEdgeIndex

    hnsw = HnswSettings(
        index_after=qdrant.index_after,
        m=qdrant.hnsw_m,
        ef_construct=qdrant.hnsw_ef_construct,
        ef=qdrant.hnsw_ef,
        quantization=qdrant.quantization,
        oversampling=qdrant.oversampling,
    )
    return QdrantEdgeIndex(settings.data_dir, exact=qdrant.exact_search, hnsw=hnsw)
