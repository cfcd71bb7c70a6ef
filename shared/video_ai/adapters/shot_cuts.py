"""Hard-cut detection: PySceneDetect ContentDetector's score and SUPPRESS rule, checked coarse to fine.

The score of a frame is ContentDetector's with its default weights: the mean absolute difference of the H, S and V
planes against the previous frame (OpenCV's 8-bit HSV), averaged over the three planes. A frame is a cut when its
score is >= `threshold` and at least `min_shot_s` have passed since the last cut (or since the first frame seen):
FlashFilter's SUPPRESS mode, in exact time instead of float seconds.

Coarse to fine. Most of a detector's cost is making the small HSV copy of every frame. Here a window of `stride`
consecutive frames is judged by one score, from the frame before the window to the window's last frame. Only when
that coarse score reaches `REFINE_AT * threshold` are the frames inside the window made and scored one by one, and the
SUPPRESS rule runs over those true per-frame scores. Windows below that bound hold no frame at or above `threshold`
unless the changes inside the window cancel out: per pixel |x0 - xk| >= |x(j+1) - xj| - (sum of the other steps),
so a missed frame needs the window's other steps to add up to more than (1 - REFINE_AT) * threshold while its ends
still look alike, i.e. a flash or strobe shorter than the window, which a cut detector should not report anyway.
With `stride = 1` every frame is scored, which is ContentDetector itself (tests/unit/test_shot_cuts.py compares the
two on the same frames).

The detector only sees the frames it is given: in `fps` mode on H.264/HEVC the frame source hands it the decoded
(reference) frames; in `shots` mode every frame.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from fractions import Fraction
from typing import Generic, TypeVar

import cv2
import numpy as np

REFINE_AT = 0.6  # a window is examined frame by frame when its coarse score reaches this share of the threshold

F = TypeVar("F")


def content_score(a: np.ndarray, b: np.ndarray) -> float:
    """ContentDetector's frame score with default weights: mean |a - b| over the H, S and V planes (uint8 HSV)."""
    return float(cv2.norm(a, b, cv2.NORM_L1)) / a.size


class CutDetector(Generic[F]):
    """Feed windows of consecutive frames in order; get back, per frame, whether a shot starts there.

    `features(frame)` returns the frame's small uint8 HSV image (the same size for every frame).
    """

    def __init__(
        self,
        threshold: float,
        min_shot_s: Fraction,
        features: Callable[[F], np.ndarray],
        stride: int = 4,
    ) -> None:
        if stride < 1:
            raise ValueError("stride must be >= 1")
        self.threshold = threshold
        self.min_shot_s = min_shot_s
        self.stride = stride
        self._features = features
        self._prev: np.ndarray | None = None  # features of the last frame of the previous window
        self._last_cut: Fraction | None = None  # SUPPRESS: time of the last cut (the first frame seen to begin with)
        self.frames_scored = 0  # how many frames had their features made (the detector's cost)
        self.windows_refined = 0

    def cuts(self, window: Sequence[tuple[Fraction, F]]) -> list[bool]:
        """One flag per frame of `window` ((time, frame) pairs in presentation order, after the previous window)."""
        flags = [False] * len(window)
        if not window:
            return flags
        start = 0
        if self._prev is None:
            self._prev = self._score_features(window[0][1])
            self._last_cut = window[0][0]
            start = 1
            if len(window) == 1:
                return flags
        last = self._score_features(window[-1][1])
        coarse = content_score(self._prev, last)
        inner = range(start, len(window) - 1)
        if len(inner) and coarse >= REFINE_AT * self.threshold:
            self.windows_refined += 1
            prev = self._prev
            for i in inner:
                cur = self._score_features(window[i][1])
                flags[i] = self._suppress(window[i][0], content_score(prev, cur))
                prev = cur
            flags[-1] = self._suppress(window[-1][0], content_score(prev, last))
        elif not len(inner):
            flags[-1] = self._suppress(window[-1][0], coarse)  # a one-frame window: the coarse score is exact
        self._prev = last
        return flags

    def _score_features(self, frame: F) -> np.ndarray:
        self.frames_scored += 1
        return self._features(frame)

    def _suppress(self, t: Fraction, score: float) -> bool:
        if score < self.threshold:
            return False
        assert self._last_cut is not None
        if t - self._last_cut < self.min_shot_s:
            return False
        self._last_cut = t
        return True
