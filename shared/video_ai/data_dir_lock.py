"""One process at a time owns a data dir: Qdrant's embedded engine under it has a single writer.

`video-ai serve` and the CLI commands that open the embedded index take an exclusive `flock` on
`<data_dir>/.lock` and describe themselves in `<data_dir>/owner.json` (pid, command, and for `serve` its API URL and
development key, mode 0600), so a second process can say in one line who holds the data dir, or talk to `serve`
through its API. The kernel drops the lock when its holder dies, so a crashed owner never blocks the next start.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, Any

from video_ai.domain.errors import VideoAIError

LOCK_FILE = ".lock"
OWNER_FILE = "owner.json"


class DataDirBusy(VideoAIError):
    """Another process holds the data dir (a running `serve`, or another CLI command)."""

    code = "data_dir_busy"
    http_status = 409


@dataclass(slots=True)
class Owner:
    pid: int
    command: str
    api: str | None = None
    api_key: str | None = None


def read_owner(data_dir: Path) -> Owner | None:
    """What owner.json says, or None when it is missing or unreadable (written at acquire, so rarely so)."""
    try:
        raw: Any = json.loads((Path(data_dir) / OWNER_FILE).read_text(encoding="utf-8"))
        return Owner(pid=int(raw["pid"]), command=str(raw["command"]), api=raw.get("api"), api_key=raw.get("api_key"))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def busy_message(data_dir: Path, owner: Owner | None) -> str:
    if owner is None:
        who, use = "another process", ""
    else:
        who = f"`{owner.command}` (pid {owner.pid}{', api ' + owner.api if owner.api else ''})"
        use = f"submit through its API (POST {owner.api}/analyze), " if owner.api else ""
    return (f"data dir {data_dir} is in use by {who}: Qdrant's embedded engine has one writer; "
            f"{use}stop that process, or give this one another data dir (VIDEO_AI__DATA_DIR=PATH)")


class DataDirLock:
    """An exclusive, non-blocking hold on a data dir for the life of one process's use of it."""

    def __init__(self, data_dir: Path, command: str) -> None:
        self.data_dir = Path(data_dir)
        self.command = command
        self._file: IO[bytes] | None = None

    def acquire(self) -> DataDirLock:
        """Take the lock or raise DataDirBusy naming the holder."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        handle = open(self.data_dir / LOCK_FILE, "ab")  # noqa: SIM115 - held open for the life of the lock
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            raise DataDirBusy(busy_message(self.data_dir, read_owner(self.data_dir)), field="data_dir") from None
        self._file = handle
        self.publish(Owner(pid=os.getpid(), command=self.command))
        return self

    def publish(self, owner: Owner) -> None:
        """Rewrite owner.json (0600: it may carry the development key) atomically."""
        path = self.data_dir / OWNER_FILE
        tmp = path.with_name(f".{OWNER_FILE}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            json.dump({k: v for k, v in asdict(owner).items() if v is not None}, out)
        os.replace(tmp, path)

    def release(self) -> None:
        if self._file is None:
            return
        with contextlib.suppress(OSError):
            (self.data_dir / OWNER_FILE).unlink()
        self._file.close()  # closing the descriptor drops the flock
        self._file = None

    def __enter__(self) -> DataDirLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def current_owner(data_dir: Path) -> Owner | None:
    """The process holding `data_dir` now, or None when nobody does (a stale owner.json is ignored)."""
    path = Path(data_dir) / LOCK_FILE
    try:
        handle = open(path, "rb")  # noqa: SIM115
    except OSError:
        return None
    with handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return read_owner(data_dir) or Owner(pid=0, command="another process")
        fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
        return None


__all__ = ["DataDirBusy", "DataDirLock", "Owner", "busy_message", "current_owner", "read_owner"]
