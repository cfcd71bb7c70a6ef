"""PP-OCRv6 det and rec (the pinned rapidocr wheel's models) quantised to int8: static QDQ, per-channel int8 weights,
uint8 activations, calibrated on generated frames. Built once (`video-ai model build --ocr`, or on first use) and
cached beside the image model; the worker image bakes them (functions/worker/Dockerfile).

Why: OCR's cost is the two models (the detector over a frame, ~40-50 ms at 640 px on a 720p frame here; ~15 ms a
line for the recogniser), and int8 cuts both by ~40% on this machine (AVX-512 VNNI; ONNX Runtime's int8 kernels
also serve arm64) at about the same character accuracy on the rendered benchmark frames (BENCHMARKS.md "On-screen
text": 89.0% int8 vs 89.4% fp32; 12 px text 66.9 vs 68.7%, 16 px and larger the same).

Calibration is generated, not shipped or downloaded: lines of words that are NOT the benchmark's phrases, rendered
by `video_ai.text_samples` in several sizes and inks on flat, soft and busy backgrounds (with and without a band),
plus the same backgrounds without text. The detector is calibrated on its own input (the grey frame resized to the
detector's size, as `RapidOcrReader._detect` makes it); the recogniser on the lines the fp32 detector finds there,
prepared as rapidocr prepares them. The source models are sha256-checked (`packaged_models`); the built files are
named after their source's digest, so another wheel never reuses them.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from video_ai.adapters.rapid_ocr import DET_MODEL, MODEL_SHA256, REC_MODEL, detector_input, packaged_models

logger = logging.getLogger(__name__)

# Bumped when the calibration or the quantisation changes (the cached files' names carry it).
VERSION = 1
# Words for calibration (the accuracy benchmark renders its own PHRASES: calibration never sees them).
WORDS = (
    "harbour", "lights", "evening", "bulletin", "42", "minutes", "platform", "seven", "delayed", "north", "wind",
    "rising", "gallery", "opens", "at", "noon", "chapter", "three", "the", "river", "crossing", "final", "score",
    "3-1", "breaking", "tickets", "from", "12.50", "sale", "ends", "sunday", "interview", "with", "the",
    "architect", "live", "from", "the", "studio", "traffic", "on", "the", "ring", "road",
)
CALIBRATION_FRAMES = 24


def int8_paths(directory: Path) -> dict[str, Path]:
    """Where the int8 copies of the packaged det and rec models are kept in `directory`."""
    return {name: directory / f"{Path(name).stem}-int8-v{VERSION}-{MODEL_SHA256[name][:12]}.onnx"
            for name in (DET_MODEL, REC_MODEL)}


def ensure_int8(directory: Path) -> dict[str, Path]:
    """The int8 models in `directory`, built first when missing (~1 min on 2 cores, once)."""
    paths = int8_paths(directory)
    if not all(path.is_file() for path in paths.values()):
        build_int8(directory)
    return paths


def build_int8(directory: Path, det_long_side: int = 640) -> dict[str, Path]:
    """Quantise the packaged models into `directory` (each written to a temporary file, then renamed)."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    sources = packaged_models()
    paths = int8_paths(directory)
    directory.mkdir(parents=True, exist_ok=True)
    frames = calibration_frames()
    det_inputs = [detector_input(frame, det_long_side) for frame in frames]
    rec_inputs = _recogniser_batches(frames, det_long_side)

    class Feed(CalibrationDataReader):  # type: ignore[misc]
        def __init__(self, inputs: Sequence[np.ndarray]) -> None:
            self._inputs: Iterator[np.ndarray] = iter(inputs)

        def get_next(self) -> dict[str, np.ndarray] | None:
            item = next(self._inputs, None)
            return None if item is None else {"x": item}

    with tempfile.TemporaryDirectory(prefix="video-ai-ocr-int8-", dir=directory) as tmp:
        for name, inputs in ((DET_MODEL, det_inputs), (REC_MODEL, rec_inputs)):
            staged = _opset13(sources[name], Path(tmp) / f"{Path(name).stem}-opset13.onnx")
            out = Path(tmp) / paths[name].name
            quantize_static(str(staged), str(out), Feed(inputs), quant_format=QuantFormat.QDQ, per_channel=True,
                            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
            os.replace(out, paths[name])
            logger.info("built %s", paths[name])
    return paths


def _opset13(source: Path, out: Path) -> Path:
    """The model at opset 13 (the wheel's are opset 11, where QDQ has no per-channel axis), shapes inferred."""
    import onnx
    from onnx import version_converter
    from onnxruntime.quantization.shape_inference import quant_pre_process

    converted = out.with_suffix(".converted.onnx")
    onnx.save(version_converter.convert_version(onnx.load(str(source)), 13), str(converted))
    quant_pre_process(str(converted), str(out), skip_symbolic_shape=True)
    return out


def calibration_frames(count: int = CALIBRATION_FRAMES) -> list[np.ndarray]:
    """Grey 1280x720 frames: lines of WORDS in sizes 14-56 px over the text_samples backgrounds, every fourth frame
    without text."""
    import cv2

    from video_ai.text_samples import Caption, TextShot, render

    rng = np.random.default_rng(7)
    backgrounds = (("flat", (20, 30, 40)), ("moving", (90, 120, 60)), ("busy", (60, 60, 60)),
                   ("flat", (225, 225, 215)), ("moving", (160, 80, 40)), ("busy", (120, 110, 100)))
    inks = ((255, 255, 255), (255, 230, 0), (20, 20, 20), (255, 255, 255))
    frames = []
    for i in range(count):
        kind, colour = backgrounds[i % len(backgrounds)]
        captions = []
        if i % 4 != 3:
            for k in range(int(rng.integers(1, 4))):
                words = " ".join(rng.choice(WORDS, size=int(rng.integers(2, 6))))
                size = int(rng.choice((14, 18, 24, 32, 44, 56)))
                band = (10, 10, 10) if rng.random() < 0.4 else None
                ink = (255, 255, 255) if band else inks[int(rng.integers(len(inks)))]
                top = 0.1 + 0.28 * k + float(rng.uniform(0, 0.1))
                captions.append(Caption(words, float(rng.uniform(0.03, 0.4)), top, size, color=ink, band=band))
        image = render(TextShot(1, captions, background=kind, color=colour), 0.0, 1280, 720, seed=i)
        frames.append(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY))
    return frames


