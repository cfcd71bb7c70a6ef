"""Lambda events for tests, built from the files in events/ that `sam local invoke` uses."""

from __future__ import annotations

import copy
import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from types import ModuleType
from typing import TYPE_CHECKING, Any

from tests.conftest import ROOT

if TYPE_CHECKING:
    from video_ai.runtime import Runtime

EVENTS = ROOT / "events"


@contextmanager
def functions_on(runtime: Runtime) -> Iterator[dict[str, ModuleType]]:
    """Every function's handler module, freshly imported with `runtime` installed (their bootstraps pick it up);
    afterwards the runtime is uninstalled and the modules dropped, so the next test module imports its own."""
    from video_ai.local.functions import FUNCTION_NAMES, load_function
    from video_ai.runtime import install_runtime

    def drop() -> None:
        for name in FUNCTION_NAMES:
            sys.modules.pop(f"video_ai_fn_{name}_handler", None)

    drop()
    install_runtime(runtime)
    try:
        yield {name: load_function(name) for name in FUNCTION_NAMES}
    finally:
        install_runtime(None)
        drop()


@cache
def _load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((EVENTS / name).read_text())
    return data


def load_event(name: str) -> dict[str, Any]:
    """A fresh copy of events/<name>."""
    return copy.deepcopy(_load(name))


def api_event(method: str, path: str, body: dict[str, Any] | None, api_key: str) -> dict[str, Any]:
    """An HTTP API (payload v2) event for `method path` with a JSON body, as API Gateway sends it."""
    data = load_event("api_post_analyze.json")
    data["rawPath"] = path
    data["routeKey"] = f"{method} {path}"
    data["requestContext"]["http"]["method"] = method
    data["requestContext"]["http"]["path"] = path
    data["headers"]["x-api-key"] = api_key
    data["body"] = json.dumps(body) if body is not None else None
    data["isBase64Encoded"] = False
    return data
