"""PyAV audio source: the first audio stream decoded, resampled to 16 kHz mono float32 and handed out in chunks.

* Time is the video's clock (DESIGN §3, the frame source's): a sample's time is its presentation time on the file's
  own timeline, so a track that starts late starts late here too, and a transcript word lines up with the frame
  `pts_s` shown while it is said. The resampler keeps the input's times (its output pts are in 1/16000 s).
* Encoder delay (priming samples: the codec's warm-up, not content) is off the timeline, as players keep it: FFmpeg
  drops it and times the rest right for AAC in MP4/MOV (the edit list) and Matroska, and Opus in WebM/Ogg (pre-skip).
  A raw MP3's LAME header delay (576 + 529 samples for LAME) is dropped too, but FFmpeg's mp3 demuxer counts it as
  time (the stream's start_time), which would put every sample that much late (25 ms at 44.1 kHz, 69 ms at 16 kHz);
  it is taken off here (`_shift_s`), so the first sample the encoder was given is at 0, as in the containers above
  and as a player that discards it keeps time (Chromium's AudioDiscardHelper times decoded audio from the first
  packet's timestamp, 0 here, and discarded samples take no time). ADTS (.aac) and MPEG-TS cannot say that samples
  are priming: theirs are decoded and timed as audio (the file's own times, as any decoder plays them). Measured per
  container, whole and after a seek, in tests/integration/test_audio_clock.py.
* After a seek the decoder starts PREROLL_S early and the samples before the range are dropped: the first frames a
  decoder gives after a jump are not the audio (AAC's overlap, MP3's bit reservoir, Opus's 80 ms pre-roll), and after
  some seeks in Matroska/WebM the first packet FFmpeg reads gives no samples at all (a range would start late).
* Streamed: the pass holds one chunk (CHUNK_S seconds of 16 kHz samples) at a time, whatever the track's length.
* Damaged audio is not an error of the job: a packet that does not decode is skipped, counted, and named in
  `warnings`; a gap in the times (skipped packets, a track that pauses) starts a new chunk at the later time.
"""

from __future__ import annotations

import contextlib
import io
import logging
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np

from video_ai.domain.errors import UnsupportedMedia, VideoNotFound
from video_ai.domain.ports import AUDIO_RATE, AudioChunk, AudioInfo, MediaFile

logger = logging.getLogger(__name__)

CHUNK_S = 30.0
# A jump in the times larger than this starts a new chunk; smaller ones are rounding between packets.
GAP_S = 0.05
# Decoding stops after this many damaged packets in a row: the rest of the track is not worth the time.
MAX_BAD_IN_A_ROW = 200
# How far before a range's start a seek goes, so the decoder is warm there (several frames of any codec).
PREROLL_S = 0.5


class PyAVAudioSource:
    def open(self, path: Path | MediaFile, start_s: float | None = None, end_s: float | None = None) -> PyAVAudioReader:
        return PyAVAudioReader(path, start_s, end_s)


def _open_container(path: Path | MediaFile) -> Any:
    name = path.name
    try:
        if isinstance(path, Path):
            if not path.exists():
                raise VideoNotFound(f"no such file: {path}")
            return av.open(str(path), metadata_errors="ignore")
        if path.seek(0, io.SEEK_END) == 0:
            raise UnsupportedMedia(f"{name}: the file is empty")
        path.seek(0)
        return av.open(path, metadata_errors="ignore")
    except (av.error.FFmpegError, OSError, ValueError) as err:
        raise UnsupportedMedia(f"{name}: not a media container we can read ({err})") from None


