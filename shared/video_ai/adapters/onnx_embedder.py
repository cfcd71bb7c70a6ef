"""Embedder port over an ONNX image model run by onnxruntime (CPU).

Preprocessing (size, mean/std, colour order, layout) comes from `ModelSettings`, so the built-in EfficientNet-Lite0
and any other ONNX image encoder (e.g. a CLIP image tower) run through the same code.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from video_ai.adapters.onnx_session import create_session
from video_ai.domain.models import ModelInfo
from video_ai.settings import ModelSettings

log = logging.getLogger(__name__)

LOGITS_OUTPUT = "logits"

__all__ = ["LOGITS_OUTPUT", "OnnxEmbedder", "create_session"]


class OnnxEmbedder:
    """Turns RGB uint8 images into L2-normalised vectors with an ONNX model; the session loads on first use."""

    def __init__(self, settings: ModelSettings, model_path: Path, session: Any | None = None) -> None:
        self._settings = settings
        self._model_path = Path(model_path)
        self._session = session
        self._lock = threading.Lock()
        self._input_name: str | None = None
        # mean/std are per channel in the order the model receives them (settings.color_order). Inputs are uint8,
        # so (v - mean) / std is a 256-entry table per channel: one gather instead of three float passes, same bits.
        mean = np.asarray(settings.mean, dtype=np.float32).reshape(3, 1)
        std = np.asarray(settings.std, dtype=np.float32).reshape(3, 1)
        self._lut = (np.arange(256, dtype=np.float32)[None, :] - mean) / std

    @property
    def info(self) -> ModelInfo:
        return ModelInfo(name=self._settings.name, version=self._settings.version, dim=self._settings.dim)

    @property
    def input_size(self) -> tuple[int, int]:
        """(width, height) the model wants; frame sources may decode straight to it."""
        return self._settings.input_width, self._settings.input_height

    @property
    def session(self) -> Any:
        """The onnxruntime session, created on first access (thread-safe)."""
        if self._session is None:
            with self._lock:
                if self._session is None:
                    log.info("loading model %s", self._model_path)
                    self._session = create_session(self._model_path, self._settings.threads)
        return self._session

    def _input(self) -> str:
        if self._input_name is None:
            self._input_name = self._settings.input_name or str(self.session.get_inputs()[0].name)
        return self._input_name

    def preprocess(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """Resize (only when needed), normalise and lay out a batch as the model's float32 input tensor."""
        width, height = self.input_size
        batch = np.empty((len(images), height, width, 3), dtype=np.uint8)
        for i, image in enumerate(images):
            if image.ndim != 3 or image.shape[2] != 3:
                raise ValueError(f"image {i}: expected an HxWx3 RGB array, got shape {image.shape}")
            if image.shape[0] == height and image.shape[1] == width:
                batch[i] = image
            else:
                # INTER_AREA averages source pixels when shrinking: no aliasing on 720p/1080p frames.
                batch[i] = cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)
        if self._settings.color_order == "BGR":
            batch = batch[..., ::-1]
        if self._settings.layout == "NCHW":
            # transposing uint8 before the gather moves a quarter of the bytes a float transpose would
            planes = np.ascontiguousarray(batch.transpose(3, 0, 1, 2))
            tensor = np.empty((len(images), 3, height, width), dtype=np.float32)
            for c in range(3):
                tensor[:, c] = self._lut[c][planes[c]]
            return tensor
        return np.stack([self._lut[c][batch[..., c]] for c in range(3)], axis=-1)

    def _run(self, images: Sequence[np.ndarray], output: str) -> list[np.ndarray]:
        chunks: list[np.ndarray] = []
        step = self._settings.batch_size
        for start in range(0, len(images), step):
            tensor = self.preprocess(images[start : start + step])
            (out,) = self.session.run([output], {self._input(): tensor})
            chunks.append(np.asarray(out, dtype=np.float32).reshape(tensor.shape[0], -1))
        return chunks

    def embed(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """Return an (N, dim) float32 array, each row of unit length (an all-zero feature row stays zero)."""
        if len(images) == 0:
            return np.zeros((0, self._settings.dim), dtype=np.float32)
        return self._normalised(np.concatenate(self._run(images, self._settings.output_name), axis=0))

    def embed_with_logits(self, images: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray | None]:
        """`embed` plus the class logits (N, classes) of the same images from the same session.run, when the model
        has a `logits` output (None otherwise): the classifier head costs ~0.3% of the network."""
        if LOGITS_OUTPUT not in self._output_names() or self._settings.output_name == LOGITS_OUTPUT:
            return self.embed(images), None
        if len(images) == 0:
            return np.zeros((0, self._settings.dim), dtype=np.float32), np.zeros((0, 0), dtype=np.float32)
        vectors: list[np.ndarray] = []
        logits: list[np.ndarray] = []
        step = self._settings.batch_size
        for start in range(0, len(images), step):
            tensor = self.preprocess(images[start : start + step])
            features, scores = self.session.run([self._settings.output_name, LOGITS_OUTPUT],
                                                {self._input(): tensor})
            vectors.append(np.asarray(features, dtype=np.float32).reshape(tensor.shape[0], -1))
            logits.append(np.asarray(scores, dtype=np.float32).reshape(tensor.shape[0], -1))
        return self._normalised(np.concatenate(vectors, axis=0)), np.concatenate(logits, axis=0)

    def _normalised(self, vectors: np.ndarray) -> np.ndarray:
        dim = self._settings.dim
        if vectors.shape[1] != dim:
            raise ValueError(
                f"model output {self._settings.output_name!r} has {vectors.shape[1]} values per image; "
                f"model.dim says {dim}"
            )
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        vectors /= np.maximum(norms, np.float32(1e-12))
        return vectors

    def _output_names(self) -> set[str]:
        return {o.name for o in self.session.get_outputs()}

    def logits(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """Raw class scores (N, classes) from the model's `logits` output; ValueError if it has none."""
        if LOGITS_OUTPUT not in self._output_names():
            raise ValueError(f"{self._model_path.name} has no {LOGITS_OUTPUT!r} output")
        if len(images) == 0:
            return np.zeros((0, 0), dtype=np.float32)
        return np.concatenate(self._run(images, LOGITS_OUTPUT), axis=0)

    def close(self) -> None:
        """Drop the session (it is rebuilt on the next call)."""
        with self._lock:
            self._session = None
            self._input_name = None
