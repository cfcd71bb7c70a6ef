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
from collections.abc import Sequence
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
# The gate: before the full detection, the same detector sees the frame with its long side GATE_LONG_SIDE long (~11 ms
# on a 720p frame vs ~45-50 ms at 640); when no pixel of its text probability map passes GATE_PROB, the frame has no
# lines and the full detection is skipped. Only the decision is taken from the small map: a frame it passes is
# detected whole, as without the gate (detecting only the bands of rows it flagged found more false lines at the bands'
# edges, each then recognised, and missed lines it had not flagged). Sharp busy texture (a share of at least GATE_BUSY
# of the small frame's pixels with a grey gradient >= GATE_EDGE) blurs text away at the small size: such frames skip
# the gate. Chosen on rendered text frames vs real textless ones (BENCHMARKS.md "On-screen text"). Off by default: it
# halves a textless frame's detection but adds its own run to every frame with text and misses more 12 px text, and
# analyze's CPU with and without it stayed within this machine's noise.
GATE_LONG_SIDE = 320
GATE_PROB = 0.1
GATE_EDGE = 48
GATE_BUSY = 0.3

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


def detector_input(image: np.ndarray, det_long_side: int) -> np.ndarray:
    """The detector's input tensor for a frame: grey, its long side at most `det_long_side` (rapidocr's limit_type
    "max"), each side a multiple of 32, resized once in float32, normalised as rapidocr does ((v / 255 - 0.5) / 0.5)
    and broadcast to three channels (the model's input; the frame is grey)."""
    import cv2

    h, w = image.shape[:2]
    grey = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    ratio = min(1.0, det_long_side / max(h, w))
    dh, dw = max(32, round(int(h * ratio) / 32) * 32), max(32, round(int(w * ratio) / 32) * 32)
    small = cv2.resize(grey, (dw, dh)).astype(np.float32) * np.float32(2 / 255) - np.float32(1)
    return np.ascontiguousarray(np.broadcast_to(small, (1, 3, dh, dw)))


def _without_memory_patterns(engine: Any, models: dict[str, Path], threads: int) -> None:
    """Both models' sessions again, with ONNX Runtime's memory patterns off, from `models` (the packaged files, or
    their int8 copies). Their inputs change shape at every call (the frame or a band of it; a batch of lines as wide
    as its widest), and a pattern is kept per shape: with them on, a worker's memory grew with the video's length
    (+1 GB on 10 minutes of the 720p cuts clip; measured with benchmarks/bench_worker_rss.py). rapidocr builds its
    sessions itself (no option for this), so they are swapped on its loaded models (`text_det` / `text_rec`
    .session.session)."""
    from video_ai.adapters.onnx_session import create_session

    for model, name in ((engine._load_det_model(), DET_MODEL), (engine._load_rec_model(), REC_MODEL)):
        model.session.session = create_session(models[name], threads, memory_patterns=False, log_severity=4)


