"""Generated clips for the frame tests (never ../shared/clips): each made once per session, small and fast."""

from __future__ import annotations

from pathlib import Path

import pytest

from video_ai import samples
from video_ai.samples import ClipInfo

CUTS = [1.6, 3.2, 4.4, 6.0]  # on the 25 fps grid (0.04 s), so the truth frame is the cut itself


@pytest.fixture(scope="session")
def clip_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("clips")


@pytest.fixture(scope="session")
def cfr_clip(clip_dir: Path) -> ClipInfo:
    """8 s, 25 fps, H.264 with B-frames (so NONREF skipping has frames to skip), four hard cuts."""
    return samples.make_clip(clip_dir / "cfr.mp4", duration_s=8.0, fps=25.0, size=(320, 240), shots=CUTS)


@pytest.fixture(scope="session")
def vfr_clip(clip_dir: Path) -> ClipInfo:
    """6 s variable frame rate (gaps of 20..100 ms), two cuts."""
    return samples.make_clip(clip_dir / "vfr.mp4", duration_s=6.0, fps=25.0, size=(320, 240), shots=[2.0, 4.0],
                             vfr=True)


@pytest.fixture(scope="session")
def long_gop_clip(clip_dir: Path) -> ClipInfo:
    """30 fps, keyframe every 1 s plus one at each cut."""
    return samples.make_clip(clip_dir / "gop.mp4", duration_s=5.0, fps=30.0, size=(256, 144), shots=[2.5], gop=30)
