"""Contact sheet: a PNG grid of sampled frames labelled with time and shot, for people to look at."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import numpy as np
from PIL import Image, ImageDraw, ImageFont

# One colour per shot (cycled), used for the label band so a shot change is visible at a glance.
SHOT_COLOURS: tuple[tuple[int, int, int], ...] = (
    (31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
    (140, 86, 75), (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207),
)
_BACKGROUND = (24, 24, 28)
_TEXT = (235, 235, 235)


class SheetFrame(Protocol):
    """What the sheet needs from a frame (SampledFrame fits)."""

    @property
    def pts_s(self) -> float: ...

    @property
    def shot(self) -> int: ...

    @property
    def thumbnail(self) -> np.ndarray | None: ...


def format_time(seconds: float) -> str:
    """mm:ss.mmm (hours folded into minutes past 99 min are still shown: 125:03.250)."""
    millis = max(0, round(seconds * 1000))
    minutes, millis = divmod(millis, 60_000)
    return f"{minutes:02d}:{millis // 1000:02d}.{millis % 1000:03d}"


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    for name in ("DejaVuSans.ttf", "DejaVuSansMono.ttf", "LiberationSans-Regular.ttf", "Arial.ttf"):
        try:
            return ImageFont.truetype(name, size)
        except OSError:
            continue
    return ImageFont.load_default(size=size)


def render_contact_sheet(
    frames: Sequence[SheetFrame | tuple[float, int, np.ndarray]],
    out_path: Path | str,
    columns: int = 5,
    title: str | None = None,
    thumb_width: int = 240,
) -> Path:
    """Write a PNG grid of thumbnails labelled `mm:ss.mmm · shot N` under a header line; return the path.

    `frames` are SampledFrame-like objects with a `thumbnail` (falling back to `image`), or (pts_s, shot, image)
    tuples. Thumbnails are scaled to `thumb_width` keeping their aspect ratio.
    """
    items = [_unpack(f) for f in frames]
    out = Path(out_path)
    columns = max(1, min(columns, len(items) or 1))
    rows = max(1, math.ceil(len(items) / columns))
    thumb_h = max((round(img.shape[0] * thumb_width / img.shape[1]) for _, _, img in items), default=thumb_width // 2)
    pad, label_h, line_h = 8, 24, 26
    width = pad + columns * (thumb_width + pad)
    header_font, label_font = _font(18), _font(14)
    lines = header_lines(items, title, header_font, width - 2 * pad)
    header_h = 18 + line_h * len(lines)
    height = header_h + rows * (thumb_h + label_h + pad) + pad
    sheet = Image.new("RGB", (width, height), _BACKGROUND)
    draw = ImageDraw.Draw(sheet)
    for n, line in enumerate(lines):
        draw.text((pad, 9 + n * line_h), line, fill=_TEXT, font=header_font)
    for i, (pts_s, shot, img) in enumerate(items):
        row, col = divmod(i, columns)
        x = pad + col * (thumb_width + pad)
        y = header_h + row * (thumb_h + label_h + pad)
        tile = Image.fromarray(np.ascontiguousarray(img[..., :3]).astype(np.uint8), "RGB")
        tile_h = round(tile.height * thumb_width / tile.width)
        tile = tile.resize((thumb_width, tile_h), Image.Resampling.LANCZOS)
        sheet.paste(tile, (x, y + (thumb_h - tile_h) // 2))
        colour = SHOT_COLOURS[shot % len(SHOT_COLOURS)]
        draw.rectangle((x, y + thumb_h, x + thumb_width - 1, y + thumb_h + label_h - 1), fill=colour)
        draw.text((x + 6, y + thumb_h + 4), f"{format_time(pts_s)}  ·  shot {shot}", fill=(255, 255, 255),
                  font=label_font)
    out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(out, format="PNG", optimize=True)
    return out


def header_lines(items: Sequence[tuple[float, int, np.ndarray]], title: str | None,
                 font: ImageFont.FreeTypeFont | ImageFont.ImageFont, max_width: int) -> list[str]:
    """The title on a line of its own (shortened in the middle to fit: a long path keeps its file name), then the
    counts, so neither is cut off at the sheet's edge."""
    shots = {shot for _, shot, _ in items}
    span = f"{format_time(items[0][0])} – {format_time(items[-1][0])}" if items else "no frames"
    stats = f"{len(items)} frames  ·  {len(shots)} shots  ·  {span}"
    if not title:
        return [_fit(stats, font, max_width)]
    return [_fit(title, font, max_width), _fit(stats, font, max_width)]


def _fit(text: str, font: ImageFont.FreeTypeFont | ImageFont.ImageFont, max_width: int) -> str:
    if font.getlength(text) <= max_width:
        return text
    keep_end = len(text) // 2
    keep_start = len(text) - keep_end
    while keep_start + keep_end > 1:
        if keep_start >= keep_end:
            keep_start -= 1
        else:
            keep_end -= 1
        candidate = f"{text[:keep_start]}…{text[len(text) - keep_end:]}"
        if font.getlength(candidate) <= max_width:
            return candidate
    return "…"


def _unpack(frame: SheetFrame | tuple[float, int, np.ndarray]) -> tuple[float, int, np.ndarray]:
    if isinstance(frame, tuple):
        pts_s, shot, image = frame
        return float(pts_s), int(shot), image
    picture: np.ndarray | None = frame.thumbnail if frame.thumbnail is not None else getattr(frame, "image", None)
    if picture is None:
        raise ValueError("a frame for the contact sheet needs a thumbnail or an image")
    return float(frame.pts_s), int(frame.shot), picture
