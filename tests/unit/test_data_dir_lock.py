"""DataDirLock: one holder per data dir, named in one line; the lock dies with its holder."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from video_ai.data_dir_lock import DataDirBusy, DataDirLock, Owner, current_owner, read_owner


def test_a_second_holder_is_refused_with_the_first_ones_pid_and_api(tmp_path: Path) -> None:
    with DataDirLock(tmp_path, "video-ai serve") as first:
        first.publish(Owner(pid=4242, command="video-ai serve", api="http://127.0.0.1:8000", api_key="vai_x"))
        with pytest.raises(DataDirBusy) as err:
            DataDirLock(tmp_path, "video-ai analyze").acquire()
        assert err.value.code == "data_dir_busy" and err.value.field == "data_dir"
        assert "`video-ai serve` (pid 4242, api http://127.0.0.1:8000)" in err.value.message
        assert "\n" not in err.value.message and "VIDEO_AI__DATA_DIR" in err.value.message
        assert current_owner(tmp_path) == Owner(pid=4242, command="video-ai serve", api="http://127.0.0.1:8000",
                                                api_key="vai_x")
        assert (tmp_path / "owner.json").stat().st_mode & 0o077 == 0  # it may carry the development key
    # Released: free again, owner file gone.
    assert current_owner(tmp_path) is None and read_owner(tmp_path) is None
    with DataDirLock(tmp_path, "video-ai analyze"):
        assert read_owner(tmp_path) is not None and read_owner(tmp_path).command == "video-ai analyze"  # type: ignore[union-attr]


def test_a_stale_owner_file_from_a_dead_process_does_not_block(tmp_path: Path) -> None:
    # A holder killed without cleanup leaves owner.json behind; the kernel dropped its flock.
    code = ("import os, sys; from pathlib import Path; from video_ai.data_dir_lock import DataDirLock; "
            f"DataDirLock(Path({str(tmp_path)!r}), 'video-ai serve').acquire(); os._exit(0)")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
    assert read_owner(tmp_path) is not None
    assert current_owner(tmp_path) is None
    with DataDirLock(tmp_path, "video-ai search"):
        assert read_owner(tmp_path).command == "video-ai search"  # type: ignore[union-attr]


def test_no_lock_file_means_nobody_holds_it(tmp_path: Path) -> None:
    assert current_owner(tmp_path / "never-used") is None
