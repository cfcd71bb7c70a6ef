"""PyAVFrameSource on a file object (ranged S3 reads) instead of a path: the same frames, times, ordinals and shots,
the same domain errors, and an error of the file's own (the object changed, S3 unavailable) ends the pass."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.fakes import FakeS3Objects
from tests.integration import clips
from video_ai import samples
from video_ai.adapters.frame_source import PyAVFrameSource, PyAVVideoReader
from video_ai.adapters.s3_range_file import S3RangeFile
from video_ai.domain.errors import (
    CorruptMedia,
    EmptyVideo,
    FetchFailed,
    NoVideoStream,
    SourceChanged,
    UnsupportedMedia,
    VideoAIError,
)
from video_ai.domain.models import S3Location, SampledFrame, Sampling
from video_ai.samples import ClipInfo

clip_dir, cfr_clip, vfr_clip = clips.clip_dir, clips.cfr_clip, clips.vfr_clip
BLOCK = 4096  # small blocks: PyAV's 32 KiB reads and seeks cross many block edges


def _ranged(path: Path, s3: FakeS3Objects | None = None) -> S3RangeFile:
    s3 = s3 or FakeS3Objects()
    location = S3Location(bucket="uploads", key=path.name)
    etag = s3.put(location.bucket, location.key, path.read_bytes())
    return S3RangeFile(s3, location, etag, block_size=BLOCK, cache_blocks=2)


def _read(reader: PyAVVideoReader) -> list[SampledFrame]:
    with reader:
        return list(reader)


def _same(a: list[SampledFrame], b: list[SampledFrame]) -> None:
    assert [(f.index, f.pts_s, f.frame_number, f.shot) for f in a] == [(f.index, f.pts_s, f.frame_number, f.shot)
                                                                         for f in b]
    assert all(np.array_equal(x.image, y.image) for x, y in zip(a, b, strict=True))


@pytest.mark.parametrize("sampling", [Sampling(fps=2.0), Sampling(mode="shots"), Sampling(mode="keyframes")],
                         ids=["fps", "shots", "keyframes"])
def test_a_ranged_file_gives_the_frames_shots_and_info_of_the_path(cfr_clip: ClipInfo, sampling: Sampling) -> None:
    source = PyAVFrameSource()
    by_path = source.open(cfr_clip.path, sampling, image_size=(64, 48))
    ranged = _ranged(cfr_clip.path)
    by_file = source.open(ranged, sampling, image_size=(64, 48))
    _same(_read(by_file), _read(by_path))
    assert by_file.shots == by_path.shots and by_file.info == by_path.info
    assert by_file.complete and not by_file.truncated and ranged.closed  # the reader closes the file


def test_ranged_segments_and_vfr_match_the_path(cfr_clip: ClipInfo, vfr_clip: ClipInfo) -> None:
    source = PyAVFrameSource()
    for start, end in ((None, 3.0), (3.0, 6.0), (6.0, None)):
        by_path = source.open(cfr_clip.path, Sampling(fps=2.0), start_s=start, end_s=end)
        ranged = _ranged(cfr_clip.path)
        by_file = source.open(ranged, Sampling(fps=2.0), start_s=start, end_s=end)
        _same(_read(by_file), _read(by_path))
        assert by_file.shots == by_path.shots and ranged.closed
    by_path = source.open(vfr_clip.path, Sampling(fps=5.0))
    by_file = source.open(_ranged(vfr_clip.path), Sampling(fps=5.0))
    _same(_read(by_file), _read(by_path))
    assert by_file.info == by_path.info and by_file.info.vfr


class _NoReadaheadLimit(S3RangeFile):
    """Ignores the reader's hint, as a file object without one would."""

    @property  # type: ignore[override]
    def readahead_end(self) -> int | None:
        return None

    @readahead_end.setter
    def readahead_end(self, value: int | None) -> None:
        pass


