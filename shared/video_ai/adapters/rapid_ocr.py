"""The OCR engine behind the `TextReader` port: RapidOCR (PP-OCR ONNX models run by ONNX Runtime) with the models its
wheel ships, each checked by sha256 before use (a third party packages them: a changed file must not load silently).

Models (rapidocr 3.10.0, Apache-2.0, `rapidocr/models/`; the same files and hashes its own `default_models.yaml`
lists for download from RapidAI's ModelScope mirror of PaddleOCR's PP-OCRv6 release):
* text detection: PP-OCRv6 det small (DBNet): where lines are, run on the frame shrunk to `det_long_side`;
* text recognition: PP-OCRv6 rec small (multilingual: Chinese, English, Japanese and most Latin-script languages;
  its character dictionary is in the ONNX metadata), on each detected line cropped from the full-size frame.
The direction classifier (for upside-down lines) is not run: frames arrive upright (the decoder applies rotation).
"""

from __future__ import annotations

import hashlib
import logging
import threading
from pathlib import Path
from typing import Any

import numpy as np

from video_ai.domain.errors import ConfigError
from video_ai.domain.ports import ReadLine

# File name in rapidocr/models/ -> sha256 (rapidocr 3.10.0's default_models.yaml lists the same digests).
MODEL_SHA256 = {
    "PP-OCRv6_det_small.onnx": "090f04abcd9d9a7498bc4ebf677e4cb9bdce1fe4197ddb7e529f1ef44e1ff94f",
    "PP-OCRv6_rec_small.onnx": "6f327246b50388f3c176ae304bd95767ea6dc0c9ae92153ef8cbe210b3c14884",
}
DET_MODEL, REC_MODEL = MODEL_SHA256

logger = logging.getLogger(__name__)


def packaged_models() -> dict[str, Path]:
    """The pinned wheel's model files, each checked against its sha256."""
    try:
        import rapidocr
    except ImportError as err:
        raise ConfigError("the ocr feature needs the rapidocr package (the worker extra)") from err
    root = Path(rapidocr.__file__).parent / "models"
    paths = {}
    for name, expected in MODEL_SHA256.items():
        path = root / name
        if not path.is_file():
            raise ConfigError(f"{path}: missing; the ocr feature needs rapidocr==3.10.0's packaged models")
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        if digest != expected:
            raise ConfigError(f"{path}: sha256 {digest[:12]}… is not the pinned PP-OCRv6 model")
        paths[name] = path
    return paths


class RapidOcrReader:
    """Reads lines of text; the engine (and its two ONNX sessions) loads on first use, once per process."""

    def __init__(self, det_long_side: int = 960, min_confidence: float = 0.5, max_lines: int = 64,
                 threads: int = 1, engine: Any | None = None) -> None:
        self.det_long_side = det_long_side
        self.min_confidence = min_confidence
        self.max_lines = max_lines
        self.threads = threads
        self._engine = engine
        self._lock = threading.Lock()

    def _load(self) -> Any:
        with self._lock:
            if self._engine is None:
                paths = packaged_models()
                from rapidocr import RapidOCR

                ort = "EngineConfig.onnxruntime."
                self._engine = RapidOCR(params={
                    "Global.log_level": "warning",
                    "Global.use_cls": False,
                    "Global.text_score": self.min_confidence,
                    f"{ort}intra_op_num_threads": self.threads,
                    f"{ort}inter_op_num_threads": 1,
                    "Det.model_path": str(paths[DET_MODEL]),
                    "Rec.model_path": str(paths[REC_MODEL]),
                    # The detector sees the frame with its long side at most this long (DBNet's cost follows the
                    # pixels: ~4x less at 960 than rapidocr's default of 736 on the SHORT side of a 720p frame);
                    # recognition still crops each line from the full-size frame.
                    "Det.limit_type": "max",
                    "Det.limit_side_len": self.det_long_side,
                    # Bounds recognition work on a frame full of text-like texture (each line is a model run).
                    "Det.max_candidates": self.max_lines,
                })
            return self._engine

    def read(self, image: np.ndarray) -> list[ReadLine]:
        engine = self._load()
        out = engine(np.ascontiguousarray(image))
        boxes, texts, scores = out.boxes, out.txts, out.scores
        if boxes is None or texts is None or scores is None:
            return []
        lines = []
        for quad, text, score in zip(boxes, texts, scores, strict=True):
            words = " ".join(str(text).split())
            if not words or float(score) < self.min_confidence:
                continue
            quad = np.asarray(quad, dtype=np.float64)
            left, top = quad.min(axis=0)
            right, bottom = quad.max(axis=0)
            lines.append(ReadLine(text=words, confidence=min(1.0, max(0.0, float(score))),
                                  box=(float(left), float(top), float(right), float(bottom))))
        lines.sort(key=lambda line: (line.box[1], line.box[0]))
        return lines
