"""OnnxEmbedder on the real built-in model: similarity sanity, batching invariance, sizes."""

from __future__ import annotations

import itertools
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from video_ai.adapters.onnx_embedder import OnnxEmbedder
from video_ai.model import ensure_model
from video_ai.settings import ModelSettings

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "model"


def _load(name: str) -> np.ndarray:
    return np.asarray(Image.open(FIXTURES / name).convert("RGB"))


@pytest.fixture(scope="module")
def model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return ensure_model(ModelSettings(), tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="module")
def embedder(model_path: Path) -> OnnxEmbedder:
    return OnnxEmbedder(ModelSettings(threads=2), model_path)


def _variants(image: np.ndarray) -> list[np.ndarray]:
    """The image itself, a centre crop, an off-centre crop and a half-size rescale."""
    h, w = image.shape[:2]
    return [
        image,
        image[h // 10 : h - h // 10, w // 10 : w - w // 10],
        image[: int(h * 0.85), int(w * 0.1) :],
        cv2.resize(image, (w // 2, h // 2), interpolation=cv2.INTER_AREA),
    ]


def test_crops_of_one_image_are_closer_than_different_images(embedder: OnnxEmbedder) -> None:
    cat = embedder.embed(_variants(_load("chelsea_224.png")))
    coffee = embedder.embed(_variants(_load("coffee_300x200.jpg")))
    same = [float(a @ b) for group in (cat, coffee) for a, b in itertools.combinations(group, 2)]
    different = (cat @ coffee.T).ravel()
    # measured: same-image pairs >= 0.83, cat-vs-coffee <= 0.16
    assert min(same) > float(different.max()) + 0.3, (min(same), float(different.max()))


def test_batch_size_and_input_size_do_not_change_vectors(model_path: Path) -> None:
    rng = np.random.default_rng(7)
    images = [rng.integers(0, 256, (224, 224, 3), dtype=np.uint8) for _ in range(5)]
    images.append(_load("coffee_300x200.jpg"))
    one_by_one = OnnxEmbedder(ModelSettings(batch_size=1, threads=2), model_path).embed(images)
    batched = OnnxEmbedder(ModelSettings(batch_size=4, threads=2), model_path).embed(images)
    assert one_by_one.shape == (6, 1280) and batched.dtype == np.float32
    np.testing.assert_allclose(batched, one_by_one, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(batched, axis=1), 1.0, rtol=1e-5)
    # a frame that arrives already resized embeds exactly like the embedder's own resize of it
    resized = cv2.resize(images[-1], (224, 224), interpolation=cv2.INTER_AREA)
    np.testing.assert_allclose(OnnxEmbedder(ModelSettings(), model_path).embed([resized])[0], batched[-1], atol=1e-5)


def test_empty_batch(embedder: OnnxEmbedder) -> None:
    assert embedder.embed([]).shape == (0, 1280)


@pytest.fixture(scope="module")
def int8_path(model_path: Path) -> Path:
    # Same data dir as the fp32 fixture: ensure_model reuses the cached fp32 build and adds the int8 file beside it.
    return ensure_model(ModelSettings(precision="int8"), model_path.parent.parent)


@pytest.mark.slow
def test_int8_model_is_cached_beside_fp32_and_smaller(model_path: Path, int8_path: Path) -> None:
    assert int8_path.name == "efficientnet-lite0-imagenet-1-int8.onnx"
    assert int8_path.parent == model_path.parent
    assert int8_path.stat().st_size < model_path.stat().st_size / 2
    assert ensure_model(ModelSettings(precision="int8"), model_path.parent.parent) == int8_path


@pytest.mark.slow
def test_int8_stays_close_to_fp32(model_path: Path, int8_path: Path) -> None:
    from video_ai.model.quantize import default_calibration_images

    fp32 = OnnxEmbedder(ModelSettings(threads=2), model_path)
    int8 = OnnxEmbedder(ModelSettings(threads=2, precision="int8"), int8_path)
    photos = _variants(_load("chelsea_224.png")) + _variants(_load("coffee_300x200.jpg"))
    cos = (fp32.embed(photos) * int8.embed(photos)).sum(axis=1)
    assert cos.mean() >= 0.98 and cos.min() >= 0.95, cos  # measured: mean 0.991, min 0.987
    # Frames of a generated clip the calibration never saw (other seed). Synthetic patterns are far from ImageNet and
    # quantise worse than photos or real video frames (measured: mean 0.968, min 0.903; real frames in
    # benchmarks/bench_int8.py: mean 0.983, min 0.958), hence the looser bar.
    frames = default_calibration_images(24, seed=5)
    cos = (fp32.embed(frames) * int8.embed(frames)).sum(axis=1)
    assert cos.mean() >= 0.95 and cos.min() >= 0.88, cos
    # Egyptian cat and tiger cat are close on this photo; int8 may swap them, but it must still see a cat
    int8_top3 = np.argsort(-int8.logits(photos[:1])[0])[:3].tolist()
    assert int(fp32.logits(photos[:1])[0].argmax()) in int8_top3
    assert int8_top3[0] in range(281, 286)


@pytest.mark.slow
def test_int8_search_finds_the_fp32_neighbours(model_path: Path, int8_path: Path) -> None:
    from video_ai.model.quantize import default_calibration_images

    fp32 = OnnxEmbedder(ModelSettings(threads=2), model_path)
    int8 = OnnxEmbedder(ModelSettings(threads=2, precision="int8"), int8_path)
    # An index of photo crops and frames of a generated clip the calibration never saw (other seed)
    images = _variants(_load("chelsea_224.png")) + _variants(_load("coffee_300x200.jpg"))
    images += default_calibration_images(24, seed=5)
    ref, test = fp32.embed(images), int8.embed(images)
    sims = ref @ ref.T
    np.fill_diagonal(sims, -np.inf)
    test_sims = test @ test.T
    np.fill_diagonal(test_sims, -np.inf)
    ref5 = np.argsort(-sims, axis=1)[:, :5]
    test5 = np.argsort(-test_sims, axis=1)[:, :5]
    # Near-duplicate frames tie in fp32 and their order is noise: an int8 neighbour counts when its fp32 score is
    # within 0.005 of fp32's 5th best (the rule benchmarks/bench_int8.py reports as "tol5").
    fifth = np.take_along_axis(sims, ref5[:, 4:5], axis=1)
    tolerant = (np.take_along_axis(sims, test5, axis=1) >= fifth - 0.005).all(axis=1)
    top1 = np.take_along_axis(sims, test5[:, :1], axis=1)[:, 0] >= sims.max(axis=1) - 0.005
    # measured: top-1 1.00, tolerant top-5 0.84 (strict set equality 0.56: ties); quantising every layer drops
    # tolerant top-5 to ~0.6 on real frames
    assert top1.mean() >= 0.9 and tolerant.mean() >= 0.75, (top1.mean(), tolerant.mean())