def _recogniser_batches(frames: Sequence[np.ndarray], det_long_side: int
                        ) -> list[np.ndarray]:
    """The lines the fp32 detector finds on the calibration frames, as rapidocr feeds them to the recogniser: 48 px
    high, normalised to -1..1, padded to the widest of a batch of six."""
    import cv2

    from video_ai.adapters.rapid_ocr import RapidOcrReader

    reader = RapidOcrReader(det_long_side=det_long_side)
    crops = []
    for frame in frames:
        for left, top, right, bottom in reader.detect(frame):
            crop = frame[int(top) : max(int(top) + 1, int(np.ceil(bottom))),
                         int(left) : max(int(left) + 1, int(np.ceil(right)))]
            if crop.shape[0] >= 4 and crop.shape[1] >= 4:
                crops.append(crop)
    batches = []
    for start in range(0, len(crops), 6):
        chunk = crops[start : start + 6]
        width = max(320, max(int(np.ceil(48 * c.shape[1] / c.shape[0])) for c in chunk))
        batch = np.zeros((len(chunk), 3, 48, width), dtype=np.float32)
        for j, crop in enumerate(chunk):
            w = min(width, int(np.ceil(48 * crop.shape[1] / crop.shape[0])))
            line = cv2.resize(crop, (w, 48)).astype(np.float32) * np.float32(2 / 255) - np.float32(1)
            batch[j, :, :, :w] = line
        batches.append(batch)
    return batches
