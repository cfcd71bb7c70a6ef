"""CutDetector: ContentDetector's cuts at stride 1, the same cuts for much less work at larger strides."""

from __future__ import annotations

from fractions import Fraction

import cv2
import numpy as np
import pytest
from scenedetect import ContentDetector, FrameTimecode
from scenedetect.common import Timecode
from scenedetect.detector import FlashFilter

from video_ai.adapters.shot_cuts import CutDetector, content_score

FPS = 25.0
SIZE = (96, 64)  # width, height: the detector's small copy


def _scene(seed: int, width: int = SIZE[0], cell: int = 16) -> np.ndarray:
    """A smooth random BGR texture `width` px wide (blobs ~`cell` px apart), for panning over."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (SIZE[1] // cell + 2, width // cell + 2, 3), dtype=np.uint8)
    return cv2.resize(small, (width, SIZE[1]), interpolation=cv2.INTER_CUBIC)


def _clip(cuts: list[int], n: int, speed: int, flash_at: int | None = None, cell: int = 16) -> list[np.ndarray]:
    """n BGR frames: pans at `speed` px per frame over a new scene after each cut; one white frame at `flash_at`."""
    frames = []
    width = SIZE[0] + n * speed
    scene_no, scene = 0, _scene(0, width, cell)
    for i in range(n):
        if i in cuts:
            scene_no += 1
            scene = _scene(scene_no, width, cell)
        x = i * speed
        frame = np.ascontiguousarray(scene[:, x : x + SIZE[0]])
        if i == flash_at:
            frame = np.full_like(frame, 255)
        frames.append(frame)
    return frames


def _hsv(frame: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(frame, cv2.COLOR_BGR2HSV)


def _cuts(frames: list[np.ndarray], stride: int, min_shot_s: float = 0.5,
          threshold: float = 27.0) -> tuple[list[int], CutDetector[np.ndarray]]:
    det: CutDetector[np.ndarray] = CutDetector(threshold, Fraction(str(min_shot_s)), _hsv, stride=stride)
    found: list[int] = []
    timed = [(Fraction(i, 25), f) for i, f in enumerate(frames)]
    for start in range(0, len(timed), stride):
        window = timed[start : start + stride]
        found += [start + j for j, cut in enumerate(det.cuts(window)) if cut]
    return found, det


def _scenedetect(frames: list[np.ndarray], min_shot_s: float = 0.5, threshold: float = 27.0) -> list[int]:
    det = ContentDetector(threshold=threshold, min_scene_len=min_shot_s, filter_mode=FlashFilter.Mode.SUPPRESS)
    found = []
    for i, frame in enumerate(frames):
        tc = FrameTimecode(Timecode(i, Fraction(1, 25)), fps=FPS)
        if det.process_frame(tc, frame):
            found.append(i)
    return found


CUTS = [15, 37, 38, 60, 91, 92, 93, 140]  # includes cuts closer together than min_shot_s


@pytest.mark.parametrize("speed", [0, 1, 4])
@pytest.mark.parametrize("min_shot_s", [0.0, 0.5])
def test_stride_one_is_contentdetector(speed: int, min_shot_s: float) -> None:
    frames = _clip(CUTS, 160, speed, flash_at=120)
    ours, det = _cuts(frames, 1, min_shot_s)
    assert ours == _scenedetect(frames, min_shot_s)
    assert det.frames_scored == len(frames)
    assert ours[:1] == [15]


@pytest.mark.parametrize("stride", [2, 4, 7])
@pytest.mark.parametrize("speed", [0, 1, 4])
@pytest.mark.parametrize("min_shot_s", [0.0, 0.5])
def test_larger_strides_find_the_same_cuts_on_the_same_frames(stride: int, speed: int, min_shot_s: float) -> None:
    for cell in (16, 64):  # busy and smooth pictures
        frames = _clip(CUTS, 160, speed, cell=cell)
        full, _ = _cuts(frames, 1, min_shot_s)
        coarse, det = _cuts(frames, stride, min_shot_s)
        assert coarse == full
        assert set(full) == ({15, 37, 60, 91, 140} if min_shot_s else set(CUTS))
        if speed == 0 or (speed == 1 and cell == 64 and stride <= 4):
            # little change inside the shots: only the windows around the cuts are examined frame by frame
            assert det.frames_scored <= len(frames) / stride + len(CUTS) * stride + 1
            assert det.windows_refined <= len(CUTS)


def test_fast_motion_is_examined_frame_by_frame_not_mistaken_for_cuts() -> None:
    frames = _clip([80], 120, speed=3)  # consecutive frames differ by ~18 of 27, windows of 4 by ~50
    full, _ = _cuts(frames, 1)
    coarse, det = _cuts(frames, 4)
    assert coarse == full
    assert 80 in full
    assert det.windows_refined > 5  # the fast windows were refined instead of judged by their ends


def test_a_flash_inside_a_window_is_not_a_cut() -> None:
    """The documented difference: one white frame whose neighbours look alike is a 'cut' only at stride 1."""
    frames = _clip([], 40, speed=0, flash_at=21)
    full, _ = _cuts(frames, 1, min_shot_s=0.0)
    coarse, _ = _cuts(frames, 4, min_shot_s=0.0)
    assert full == [21, 22] and coarse == []


def test_score_is_contentdetectors_and_windows_can_be_ragged() -> None:
    a, b = _hsv(_scene(1)), _hsv(_scene(2))
    expected = np.abs(a.astype(int) - b.astype(int)).mean()
    assert content_score(a, b) == pytest.approx(expected)
    frames = _clip([5], 9, speed=0)
    det: CutDetector[np.ndarray] = CutDetector(27.0, Fraction(0), _hsv, stride=4)
    timed = [(Fraction(i, 25), f) for i, f in enumerate(frames)]
    flags = det.cuts(timed[:1]) + det.cuts(timed[1:3]) + det.cuts(timed[3:7]) + det.cuts([]) + det.cuts(timed[7:])
    assert [i for i, cut in enumerate(flags) if cut] == [5]
    with pytest.raises(ValueError):
        CutDetector(27.0, Fraction(0), _hsv, stride=0)
