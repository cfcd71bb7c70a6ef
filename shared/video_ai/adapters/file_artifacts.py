"""Per-job files under the data dir (the embedded setup: `serve`, the CLI): <root>/<job_id>/<name>.

The ArtifactStore (transcripts, OCR lines: results too big for a job record) and FileThumbnails share it."""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path

# Job ids are uuids here; anything else (a path separator, "..") never reaches the file system.
SAFE_ID = re.compile(r"[A-Za-z0-9_-]{1,128}")
# Artifact names are plain file names chosen by the code ("transcript.json"): no separators, no leading dot.
SAFE_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.-]{0,127}")


def check_key(job_id: str, name: str) -> None:
    if not SAFE_ID.fullmatch(job_id) or not SAFE_NAME.fullmatch(name) or ".." in name:
        raise ValueError(f"not a job id and artifact name: {job_id[:128]!r}, {name[:128]!r}")


class FileArtifacts:
    def __init__(self, root: Path) -> None:
        self.root = root

    def _dir(self, job_id: str) -> Path | None:
        return self.root / job_id if SAFE_ID.fullmatch(job_id) else None

    def put(self, job_id: str, name: str, data: bytes) -> None:
        check_key(job_id, name)
        folder = self.root / job_id
        folder.mkdir(parents=True, exist_ok=True)
        # Written whole, then renamed: a reader never sees half a file.
        fd, tmp = tempfile.mkstemp(dir=folder, suffix=".part")
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.replace(tmp, folder / name)

    def get(self, job_id: str, name: str) -> bytes | None:
        try:
            check_key(job_id, name)
            return (self.root / job_id / name).read_bytes()
        except (ValueError, FileNotFoundError):
            return None

    def copy(self, from_job: str, to_job: str) -> int:
        source, target = self._dir(from_job), self._dir(to_job)
        if source is None or target is None or not source.is_dir():
            return 0
        shutil.copytree(source, target, dirs_exist_ok=True, ignore=shutil.ignore_patterns("*.part"))
        return sum(1 for path in target.iterdir() if not path.name.endswith(".part"))

    def delete(self, job_id: str) -> None:
        folder = self._dir(job_id)
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)
