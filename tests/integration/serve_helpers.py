"""Helpers for the `video-ai serve` integration tests: the subprocess, a loopback file server, a webhook receiver."""

from __future__ import annotations

import functools
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypeVar

import httpx

from video_ai.local.receiver import make_server

T = TypeVar("T")
READY_KEYS = ("api", "s3", "api_key", "webhook_secret")


def wait_for(probe: Callable[[], T | None], timeout: float, interval: float = 0.2, what: str = "condition") -> T:
    """Poll `probe` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def write_config(path: Path, data_dir: Path, *, fps: float = 1.0, level: str = "INFO", extra: str = "") -> None:
    """Write the config atomically (as editors do: a new file renamed over the old)."""
    text = (
        f"data_dir: {data_dir}\n"
        f"logging:\n  level: {level}\n  json: false\n"
        f"sampling:\n  mode: fps\n  fps: {fps}\n"
        f"{extra}"
    )
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


@dataclass
class ServeProcess:
    """`video-ai serve --port 0` as a subprocess, its stdout ready lines parsed and its stderr collected."""

    config: Path
    port: int = 0
    env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[str] | None = None
    stdout_lines: queue.Queue[str] = field(default_factory=queue.Queue)
    stderr_lines: list[str] = field(default_factory=list)
    info: dict[str, str] = field(default_factory=dict)
    _threads: list[threading.Thread] = field(default_factory=list)

    def start(self) -> ServeProcess:
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **self.env}
        env.pop("AWS_ENDPOINT_URL", None)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "video_ai.cli", "serve", "--port", str(self.port), "--config", str(self.config)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        )
        assert self.proc.stdout is not None and self.proc.stderr is not None
        stdout, stderr = self.proc.stdout, self.proc.stderr

        def pump_out() -> None:
            for line in stdout:
                self.stdout_lines.put(line.rstrip("\n"))

        def pump_err() -> None:
            for line in stderr:
                self.stderr_lines.append(line.rstrip("\n"))

        for target in (pump_out, pump_err):
            thread = threading.Thread(target=target, daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def wait_ready(self, timeout: float = 120.0) -> dict[str, str]:
        deadline = time.monotonic() + timeout
        while not all(k in self.info for k in READY_KEYS):
            assert self.proc is not None
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"serve not ready in {timeout:.0f} s; stderr tail: {self.stderr_tail()}")
            try:
                line = self.stdout_lines.get(timeout=min(0.5, remaining))
            except queue.Empty:
                if self.proc.poll() is not None:
                    raise AssertionError(f"serve exited {self.proc.returncode}: {self.stderr_tail()}") from None
                continue
            key, sep, value = line.partition(": ")
            assert sep and key in READY_KEYS, f"unexpected stdout line {line!r}"
            self.info[key] = value
        return self.info

    def wait_exit(self, timeout: float) -> int:
        assert self.proc is not None
        code = self.proc.wait(timeout=timeout)
        for thread in self._threads:
            thread.join(5)
        self._close_pipes()
        return code

    def _close_pipes(self) -> None:
        assert self.proc is not None
        for pipe in (self.proc.stdout, self.proc.stderr):
            if pipe is not None and not any(t.is_alive() for t in self._threads):
                pipe.close()

    def terminate(self, timeout: float = 30.0) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.wait_exit(timeout)

    def kill(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        for thread in self._threads:
            thread.join(5)
        self._close_pipes()

    def stderr_tail(self, n: int = 15) -> str:
        return "\n".join(self.stderr_lines[-n:])

    def stderr_matching(self, text: str) -> list[str]:
        return [line for line in list(self.stderr_lines) if text in line]

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.info["api"], headers={"x-api-key": self.info["api_key"]}, timeout=10.0)


@contextmanager
def serve_stack(workdir: Path, *, level: str = "INFO", env: dict[str, str] | None = None) -> Iterator[ServeProcess]:
    """`video-ai serve` on a config written to workdir/config.yml (data under workdir/data), ready; killed after."""
    config = workdir / "config.yml"
    write_config(config, workdir / "data", level=level)
    proc = ServeProcess(config, env=env or {}).start()
    try:
        proc.wait_ready()
        yield proc
    finally:
        proc.kill()


class FileServer:
    """`python -m http.server --bind 127.0.0.1` for one directory, on an ephemeral port, in a thread."""

    def __init__(self, directory: Path) -> None:
        handler = functools.partial(_QuietFiles, directory=str(directory))
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
        self.thread.start()

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/{name}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


class _QuietFiles(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        return None


class Receiver:
    """The tutorial's callback receiver (signatures verified with `standardwebhooks`), collecting what it accepts."""

    def __init__(self, secret: str) -> None:
        self.events: list[tuple[dict[str, Any], dict[str, str]]] = []
        self.bodies: list[bytes] = []  # as received, in the order of `events`
        self._lock = threading.Lock()
        self.server = make_server(secret, 0, on_event=self._record)
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
        self.thread.start()

    def _record(self, payload: dict[str, Any], headers: dict[str, str], body: bytes) -> None:
        with self._lock:
            self.events.append((payload, headers))
            self.bodies.append(body)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def event_for(self, job_id: str) -> tuple[dict[str, Any], dict[str, str]] | None:
        with self._lock:
            return next((e for e in self.events if e[0].get("job_id") == job_id), None)

    def deliveries_for(self, job_id: str) -> list[tuple[dict[str, str], bytes]]:
        """Every verified delivery for the job, oldest first: (headers, body as received)."""
        with self._lock:
            return [(headers, body) for (payload, headers), body in zip(self.events, self.bodies, strict=True)
                    if payload.get("job_id") == job_id]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)
