"""A shot is represented by its most informative frame: past a fade-in from black, a focus pull and a dissolve.

The clip (made here with PyAV): shot A fades in from black over its first 1.2 s; a hard cut to shot B, whose first
1.2 s are out of focus and whose last second dissolves into another picture (no cut there). `--shots` used to
stand for A with its first (black) frame and for B with a blurred one.
"""

from __future__ import annotations

import itertools
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from video_ai.adapters.frame_source import REPRESENTATIVE_S, PyAVFrameSource
from video_ai.domain.models import SampledFrame, Sampling

FPS = 25
W, H = 320, 180
CUT_S = 2.4
FADE_S = BLUR_S = 1.2
DISSOLVE_FROM_S, END_S = 4.8, 5.8


def _texture(seed: int, colour: tuple[int, int, int]) -> np.ndarray:
    rng = np.random.default_rng(seed)
    cells = rng.integers(0, 2, size=(H // 12 + 1, W // 12 + 1)).astype(np.float32)
    mask = cv2.resize(cells, (W, H), interpolation=cv2.INTER_NEAREST)[..., None]
    return (mask * np.array(colour, np.float32) + (1 - mask) * 40).astype(np.float32)


def _frame(t: float, a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    if t < CUT_S:
        return a * min(1.0, t / FADE_S)  # fade in from black
    if t < CUT_S + BLUR_S:
        sigma = 6.0 * (1 - (t - CUT_S) / BLUR_S) + 0.1  # focus pull
        return cv2.GaussianBlur(b, (0, 0), sigma)
    if t < DISSOLVE_FROM_S:
        return b
    mix = (t - DISSOLVE_FROM_S) / (END_S - DISSOLVE_FROM_S)
    return b * (1 - mix) + c * mix  # dissolve


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("rep") / "fades.mp4"
    a, b, c = _texture(1, (240, 200, 60)), _texture(2, (60, 200, 240)), _texture(3, (230, 90, 200))
    with av.open(str(path), "w", options={"movflags": "+faststart"}) as out:
        stream = out.add_stream("libx264", rate=FPS)
        assert isinstance(stream, av.VideoStream)
        stream.width, stream.height, stream.pix_fmt = W, H, "yuv420p"
        stream.codec_context.options = {"preset": "veryfast", "crf": "18", "g": "25"}
        for n in range(round(END_S * FPS)):
            img = np.clip(_frame(n / FPS, a, b, c), 0, 255).astype(np.uint8)
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            frame.pts, frame.time_base = n, Fraction(1, FPS)
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return path


def _shots(path: Path, **kw: float) -> tuple[list[SampledFrame], list[float]]:
    with PyAVFrameSource().open(path, Sampling(mode="shots"), **kw) as reader:  # type: ignore[arg-type]
        frames = list(reader)
        return frames, [s.start_s for s in reader.shots]


def test_each_shot_is_shown_by_a_sharp_lit_frame_not_its_first(clip: Path) -> None:
    frames, starts = _shots(clip)
    assert starts == pytest.approx([0.0, CUT_S], abs=1e-6)  # the dissolve is no cut
    a, b = frames
    assert a.shot == 0 and FADE_S - 0.2 <= a.pts_s < float(REPRESENTATIVE_S)  # lit: the fade is (nearly) over
    assert a.image.mean() > 0.9 * _texture(1, (240, 200, 60)).mean()
    assert b.shot == 1 and CUT_S + BLUR_S - 0.2 <= b.pts_s < DISSOLVE_FROM_S  # in focus, before the dissolve
    gray = cv2.cvtColor(b.image, cv2.COLOR_RGB2GRAY)
    assert cv2.Laplacian(gray, cv2.CV_32F).var() > 1000


def test_a_split_run_chooses_the_same_frames(clip: Path) -> None:
    """Segment ends inside the fade and inside the blur: the segment reads on to choose as the full pass does."""
    full, _ = _shots(clip)
    pieces: list[SampledFrame] = []
    bounds: list[float | None] = [None, 1.0, 3.0, None]
    for start, end in itertools.pairwise(bounds):
        kw = {k: v for k, v in (("start_s", start), ("end_s", end)) if v is not None}
        frames, _ = _shots(clip, **kw)
        pieces.extend(frames)
    assert [(f.pts_s, f.frame_number) for f in pieces] == [(f.pts_s, f.frame_number) for f in full]