class PyAVAudioReader:
    def __init__(self, path: Path | MediaFile, start_s: float | None, end_s: float | None) -> None:
        self._file = None if isinstance(path, Path) else path
        self.start_s = max(0.0, start_s or 0.0)
        self.end_s = end_s
        self.warnings: list[str] = []
        self.bad_packets = 0
        try:
            self._container = _open_container(path)
        except BaseException:
            self.close()
            raise
        streams = self._container.streams.audio
        self._stream = streams[0] if streams else None
        self._shift_s = self._encoder_delay_s() if self._stream is not None else 0.0
        self.info = self._probe() if self._stream is not None else None

    def _encoder_delay_s(self) -> float:
        """Seconds FFmpeg's times run ahead of the presentation timeline: a raw MP3's LAME delay, which the mp3
        demuxer skips but keeps as the stream's start_time (the first sample out is timed at the delay, not at 0).
        Other containers carry their own timestamps, priming before 0 (edit list, codec delay): nothing to take off."""
        stream = self._stream
        assert stream is not None
        if self._container.format.name != "mp3" or not stream.start_time or not stream.time_base:
            return 0.0
        return max(0.0, float(stream.start_time * stream.time_base))

    def _probe(self) -> AudioInfo:
        stream = self._stream
        assert stream is not None
        tb: Fraction = stream.time_base or Fraction(1, AUDIO_RATE)
        start = float((stream.start_time or 0) * tb) - self._shift_s
        end: float | None = None
        if stream.duration:
            end = float((stream.duration + (stream.start_time or 0)) * tb) - self._shift_s
        elif self._container.duration:
            end = self._container.duration / av.time_base - self._shift_s
        ctx = stream.codec_context
        return AudioInfo(container=self._container.format.name.split(",")[0], codec=str(ctx.name),
                         sample_rate=int(ctx.sample_rate or 0), channels=int(ctx.channels or 0),
                         start_s=max(0.0, start), end_s=end)

    def chunks(self) -> Iterator[AudioChunk]:
        if self._stream is None:
            return
        stream = self._stream
        if self.start_s > 0:
            tb = stream.time_base or Fraction(1, AUDIO_RATE)
            target = self.start_s - PREROLL_S + self._shift_s
            try:
                if target > 0:  # else the start is near enough: decode from the beginning, priming handled
                    self._container.seek(int(target / tb), stream=stream, backward=True)
            except (av.error.FFmpegError, OSError) as err:
                self._warn(f"audio: could not seek to {self.start_s:.2f} s ({err}); read from the start")
        resampler = av.AudioResampler(format="flt", layout="mono", rate=AUDIO_RATE)
        parts: list[np.ndarray] = []
        chunk_start: float | None = None
        next_t = 0.0  # where the samples gathered so far end
        bad_in_a_row = 0
        for frame in self._decoded(resampler):
            if frame is None:
                bad_in_a_row += 1
                if bad_in_a_row >= MAX_BAD_IN_A_ROW:
                    self._warn(f"audio: decoding stopped after {MAX_BAD_IN_A_ROW} damaged packets in a row")
                    break
                continue
            bad_in_a_row = 0
            samples = frame.to_ndarray().reshape(-1).astype(np.float32, copy=False)
            t = float(frame.pts * frame.time_base) - self._shift_s if frame.pts is not None else next_t
            if -0.5 / AUDIO_RATE < t < 0:  # the shift, rounded to the resampler's 1/16000 s pts
                t = 0.0
            if self.end_s is not None and t >= self.end_s:
                break
            if t + len(samples) / AUDIO_RATE <= self.start_s:
                continue
            if t < self.start_s:  # the seek landed before the range: drop the samples before it
                cut = round((self.start_s - t) * AUDIO_RATE)
                samples, t = samples[cut:], t + cut / AUDIO_RATE
            if self.end_s is not None:
                samples = samples[: max(0, round((self.end_s - t) * AUDIO_RATE))]
            if chunk_start is not None and (abs(t - next_t) > GAP_S or next_t - chunk_start >= CHUNK_S):
                yield AudioChunk(chunk_start, np.concatenate(parts))
                parts, chunk_start = [], None
            if chunk_start is None:
                chunk_start = t
            parts.append(samples)
            next_t = t + len(samples) / AUDIO_RATE
        if parts:
            yield AudioChunk(chunk_start if chunk_start is not None else self.start_s, np.concatenate(parts))
        if self.bad_packets:
            self._warn(f"audio: {self.bad_packets} damaged audio packet(s) could not be decoded and were skipped")

    def _decoded(self, resampler: Any) -> Iterator[Any | None]:
        """Resampled frames in order; None for each packet that did not decode (or demux) and was skipped."""
        assert self._stream is not None
        demuxer = self._container.demux(self._stream)
        while True:
            try:
                packet = next(demuxer)
            except StopIteration:
                break
            except (av.error.FFmpegError, OSError, ValueError) as err:
                # A container that breaks mid-file (truncated, garbage): what was decoded so far stands.
                self._warn(f"audio: the container could not be read past this point ({err})")
                break
            try:
                frames = packet.decode()
            except (av.error.FFmpegError, ValueError):
                self.bad_packets += 1
                yield None
                continue
            for frame in frames:
                try:
                    yield from resampler.resample(frame)
                except (av.error.FFmpegError, ValueError):
                    self.bad_packets += 1
                    yield None
        with contextlib.suppress(av.error.FFmpegError, ValueError):
            yield from resampler.resample(None)

    def _warn(self, message: str) -> None:
        if message not in self.warnings:
            logger.warning(message)
            self.warnings.append(message)

    def close(self) -> None:
        container = getattr(self, "_container", None)
        if container is not None:
            container.close()
            self._container = None
        if self._file is not None:
            self._file.close()
            self._file = None
