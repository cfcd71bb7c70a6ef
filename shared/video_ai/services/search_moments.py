"""search_moments: `POST /search {text}` and `video-ai search --text`: moments whose words match a query."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np

from video_ai.domain.models import MomentFilter, MomentHit, SearchHit
from video_ai.domain.ports import JobRepository, MomentIndex, TextEmbedder
from video_ai.services.search_frames import SearchDeps, SearchQuery, search_frames
from video_ai.services.sweep_orphans import known_jobs


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
    jobs: JobRepository | None = None  # given: moments whose job record is gone are dropped


def search_moments(query: TextQuery, deps: TextSearchDeps) -> list[MomentHit]:
    """The caller's moments best matching the text (dense and keyword rankings fused), best first; [] when none."""
    vector = deps.embedder().embed([query.text])[0]
    flt = MomentFilter(tenant=query.tenant, job_id=query.job_id, start_s=query.start_s, end_s=query.end_s,
                       kinds=query.kinds)
    hits = deps.index.search(query.text, vector, query.top_k, flt)
    if deps.jobs is not None:
        known = known_jobs((h.job_id for h in hits), query.tenant, deps.jobs)
        hits = [h for h in hits if h.job_id in known]
    return hits


def search_words(query: TextQuery, deps: TextSearchDeps, image: np.ndarray | None = None,
                 frames: SearchDeps | None = None) -> list[MomentHit]:
    """`POST /search {text, image_base64?}` and `video-ai search --text [--image]`: the text's moments; with an image
    (and the frame index in `frames`), the text's wider candidate list reordered by `fuse_with_frames`."""
    if image is None or frames is None:
        return search_moments(query, deps)[: query.top_k]
    moments = search_moments(replace(query, top_k=max(50, 4 * query.top_k)), deps)  # candidates for the image
    if not moments:
        return []
    shots = search_frames(SearchQuery(tenant=query.tenant, image=image, top_k=100, job_id=query.job_id,
                                      start_s=query.start_s, end_s=query.end_s, collapse="shot"), frames)
    return fuse_with_frames(moments, shots, query.top_k)


RRF_K = 60


def fuse_with_frames(moments: list[MomentHit], frames: list[SearchHit], top_k: int) -> list[MomentHit]:
    """Text and image together: shots ranked by reciprocal rank fusion of the text's ranking of shots (each shot at
    its best moment) and the image's (its frame hits, one per shot); moments follow their shot's fused rank, then the
    text's order (ties: the image's). So among the moments whose words match, those whose shot looks like the image
    come first. Only moments are returned (what the text found); a shot the image did not rank gets the text's share
    only. The score is the shot's fused one."""
    def key(hit: MomentHit | SearchHit) -> tuple[str, int | None]:
        return hit.job_id, hit.shot

    text_rank: dict[tuple[str, int | None], int] = {}
    for hit in moments:
        text_rank.setdefault(key(hit), len(text_rank) + 1)
    image_rank: dict[tuple[str, int | None], int] = {}
    for frame in frames:
        image_rank.setdefault(key(frame), len(image_rank) + 1)
    shot_score = {shot: 1 / (RRF_K + rank) + (1 / (RRF_K + image_rank[shot]) if shot in image_rank else 0.0)
                  for shot, rank in text_rank.items()}
    # Ties (two lists with swapped ranks tie exactly) go to the image's order: a picture is the narrower query.
    unranked = len(image_rank) + 1
    ordered = sorted(enumerate(moments), key=lambda item: (-round(shot_score[key(item[1])], 12),
                                                           image_rank.get(key(item[1]), unranked), item[0]))
    return [m.model_copy(update={"score": round(shot_score[key(m)], 6)}) for _, m in ordered[:top_k]]
