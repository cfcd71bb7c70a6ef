"""The ONNX EfficientNet-Lite0 built from the packaged weights matches an independent PyTorch reference."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from PIL import Image

from video_ai.adapters.onnx_embedder import OnnxEmbedder
from video_ai.model import build_model, imagenet_labels
from video_ai.settings import ModelSettings

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "model"
SIZE = 224
TOLERANCE = 1e-4
CAT_CLASSES = range(281, 286)  # tabby, tiger cat, Persian, Siamese, Egyptian cat


def reference_inputs() -> dict[str, np.ndarray]:
    """Same construction as make_reference.py (kept in step by the input_sums check)."""
    yy, xx = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32)
    gradient = np.stack([xx * 255 / (SIZE - 1), yy * 255 / (SIZE - 1), (xx + yy) * 255 / (2 * SIZE - 2)], axis=-1)
    return {
        "random0": np.random.default_rng(0).integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8),
        "random1": np.random.default_rng(1).integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8),
        "gradient": np.round(gradient).astype(np.uint8),
        "chelsea": np.asarray(Image.open(FIXTURES / "chelsea_224.png").convert("RGB")),
    }


@pytest.fixture(scope="module")
def reference() -> dict[str, np.ndarray]:
    with np.load(FIXTURES / "reference.npz") as data:
        return {k: data[k] for k in data.files}


@pytest.fixture(scope="module")
def images(reference: dict[str, np.ndarray]) -> np.ndarray:
    inputs = reference_inputs()
    names = [str(n) for n in reference["names"]]
    assert [int(inputs[n].astype(np.int64).sum()) for n in names] == reference["input_sums"].tolist()
    return np.stack([inputs[n] for n in names])


@pytest.fixture(scope="module")
def model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_model(tmp_path_factory.mktemp("model") / "lite0.onnx", include_logits=True)


@pytest.fixture(scope="module")
def session(model_path: Path) -> ort.InferenceSession:
    return ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])


def _normalise(batch_rgb: np.ndarray) -> np.ndarray:
    x = (batch_rgb.astype(np.float32) - 127.0) / 128.0
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))


def test_embedding_and_logits_match_pytorch_reference(
    session: ort.InferenceSession, images: np.ndarray, reference: dict[str, np.ndarray]
) -> None:
    embedding, logits = session.run(["embedding", "logits"], {"input": _normalise(images)})
    assert embedding.shape == (len(images), 1280) and embedding.dtype == np.float32
    assert np.abs(embedding - reference["embedding"]).max() <= TOLERANCE
    assert np.abs(logits - reference["logits"]).max() <= TOLERANCE


def test_photo_top1_is_the_reference_cat(session: ort.InferenceSession, reference: dict[str, np.ndarray]) -> None:
    photo = np.asarray(Image.open(FIXTURES / "chelsea_224.png").convert("RGB"))[None]
    (logits,) = session.run(["logits"], {"input": _normalise(photo)})
    top1 = int(logits[0].argmax())
    names = [str(n) for n in reference["names"]]
    assert top1 == int(reference["logits"][names.index("chelsea")].argmax())
    assert top1 in CAT_CLASSES, imagenet_labels()[top1]
    assert imagenet_labels()[top1] == "Egyptian cat"


def test_bgr_input_is_caught_by_the_numeric_check(
    session: ort.InferenceSession, images: np.ndarray, reference: dict[str, np.ndarray]
) -> None:
    (embedding,) = session.run(["embedding"], {"input": _normalise(images[..., ::-1])})
    assert np.abs(embedding - reference["embedding"]).max() > 1000 * TOLERANCE


def test_symmetric_padding_variant_is_caught(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, images: np.ndarray, reference: dict[str, np.ndarray]
) -> None:
    import video_ai.model.efficientnet_lite as lite

    # PyTorch-style symmetric padding (k // 2 both sides) instead of TF "SAME": same output shapes, wrong numbers.
    monkeypatch.setattr(lite, "same_pads", lambda size, kernel, stride: (kernel // 2, kernel // 2))
    wrong = ort.InferenceSession(str(build_model(tmp_path / "wrong.onnx")), providers=["CPUExecutionProvider"])
    (embedding,) = wrong.run(["embedding"], {"input": _normalise(images)})
    assert embedding.shape == reference["embedding"].shape
    assert np.abs(embedding - reference["embedding"]).max() > 1000 * TOLERANCE


def test_embedder_returns_the_normalised_reference(
    model_path: Path, images: np.ndarray, reference: dict[str, np.ndarray]
) -> None:
    embedder = OnnxEmbedder(ModelSettings(batch_size=3, threads=2), model_path)
    vectors = embedder.embed(list(images))
    expected = reference["embedding"] / np.linalg.norm(reference["embedding"], axis=1, keepdims=True)
    assert np.abs(vectors - expected).max() <= TOLERANCE
    np.testing.assert_allclose(embedder.logits(list(images)), reference["logits"], atol=TOLERANCE, rtol=0)
