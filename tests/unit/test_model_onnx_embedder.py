"""OnnxEmbedder preprocessing, batching and normalisation against a fake onnxruntime session."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import video_ai.adapters.onnx_embedder as onnx_embedder
from video_ai.adapters.onnx_embedder import OnnxEmbedder
from video_ai.domain.models import ModelInfo
from video_ai.settings import ModelSettings


@dataclass
class _Node:
    name: str


class FakeSession:
    """Records every input tensor; its 'embedding' is the per-channel mean plus a constant tail of ones."""

    def __init__(self, dim: int = 8, input_name: str = "pixels") -> None:
        self.dim = dim
        self.input_name = input_name
        self.runs: list[tuple[list[str], np.ndarray]] = []

    def get_inputs(self) -> list[_Node]:
        return [_Node(self.input_name)]

    def get_outputs(self) -> list[_Node]:
        return [_Node("embedding"), _Node("logits")]

    def run(self, outputs: list[str], feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        (tensor,) = feeds.values()
        assert list(feeds) == [self.input_name]
        self.runs.append((outputs, tensor))
        axes = (2, 3) if tensor.shape[1] == 3 else (1, 2)
        means = tensor.mean(axis=axes)
        out = np.concatenate([means, np.ones((len(tensor), self.dim - 3), np.float32)], axis=1)
        return [out.astype(np.float32)]


def _embedder(session: FakeSession, **settings: Any) -> OnnxEmbedder:
    base: dict[str, Any] = {"dim": session.dim, "input_width": 32, "input_height": 24}
    return OnnxEmbedder(ModelSettings(**(base | settings)), Path("unused.onnx"), session=session)


def _image(h: int, w: int, rgb: tuple[int, int, int]) -> np.ndarray:
    return np.broadcast_to(np.array(rgb, np.uint8), (h, w, 3)).copy()


def test_info_and_input_size() -> None:
    embedder = _embedder(FakeSession(), name="m", version="v2")
    assert embedder.info == ModelInfo(name="m", version="v2", dim=8)
    assert embedder.input_size == (32, 24)


def test_images_at_input_size_are_normalised_without_resizing() -> None:
    session = FakeSession()
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)
    _embedder(session).embed([image])
    ((outputs, tensor),) = session.runs
    assert outputs == ["embedding"]
    assert tensor.shape == (1, 3, 24, 32) and tensor.dtype == np.float32 and tensor.flags.c_contiguous
    np.testing.assert_array_equal(tensor[0], ((image.astype(np.float32) - 127) / 128).transpose(2, 0, 1))


def test_other_sizes_are_resized_and_settings_drive_layout_colour_and_scaling() -> None:
    session = FakeSession()
    embedder = _embedder(
        session, color_order="BGR", layout="NHWC", mean=(10.0, 20.0, 30.0), std=(2.0, 4.0, 5.0), input_name="pixels"
    )
    embedder.embed([_image(480, 640, (200, 100, 50))])
    tensor = session.runs[0][1]
    assert tensor.shape == (1, 24, 32, 3)
    # channel 0 is blue now, scaled by the first mean/std pair
    np.testing.assert_allclose(tensor[0, 0, 0], [(50 - 10) / 2, (100 - 20) / 4, (200 - 30) / 5])


def test_splits_into_batches_and_returns_unit_rows() -> None:
    session = FakeSession()
    images = [_image(24, 32, (i * 20, 0, 255)) for i in range(5)]
    vectors = _embedder(session, batch_size=2).embed(images)
    assert [len(t) for _, t in session.runs] == [2, 2, 1]
    assert vectors.shape == (5, 8) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-6)
    # order preserved across batches: the red channel mean grows with i
    assert np.all(np.diff(vectors[:, 0]) > 0)


def test_empty_input_never_touches_the_model(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(onnx_embedder, "create_session", lambda *a: pytest.fail("session created"))
    embedder = OnnxEmbedder(ModelSettings(dim=16), Path("m.onnx"))
    out = embedder.embed([])
    assert out.shape == (0, 16) and out.dtype == np.float32


def test_session_is_created_lazily_once_with_configured_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    created: list[tuple[Path, int]] = []

    def fake_create(path: Path, threads: int = 0) -> FakeSession:
        created.append((path, threads))
        return FakeSession()

    monkeypatch.setattr(onnx_embedder, "create_session", fake_create)
    embedder = OnnxEmbedder(
        ModelSettings(dim=8, threads=2, input_width=32, input_height=24, input_name="pixels"), Path("m.onnx")
    )
    assert created == []
    embedder.embed([_image(24, 32, (1, 2, 3))])
    embedder.embed([_image(24, 32, (1, 2, 3))])
    assert created == [(Path("m.onnx"), 2)]


def test_dimension_mismatch_is_reported() -> None:
    embedder = OnnxEmbedder(ModelSettings(dim=512, input_width=32, input_height=24), Path("m"), FakeSession(dim=8))
    with pytest.raises(ValueError, match=r"8 values per image; model\.dim says 512"):
        embedder.embed([_image(24, 32, (0, 0, 0))])


def test_rejects_non_rgb_arrays() -> None:
    with pytest.raises(ValueError, match="expected an HxWx3"):
        _embedder(FakeSession()).embed([np.zeros((24, 32), np.uint8)])


def test_logits_uses_the_logits_output() -> None:
    session = FakeSession()
    _embedder(session).logits([_image(24, 32, (0, 0, 0))])
    assert session.runs[0][0] == ["logits"]
