"""build_vector_index picks the adapter from settings; the API's cold path does not import qdrant_client."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from video_ai.adapters.qdrant_edge_index import QdrantEdgeIndex
from video_ai.adapters.qdrant_server_index import QdrantServerIndex
from video_ai.adapters.vector_index_factory import build_vector_index
from video_ai.settings import load_settings

pytestmark = pytest.mark.filterwarnings("ignore:Api key is used with an insecure connection:UserWarning")


def test_edge_backend_builds_the_embedded_index_under_data_dir(tmp_path: Path) -> None:
    settings = load_settings(environ={"VIDEO_AI__DATA_DIR": str(tmp_path), "VIDEO_AI__QDRANT__BACKEND": "edge"})
    index = build_vector_index(settings)
    assert isinstance(index, QdrantEdgeIndex)
    index.close()
    assert not (tmp_path / "qdrant").exists()  # nothing is created until a collection is used


def test_server_backend_builds_a_client_with_url_key_and_timeout() -> None:
    settings = load_settings(
        environ={
            "VIDEO_AI__QDRANT__BACKEND": "server",
            "VIDEO_AI__QDRANT__URL": "http://qdrant.internal:6333",
            "VIDEO_AI__QDRANT__TIMEOUT_S": "2.5",
            "QDRANT_API_KEY": "k-123",
        }
    )
    index = build_vector_index(settings)  # no request is made on construction
    assert isinstance(index, QdrantServerIndex)
    client = index._client
    assert client.init_options["url"] == "http://qdrant.internal:6333"
    assert client.init_options["api_key"] == "k-123"
    assert client.init_options["timeout"] == 3  # qdrant-client takes whole seconds: rounded up
    index.close()


def test_importing_the_factory_and_adapters_does_not_import_qdrant_client() -> None:
    code = (
        "import sys, video_ai.adapters.vector_index_factory, video_ai.adapters.qdrant_server_index, "
        "video_ai.domain.ports; print('qdrant_client' in sys.modules, 'qdrant_edge' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.split() == ["False", "False"]
