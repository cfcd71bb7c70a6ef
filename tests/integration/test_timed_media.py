"""Times, counts and frame numbers from what is decoded, on every container and codec the tests make (AVI included).

Each frame of these clips shows its own number (tests/fixtures/timed_media.py), so a sample's frame_number and pts_s
are checked against the picture itself: the frame sampled for t is the frame a player shows at t.
"""

from __future__ import annotations

import logging
from fractions import Fraction
from pathlib import Path

import pytest

from tests.fixtures.timed_media import Numbered, make_numbered, read_number
from video_ai.adapters.frame_source import CANDIDATE_EVERY, REPRESENTATIVE_S, PyAVFrameSource
from video_ai.domain.models import Sampling

FRAMES = 80  # 3.2 s at 25 fps

# (codec, suffix, B-frames, variant): every container the tests generate, with and without B-frames, and the AVI
# files legacy writers make (index or none, a doubled rate with filler chunks, DivX packed B-frames).
CASES = [
    ("h264", ".mp4", True, ""), ("h264", ".mp4", False, ""),
    ("mpeg4", ".mp4", True, ""),
    ("h264", ".mov", True, ""), ("h264", ".mov", False, ""),
    ("h264", ".mkv", True, ""), ("h264", ".mkv", False, ""),
    ("mpeg4", ".mkv", True, ""),
    ("vp9", ".webm", False, ""), ("vp8", ".webm", False, ""),
    ("h264", ".avi", True, ""), ("h264", ".avi", False, ""),
    ("h264", ".avi", True, "noindex"), ("h264", ".avi", True, "doubled"),
    ("mpeg4", ".avi", True, ""), ("mpeg4", ".avi", False, ""),
    ("mpeg4", ".avi", True, "noindex"), ("mpeg4", ".avi", True, "doubled"), ("mpeg4", ".avi", True, "packed"),
    # Presentation times that are decode order (pts = dts) with B-frames.
    ("h264", ".mkv", True, "decodeorder"), ("mpeg4", ".mkv", True, "decodeorder"),
    # Raw elementary streams: no container, no times.
    ("h264", ".h264", True, ""), ("mpeg4", ".m4v", True, ""),
    # The first frame at 2 s (a clip cut from a longer recording): the clock is the file's, as a browser shows it.
    ("h264", ".mp4", True, "start2"), ("h264", ".mov", False, "start2"), ("h264", ".mkv", True, "start2"),
    ("vp9", ".webm", False, "start2"),
]
START_FRAMES = 50


def _id(case: tuple[str, str, bool, str]) -> str:
    codec, suffix, bframes, variant = case
    return f"{codec}{suffix}{'-B' if bframes else ''}{'-' + variant if variant else ''}"


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Numbered]:
    directory = tmp_path_factory.mktemp("timed")
    return {_id(c): make_numbered(directory / f"{_id(c)}{c[1]}", c[0], bframes=c[2], frames=FRAMES,
                                  variant="" if c[3] == "start2" else c[3],
                                  start_frames=START_FRAMES if c[3] == "start2" else 0)
            for c in CASES}


def _read(clip: Numbered, sampling: Sampling) -> tuple[list[tuple[float, int, int]], object]:
    reader = PyAVFrameSource().open(clip.path, sampling)
    with reader:
        samples = [(s.pts_s, s.frame_number, read_number(s.image)) for s in reader]
    return samples, reader


