"""What both Qdrant adapters (embedded engine and server) need to turn our points into theirs."""

from __future__ import annotations

import uuid
from typing import Any

import numpy as np

# Distinct job ids a facet returns at most: the orphan sweep's reach (a million jobs per collection).
FACET_LIMIT = 1_000_000


def facet_values(shard: Any, key: str) -> set[str]:
    """The distinct values of a keyword payload field on an embedded shard (exact counts, every value)."""
    from qdrant_edge import FacetRequest

    response = shard.facet(FacetRequest(key=key, limit=FACET_LIMIT, exact=True))
    return {str(hit.value) for hit in response.hits if hit.count > 0}  # exact facets list deleted values at 0


def plain(value: Any) -> Any:
    """numpy scalars would not serialise into the payload store."""
    return value.item() if isinstance(value, np.generic) else value


def as_list(vector: np.ndarray, dim: int) -> list[float]:
    flat = np.asarray(vector, dtype=np.float32).reshape(-1)
    if flat.shape[0] != dim:
        raise ValueError(f"vector has {flat.shape[0]} dimensions, the collection expects {dim}")
    values: list[float] = flat.tolist()
    return values


def valid_uuid(point_id: str) -> bool:
    """Our point ids are uuids; anything else cannot name a point (and Qdrant would refuse it)."""
    try:
        uuid.UUID(point_id)
    except ValueError:
        return False
    return True
