"""PyAVFrameSource on generated clips: exact times, cuts, rotation, modes, streaming."""

from __future__ import annotations

import bisect
import itertools
import math
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from tests.integration import clips
from tests.integration.clips import CUTS
from video_ai import samples
from video_ai.adapters.frame_source import CANDIDATE_EVERY, REPRESENTATIVE_S, PyAVFrameSource, PyAVVideoReader
from video_ai.domain.models import SampledFrame, Sampling
from video_ai.samples import ClipInfo
from video_ai.settings import LimitsSettings, SamplingSettings

# Session fixtures shared with the other frame tests.
clip_dir, cfr_clip, vfr_clip, long_gop_clip = clips.clip_dir, clips.cfr_clip, clips.vfr_clip, clips.long_gop_clip


def _open(clip: ClipInfo, sampling: Sampling, source: PyAVFrameSource | None = None, **kw: object) -> PyAVVideoReader:
    return (source or PyAVFrameSource()).open(clip.path, sampling, **kw)  # type: ignore[arg-type]


def _read(clip: ClipInfo, sampling: Sampling, source: PyAVFrameSource | None = None,
          **kw: object) -> tuple[list[SampledFrame], PyAVVideoReader]:
    reader = _open(clip, sampling, source, **kw)
    with reader:
        return list(reader), reader


def _expected_picks(times: list[float], fps: float) -> list[int]:
    """Ordinals of the first frame with pts >= k / fps, each frame once."""
    picks: list[int] = []
    k = 0
    while k / fps <= times[-1] + 1e-9:
        i = bisect.bisect_left(times, k / fps - 1e-9)
        if not picks or picks[-1] != i:
            picks.append(i)
        k += 1
    return picks


@pytest.mark.parametrize("fps", [1.0, 3.0, 7.5])
def test_cfr_samples_are_the_first_frame_at_or_after_each_sample_time(cfr_clip: ClipInfo, fps: float) -> None:
    frames, reader = _read(cfr_clip, Sampling(mode="fps", fps=fps))
    picks = _expected_picks(cfr_clip.frame_times, fps)
    assert [f.frame_number for f in frames] == picks
    for f in frames:
        assert f.pts_s == pytest.approx(cfr_clip.frame_times[f.frame_number], abs=1e-6)
        assert abs(f.pts_s - f.index / fps) < 1 / cfr_clip.fps + 1e-9
    assert [f.index for f in frames] == list(range(len(frames)))
    assert reader.info.frame_count == len(cfr_clip.frame_times)
    assert reader.info.vfr is False and reader.info.fps == pytest.approx(25.0)


def test_vfr_times_come_from_pts_not_from_the_frame_rate(vfr_clip: ClipInfo) -> None:
    frames, reader = _read(vfr_clip, Sampling(mode="fps", fps=4.0))
    picks = _expected_picks(vfr_clip.frame_times, 4.0)
    assert [f.frame_number for f in frames] == picks
    for f in frames:
        assert f.pts_s == pytest.approx(vfr_clip.frame_times[f.frame_number], abs=1e-6)
    # A frame-count clock would drift: frame n at n / avg_fps is far from its real time somewhere in this clip.
    avg = reader.info.fps or 25.0
    assert max(abs(f.pts_s - f.frame_number / avg) for f in frames) > 1 / avg
    assert reader.info.vfr is True


def test_nonref_skipping_picks_the_same_frames_as_a_full_decode(cfr_clip: ClipInfo) -> None:
    fast, fast_reader = _read(cfr_clip, Sampling(fps=2.0), PyAVFrameSource(skip_nonref=True))
    full, full_reader = _read(cfr_clip, Sampling(fps=2.0), PyAVFrameSource(skip_nonref=False))
    assert fast_reader.frames_decoded < full_reader.frames_decoded  # it did skip something
    assert [(f.pts_s, f.frame_number, f.shot) for f in fast] == [(f.pts_s, f.frame_number, f.shot) for f in full]
    for a, b in zip(fast, full, strict=True):
        assert np.array_equal(a.image, b.image)