@pytest.mark.parametrize(("read_ahead", "share"), [(False, 0.45), (True, 0.55)], ids=["sync", "read-ahead"])
def test_a_segment_stops_reading_ahead_near_its_end(tmp_path: Path, read_ahead: bool, share: float) -> None:
    """The reader tells the file where the segment's bytes end (MP4 index, end_s + 2 s), so the last run of GETs does
    not read on towards the end of the object; the frames are the same either way. (With read-ahead the header's
    in-order reads also fetch the run after the index, before the reader seeks to the segment: ~0.50 of this clip
    here, ~0.43 without.)"""
    clip = samples.make_clip(tmp_path / "long.mp4", duration_s=24.0, fps=25.0, size=(320, 240), shots=[6.0, 12.0, 18.0],
                             gop=25)
    source = PyAVFrameSource()
    seen = []
    for cls in (S3RangeFile, _NoReadaheadLimit):
        s3 = FakeS3Objects()
        location = S3Location(bucket="uploads", key="long.mp4")
        etag = s3.put(location.bucket, location.key, clip.path.read_bytes())
        ranged = cls(s3, location, etag, block_size=BLOCK, cache_blocks=256, max_run=256, read_ahead=read_ahead)
        frames = _read(source.open(ranged, Sampling(fps=2.0), start_s=6.0, end_s=9.0))
        seen.append((ranged.bytes_fetched, [(f.frame_number, f.pts_s) for f in frames]))
    (limited, frames_limited), (unlimited, frames_unlimited) = seen
    assert frames_limited == frames_unlimited and len(frames_limited) == 6
    size = clip.path.stat().st_size
    assert limited < share * size < unlimited, (limited, unlimited, size)


def test_bad_media_gives_the_same_domain_errors_through_a_file(cfr_clip: ClipInfo, tmp_path: Path) -> None:
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    text = tmp_path / "notes.mp4"
    text.write_text("this is not a video\n" * 50)
    pos, size = samples.first_video_packet_span(cfr_clip.path)
    cases: list[tuple[Path, type[VideoAIError]]] = [
        (empty, UnsupportedMedia),
        (text, UnsupportedMedia),
        (samples.make_audio_only(tmp_path / "tone.m4a"), NoVideoStream),
        (samples.make_empty_video(tmp_path / "noframes.mkv"), EmptyVideo),
        (samples.make_truncated(cfr_clip.path, tmp_path / "stub.mp4", keep_bytes=pos + size // 2), CorruptMedia),
    ]
    for path, error in cases:
        with pytest.raises(VideoAIError) as by_path:
            _read(PyAVFrameSource().open(path, Sampling()))
        ranged = _ranged(path)
        with pytest.raises(VideoAIError) as by_file:
            _read(PyAVFrameSource().open(ranged, Sampling()))
        assert type(by_file.value) is type(by_path.value) is error, path.name
        assert by_file.value.message.split(" (")[0] == by_path.value.message.split(" (")[0]  # FFmpeg quotes the path
        assert ranged.closed


@pytest.mark.parametrize(("failure", "error"), [("overwrite", SourceChanged), (("SlowDown", 503), FetchFailed)])
def test_a_read_error_mid_pass_ends_it_with_that_error_not_a_truncated_pass(
    cfr_clip: ClipInfo, failure: str | tuple[str, int], error: type[VideoAIError]
) -> None:
    s3 = FakeS3Objects()
    ranged = _ranged(cfr_clip.path, s3)
    reader = PyAVFrameSource().open(ranged, Sampling(fps=2.0))
    frames: list[SampledFrame] = []
    with pytest.raises(error), reader:
        for frame in reader:
            frames.append(frame)
            if len(frames) == 3:
                if failure == "overwrite":
                    s3.put("uploads", cfr_clip.path.name, b"new content" * 1000)
                else:
                    assert isinstance(failure, tuple)
                    s3.failing = failure  # an outage: a one-off 503 on a read-ahead is retried by the reader
    assert 3 <= len(frames) < 16 and not reader.complete
