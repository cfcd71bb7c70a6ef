"""Contact sheet: layout, labels, colours and input forms (Pillow only, no video)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from video_ai.contact_sheet import SHOT_COLOURS, format_time, render_contact_sheet
from video_ai.domain.models import SampledFrame


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0.0, "00:00.000"), (1.5, "00:01.500"), (61.0406, "01:01.041"), (3599.9996, "60:00.000"), (7503.25, "125:03.250"),
     (-0.2, "00:00.000")],
)
def test_format_time(seconds: float, text: str) -> None:
    assert format_time(seconds) == text


def _size(path: Path) -> tuple[int, int]:
    with Image.open(path) as img:
        return img.size


def _frame(i: int, shot: int, colour: tuple[int, int, int], thumb: bool = True) -> SampledFrame:
    picture = np.zeros((90, 160, 3), np.uint8)
    picture[:] = colour
    return SampledFrame(index=i, pts_s=i * 0.5, frame_number=i * 12, shot=shot,
                        image=np.zeros((224, 224, 3), np.uint8), thumbnail=picture if thumb else None)


def test_grid_geometry_and_tiles(tmp_path: Path) -> None:
    frames = [_frame(i, i // 3, (200, 30, 30) if i % 2 else (30, 30, 200)) for i in range(7)]
    out = render_contact_sheet(frames, tmp_path / "sheet.png", columns=3, thumb_width=160)
    sheet = np.asarray(Image.open(out).convert("RGB"))
    pad, label_h, header_h, thumb_h = 8, 24, 44, 90
    assert sheet.shape == (header_h + 3 * (thumb_h + label_h + pad) + pad, pad + 3 * (160 + pad), 3)
    for i in range(7):
        row, col = divmod(i, 3)
        x, y = pad + col * (160 + pad), header_h + row * (thumb_h + label_h + pad)
        centre = sheet[y + 45, x + 80]
        assert (centre[0] > centre[2]) == bool(i % 2), (i, centre)
        # the label band carries the shot's colour (text covers only part of it)
        band = sheet[y + thumb_h + 1 : y + thumb_h + label_h - 1, x + 150 : x + 158].reshape(-1, 3)
        assert np.abs(band.astype(int) - SHOT_COLOURS[i // 3]).max() <= 2
    # the 8th and 9th cells stay background
    x, y = pad + 1 * (160 + pad), header_h + 2 * (thumb_h + label_h + pad)
    assert np.abs(sheet[y + 45, x + 80].astype(int) - (24, 24, 28)).max() <= 2
    # the header has text on it
    assert (sheet[10:34, 8:300] > 128).any()


def test_tuples_images_without_thumbnails_and_portrait(tmp_path: Path) -> None:
    portrait = np.full((200, 100, 3), 128, np.uint8)
    frames = [(0.0, 0, portrait), (2.0, 1, np.full((100, 200, 3), 40, np.uint8))]
    out = render_contact_sheet(frames, tmp_path / "nested" / "t.png", columns=4, thumb_width=100)
    assert out.exists() and _size(out) == (8 + 2 * 108, 44 + 200 + 24 + 8 + 8)
    no_thumb = [_frame(0, 0, (0, 0, 0), thumb=False)]
    assert render_contact_sheet(no_thumb, tmp_path / "n.png").exists()  # falls back to `image`


def test_empty_input_still_renders(tmp_path: Path) -> None:
    out = render_contact_sheet([], tmp_path / "empty.png")
    assert _size(out)[0] > 0


def test_a_long_title_is_shortened_on_its_own_line_and_the_counts_stay_whole(tmp_path: Path) -> None:
    from video_ai.contact_sheet import _font, header_lines

    frames = [_frame(i, i // 2, (90, 90, 90)) for i in range(4)]
    title = "/home/someone/" + "very-long-directory-name/" * 12 + "holiday.mp4 — job 8451e51a-d6b4-5d5a-bd15"
    font = _font(18)
    width = 8 + 3 * (160 + 8)
    lines = header_lines([(f.pts_s, f.shot, f.thumbnail) for f in frames], title, font, width - 16)  # type: ignore[misc]
    assert len(lines) == 2 and all(font.getlength(line) <= width - 16 for line in lines)
    assert lines[0].startswith("/home/") and lines[0].endswith("5d5a-bd15") and "…" in lines[0]
    assert lines[1] == "4 frames  ·  2 shots  ·  00:00.000 – 00:01.500"
    out = render_contact_sheet(frames, tmp_path / "long.png", columns=3, thumb_width=160, title=title)
    assert _size(out) == (width, 18 + 2 * 26 + 2 * (90 + 24 + 8) + 8)