@pytest.mark.parametrize("mode", ["fps", "shots"])
def test_every_cut_is_found(cfr_clip: ClipInfo, mode: str) -> None:
    frames, reader = _read(cfr_clip, Sampling(mode=mode, fps=1.0))  # type: ignore[arg-type]
    shots = reader.shots
    starts = [s.start_s for s in shots]
    assert len(shots) == len(CUTS) + 1, starts
    one_frame = 1 / cfr_clip.fps + 1e-6
    for found, true in zip(starts, cfr_clip.shot_starts, strict=True):
        # fps mode only sees reference frames, so a cut may land a few frames late: within one sampled frame.
        assert 0 <= found - true <= (one_frame if mode == "shots" else 1.0), (found, true)
    assert shots[0].start_frame == 0 and shots[-1].end_frame == len(cfr_clip.frame_times) - 1
    assert shots[-1].end_s == pytest.approx(cfr_clip.duration_s, abs=one_frame)
    for a, b in itertools.pairwise(shots):
        assert a.end_s == b.start_s and a.end_frame + 1 == b.start_frame
    if mode == "shots":
        # One frame per shot, chosen within its first REPRESENTATIVE_S seconds.
        assert [f.shot for f in frames] == list(range(len(shots)))
        for f, shot in zip(frames, shots, strict=True):
            assert shot.start_s <= f.pts_s < min(shot.end_s, shot.start_s + float(REPRESENTATIVE_S))
            assert (f.frame_number - shot.start_frame) % CANDIDATE_EVERY == 0
    else:
        for f in frames:
            true_shot = cfr_clip.shot_of(f.pts_s)
            assert f.shot == true_shot or (f.shot == true_shot - 1 and f.pts_s - cfr_clip.shot_starts[true_shot] < 1)


@pytest.mark.parametrize("mode", ["fps", "shots"])
def test_coarse_to_fine_detection_gives_the_same_shots_and_frames_as_scoring_every_frame(
    cfr_clip: ClipInfo, vfr_clip: ClipInfo, mode: str
) -> None:
    for clip in (cfr_clip, vfr_clip):
        sampling = Sampling(mode=mode, fps=2.0)  # type: ignore[arg-type]
        every, full = _read(clip, sampling, PyAVFrameSource(SamplingSettings(shot_stride=1)))
        strided, coarse = _read(clip, sampling, PyAVFrameSource(SamplingSettings(shot_stride=4)))
        assert coarse.shots == full.shots and len(full.shots) > 1
        assert [(f.frame_number, f.shot) for f in strided] == [(f.frame_number, f.shot) for f in every]
        assert full.frames_scored == full.frames_decoded
        assert coarse.frames_scored < full.frames_decoded / 2


def test_a_clip_without_cuts_has_one_shot_covering_it(long_gop_clip: ClipInfo, clip_dir: Path) -> None:
    clip = samples.make_clip(clip_dir / "oneshot.mp4", duration_s=2.0, fps=25.0, size=(160, 120))
    frames, reader = _read(clip, Sampling(mode="shots"))
    assert len(frames) == 1 and 0.0 <= frames[0].pts_s < 2.0
    [shot] = reader.shots
    assert (shot.start_s, shot.start_frame, shot.end_frame) == (0.0, 0, 49)
    assert shot.end_s == pytest.approx(2.0, abs=0.041)


def test_keyframes_mode_gives_the_keyframe_times(long_gop_clip: ClipInfo) -> None:
    frames, reader = _read(long_gop_clip, Sampling(mode="keyframes"))
    assert [f.pts_s for f in frames] == pytest.approx(long_gop_clip.keyframe_times, abs=1e-6)
    assert len(frames) >= 5  # 1 s GOP over 5 s plus the cut
    assert reader.frames_decoded == len(frames)  # nothing but keyframes reached the decoder
    assert [f.frame_number for f in frames] == [round(t * 30) for t in long_gop_clip.keyframe_times]


