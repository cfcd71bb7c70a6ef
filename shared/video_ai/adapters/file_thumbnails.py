"""Per-frame thumbnails as files under the data dir (the embedded setup: `serve`, the CLI): <root>/<job>/<index>.jpg."""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path

# Job ids are uuids here; anything else (a path separator, "..") never reaches the file system.
_SAFE_ID = re.compile(r"[A-Za-z0-9_-]{1,128}")


class FileThumbnails:
    def __init__(self, root: Path) -> None:
        self.root = root

    def _dir(self, job_id: str) -> Path | None:
        return self.root / job_id if _SAFE_ID.fullmatch(job_id) else None

    def put(self, job_id: str, index: int, jpeg: bytes) -> None:
        folder = self._dir(job_id)
        if folder is None or index < 0:
            raise ValueError(f"not a job id and sample index: {job_id[:128]!r}, {index}")
        folder.mkdir(parents=True, exist_ok=True)
        # Written whole, then renamed: a reader never sees half a JPEG.
        fd, tmp = tempfile.mkstemp(dir=folder, suffix=".part")
        with os.fdopen(fd, "wb") as out:
            out.write(jpeg)
        os.replace(tmp, folder / f"{index}.jpg")

    def get(self, job_id: str, index: int) -> bytes | None:
        folder = self._dir(job_id)
        if folder is None or index < 0:
            return None
        try:
            return (folder / f"{index}.jpg").read_bytes()
        except FileNotFoundError:
            return None

    def copy(self, from_job: str, to_job: str) -> int:
        source, target = self._dir(from_job), self._dir(to_job)
        if source is None or target is None or not source.is_dir():
            return 0
        shutil.copytree(source, target, dirs_exist_ok=True, ignore=shutil.ignore_patterns("*.part"))
        return sum(1 for _ in target.glob("*.jpg"))

    def delete(self, job_id: str) -> None:
        folder = self._dir(job_id)
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)
