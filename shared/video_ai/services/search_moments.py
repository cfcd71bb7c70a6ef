"""search_moments: `POST /search {text}` and `video-ai search --text`: moments whose words match a query."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from video_ai.domain.models import MomentFilter, MomentHit
from video_ai.domain.ports import MomentIndex, TextEmbedder


@dataclass(slots=True, frozen=True)
class TextQuery:
    tenant: str
    text: str
    top_k: int = 10
    job_id: str | None = None
    start_s: float | None = None
    end_s: float | None = None
    kinds: tuple[str, ...] = ()


@dataclass(slots=True)
class TextSearchDeps:
    index: MomentIndex
    embedder: Callable[[], TextEmbedder]  # the sentence model loads only when a text query comes


def search_moments(query: TextQuery, deps: TextSearchDeps) -> list[MomentHit]:
    """The caller's moments best matching the text (dense and keyword rankings fused), best first; [] when none."""
    vector = deps.embedder().embed([query.text])[0]
    flt = MomentFilter(tenant=query.tenant, job_id=query.job_id, start_s=query.start_s, end_s=query.end_s,
                       kinds=query.kinds)
    return deps.index.search(query.text, vector, query.top_k, flt)
