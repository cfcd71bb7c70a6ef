"""FileThumbnails: one file per job and index under its root; ids that are not ids never reach the file system."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from video_ai.adapters.file_thumbnails import FileThumbnails


def test_put_get_copy_delete(tmp_path: Path) -> None:
    store = FileThumbnails(tmp_path / "thumbs")
    store.put("job-a", 0, b"\xff\xd8first")
    store.put("job-a", 1, b"\xff\xd8second")
    assert store.get("job-a", 1) == b"\xff\xd8second"
    assert store.get("job-a", 2) is None and store.get("job-b", 0) is None
    assert store.copy("job-a", "job-b") == 2
    assert store.get("job-b", 0) == b"\xff\xd8first"
    store.delete("job-a")
    assert store.get("job-a", 0) is None and store.get("job-b", 0) == b"\xff\xd8first"
    assert not list((tmp_path / "thumbs").rglob("*.part"))


@pytest.mark.parametrize("job_id", ["..", "../x", "a/b", "", "a" * 129, "job\x00"])
def test_ids_that_are_not_ids_are_refused(tmp_path: Path, job_id: str) -> None:
    store = FileThumbnails(tmp_path / "thumbs")
    with pytest.raises(ValueError, match="not a job id"):
        store.put(job_id, 0, b"x")
    assert store.get(job_id, 0) is None
    assert store.copy(job_id, "ok") == 0
    store.delete(job_id)
    assert not (tmp_path / "thumbs").exists()


def test_encode_thumbnail_keeps_the_aspect_and_caps_the_width() -> None:
    cv2 = pytest.importorskip("cv2")
    from video_ai.analyzers.visual import THUMBNAIL_WIDTH, encode_thumbnail

    picture = np.zeros((180, 320, 3), np.uint8)
    picture[:, :160] = (255, 0, 0)  # red on the left, in RGB
    decoded = cv2.imdecode(np.frombuffer(encode_thumbnail(picture), np.uint8), cv2.IMREAD_COLOR)
    assert decoded.shape == (108, THUMBNAIL_WIDTH, 3)
    blue, green, red = decoded[54, 40].tolist()
    assert red > 200 and blue < 60 and green < 60


class _Store(FileThumbnails):
    def __init__(self, root: Path, fail: bool = False) -> None:
        super().__init__(root)
        self.fail = fail

    def put(self, job_id: str, index: int, jpeg: bytes) -> None:
        if self.fail:
            raise OSError("disk full")
        super().put(job_id, index, jpeg)


def _frames(n: int) -> list[object]:
    from video_ai.domain.models import SampledFrame

    return [SampledFrame(index=i, pts_s=i / 2, frame_number=i * 12, shot=0, image=np.zeros((8, 8, 3), np.uint8),
                         thumbnail=np.full((108, 192, 3), 40 * i, np.uint8)) for i in range(n)]


@pytest.mark.parametrize("segments_total", [0, 3])
def test_the_visual_analyzer_stores_a_jpeg_per_frame_except_in_segments(tmp_path: Path, segments_total: int) -> None:
    pytest.importorskip("cv2")
    from tests.fakes import FakeEmbedder, FakeIndex
    from video_ai.analyzers import AnalyzerContext
    from video_ai.analyzers.visual import THUMBNAIL_WIDTH, VisualAnalyzer
    from video_ai.domain.models import Job, Source

    store = _Store(tmp_path)
    analyzer = VisualAnalyzer(AnalyzerContext(embedder=FakeEmbedder(), index=FakeIndex(),  # type: ignore[arg-type]
                                              thumbnails=store))
    assert analyzer.needs.thumbnail_width == THUMBNAIL_WIDTH
    job = Job(job_id="job-1", source=Source(url="https://example.com/v.mp4"), segments_total=segments_total)
    run = analyzer.start(job)
    run.add(_frames(3))  # type: ignore[arg-type]
    assert run.finish([]).warnings == []
    stored = [store.get("job-1", i) for i in range(3)]
    if segments_total:
        assert stored == [None, None, None]
    else:
        assert all(s is not None and s[:3] == b"\xff\xd8\xff" for s in stored)
        analyzer.discard(job)
        assert store.get("job-1", 0) is None


def test_a_failing_thumbnail_store_warns_and_the_pass_goes_on(tmp_path: Path) -> None:
    pytest.importorskip("cv2")
    from tests.fakes import FakeEmbedder, FakeIndex
    from video_ai.analyzers import AnalyzerContext
    from video_ai.analyzers.visual import VisualAnalyzer
    from video_ai.domain.models import Job, Source

    index = FakeIndex()
    analyzer = VisualAnalyzer(AnalyzerContext(embedder=FakeEmbedder(), index=index,  # type: ignore[arg-type]
                                              thumbnails=_Store(tmp_path, fail=True)))
    run = analyzer.start(Job(job_id="job-2", source=Source(url="https://example.com/v.mp4")))
    run.add(_frames(2))  # type: ignore[arg-type]
    run.add(_frames(2))  # type: ignore[arg-type]
    output = run.finish([])
    assert output.count == 4 and len(index.points) == 2  # frame numbers repeat across the two batches
    assert output.warnings == ["thumbnails not stored: OSError: disk full"]
