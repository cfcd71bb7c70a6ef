"""Static per-channel int8 (QDQ) quantisation of an fp32 image model, calibrated on frames.

Dynamic int8 is slower and less accurate for convolutions here, so only static QDQ is offered. Quantising every
layer of EfficientNet-Lite0 gave cosine ~0.93 to fp32 on photos (0.86 on real video frames); keeping the stem and
blocks 0-1 in fp32 (the layers fed 112x112 maps, where quantisation error enters and is then carried by every later
layer) gives ~0.99 on photos and 0.983 on real frames. Calibration data is generated frames (no shipped or downloaded
data): on real frames they calibrate as well as real frames of other scenes do (BENCHMARKS.md "int8").
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_static,
)

from video_ai.settings import ModelSettings

log = logging.getLogger(__name__)

CALIBRATION_BATCH = 8
# Built-in model nodes left in fp32 (see the module docstring); names absent from another model are ignored.
# Measured on real frames (benchmarks/bench_int8.py, BENCHMARKS.md "int8"): stem + block 0 only -> mean cosine
# 0.977; adding block 1 (the last 112x112-input layers) -> 0.984. Keeping the head (last conv, pooling) fp32 as well
# added nothing.
FP32_NODES_V1: tuple[str, ...] = ("_conv_stem", "_blocks.0._depthwise_conv", "_blocks.0._project_conv")
FP32_NODES: tuple[str, ...] = (
    *FP32_NODES_V1,
    "_blocks.1._expand_conv",
    "_blocks.1._depthwise_conv",
    "_blocks.1._project_conv",
)
_METHODS = {
    "minmax": CalibrationMethod.MinMax,
    "percentile": CalibrationMethod.Percentile,
    "entropy": CalibrationMethod.Entropy,
}
DEFAULT_CALIBRATION_FRAMES = 64


class FrameCalibrationReader(CalibrationDataReader):  # type: ignore[misc]
    """Feeds preprocessed batches of the caller's frames to the calibrator, each once."""

    def __init__(self, images: Sequence[np.ndarray], settings: ModelSettings, input_name: str) -> None:
        from video_ai.adapters.onnx_embedder import OnnxEmbedder

        preprocess = OnnxEmbedder(settings, Path("unused.onnx"), session=object()).preprocess
        self._batches: Iterator[dict[str, np.ndarray]] = (
            {input_name: preprocess(images[i : i + CALIBRATION_BATCH])}
            for i in range(0, len(images), CALIBRATION_BATCH)
        )

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._batches, None)


def _input_name(model_path: Path, settings: ModelSettings) -> str:
    if settings.input_name:
        return settings.input_name
    import onnx

    model = onnx.load(str(model_path), load_external_data=False)
    initialisers = {i.name for i in model.graph.initializer}
    return str(next(i.name for i in model.graph.input if i.name not in initialisers))


def quantize_int8(
    fp32_path: Path,
    out_path: Path,
    images: Sequence[np.ndarray],
    settings: ModelSettings,
    *,
    method: str = "minmax",
    fp32_nodes: Sequence[str] = FP32_NODES,
    per_channel: bool = True,
    reduce_range: bool = False,
    quant_format: str = "qdq",
    percentile: float = 99.999,
) -> Path:
    """Write a QDQ int8 copy of `fp32_path` (per-channel int8 weights, uint8 activations) calibrated on `images`.

    `method`: minmax (default; as good as the others here and 3x faster than percentile), percentile or entropy.
    """
    if not images:
        raise ValueError("int8 quantisation needs at least one calibration image")
    reader = FrameCalibrationReader(images, settings, _input_name(fp32_path, settings))
    quantize_static(
        str(fp32_path),
        str(out_path),
        reader,
        quant_format=QuantFormat.QDQ if quant_format == "qdq" else QuantFormat.QOperator,
        per_channel=per_channel,
        reduce_range=reduce_range,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        calibrate_method=_METHODS[method],
        nodes_to_exclude=list(fp32_nodes),
        extra_options={"CalibPercentile": percentile},
    )
    return out_path


def frames_from_clip(path: Path, count: int) -> list[np.ndarray]:
    """Up to `count` RGB frames spread evenly over a clip (one decode pass)."""
    import av

    frames: list[np.ndarray] = []
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        total = stream.frames or 0
        step = max(1, total // count) if total else 1
        for n, frame in enumerate(container.decode(stream)):
            if n % step == 0:
                frames.append(frame.to_ndarray(format="rgb24"))
            if len(frames) >= count:
                break
    return frames


def default_calibration_images(count: int = DEFAULT_CALIBRATION_FRAMES, seed: int = 0) -> list[np.ndarray]:
    """Frames decoded from a generated clip covering every synthetic pattern and colour."""
    from video_ai import samples

    shots = [
        samples.ShotSpec(1.0, pattern, samples.PALETTE[i % len(samples.PALETTE)])
        for i, pattern in enumerate(samples.PATTERNS)
    ]
    with tempfile.TemporaryDirectory(prefix="video-ai-calib-") as tmp:
        clip = samples.make_clip(Path(tmp) / "calibration.mp4", shots=shots, size=(320, 240), seed=seed)
        return frames_from_clip(clip.path, count)