class RapidOcrReader:
    """Reads lines of text; the engine (and its two ONNX sessions) loads on first use, once per process."""

    def __init__(self, det_long_side: int = 640, min_confidence: float = 0.5, max_lines: int = 64,
                 threads: int = 1, engine: Any | None = None, gate: bool = False,
                 int8_dir: Path | None = None) -> None:
        self.det_long_side = det_long_side
        # Where the int8 copies of the models are (built there on first use: video_ai.model.ocr_int8); None: the
        # packaged fp32 models.
        self.int8_dir = int8_dir
        self.fell_back = False  # int8 was asked for but the packaged fp32 models are in use (see _load)
        self.gate = gate
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

                from video_ai.adapters.onnx_session import disable_telemetry

                disable_telemetry()  # rapidocr opens its own sessions first (then swapped: _without_memory_patterns)

                ort = "EngineConfig.onnxruntime."
                self._engine = RapidOCR(params={
                    "Global.log_level": "error",  # not a warning per frame without text
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
                models = paths
                if self.int8_dir is not None:
                    from video_ai.model.ocr_int8 import ensure_int8

                    try:
                        models = ensure_int8(self.int8_dir)
                    except OSError as err:
                        # Not built and nowhere to build them (a read-only directory, a full disk): the packaged
                        # models read the same text at more CPU, which beats failing every frame of the job.
                        logger.warning("int8 OCR models unavailable in %s (%s); reading with the packaged fp32 "
                                       "models", self.int8_dir, err)
                        self.fell_back = True
                _without_memory_patterns(self._engine, models, self.threads)
            return self._engine

    def detect(self, image: np.ndarray) -> list[tuple[float, float, float, float]]:
        """Boxes (pixels: left, top, right, bottom) of the lines, top to bottom; [] without running the full detection
        when the gate finds nothing text-like (see GATE_LONG_SIDE)."""
        if self.gate and not self.may_have_text(image):
            return []
        return self._detect(image)

    def may_have_text(self, image: np.ndarray) -> bool:
        """The gate: False when the detector at GATE_LONG_SIDE finds no pixel of text; True for frames it cannot judge
        (busy texture, frames already small)."""
        import cv2

        h, w = image.shape[:2]
        if max(h, w) <= 2 * GATE_LONG_SIDE:
            return True
        grey = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
        scale = GATE_LONG_SIDE / max(h, w)
        gh, gw = max(32, round(h * scale / 32) * 32), max(32, round(w * scale / 32) * 32)
        small = cv2.resize(grey, (gw, gh), interpolation=cv2.INTER_AREA)
        gradient = cv2.morphologyEx(small, cv2.MORPH_GRADIENT, np.ones((3, 3), np.uint8))
        if float((gradient >= GATE_EDGE).mean()) >= GATE_BUSY:
            return True
        x = small.astype(np.float32) * np.float32(2 / 255) - np.float32(1)  # rapidocr's (v / 255 - 0.5) / 0.5
        x = np.ascontiguousarray(np.broadcast_to(x, (1, 3, gh, gw)))  # grey in all three channels, as detect gets it
        prob = self._load().text_det.session(x)
        return bool((prob > GATE_PROB).any())

    def _detect(self, image: np.ndarray) -> list[tuple[float, float, float, float]]:
        """rapidocr's detection (its model, resize rule and DB post-processing) with the input made here: a grey frame
        is resized once, in float32, and broadcast to three channels, instead of being turned into a BGR copy at full
        size and normalised in float64 (~7 ms of a ~50 ms run on a 720p frame)."""
        detector = self._load().text_det
        h, w = image.shape[:2]
        quads, _ = detector.postprocess_op(detector.session(detector_input(image, self.det_long_side)), (h, w))
        boxes = []
        for quad in np.asarray(quads, dtype=np.float64).reshape(-1, 4, 2):
            left, top = np.clip(quad.min(axis=0), 0, (w, h))
            right, bottom = np.clip(quad.max(axis=0), 0, (w, h))
            if right - left >= 2 and bottom - top >= 2:
                boxes.append((float(left), float(top), float(right), float(bottom)))
        boxes.sort(key=lambda b: (b[1], b[0]))
        return boxes

    def recognize(self, image: np.ndarray, boxes: Sequence[tuple[float, float, float, float]]) -> list[ReadLine | None]:
        if not boxes:
            return []
        import cv2
        from rapidocr.main import RapidOCRError

        engine = self._load()
        colour = image if image.ndim == 3 else cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
        crops = [colour[int(top) : max(int(top) + 1, int(np.ceil(bottom))),
                        int(left) : max(int(left) + 1, int(np.ceil(right)))] for left, top, right, bottom in boxes]
        try:
            out = engine.recognize_txt(crops)  # one batched run over the lines (rapidocr batches 6 at a time)
        except RapidOCRError:
            return [None] * len(boxes)
        lines: list[ReadLine | None] = []
        for box, text, score in zip(boxes, out.txts or (), out.scores, strict=False):
            words = " ".join(str(text).split())
            ok = bool(words) and float(score) >= self.min_confidence
            lines.append(ReadLine(text=words, confidence=min(1.0, max(0.0, float(score))), box=box) if ok else None)
        return lines + [None] * (len(boxes) - len(lines))

    def read(self, image: np.ndarray) -> list[ReadLine]:
        """Every line: detect, then recognise them all."""
        return [line for line in self.recognize(image, self.detect(image)) if line is not None]
