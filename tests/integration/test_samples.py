"""Synthetic clip generators: what they write is what PyAV reads back, and shots differ for the real CNN."""

from __future__ import annotations

import itertools
from pathlib import Path

import av
import numpy as np
import pytest

from tests.integration import clips
from video_ai import samples
from video_ai.adapters.frame_source import REPRESENTATIVE_S, PyAVFrameSource
from video_ai.domain.models import Sampling
from video_ai.samples import ClipInfo

clip_dir, cfr_clip = clips.clip_dir, clips.cfr_clip


def _probe(path: Path) -> tuple[list[float], int]:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        times, rotation = [], 0
        for frame in container.decode(stream):
            assert frame.pts is not None and frame.time_base is not None
            times.append(float(frame.pts * frame.time_base))
            rotation = int(frame.rotation)
        return times, rotation


def test_cfr_clip_truth_matches_what_pyav_reads(cfr_clip: ClipInfo) -> None:
    times, rotation = _probe(cfr_clip.path)
    assert times == pytest.approx(cfr_clip.frame_times, abs=1e-6)
    assert len(times) == 200 and rotation == 0
    assert cfr_clip.shot_starts == pytest.approx([0.0, *clips.CUTS])
    assert [cfr_clip.frame_times[n] for n in cfr_clip.shot_start_frames] == cfr_clip.shot_starts
    assert set(cfr_clip.shot_starts) <= set(cfr_clip.keyframe_times)  # a keyframe at each cut
    assert cfr_clip.shot_of(1.59) == 0 and cfr_clip.shot_of(1.6) == 1 and cfr_clip.shot_of(7.9) == 4


def test_vfr_clip_has_irregular_gaps(clip_dir: Path) -> None:
    info = samples.make_clip(clip_dir / "v.mkv", duration_s=2.0, fps=25.0, size=(96, 64), vfr=True)
    times, _ = _probe(info.path)
    gaps = np.diff(times)
    assert times == pytest.approx(info.frame_times, abs=1e-6)
    assert gaps.min() < 0.03 and gaps.max() > 0.09


@pytest.mark.parametrize("rotation", [90, 270])
def test_rotation_is_written_as_a_display_matrix(clip_dir: Path, rotation: int) -> None:
    info = samples.make_clip(clip_dir / f"r{rotation}.mp4", duration_s=0.4, fps=10.0, size=(128, 64),
                             rotation=rotation, marker=True)
    _, ccw = _probe(info.path)
    assert (info.width, info.height) == (64, 128)  # stored turned
    assert (-ccw) % 360 == rotation  # PyAV reports counter-clockwise degrees


def test_audio_track_and_audio_only(clip_dir: Path) -> None:
    info = samples.make_clip(clip_dir / "with_audio.mp4", duration_s=1.0, fps=10.0, size=(96, 64), audio=True)
    with av.open(str(info.path)) as c:
        assert len(c.streams.video) == 1 and len(c.streams.audio) == 1
    path = samples.make_audio_only(clip_dir / "only.m4a", duration_s=0.5)
    with av.open(str(path)) as c:
        assert not c.streams.video and c.streams.audio[0].codec_context.name == "aac"


def test_shot_specs_set_durations_and_patterns(clip_dir: Path) -> None:
    specs = [samples.ShotSpec(0.4, "rings", (250, 250, 40)), samples.ShotSpec(0.6, "grid", (40, 40, 250))]
    info = samples.make_clip(clip_dir / "specs.mp4", fps=10.0, size=(96, 64), shots=specs)
    assert info.shot_starts == pytest.approx([0.0, 0.4]) and len(info.frame_times) == 10
    with pytest.raises(ValueError, match="rotation"):
        samples.make_clip(clip_dir / "bad.mp4", rotation=45)


def test_demo_clip(tmp_path: Path) -> None:
    info = samples.make_demo_clip(tmp_path / "demo.mp4")
    reader = PyAVFrameSource().open(info.path, Sampling(mode="shots"))
    with reader:
        frames = list(reader)
    assert (reader.info.width, reader.info.height, reader.info.codec) == (640, 360, "h264")
    assert reader.info.duration_s == pytest.approx(20.0, abs=0.05)
    # One frame per shot, from its first REPRESENTATIVE_S seconds (the most informative, not the cut's).
    starts = [0.0, *samples.DEMO_CUTS]
    assert [f.shot for f in frames] == list(range(len(starts)))
    for f, start in zip(frames, starts, strict=True):
        assert start - 1e-6 <= f.pts_s < start + float(REPRESENTATIVE_S), (f.pts_s, start)


def test_frames_of_one_shot_are_closer_than_frames_of_different_shots(cfr_clip: ClipInfo, model_path: Path) -> None:
    from video_ai.adapters.onnx_embedder import OnnxEmbedder
    from video_ai.settings import ModelSettings

    embedder = OnnxEmbedder(ModelSettings(threads=2), model_path)
    reader = PyAVFrameSource().open(cfr_clip.path, Sampling(fps=2.5), image_size=embedder.input_size)
    with reader:
        frames = list(reader)
    vectors = embedder.embed([f.image for f in frames])
    true_shot = [cfr_clip.shot_of(f.pts_s) for f in frames]
    same, different = [], []
    for (i, a), (j, b) in itertools.combinations(enumerate(vectors), 2):
        (same if true_shot[i] == true_shot[j] else different).append(float(a @ b))
    assert len(set(true_shot)) == 5 and same and different
    # the worst same-shot pair is still closer than the best different-shot pair, with room to spare
    assert min(same) > max(different) + 0.05, (min(same), max(different))
