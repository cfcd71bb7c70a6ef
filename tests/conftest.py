"""Session-wide fixtures: the real model built once, AWS credentials that can never reach AWS."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from video_ai.adapters.aws import AwsClients
    from video_ai.adapters.rapid_ocr import RapidOcrReader

ROOT = Path(__file__).resolve().parents[1]

# Tests must never talk to a real AWS account, whatever the developer's shell has.
for _name in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_SESSION_TOKEN"):
    os.environ.pop(_name, None)
os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
os.environ.setdefault("POWERTOOLS_METRICS_NAMESPACE", "VideoAI")
os.environ.setdefault("POWERTOOLS_SERVICE_NAME", "video-ai-tests")


OCR_MODEL_DIR_ENV = "VIDEO_AI__ANALYSIS__OCR__MODEL_DIR"
OCR_INT8_DIR = Path(__file__).resolve().parent.parent / ".video-ai" / "test-cache" / "ocr"


@pytest.fixture(scope="session", autouse=True)
def _user_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The built-in model is cached per user ($XDG_CACHE_HOME): tests (and the subprocesses they start) use a
    session-wide one of their own, never the real user's."""
    saved = {name: os.environ.get(name) for name in ("XDG_CACHE_HOME", OCR_MODEL_DIR_ENV)}
    cache = tmp_path_factory.mktemp("user-cache")
    os.environ["XDG_CACHE_HOME"] = str(cache)
    # The int8 OCR models take ~30 s to build: kept between runs in the checkout (named by build version and source
    # digest, so a stale one is never used), built there by the first test (or serve) that reads text.
    os.environ[OCR_MODEL_DIR_ENV] = str(OCR_INT8_DIR)
    yield cache
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


@pytest.fixture(scope="module")
def moto_endpoint() -> Iterator[str]:
    """A moto server on loopback (an ephemeral port) for the module's tests."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture
def moto_clients(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[AwsClients]:
    """The project's AWS clients on the module's moto server; moto's state is reset after each test."""
    import urllib.request

    import boto3

    from video_ai.adapters.aws import AwsClients

    monkeypatch.delenv("AWS_PROFILE", raising=False)
    session = boto3.session.Session(aws_access_key_id="testing", aws_secret_access_key="testing",
                                    region_name="us-east-1")
    yield AwsClients("us-east-1", endpoint_url=moto_endpoint, session=session)
    request = urllib.request.Request(f"{moto_endpoint}/moto-api/reset", method="POST")
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200


@pytest.fixture(scope="session")
def model_path(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The real EfficientNet-Lite0 ONNX model, built once per test session from the packaged weights."""
    from video_ai.model import build_model

    path = tmp_path_factory.mktemp("model") / "efficientnet-lite0.onnx"
    build_model(path)
    yield path


_LIBRARY = logging.getLogger("video_ai")
_LIBRARY_BASELINE = (list(_LIBRARY.handlers), _LIBRARY.propagate, _LIBRARY.level)


@pytest.fixture(autouse=True)
def _library_logging_restored() -> Iterator[None]:
    """Loading a Lambda handler in-process reroutes the `video_ai` loggers through powertools (as in Lambda), and
    module-scoped fixtures do that before any per-test fixture runs: after each test, put back the logging the
    session started with."""
    yield
    _LIBRARY.handlers[:] = _LIBRARY_BASELINE[0]
    _LIBRARY.propagate = _LIBRARY_BASELINE[1]
    _LIBRARY.setLevel(_LIBRARY_BASELINE[2])


@pytest.fixture(scope="session")
def ocr_reader() -> RapidOcrReader:
    """The real OCR engine as the analyzer runs it by default (RapidOCR with the int8 copies of the wheel's PP-OCRv6
    models), loaded once per test session."""
    from video_ai.adapters.rapid_ocr import RapidOcrReader

    return RapidOcrReader(det_long_side=640, min_confidence=0.6, int8_dir=OCR_INT8_DIR)