@pytest.mark.parametrize(("mode", "n"), [("fps", 3), ("shots", 2), ("keyframes", 1)])
def test_max_frames_is_honoured(cfr_clip: ClipInfo, mode: str, n: int) -> None:
    frames, reader = _read(cfr_clip, Sampling(mode=mode, fps=5.0, max_frames=n))  # type: ignore[arg-type]
    assert len(frames) == n
    assert not reader.complete
    if mode == "fps":
        assert [f.pts_s for f in frames] == pytest.approx([0.0, 0.2, 0.4])


@pytest.mark.parametrize("rotation", [90, 180, 270])
def test_rotation_is_applied_so_frames_are_upright(clip_dir: Path, rotation: int) -> None:
    clip = samples.make_clip(clip_dir / f"rot{rotation}.mp4", duration_s=1.0, fps=10.0, size=(320, 192),
                             rotation=rotation, marker=True)
    frames, reader = _read(clip, Sampling(fps=2.0), thumbnail_width=80)
    assert reader.info.rotation == rotation
    assert (reader.info.width, reader.info.height) == ((192, 320) if rotation in (90, 270) else (320, 192))
    image = frames[0].image
    assert image.shape == (192, 320, 3)  # upright: as wide as the picture was drawn
    corner = image[4:24, 4:24].reshape(-1, 3).mean(0)
    assert corner[0] > 180 and corner[1] < 80 and corner[2] < 80, corner  # the red marker is top-left
    for other in (image[4:24, -24:-4], image[-24:-4, 4:24], image[-24:-4, -24:-4]):
        assert other.reshape(-1, 3).mean(0)[0] < 180 or other.reshape(-1, 3).mean(0)[1] > 80
    assert frames[0].thumbnail is not None and frames[0].thumbnail.shape == (48, 80, 3)
    # image_size is the upright size too
    sized, _ = _read(clip, Sampling(fps=2.0), image_size=(100, 60))
    assert sized[0].image.shape == (60, 100, 3)
    assert sized[0].image[2:8, 2:8].reshape(-1, 3).mean(0)[0] > 150


def test_image_size_and_colour_order(cfr_clip: ClipInfo) -> None:
    frames, _ = _read(cfr_clip, Sampling(fps=1.0, max_frames=1), image_size=(224, 224))
    image = frames[0].image
    assert image.shape == (224, 224, 3) and image.dtype == np.uint8 and image.flags.c_contiguous
    # shot 0 is drawn in PALETTE[0] (230, 60, 40): red dominates in RGB order
    mean = image.reshape(-1, 3).mean(0)
    assert mean[0] > mean[1] and mean[0] > mean[2]


@pytest.mark.parametrize(("codec", "suffix"), [("vp9", ".webm"), ("mpeg4", ".mp4"), ("h264", ".mkv")])
def test_other_codecs_and_containers(clip_dir: Path, codec: str, suffix: str) -> None:
    clip = samples.make_clip(clip_dir / f"c_{codec}{suffix}", duration_s=3.0, fps=20.0, size=(192, 128),
                             shots=[1.5], codec=codec)  # type: ignore[arg-type]
    frames, reader = _read(clip, Sampling(fps=2.0))
    assert [f.frame_number for f in frames] == _expected_picks(clip.frame_times, 2.0)
    assert [s.start_s for s in reader.shots] == pytest.approx([0.0, 1.5], abs=0.051)
    assert reader.info.codec == codec
    assert reader.info.container == {".webm": "webm", ".mp4": "mp4", ".mkv": "matroska"}[suffix]


def test_audio_beside_video_is_ignored(clip_dir: Path) -> None:
    clip = samples.make_clip(clip_dir / "av.mp4", duration_s=2.0, fps=25.0, size=(160, 120), audio=True)
    frames, reader = _read(clip, Sampling(fps=1.0))
    assert [f.pts_s for f in frames] == [0.0, 1.0]
    assert reader.info.duration_s == pytest.approx(2.0, abs=0.05)


