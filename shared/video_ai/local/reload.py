"""Config hot reload for `video-ai serve`: watch the config file, validate, swap the running settings or keep them.

A valid edit is applied in place (`runtime.settings` and the API context's settings, which the routes and the
workers read per request / per job); sections that wire long-lived parts (the model, the vector store, the data dir,
the AWS resources `serve` created) keep their running values and a warning says a restart is needed. An invalid edit
keeps the running config and logs one error line naming the field.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from video_ai.domain.errors import ConfigError
from video_ai.domain.ports import Metrics
from video_ai.settings import Settings

logger = logging.getLogger("video_ai.reload")

# Sections whose objects are built once (embedder, index, AWS clients, data files): changing them needs a restart.
RESTART_SECTIONS = ("data_dir", "qdrant", "model", "aws", "profile")


def changed_fields(old: Settings, new: Settings) -> list[str]:
    """Dotted names of the leaf values that differ (secrets compared by value, never logged)."""
    def flatten(value: Any, prefix: str) -> dict[str, Any]:
        if isinstance(value, dict):
            out: dict[str, Any] = {}
            for key, item in value.items():
                out.update(flatten(item, f"{prefix}.{key}" if prefix else str(key)))
            return out
        return {prefix: value}

    a = flatten(old.model_dump(mode="json"), "")
    b = flatten(new.model_dump(mode="json"), "")
    return sorted(k for k in a.keys() | b.keys() if a.get(k) != b.get(k))


def keep_restart_sections(running: Settings, candidate: Settings) -> tuple[Settings, list[str]]:
    """`candidate` with the restart-only sections taken from `running`, and the fields that were held back."""
    held = [f for f in changed_fields(running, candidate) if f.split(".")[0] in RESTART_SECTIONS]
    update = {name: getattr(running, name) for name in RESTART_SECTIONS}
    return candidate.model_copy(update=update), held


class ConfigReloader:
    """Re-reads one config file on change; `build` makes the candidate Settings, `apply` installs it."""

    def __init__(
        self,
        path: Path,
        *,
        current: Callable[[], Settings],
        build: Callable[[], Settings],
        apply: Callable[[Settings], None],
        metrics: Metrics,
        debounce_ms: int = 200,
    ) -> None:
        self.path = path
        self._current = current
        self._build = build
        self._apply = apply
        self._metrics = metrics
        self._debounce_ms = debounce_ms
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._digest = self._file_digest()

    def _file_digest(self) -> str | None:
        try:
            return hashlib.sha256(self.path.read_bytes()).hexdigest()
        except OSError:
            return None

    def reload_now(self) -> bool | None:
        """Validate and apply the file as it is now: True applied, False rejected, None unchanged."""
        with self._lock:
            digest = self._file_digest()
            if digest is not None and digest == self._digest:
                return None
            self._digest = digest
            try:
                candidate = self._build()
            except ConfigError as err:
                self._metrics.count("config_reloads", result="rejected")
                logger.error("config reload rejected, keeping the running config: %s", err.message)
                return False
            running = self._current()
            candidate, held = keep_restart_sections(running, candidate)
            changes = changed_fields(running, candidate)
            # Logged before applying, so a change of logging.level does not hide its own line.
            logger.info("config reloaded from %s: %s", self.path, ", ".join(changes) if changes else "no changes")
            if held:
                logger.warning("config: %s changed but needs a restart of `video-ai serve`", ", ".join(held))
            self._apply(candidate)
            self._metrics.count("config_reloads", result="ok")
            return True

    def start(self) -> None:
        self._thread = threading.Thread(target=self._watch, name="config-reload", daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        from watchfiles import watch

        # Watch the directory, not the file: editors save by writing a new file and renaming it over the old one.
        target = self.path.resolve()

        def only_config(_: Any, changed: str) -> bool:
            return Path(changed).resolve() == target

        try:
            for _changes in watch(target.parent, watch_filter=only_config, stop_event=self._stop,
                                  debounce=self._debounce_ms, rust_timeout=500, yield_on_timeout=False,
                                  raise_interrupt=False):
                try:
                    self.reload_now()
                except Exception:
                    logger.exception("config reload failed")
        except Exception:
            if not self._stop.is_set():
                logger.exception("config watcher stopped; edits to %s will not be applied", self.path)

    def stop(self, timeout: float = 2.0) -> bool:
        self._stop.set()
        if self._thread is None:
            return True
        self._thread.join(timeout)
        return not self._thread.is_alive()
