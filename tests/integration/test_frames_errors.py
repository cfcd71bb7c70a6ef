"""PyAVFrameSource on bad input: each failure maps to its domain error, damage after frames is a warning."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from tests.integration import clips
from video_ai import samples
from video_ai.adapters.frame_source import PyAVFrameSource
from video_ai.domain.errors import (
    CorruptMedia,
    DecodeTimeout,
    EmptyVideo,
    NoVideoStream,
    UnsupportedMedia,
    VideoNotFound,
)
from video_ai.domain.models import Sampling
from video_ai.samples import ClipInfo
from video_ai.settings import LimitsSettings

clip_dir, cfr_clip = clips.clip_dir, clips.cfr_clip


def _open(path: Path, source: PyAVFrameSource | None = None) -> None:
    reader = (source or PyAVFrameSource()).open(path, Sampling())
    with reader:
        list(reader)


def test_missing_file_is_video_not_found(tmp_path: Path) -> None:
    with pytest.raises(VideoNotFound):
        _open(tmp_path / "nope.mp4")


def test_empty_file_is_unsupported_media(tmp_path: Path) -> None:
    (tmp_path / "empty.mp4").write_bytes(b"")
    with pytest.raises(UnsupportedMedia, match="empty") as info:
        _open(tmp_path / "empty.mp4")
    assert type(info.value) is UnsupportedMedia


def test_text_file_is_unsupported_media(tmp_path: Path) -> None:
    (tmp_path / "notes.mp4").write_text("this is not a video\n" * 50)
    with pytest.raises(UnsupportedMedia) as info:
        _open(tmp_path / "notes.mp4")
    assert info.value.code == "unsupported_media"


def test_audio_only_is_no_video_stream(tmp_path: Path) -> None:
    path = samples.make_audio_only(tmp_path / "tone.m4a")
    with pytest.raises(NoVideoStream) as info:
        _open(path)
    assert info.value.code == "no_video_stream"


def test_video_stream_without_frames_is_empty_video(tmp_path: Path) -> None:
    path = samples.make_empty_video(tmp_path / "noframes.mkv")
    with pytest.raises(EmptyVideo) as info:
        _open(path)
    assert info.value.code == "empty_video"


def test_too_many_pixels_is_refused_before_decoding(cfr_clip: ClipInfo) -> None:
    source = PyAVFrameSource(limits=LimitsSettings(max_pixels=320 * 240 - 1))
    with pytest.raises(UnsupportedMedia, match="320x240"):
        _open(cfr_clip.path, source)
    _open(cfr_clip.path, PyAVFrameSource(limits=LimitsSettings(max_pixels=320 * 240)))  # exactly at the limit


class _SteppingClock:
    """Each reading is `step` seconds after the previous one: a pass of N packets 'takes' N * step seconds."""

    def __init__(self, step: float) -> None:
        self.now = 0.0
        self.step = step

    def monotonic(self) -> float:
        self.now += self.step
        return self.now


def test_watchdog_stops_a_slow_pass(cfr_clip: ClipInfo) -> None:
    limits = LimitsSettings(decode_timeout_s=10.0)
    source = PyAVFrameSource(limits=limits, clock=_SteppingClock(step=1.0))
    reader = source.open(cfr_clip.path, Sampling())
    produced = []
    with pytest.raises(DecodeTimeout) as info, reader:
        produced.extend(reader)
    assert info.value.code == "decode_timeout"
    assert len(produced) < 3
    # a generous budget passes the same clip
    _open(cfr_clip.path, PyAVFrameSource(limits=limits, clock=_SteppingClock(step=0.01)))


def test_truncated_download_keeps_the_frames_it_has(cfr_clip: ClipInfo, tmp_path: Path,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    path = samples.make_truncated(cfr_clip.path, tmp_path / "half.mp4", keep=0.5)
    reader = PyAVFrameSource().open(path, Sampling(fps=1.0))
    with caplog.at_level(logging.WARNING), reader:
        frames = list(reader)
    assert 1 <= len(frames) < 8
    assert reader.truncated and not reader.complete
    # the demuxer either reports the cut or just ends early; either way it is said once, in a log and in warnings
    assert len(reader.warnings) == 1
    assert [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING] == reader.warnings
    assert reader.shots and reader.shots[-1].end_s <= frames[-1].pts_s + 1.0


def test_damage_mid_file_stops_with_a_warning(cfr_clip: ClipInfo, tmp_path: Path) -> None:
    path = samples.make_garbled(cfr_clip.path, tmp_path / "garbled.mp4", start=0.5, end=0.9)
    reader = PyAVFrameSource().open(path, Sampling(fps=1.0))
    with reader:
        frames = list(reader)
    assert frames and frames[0].pts_s == 0.0
    assert reader.truncated and reader.warnings


def test_damage_before_any_frame_is_corrupt_media(cfr_clip: ClipInfo, tmp_path: Path) -> None:
    pos, size = samples.first_video_packet_span(cfr_clip.path)
    path = samples.make_truncated(cfr_clip.path, tmp_path / "stub.mp4", keep_bytes=pos + size // 2)
    with pytest.raises(CorruptMedia) as info:
        _open(path)
    assert info.value.code == "corrupt_media"
    # cut just before the first packet: a video stream with nothing to decode
    path = samples.make_truncated(cfr_clip.path, tmp_path / "header.mp4", keep_bytes=pos)
    with pytest.raises(EmptyVideo):
        _open(path)
