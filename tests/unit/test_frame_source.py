"""Pure rules of the frame source: which frame is a sample, rotation and container naming."""

from __future__ import annotations

from fractions import Fraction

import pytest

from video_ai.adapters.frame_source import _clockwise, _container_name, grid_point_in

F = Fraction


@pytest.mark.parametrize(
    ("lo", "hi", "fps", "expected"),
    [
        (None, F(0), F(1), True),  # the first frame takes t = 0
        (None, F(3, 10), F(1), True),  # a stream starting late still takes t = 0
        (F(0), F(1, 25), F(1), False),
        (F(24, 25), F(1), F(1), True),  # exactly on the sample time
        (F(1), F(26, 25), F(1), False),  # the frame after the sample time is not a second pick
        (F(23, 25), F(24, 25), F(1), False),
        (F(0), F(2, 5), F(3), True),  # 1/3 s lies in (0, 0.4]
        (F(1, 25), F(2, 25), F(10), False),  # 0.1 is not in (0.04, 0.08]
        (F(1, 2), F(7, 2), F(1), True),  # a VFR gap spanning several sample times: one pick
        (F(-1, 10), F(0), F(1), True),
        (None, F(-1, 25), F(1), False),  # before the stream start: never
    ],
)
def test_grid_point_in(lo: Fraction | None, hi: Fraction, fps: Fraction, expected: bool) -> None:
    assert grid_point_in(lo, hi, fps) is expected


def test_grid_point_in_picks_one_frame_per_sample_time_on_a_cfr_grid() -> None:
    times = [F(n, 25) for n in range(250)]
    picks = [t for prev, t in zip([None, *times], times, strict=False) if grid_point_in(prev, t, F(3, 2))]
    assert picks == [min(t for t in times if t >= F(2 * k, 3)) for k in range(15)]  # t_k = k / 1.5


@pytest.mark.parametrize(("ccw", "cw"), [(0, 0), (90, 270), (-90, 90), (180, 180), (-180, 180), (89.6, 270)])
def test_clockwise(ccw: float, cw: int) -> None:
    assert _clockwise(ccw) == cw


@pytest.mark.parametrize(
    ("fmt", "name", "expected"),
    [("mov,mp4,m4a,3gp,3g2,mj2", "a.mp4", "mp4"), ("mov,mp4,m4a,3gp,3g2,mj2", "a.MOV", "mov"),
     ("matroska,webm", "a.webm", "webm"), ("matroska,webm", "a.mkv", "matroska"), ("avi", "x", "avi")],
)
def test_container_name(fmt: str, name: str, expected: str) -> None:
    from pathlib import Path

    assert _container_name(fmt, Path(name)) == expected
