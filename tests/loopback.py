"""Loopback HTTP servers for tests: started in a thread, stopped with bounded waits."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import HTTPServer
from typing import TypeVar

S = TypeVar("S", bound=HTTPServer)


def running(server: S) -> Iterator[S]:
    """Serve in a daemon thread for the duration of the generator; a `release` event (held-open handlers) is set
    first, so shutdown never waits on a handler that is hanging on purpose."""
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        release = getattr(server, "release", None)
        if isinstance(release, threading.Event):
            release.set()
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
