"""`video-ai search --text --image` beside a running serve: the CLI asks serve's API with both, as POST /search takes
them (the data-dir path runs the real indexes in tests/integration/test_text_search.py)."""

from __future__ import annotations

import argparse
import base64
import json
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from video_ai import cli
from video_ai.settings import Settings


class Answer:
    status_code = 200

    def json(self) -> dict[str, Any]:
        return {"items": [{"job_id": "j", "kind": "label", "text": "tabby, cat", "start_s": 0.0, "end_s": 2.0,
                           "pts_s": 1.0, "shot": 0, "score": 0.03, "matched": ["cat"]}]}


def test_text_with_an_image_goes_to_serve_as_one_request_with_both(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    import httpx

    picture = tmp_path / "cat.png"
    cv2.imwrite(str(picture), np.full((8, 8, 3), 120, np.uint8))
    sent: list[dict[str, Any]] = []

    def post(url: str, json: dict[str, Any], headers: dict[str, str], timeout: float) -> Answer:
        sent.append({"url": url, "body": json, "key": headers["x-api-key"]})
        return Answer()

    monkeypatch.setattr(httpx, "post", post)
    args = argparse.Namespace(text=" cat ", image=str(picture), top_k=3, job_id=None, start_s=None, end_s=None,
                              json=True)
    assert cli._search_text(args, Settings(), ("http://127.0.0.1:1", "dev-key")) == 0
    assert sent == [{"url": "http://127.0.0.1:1/search", "key": "dev-key", "body": {
        "text": "cat", "top_k": 3, "image_base64": base64.b64encode(picture.read_bytes()).decode()}}]
    assert json.loads(capsys.readouterr().out)[0]["matched"] == ["cat"]
