"""Lambda events for tests, built from the files in events/ that `sam local invoke` uses."""

from __future__ import annotations

import copy
import json
from functools import cache
from typing import Any

from tests.conftest import ROOT

EVENTS = ROOT / "events"


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
