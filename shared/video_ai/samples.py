"""Synthetic test clips made with PyAV and numpy (no ffmpeg binary): known cuts, exact frame times, rotation, VFR.

Used by the tests and by `video-ai analyze --sample`. Every generator returns the ground truth it encoded.
"""

from __future__ import annotations

import functools
import math
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any, Literal

import av
import numpy as np

Codec = Literal["h264", "vp9", "mpeg4"]
Pattern = Literal["checker", "rings", "stripes", "bars", "dots", "blobs", "grid", "waves"]

PATTERNS: tuple[Pattern, ...] = ("checker", "rings", "stripes", "bars", "dots", "blobs", "grid", "waves")
# Distinct hues per shot, so colour histograms and CNN features both separate shots.
PALETTE: tuple[tuple[int, int, int], ...] = (
    (230, 60, 40), (40, 120, 230), (250, 210, 40), (40, 190, 90),
    (200, 60, 200), (30, 200, 210), (240, 140, 30), (120, 90, 60),
)
_ENCODERS: dict[str, str] = {"h264": "libx264", "vp9": "libvpx-vp9", "mpeg4": "mpeg4"}
_TIME_BASE = Fraction(1, 1000)  # millisecond pts: exact for the VFR schedules generated here


@dataclass(frozen=True, slots=True)
class ShotSpec:
    """One shot: a moving textured pattern in a colour, lasting `duration_s`."""

    duration_s: float
    pattern: Pattern = "checker"
    color: tuple[int, int, int] = (230, 60, 40)
    speed: float = 1.0


@dataclass(slots=True)
class ClipInfo:
    """Ground truth of a generated clip: exact frame times (s), shot start times, keyframe times, geometry."""

    path: Path
    width: int  # coded size (before display rotation)
    height: int
    fps: float
    rotation: int  # clockwise degrees a player turns the coded picture (like the mp4 `rotate` tag)
    codec: str
    frame_times: list[float] = field(default_factory=list)
    shot_starts: list[float] = field(default_factory=list)
    shot_start_frames: list[int] = field(default_factory=list)
    keyframe_times: list[float] = field(default_factory=list)

    @property
    def duration_s(self) -> float:
        return self.frame_times[-1] + 1.0 / self.fps if self.frame_times else 0.0

    @property
    def cut_times(self) -> list[float]:
        return self.shot_starts[1:]

    def shot_of(self, t: float) -> int:
        """Index of the true shot that contains time `t`."""
        return max(i for i, start in enumerate(self.shot_starts) if start <= t + 1e-9)


def default_shots(duration_s: float, cuts: Sequence[float]) -> list[ShotSpec]:
    """Shots cut at `cuts` (seconds), cycling through patterns and colours."""
    bounds = [0.0, *sorted(c for c in cuts if 0 < c < duration_s), duration_s]
    return [
        ShotSpec(bounds[i + 1] - bounds[i], PATTERNS[i % len(PATTERNS)], PALETTE[(i * 3) % len(PALETTE)])
        for i in range(len(bounds) - 1)
    ]