def test_frames_stream_instead_of_piling_up(clip_dir: Path) -> None:
    clip = samples.make_clip(clip_dir / "stream.mp4", duration_s=6.0, fps=25.0, size=(640, 360))
    reader = PyAVFrameSource().open(clip.path, Sampling(fps=5.0))
    frame_bytes = 640 * 360 * 3
    with reader:
        it = iter(reader)
        first = next(it)
        assert reader.frames_decoded < 10  # lazy: one sample needs only the first few frames decoded
        tracemalloc.start()
        count = 1
        for f in it:
            assert f.image.nbytes == frame_bytes
            count += 1
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    assert first.pts_s == 0.0 and count == 30
    assert peak < 8 * frame_bytes, peak  # ~30 frames were produced; only a handful were alive at once


def test_a_reader_makes_one_pass(cfr_clip: ClipInfo) -> None:
    reader = PyAVFrameSource().open(cfr_clip.path, Sampling(max_frames=1))
    with reader:
        list(reader)
        with pytest.raises(RuntimeError):
            iter(reader)


def test_settings_threshold_and_min_shot_length(cfr_clip: ClipInfo) -> None:
    # Cuts 1.2 s apart merge away when shots must last 2 s (SUPPRESS: the first cut after 2 s of shot wins).
    source = PyAVFrameSource(SamplingSettings(min_shot_s=2.0))
    _, reader = _read(cfr_clip, Sampling(mode="shots"), source)
    starts = [s.start_s for s in reader.shots]
    assert all(b - a >= 2.0 - 1e-6 for a, b in itertools.pairwise(starts)), starts
    assert len(starts) < len(CUTS) + 1
    # An absurd threshold finds nothing.
    _, reader = _read(cfr_clip, Sampling(mode="shots"), PyAVFrameSource(SamplingSettings(shot_threshold=255.0)))
    assert len(reader.shots) == 1


def test_limits_duration(cfr_clip: ClipInfo) -> None:
    from video_ai.domain.errors import UnsupportedMedia

    with pytest.raises(UnsupportedMedia, match="duration"):
        PyAVFrameSource(limits=LimitsSettings(max_duration_s=5.0)).open(cfr_clip.path, Sampling())


SEGMENT_BOUNDS = [None, 2.5, 3.2, 5.1, None]  # 3.2 is a cut; 2.5 and 5.1 are off the keyframes and the grid


@pytest.mark.parametrize("fps", [2.0, 3.0])
def test_segments_compose_to_the_full_pass(cfr_clip: ClipInfo, fps: float) -> None:
    full, _ = _read(cfr_clip, Sampling(fps=fps))
    pieces: list[SampledFrame] = []
    for start, end in itertools.pairwise(SEGMENT_BOUNDS):
        part, _ = _read(cfr_clip, Sampling(fps=fps), start_s=start, end_s=end)
        assert all((start or 0) <= f.pts_s < (end or 1e9) for f in part)
        pieces.extend(part)
    assert [(f.pts_s, f.frame_number) for f in pieces] == [(f.pts_s, f.frame_number) for f in full]
    for a, b in zip(pieces, full, strict=True):
        assert np.array_equal(a.image, b.image)


def test_segment_shots_are_the_cuts_inside_the_segment(cfr_clip: ClipInfo) -> None:
    full, full_reader = _read(cfr_clip, Sampling(mode="shots"))
    starts: set[int] = {0}
    samples_: list[SampledFrame] = []
    for start, end in itertools.pairwise(SEGMENT_BOUNDS):
        part, reader = _read(cfr_clip, Sampling(mode="shots"), start_s=start, end_s=end)
        samples_.extend(part)
        for shot in reader.shots:
            assert (start or 0) <= shot.start_s < (end or 1e9)
        starts.update(s.start_frame for s in reader.shots)
    # merged, the segments' shot starts are the full pass's: no false cut at a boundary, the cut at 3.2 s kept
    assert sorted(starts) == [s.start_frame for s in full_reader.shots] == cfr_clip.shot_start_frames
    assert [f.frame_number for f in samples_] == [f.frame_number for f in full]


