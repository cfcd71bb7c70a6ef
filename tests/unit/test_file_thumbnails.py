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