@functools.lru_cache(maxsize=4)
def _grid(width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    return yy, xx


@functools.lru_cache(maxsize=8)
def _blob_field(width: int, height: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    coarse = rng.random((height // 16 + 2, width // 16 + 2)).astype(np.float32)
    big = np.kron(coarse, np.ones((16, 16), np.float32))
    # Box blur of the blocky field gives soft blobs without scipy.
    k = 9
    pad = np.pad(big, k, mode="wrap")
    c = pad.cumsum(0).cumsum(1)
    blurred = (c[2 * k :, 2 * k :] - c[: -2 * k, 2 * k :] - c[2 * k :, : -2 * k] + c[: -2 * k, : -2 * k]) / (
        4 * k * k
    )
    return np.asarray(blurred[: height + 32, : width + 32], np.float32)


def _unit(width: int, height: int) -> float:
    """Feature size of the textures: a ninth of the short side."""
    return max(8.0, min(width, height) / 9.0)


def _margin(width: int, height: int) -> int:
    """How much larger than the frame a texture is: the pan covers about one feature."""
    return int(_unit(width, height)) + 2


def render_pattern(spec: ShotSpec, t: float, width: int, height: int, seed: int = 0) -> np.ndarray:
    """One RGB frame of a shot at time `t` seconds into the shot: a smooth pan over a static texture."""
    texture = _texture(spec.pattern, spec.color, width, height, seed)
    # A slow back-and-forth pan (about a quarter feature per second, 1 px steps): real motion between frames,
    # yet far below what the shot detector calls a cut, whatever the frame size.
    half = _margin(width, height) // 2
    ox = round(half * (1 - math.cos(0.5 * spec.speed * t)))
    oy = round(half * (1 - math.cos(0.35 * spec.speed * t)))
    return texture[oy : oy + height, ox : ox + width].copy()  # a copy: callers draw on it


@functools.lru_cache(maxsize=16)
def _texture(pattern: Pattern, color: tuple[int, int, int], width: int, height: int, seed: int) -> np.ndarray:
    """The shot's texture, `_margin` px larger than the frame each way (rendered once per shot)."""
    tw, th = width + _margin(width, height), height + _margin(width, height)
    yy, xx = _grid(tw, th)
    unit = _unit(width, height)
    v: np.ndarray
    if pattern == "checker":
        v = ((xx // unit + yy // unit) % 2).astype(np.float32)
    elif pattern == "rings":
        v = 0.5 + 0.5 * np.sin(np.hypot(xx - tw / 2, yy - th / 2) / (unit / 4))
    elif pattern == "stripes":
        v = (np.sin((xx + yy) / (unit / 5)) > 0).astype(np.float32)
    elif pattern == "bars":
        bar = (xx // (tw / 7)).astype(np.int64) % 7
        rgb = np.array(
            [(235, 235, 235), (235, 235, 16), (16, 235, 235), (16, 235, 16), (235, 16, 235), (235, 16, 16),
             (16, 16, 235)], np.uint8)
        img = rgb[bar]
        img[int(th * 0.75) :] = np.asarray(color, np.uint8)
        return img
    elif pattern == "dots":
        gx = np.mod(xx, unit) - unit / 2
        gy = np.mod(yy, unit) - unit / 2
        v = (np.hypot(gx, gy) < unit / 3).astype(np.float32)
    elif pattern == "blobs":
        field_ = _blob_field(tw, th, seed + 17)[:th, :tw]
        v = np.clip((field_ - field_.min()) / (np.ptp(field_) + 1e-6), 0, 1)
    elif pattern == "grid":
        v = ((np.mod(xx, unit) < 3) | (np.mod(yy, unit) < 3)).astype(np.float32)
    else:  # waves
        v = 0.5 + 0.5 * np.sin(xx / (unit / 3) + 2 * np.sin(yy / unit))
    rgb_color = np.asarray(color, np.float32)
    dark = rgb_color * 0.15
    shaded = dark + v[..., None] * (rgb_color - dark)
    return np.clip(shaded, 0, 255).astype(np.uint8)


def _add_marker(img: np.ndarray) -> None:
    """A white-bordered red square in the top-left corner: shows which way is up."""
    h, w = img.shape[:2]
    m = max(4, min(h, w) // 6)
    img[:m, :m] = (255, 255, 255)
    img[2 : m - 2, 2 : m - 2] = (255, 0, 0)


def _vfr_schedule(duration_s: float, fps: float) -> list[Fraction]:
    """Irregular frame times averaging ~`fps`: alternating short/long gaps plus occasional stalls."""
    base = Fraction(1000, round(fps)) / 1000 if fps >= 1 else Fraction(1)
    gaps = [base / 2, base * 3 / 2, base, base / 2, base * 5 / 2, base / 2]
    times: list[Fraction] = []
    t = Fraction(0)
    i = 0
    while t < duration_s:
        times.append(t)
        t += Fraction(round(gaps[i % len(gaps)] * 1000), 1000)
        i += 1
    return times


def make_clip(
    path: Path | str,
    *,
    duration_s: float = 4.0,
    fps: float = 25.0,
    size: tuple[int, int] = (320, 240),
    shots: Sequence[ShotSpec] | Sequence[float] | None = None,
    codec: Codec = "h264",
    vfr: bool = False,
    rotation: int = 0,
    audio: bool = False,
    gop: int | None = None,
    marker: bool = False,
    bframes: bool = True,
    seed: int = 0,
) -> ClipInfo:
    """Encode a synthetic clip and return its ground truth.

    `size` is the upright (displayed) (width, height). `shots` is a list of ShotSpec, or a list of cut times in
    seconds (patterns chosen for you), or None for one shot. `rotation` (0/90/180/270, clockwise, like a phone's
    `rotate` tag) stores the picture turned the other way and writes the display matrix, so a player that honours
    it shows the upright picture (marker top-left). `vfr` uses irregular frame times averaging `fps`.
    The container follows the suffix (.mp4, .mkv, .webm, .mov).
    """
    path = Path(path)
    if rotation % 90 or rotation not in (0, 90, 180, 270):
        raise ValueError("rotation must be 0, 90, 180 or 270")
    if shots is None:
        specs = default_shots(duration_s, [])
    elif shots and isinstance(shots[0], ShotSpec):
        specs = [s for s in shots if isinstance(s, ShotSpec)]
        duration_s = sum(s.duration_s for s in specs)
    else:
        specs = default_shots(duration_s, [float(c) for c in shots if not isinstance(c, ShotSpec)])
    up_w, up_h = size
    coded_w, coded_h = (up_h, up_w) if rotation in (90, 270) else (up_w, up_h)
    times = _vfr_schedule(duration_s, fps) if vfr else _cfr_schedule(duration_s, fps)
    starts = list(np.cumsum([0.0] + [s.duration_s for s in specs])[:-1])

    info = ClipInfo(path=path, width=coded_w, height=coded_h, fps=fps, rotation=rotation, codec=codec)
    container = av.open(str(path), "w", options={"movflags": "+faststart"} if path.suffix in (".mp4", ".mov") else {})
    try:
        stream = container.add_stream(_ENCODERS[codec], rate=Fraction(fps).limit_denominator(1001))
        assert isinstance(stream, av.VideoStream)
        stream.width, stream.height, stream.pix_fmt = coded_w, coded_h, "yuv420p"
        stream.codec_context.time_base = _TIME_BASE
        stream.time_base = _TIME_BASE
        opts = _encoder_options(codec, gop or max(1, round(fps * 2)), bframes)
        stream.codec_context.options = opts
        stream.gop_size = gop or max(1, round(fps * 2))
        if codec == "mpeg4":
            stream.bit_rate = 2_000_000
        if rotation:
            stream.set_display_rotation(-rotation)  # PyAV takes counter-clockwise degrees
        audio_stream = _add_audio(container) if audio else None
        audio_done = 0
        shot_idx = -1

        def mux(packets: Sequence[Any]) -> None:
            for packet in packets:
                if packet.is_keyframe and packet.pts is not None and packet.time_base is not None:
                    info.keyframe_times.append(float(packet.pts * packet.time_base))
                container.mux(packet)

        for n, t in enumerate(times):
            tf = float(t)
            idx = max(i for i, st in enumerate(starts) if st <= tf + 1e-9)
            if idx != shot_idx:
                shot_idx = idx
                info.shot_starts.append(tf)
                info.shot_start_frames.append(n)
            img = render_pattern(specs[idx], tf - starts[idx], up_w, up_h, seed=seed + idx)
            if marker:
                _add_marker(img)
            coded = np.ascontiguousarray(np.rot90(img, k=rotation // 90)) if rotation else img
            frame = av.VideoFrame.from_ndarray(coded, format="rgb24")
            frame.pts = int(t / _TIME_BASE)
            frame.time_base = _TIME_BASE
            if n in info.shot_start_frames:
                # A keyframe at each cut, as real encoders place one at scene changes.
                frame.pict_type = av.video.frame.PictureType.I
            mux(stream.encode(frame))
            info.frame_times.append(tf)
            if audio_stream is not None:
                audio_done = _encode_audio(container, audio_stream, audio_done, tf + 1.0 / fps)
        mux(stream.encode(None))
        if audio_stream is not None:
            for packet in audio_stream.encode(None):
                container.mux(packet)
    finally:
        container.close()
    info.keyframe_times.sort()
    return info


def _cfr_schedule(duration_s: float, fps: float) -> list[Fraction]:
    step = Fraction(fps).limit_denominator(1001)
    count = max(1, math.floor(duration_s * fps + 1e-9))
    # Rounded to the millisecond time base: at 30 fps a frame is 33 or 34 ms apart, as in real mp4 files.
    return [Fraction(round(Fraction(n) / step * 1000), 1000) for n in range(count)]


def _encoder_options(codec: str, gop: int, bframes: bool) -> dict[str, str]:
    if codec == "h264":
        return {"preset": "veryfast", "crf": "23", "g": str(gop), "bf": "3" if bframes else "0",
                "x264-params": "b-pyramid=normal"}
    if codec == "vp9":
        return {"deadline": "realtime", "cpu-used": "8", "crf": "32", "b": "0", "g": str(gop)}
    return {"g": str(gop), "bf": "2" if bframes else "0", "qscale": "4"}


def _add_audio(container: Any) -> Any:
    stream = container.add_stream("aac", rate=48000)
    stream.layout = "mono"
    return stream


def _encode_audio(container: Any, stream: Any, done: int, until_s: float) -> int:
    """Encode a 440 Hz tone up to `until_s`, in 1024-sample frames; return samples written."""
    rate = 48000
    while done + 1024 <= until_s * rate:
        n = np.arange(done, done + 1024)
        tone = (0.2 * np.sin(2 * np.pi * 440 * n / rate)).astype(np.float32)[None, :]
        frame = av.AudioFrame.from_ndarray(tone, format="fltp", layout="mono")
        frame.sample_rate = rate
        frame.pts = done
        frame.time_base = Fraction(1, rate)
        for packet in stream.encode(frame):
            container.mux(packet)
        done += 1024
    return done


def make_audio_only(path: Path | str, duration_s: float = 2.0) -> Path:
    """An audio-only file (AAC tone in .m4a/.mp4, or the container the suffix names)."""
    path = Path(path)
    with av.open(str(path), "w") as container:
        stream = _add_audio(container)
        _encode_audio(container, stream, 0, duration_s)
        for packet in stream.encode(None):
            container.mux(packet)
    return path


def make_empty_video(path: Path | str) -> Path:
    """A Matroska file whose video stream has no frame at all (1 s of audio beside it)."""
    path = Path(path)
    with av.open(str(path), "w", format="matroska") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        audio = _add_audio(container)
        _encode_audio(container, audio, 0, 1.0)
        for packet in audio.encode(None):
            container.mux(packet)
    return path


def make_truncated(src: Path | str, dst: Path | str, keep: float = 0.5, *, keep_bytes: int | None = None) -> Path:
    """Copy the first `keep` fraction (or `keep_bytes` bytes) of `src`: a download cut off mid-file."""
    data = Path(src).read_bytes()
    end = keep_bytes if keep_bytes is not None else int(len(data) * keep)
    Path(dst).write_bytes(data[: max(1, end)])
    return Path(dst)


def first_video_packet_span(path: Path | str) -> tuple[int, int]:
    """(byte offset, size) of the first video packet, from the container index (mp4/mov)."""
    with av.open(str(path)) as container:
        entry = container.streams.video[0].index_entries[0]
        return int(entry.pos), int(entry.size)  # read before close: the entry points into the container


def make_garbled(src: Path | str, dst: Path | str, start: float = 0.4, end: float = 0.9, seed: int = 0) -> Path:
    """Overwrite a byte range of `src` with noise: bit rot that the demuxer may not notice but the decoder will."""
    data = bytearray(Path(src).read_bytes())
    a, b = int(len(data) * start), int(len(data) * end)
    data[a:b] = np.random.default_rng(seed).integers(0, 256, b - a, dtype=np.uint8).tobytes()
    Path(dst).write_bytes(bytes(data))
    return Path(dst)


DEMO_CUTS: tuple[float, ...] = (3.0, 7.0, 10.4, 14.0, 17.0)


def make_demo_clip(path: Path | str, progress: Callable[[str], None] | None = None) -> ClipInfo:
    """A ~20 s 640x360 25 fps H.264 clip with cuts at 3, 7, 10.4, 14 and 17 s (six shots)."""
    if progress is not None:
        progress(f"generating a 20 s demo clip with {len(DEMO_CUTS)} cuts at {Path(path)}")
    return make_clip(path, duration_s=20.0, fps=25.0, size=(640, 360), shots=list(DEMO_CUTS), codec="h264")


def copy_clip(src: Path | str, dst: Path | str) -> Path:
    """Copy a clip (tests that damage files work on a copy)."""
    shutil.copyfile(src, dst)
    return Path(dst)
