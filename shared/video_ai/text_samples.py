"""Clips with known on-screen text, for the OCR analyzer's tests and benchmarks (nothing downloaded: Pillow's own
font unless a font file is given).

Each shot has a background (a moving texture, so the picture changes while the text stands still, or flat colour)
and captions that appear and leave at given times. `rotation` stores the picture turned (with the display matrix, as
a phone does); `sar` stores it squeezed horizontally with that sample aspect ratio (anamorphic), so a player, and
the decoder's display-aspect copy, shows it at `size`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont


@dataclass(slots=True, frozen=True)
class Caption:
    """Text drawn at (x, y) as fractions of the upright frame, `size` pixels high, from `start_s` to `end_s` within
    its shot (None: the shot's end)."""

    text: str
    x: float
    y: float
    size: int = 40
    start_s: float = 0.0
    end_s: float | None = None
    color: tuple[int, int, int] = (255, 255, 255)
    # A band behind the letters, as broadcast captions have (None: the letters straight on the picture).
    band: tuple[int, int, int] | None = (10, 10, 10)


@dataclass(slots=True)
class TextShot:
    duration_s: float
    captions: Sequence[Caption] = ()
    background: str = "moving"  # moving (soft colour field) | flat | busy (sharp texture, moving) | still (the same)
    color: tuple[int, int, int] = (30, 60, 120)


@dataclass(slots=True)
class TextClip:
    path: Path
    size: tuple[int, int]
    shot_starts: list[float] = field(default_factory=list)
    # Where each caption was drawn: (text, shot index, left, top, right, bottom as fractions of the upright frame).
    boxes: list[tuple[str, int, float, float, float, float]] = field(default_factory=list)


def _background(shot: TextShot, t: float, width: int, height: int, seed: int) -> np.ndarray:
    if shot.background == "flat":
        return np.full((height, width, 3), shot.color, dtype=np.uint8)
    rng = np.random.default_rng(seed)
    if shot.background in ("busy", "still"):
        # Sharp texture everywhere (gravel, foliage, a crowd): "busy" changes every frame, "still" never (a tripod).
        moment = int(t * 1000) if shot.background == "busy" else 0
        noise = np.random.default_rng(seed + moment).integers(0, 255, size=(height // 4, width // 4, 3))
        tex = cv2.resize(noise.astype(np.uint8), (width, height), interpolation=cv2.INTER_NEAREST)
        return np.ascontiguousarray((0.6 * tex + 0.4 * np.array(shot.color)).astype(np.uint8))
    # Soft blobs drifting right: a picture that changes from frame to frame, without sharp edges of its own.
    small = rng.integers(0, 255, size=(9, 16, 3), dtype=np.uint8)
    base = cv2.resize(small, (width * 2, height), interpolation=cv2.INTER_CUBIC)
    shift = int(t * width * 0.15) % width
    img = base[:, shift : shift + width]
    mixed = (0.5 * img + 0.5 * np.array(shot.color)).astype(np.uint8)
    return np.ascontiguousarray(mixed)


def _font(size: int, path: str | None) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    if path:
        return ImageFont.truetype(path, size)
    return ImageFont.load_default(size=size)


def render(shot: TextShot, t: float, width: int, height: int, seed: int = 0, font: str | None = None,
           boxes: list[tuple[str, float, float, float, float]] | None = None) -> np.ndarray:
    """One upright RGB frame of `shot` at `t` seconds into it; appends each drawn caption's box to `boxes`."""
    img = Image.fromarray(_background(shot, t, width, height, seed))
    draw = ImageDraw.Draw(img)
    for caption in shot.captions:
        if not caption.start_s <= t < (caption.end_s if caption.end_s is not None else float("inf")):
            continue
        f = _font(caption.size, font)
        xy = (caption.x * width, caption.y * height)
        left, top, right, bottom = draw.textbbox(xy, caption.text, font=f)
        if caption.band is not None:
            draw.rectangle((left - 8, top - 6, right + 8, bottom + 6), fill=caption.band)
        draw.text(xy, caption.text, font=f, fill=caption.color)
        if boxes is not None:
            boxes.append((caption.text, left / width, top / height, right / width, bottom / height))
    return np.asarray(img)


def make_text_clip(path: Path | str, shots: Sequence[TextShot], *, size: tuple[int, int] = (1280, 720),
                   fps: float = 5.0, rotation: int = 0, sar: Fraction | None = None, font: str | None = None,
                   seed: int = 0) -> TextClip:
    """Encode `shots` (H.264 in MP4) and return where their captions were drawn."""
    path = Path(path)
    up_w, up_h = size
    coded_w, coded_h = (up_h, up_w) if rotation in (90, 270) else (up_w, up_h)
    if sar is not None:  # anamorphic: fewer stored columns, each shown `sar` times wider
        coded_w = round(coded_w / float(sar)) // 2 * 2
    clip = TextClip(path=path, size=size)
    container = av.open(str(path), "w")
    try:
        stream = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
        assert isinstance(stream, av.VideoStream)
        stream.width, stream.height, stream.pix_fmt = coded_w, coded_h, "yuv420p"
        stream.codec_context.options = {"preset": "veryfast", "crf": "20", "g": str(max(1, round(fps * 2)))}
        if sar is not None:
            stream.codec_context.sample_aspect_ratio = sar
            stream.sample_aspect_ratio = sar
        if rotation:
            stream.set_display_rotation(-rotation)
        n = 0
        start = 0.0
        for index, shot in enumerate(shots):
            clip.shot_starts.append(start)
            seen: set[str] = set()
            for k in range(max(1, round(shot.duration_s * fps))):
                drawn: list[tuple[str, float, float, float, float]] = []
                img = render(shot, k / fps, up_w, up_h, seed=seed + index, font=font, boxes=drawn)
                for text, *box in drawn:
                    if text not in seen:
                        seen.add(text)
                        clip.boxes.append((text, index, box[0], box[1], box[2], box[3]))
                if rotation:
                    img = np.ascontiguousarray(np.rot90(img, k=rotation // 90))
                if sar is not None:
                    img = cv2.resize(img, (coded_w, coded_h), interpolation=cv2.INTER_AREA)
                frame = av.VideoFrame.from_ndarray(img, format="rgb24")
                frame.pts = n
                frame.time_base = Fraction(1, 1) / Fraction(fps).limit_denominator(1001)
                if k == 0:
                    frame.pict_type = av.video.frame.PictureType.I
                for packet in stream.encode(frame):
                    container.mux(packet)
                n += 1
            start += shot.duration_s
        for packet in stream.encode(None):
            container.mux(packet)
    finally:
        container.close()
    return clip
