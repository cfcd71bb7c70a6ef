"""Where the ocr analyzer's lines live: "text.json" in the job's artifacts. Light (no cv2, no model): the API reads
it for GET /jobs/{id}/text."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from video_ai.domain.models import TextLine
from video_ai.domain.ports import ArtifactStore

ARTIFACT = "text.json"


def write_lines(store: ArtifactStore, job_id: str, lines: Sequence[TextLine], **about: Any) -> None:
    document = {**about, "lines": [line.model_dump(mode="json") for line in lines]}
    store.put(job_id, ARTIFACT, json.dumps(document, ensure_ascii=False).encode())


def read_lines(store: ArtifactStore, job_id: str) -> list[TextLine] | None:
    """A job's stored lines, or None when none are stored."""
    raw = store.get(job_id, ARTIFACT)
    if raw is None:
        return None
    return [TextLine.model_validate(line) for line in json.loads(raw).get("lines", [])]
