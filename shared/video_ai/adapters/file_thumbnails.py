"""Per-frame thumbnails as files under the data dir (the embedded setup: `serve`, the CLI): <root>/<job>/<index>.jpg."""

from __future__ import annotations

from pathlib import Path

from video_ai.adapters.file_artifacts import FileArtifacts


class FileThumbnails:
    def __init__(self, root: Path) -> None:
        self.root = root
        self._files = FileArtifacts(root)

    def put(self, job_id: str, index: int, jpeg: bytes) -> None:
        if index < 0:
            raise ValueError(f"not a job id and sample index: {job_id[:128]!r}, {index}")
        try:
            self._files.put(job_id, f"{index}.jpg", jpeg)
        except ValueError:
            raise ValueError(f"not a job id and sample index: {job_id[:128]!r}, {index}") from None

    def get(self, job_id: str, index: int) -> bytes | None:
        return self._files.get(job_id, f"{index}.jpg") if index >= 0 else None

    def copy(self, from_job: str, to_job: str) -> int:
        return self._files.copy(from_job, to_job)

    def delete(self, job_id: str) -> None:
        self._files.delete(job_id)
