"""Silero VAD (v6, ONNX) run by onnxruntime on a stream, without torch: speech regions on the video's clock.

The model is the one faster-whisper ships (`faster_whisper/assets/silero_vad_v6.onnx`, MIT), checked by sha256. It
scores 512-sample windows (32 ms at 16 kHz), each given the 64 samples before it, with an LSTM state carried from
window to window; here the state and that context are carried from chunk to chunk too, so a stream scores as the
whole track would. The regions follow faster-whisper's `get_speech_timestamps` rules (threshold with hysteresis,
minimum silence to end a region), applied as the probabilities arrive, and a region that runs past
`max_region_s` is cut at its last short pause (or where it is, when it has none), so no region is unbounded.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from video_ai.domain.errors import ConfigError
from video_ai.domain.ports import AUDIO_RATE

MODEL_SHA256 = "4cbf549b8326f60f80f2536d9eefeb450a9abe83365a098031c89719f1be17d2"
WINDOW = 512
CONTEXT = 64
# A chunk whose every sample is below this (-60 dBFS) is silence to the model too, and is not scored.
QUIET_PEAK = 1e-3


def packaged_vad_path() -> Path:
    try:
        from faster_whisper.utils import get_assets_path
    except ImportError:
        raise ConfigError("speech needs the package faster-whisper (pip install 'video-ai[worker]')",
                          field="analysis") from None
    path = Path(get_assets_path()) / "silero_vad_v6.onnx"
    if not path.is_file():
        raise ConfigError(f"{path}: faster-whisper's Silero VAD model is missing")
    return path


@dataclass(slots=True, frozen=True)
class VadOptions:
    threshold: float = 0.5
    min_silence_s: float = 1.0  # a pause this long ends a region
    min_speech_s: float = 0.25  # shorter regions are dropped
    pad_s: float = 0.4  # added before and after each region (Whisper needs the word's onset and tail)
    max_region_s: float = 30.0


class SileroVad:
    """The ONNX session, loaded once and shared (stateless between calls: the state lives in each VadStream)."""

    def __init__(self, model_path: Path | None = None, session: Any | None = None) -> None:
        self._model_path = model_path
        self._session = session
        self._lock = threading.Lock()

    def session(self) -> Any:
        with self._lock:
            if self._session is None:
                from video_ai.adapters.onnx_session import create_session

                path = self._model_path or packaged_vad_path()
                data = path.read_bytes()
                digest = hashlib.sha256(data).hexdigest()
                if digest != MODEL_SHA256:
                    raise ConfigError(f"{path}: sha256 {digest[:12]}… is not the pinned Silero VAD v6 model")
                self._session = create_session(data, threads=1, log_severity=3)
            return self._session

    def stream(self, options: VadOptions | None = None) -> VadStream:
        return VadStream(self, options or VadOptions())


class VadStream:
    """Feed chunks (with their start time); get back closed speech regions (start_s, end_s, cut_short) in order,
    unpadded (the reader of the audio pads them: `VadOptions.pad_s`)."""

    def __init__(self, vad: SileroVad, options: VadOptions) -> None:
        self._vad = vad
        self.options = options
        self._h = np.zeros((1, 1, 128), np.float32)
        self._c = np.zeros((1, 1, 128), np.float32)
        self._context = np.zeros(CONTEXT, np.float32)
        self._rest = np.zeros(0, np.float32)
        self._rest_t: float | None = None
        self._start: float | None = None  # the open region's start
        self._quiet_since: float | None = None  # first window below the low threshold, inside the open region
        self._last_pause: float | None = None  # the latest short pause inside the open region (a place to cut)
        self._t_end = 0.0
        self.speech_s = 0.0
        self.windows = 0
        self.windows_skipped = 0

    @property
    def open_since(self) -> float | None:
        """The start of the region still open (its audio must be kept), None between regions."""
        return self._start

    def feed(self, start_s: float, samples: np.ndarray) -> Iterator[tuple[float, float, bool]]:
        if self._rest_t is not None and abs(self._rest_t + len(self._rest) / AUDIO_RATE - start_s) > 0.05:
            yield from self._gap()  # not contiguous: what was open ends where its audio ended
        if self._rest_t is None:
            self._rest_t = start_s
        audio = np.concatenate([self._rest, samples.astype(np.float32, copy=False)])
        usable = len(audio) // WINDOW * WINDOW
        t0 = self._rest_t
        self._rest = audio[usable:]
        self._rest_t = t0 + usable / AUDIO_RATE
        if usable == 0:
            return
        probs = self._score(audio[:usable])
        yield from self._regions(t0, probs)

    def finish(self) -> Iterator[tuple[float, float, bool]]:
        yield from self._gap()

    def _gap(self) -> Iterator[tuple[float, float, bool]]:
        if self._rest_t is not None and len(self._rest):
            self._t_end = self._rest_t + len(self._rest) / AUDIO_RATE
        if self._start is not None:
            yield from self._close(self._quiet_since if self._quiet_since is not None else self._t_end)
        self._h[:] = 0
        self._c[:] = 0
        self._context[:] = 0
        self._rest = np.zeros(0, np.float32)
        self._rest_t = None

    def _score(self, audio: np.ndarray) -> np.ndarray:
        windows = audio.reshape(-1, WINDOW)
        if float(np.abs(windows).max()) < QUIET_PEAK:
            # Digital silence (a muted or empty track): nothing to hear, and no model run. The state starts afresh
            # after it, as the model's would after seconds of silence.
            self._h[:] = 0
            self._c[:] = 0
            self._context = windows[-1, -CONTEXT:].copy()
            self.windows_skipped += len(windows)
            return np.zeros(len(windows), np.float32)
        context = np.concatenate([self._context[None, :], windows[:-1, -CONTEXT:]], axis=0)
        self._context = windows[-1, -CONTEXT:].copy()
        batch = np.concatenate([context, windows], axis=1)
        out, self._h, self._c = self._vad.session().run(None, {"input": batch, "h": self._h, "c": self._c})
        self.windows += len(windows)
        return np.asarray(out, np.float32).reshape(-1)

    def _regions(self, t0: float, probs: np.ndarray) -> Iterator[tuple[float, float, bool]]:
        opts = self.options
        low = max(opts.threshold - 0.15, 0.01)
        step = WINDOW / AUDIO_RATE
        for i, p in enumerate(probs):
            t = t0 + i * step
            self._t_end = t + step
            if self._start is None:
                if p >= opts.threshold:
                    self._start, self._quiet_since, self._last_pause = t, None, None
                continue
            if p >= opts.threshold:
                if self._quiet_since is not None and t - self._quiet_since >= 0.1:
                    self._last_pause = self._quiet_since + (t - self._quiet_since) / 2
                self._quiet_since = None
            elif p < low and self._quiet_since is None:
                self._quiet_since = t
            if self._quiet_since is not None and t + step - self._quiet_since >= opts.min_silence_s:
                yield from self._close(self._quiet_since)
            elif t + step - self._start >= opts.max_region_s:
                cut = self._last_pause if self._last_pause is not None and self._last_pause > self._start + 1 else t
                yield from self._close(cut, cut_short=True)
                self._start, self._quiet_since, self._last_pause = cut, None, None

    def _close(self, end: float, cut_short: bool = False) -> Iterator[tuple[float, float, bool]]:
        """(start, end, cut_short): cut_short when the next region starts at `end` (a region cut at max_region_s)."""
        start, self._start = self._start, None
        assert start is not None
        if end - start >= self.options.min_speech_s or cut_short:
            self.speech_s += end - start
            yield (start, end, cut_short)