@pytest.mark.parametrize("case", CASES, ids=_id)
@pytest.mark.parametrize("fps", [1.0, 4.0])
def test_samples_are_the_frames_shown_at_their_times(
    media: dict[str, Numbered], case: tuple[str, str, bool, str], fps: float, caplog: pytest.LogCaptureFixture
) -> None:
    clip = media[_id(case)]
    with caplog.at_level(logging.WARNING, logger="video_ai"):
        samples, reader = _read(clip, Sampling(mode="fps", fps=fps))
    period = Fraction(1) / Fraction(str(fps))
    expected: list[int] = []
    for k in range(2 * FRAMES):
        n = max(0, -(-(k * period - clip.start_s) * clip.fps // 1))  # the first frame at or after k / fps
        if n >= FRAMES:
            break
        if int(n) not in expected:
            expected.append(int(n))
    # Strictly increasing, one period apart (the first frame stands for the times before it), each the frame whose
    # number is on it, numbered in presentation order, at its time on the file's clock.
    assert [s[2] for s in samples] == expected
    assert [s[1] for s in samples] == expected
    assert [s[0] for s in samples] == [pytest.approx(float(clip.start_s + n / clip.fps), abs=1e-6) for n in expected]
    info = reader.info  # type: ignore[attr-defined]
    assert (info.frame_count, info.fps, info.vfr) == (FRAMES, 25.0, False)
    assert info.duration_s == pytest.approx(float(clip.start_s) + FRAMES / 25, abs=0.045)
    assert reader.warnings == [] and reader.complete  # type: ignore[attr-defined]
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


@pytest.mark.parametrize("case", CASES, ids=_id)
def test_keyframes_and_shots_modes_time_frames_the_same_way(
    media: dict[str, Numbered], case: tuple[str, str, bool, str]
) -> None:
    clip = media[_id(case)]
    keyframes, reader = _read(clip, Sampling(mode="keyframes"))
    start = float(clip.start_s)
    assert keyframes and keyframes[0][:2] == (start, 0)
    # Decode order written as times: keyframes mode stays fast (keyframes only), so a keyframe opening a GOP keeps
    # its decode-order time and number, up to the reorder depth (2 B-frames here) early.
    early = 2 if case[3] == "decodeorder" else 0
    for pts_s, number, shown in keyframes:
        assert 0 <= shown - number <= early and pts_s == pytest.approx(start + number / 25, abs=1e-6)
    assert [k[1] for k in keyframes] == sorted({k[1] for k in keyframes})
    shots, reader = _read(clip, Sampling(mode="shots"))
    [(pts_s, number, shown)] = shots  # one shot: its frame is one of its first REPRESENTATIVE_S seconds
    assert number == shown and pts_s == pytest.approx(start + shown / 25, abs=1e-6)
    assert number % CANDIDATE_EVERY == 0 and pts_s < start + float(REPRESENTATIVE_S)
    assert reader.info.frame_count == FRAMES  # type: ignore[attr-defined]


def test_the_avi_corpus_is_what_legacy_writers_make(media: dict[str, Numbered]) -> None:
    import av

    def header(name: str) -> tuple[Fraction, int, int]:
        with av.open(str(media[name].path)) as container:
            stream = container.streams.video[0]
            packets = [p for p in container.demux(stream) if p.size]
            return Fraction(stream.average_rate), int(stream.frames), len(packets)

    # A doubled file claims 50 fps and twice the frames; packed B-frames leave a tiny N-VOP chunk in their place.
    assert header("h264.avi-B-doubled") == (Fraction(50), 2 * FRAMES, FRAMES)
    with av.open(str(media["mpeg4.avi-B-packed"].path)) as container:
        sizes = [p.size for p in container.demux(container.streams.video[0]) if p.size]
    assert sizes.count(6) >= FRAMES // 3
    assert b"idx1" not in Path(media["h264.avi-B-noindex"].path).read_bytes()[-4096:]
    # And out of the decoder, the container's own times are out of order on AVI with B-frames.
    with av.open(str(media["h264.avi-B"].path)) as container:
        pts = [f.pts for f in container.decode(video=0)]
    assert pts != sorted(pts)


@pytest.mark.parametrize("name", ["h264.avi-B-doubled", "mpeg4.avi-B-packed", "h264.mp4-B-start2"])
def test_the_job_record_says_what_was_decoded(
    media: dict[str, Numbered], name: str, tmp_path: Path, model_path: Path
) -> None:
    """analyze_video end to end (real reader, model and qdrant-edge): the record's video and frames, no warning."""
    from tests.fakes import RecordingNotifier
    from video_ai.adapters.http_fetch import HttpVideoFetcher
    from video_ai.adapters.local_jobs import InMemoryJobRepository
    from video_ai.adapters.onnx_embedder import OnnxEmbedder
    from video_ai.adapters.qdrant_edge_index import QdrantEdgeIndex
    from video_ai.domain.models import Job, JobStatus, Source
    from video_ai.services.analyze_video import AnalyzeDeps, analyze_video
    from video_ai.settings import LimitsSettings, ModelSettings, NetworkSettings

    clip = media[name]
    deps = AnalyzeDeps(
        jobs=InMemoryJobRepository(),
        fetcher=HttpVideoFetcher(NetworkSettings(), LimitsSettings(), allow_local_files=True),
        frames=PyAVFrameSource(), embedder=OnnxEmbedder(ModelSettings(), model_path),
        index=QdrantEdgeIndex(tmp_path / "q"), notifier=RecordingNotifier(), workdir=tmp_path / "tmp",
    )
    deps.jobs.create(Job(job_id="job", tenant="t", source=Source(url=clip.path.resolve().as_uri()),
                         sampling=Sampling(fps=1.0)))
    try:
        result = analyze_video("job", deps)
    finally:
        deps.index.close()
    job = result.job
    assert job.status is JobStatus.SUCCEEDED and job.video is not None, job.error
    assert (job.video.frame_count, job.video.fps, job.video.vfr) == (FRAMES, 25.0, False)
    assert job.warnings == []
    start = float(clip.start_s)
    assert [f.pts_s for f in result.frames] == pytest.approx([start + n / 25 for n in range(0, FRAMES, 25)])
    assert [f.frame_number for f in result.frames] == list(range(0, FRAMES, 25))