def test_a_cut_just_after_a_keyframe_before_a_segment_is_found(clip_dir: Path) -> None:
    """A keyframe 0.12 s before a cut, the segment starting between them: a pre-roll from that keyframe would start
    the detector's min_shot_s clock there and suppress the cut the full pass keeps."""
    import av

    clip = samples.make_clip(clip_dir / "preroll.mp4", duration_s=4.0, fps=25.0, size=(160, 120), shots=[1.7, 3.0],
                             gop=10)
    with av.open(str(clip.path)) as container:
        stream = container.streams.video[0]
        keys = [float((pk.pts - (stream.start_time or 0)) * stream.time_base)
                for pk in container.demux(stream) if pk.is_keyframe and pk.pts is not None]
    _, full = _read(clip, Sampling(mode="shots"))
    cuts = [s.start_s for s in full.shots[1:]]
    assert cuts == pytest.approx(clip.shot_starts[1:], abs=1e-6)
    for cut in cuts:
        before = max(k for k in keys if k < cut - 1e-6)
        assert cut - before < SamplingSettings().min_shot_s  # the case: a keyframe within min_shot_s before the cut
        start = (before + cut) / 2
        frames, seg = _read(clip, Sampling(mode="shots"), start_s=start)
        assert [s.start_s for s in seg.shots] == [c for c in cuts if c >= start]
        assert frames and cut - 1e-6 <= frames[0].pts_s < cut + float(REPRESENTATIVE_S) and frames[0].shot == 0


def test_a_segment_without_a_cut_continues_the_previous_shot(cfr_clip: ClipInfo) -> None:
    frames, reader = _read(cfr_clip, Sampling(fps=2.0), start_s=2.0, end_s=3.0)
    assert reader.shots == [] and frames and all(f.shot == -1 for f in frames)
    frames, reader = _read(cfr_clip, Sampling(fps=2.0), PyAVFrameSource(skip_nonref=False), start_s=2.5, end_s=5.1)
    assert [(s.start_s, s.start_frame) for s in reader.shots] == [(3.2, 80), (4.4, 110)]
    assert reader.shots[-1].end_s == pytest.approx(5.12) and reader.shots[-1].end_frame == 127
    assert [f.shot for f in frames] == [-1 if f.pts_s < 3.2 else 0 if f.pts_s < 4.4 else 1 for f in frames]


def test_segments_need_a_complete_index(clip_dir: Path) -> None:
    clip = samples.make_clip(clip_dir / "seg.mkv", duration_s=2.0, fps=25.0, size=(160, 120))
    with pytest.raises(NotImplementedError, match="index"):
        PyAVFrameSource().open(clip.path, Sampling(), start_s=1.0, end_s=2.0)
    with pytest.raises(ValueError):
        PyAVFrameSource().open(clip.path, Sampling(), start_s=1.0, end_s=1.0)


def test_info_before_iteration(cfr_clip: ClipInfo) -> None:
    reader = PyAVFrameSource().open(cfr_clip.path, Sampling())
    with reader:
        info = reader.info
    assert (info.container, info.codec, info.width, info.height, info.rotation) == ("mp4", "h264", 320, 240, 0)
    assert info.duration_s == pytest.approx(8.0, abs=0.05) and info.frame_count == 200
    assert math.isclose(info.fps or 0, 25.0)


def test_keyframes_mode_on_one_long_gop_is_not_mistaken_for_a_truncated_file(clip_dir: Path) -> None:
    clip = samples.make_clip(clip_dir / "onegop.mp4", duration_s=4.0, fps=25.0, size=(160, 120), gop=250)
    frames, reader = _read(clip, Sampling(mode="keyframes"))
    assert [f.pts_s for f in frames] == [0.0]
    assert reader.complete and not reader.truncated and not reader.warnings
    assert reader.info.frame_count == 100 and reader.shots[0].end_frame == 99
