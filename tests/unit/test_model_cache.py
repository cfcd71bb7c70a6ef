"""ensure_model: configured path, cache location, build-once, atomic writes."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

import video_ai.model as model_pkg
from video_ai.domain.errors import ConfigError
from video_ai.model import _atomic_write, cached_model_path, ensure_model, imagenet_labels, model_cache_dir
from video_ai.settings import ModelSettings


@pytest.fixture
def builds(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Replace the real (1-2 s) build with one that records its target and writes a marker."""
    calls: list[Path] = []

    def fake_build(out_path: Path, *, include_logits: bool = False, weights: Path | None = None) -> Path:
        calls.append(out_path)
        return _atomic_write(out_path, lambda tmp: tmp.write_bytes(b"onnx"))

    monkeypatch.setattr(model_pkg, "build_model", fake_build)
    return calls


def test_configured_path_wins(tmp_path: Path, builds: list[Path]) -> None:
    own = tmp_path / "clip.onnx"
    own.write_bytes(b"x")
    assert ensure_model(ModelSettings(name="clip", path=own), tmp_path / "data") == own
    assert builds == []


def test_missing_configured_path_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist") as err:
        ensure_model(ModelSettings(path=tmp_path / "nope.onnx"), tmp_path)
    assert err.value.field == "model.path"


def test_other_model_without_path_is_a_config_error(tmp_path: Path, builds: list[Path]) -> None:
    with pytest.raises(ConfigError, match="required for model 'clip-vit'"):
        ensure_model(ModelSettings(name="clip-vit"), tmp_path)
    assert builds == []


@pytest.fixture
def user_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    return tmp_path / "xdg" / "video-ai" / "models"


def test_builds_once_into_the_user_cache_shared_by_every_data_dir(tmp_path: Path, user_cache: Path,
                                                                  builds: list[Path]) -> None:
    settings = ModelSettings()
    first = ensure_model(settings, tmp_path / "project-a" / ".video-ai")
    second = ensure_model(settings, tmp_path / "project-b" / ".video-ai")
    assert first == second == user_cache / "efficientnet-lite0-imagenet-1-fp32.onnx"
    assert first == cached_model_path(settings, tmp_path / "elsewhere")
    assert first.read_bytes() == b"onnx"
    assert builds == [first]
    assert not (tmp_path / "project-a").exists()  # nothing built per working directory


def test_configured_cache_dir_wins(tmp_path: Path, user_cache: Path, builds: list[Path]) -> None:
    path = ensure_model(ModelSettings(cache_dir=tmp_path / "mine"), tmp_path / "data")
    assert path == tmp_path / "mine" / "efficientnet-lite0-imagenet-1-fp32.onnx" and builds == [path]
    assert not user_cache.exists()


def test_unwritable_home_falls_back_to_the_data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                    builds: list[Path]) -> None:
    # Lambda: HOME is read-only and only /tmp (the data dir there) is writable. A HOME below a regular file cannot
    # hold a directory for any user, root included (chmod would not stop root).
    (tmp_path / "not-a-dir").write_text("x")
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "not-a-dir" / "home"))
    assert model_cache_dir(ModelSettings(), tmp_path / "data") == tmp_path / "data" / "models"
    path = ensure_model(ModelSettings(), tmp_path / "data")
    assert path.parent == tmp_path / "data" / "models" and builds == [path]


def test_unwritable_cache_falls_back_to_the_data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                     builds: list[Path]) -> None:
    blocker = tmp_path / "xdg"
    blocker.write_text("a file where the cache directory would go")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker))
    path = ensure_model(ModelSettings(), tmp_path / "data")
    assert path == tmp_path / "data" / "models" / "efficientnet-lite0-imagenet-1-fp32.onnx" and builds == [path]


def test_a_model_built_under_the_data_dir_before_is_reused(tmp_path: Path, user_cache: Path,
                                                           builds: list[Path]) -> None:
    legacy = tmp_path / "data" / "models" / "efficientnet-lite0-imagenet-1-fp32.onnx"
    legacy.parent.mkdir(parents=True)
    legacy.write_bytes(b"old build")
    assert ensure_model(ModelSettings(), tmp_path / "data") == legacy and builds == []


def test_a_written_model_is_readable_by_other_users(tmp_path: Path) -> None:
    # The worker image builds its model as root and Lambda runs it as another user: mkstemp's 0600 made it unreadable.
    target = _atomic_write(tmp_path / "model.onnx", lambda tmp: tmp.write_bytes(b"onnx"))
    assert target.stat().st_mode & 0o777 == 0o644


def test_atomic_write_leaves_nothing_behind_on_failure(tmp_path: Path) -> None:
    target = tmp_path / "m" / "model.onnx"

    def broken(tmp: Path) -> None:
        tmp.write_bytes(b"half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        _atomic_write(target, broken)
    assert list(target.parent.iterdir()) == []


def test_concurrent_writers_never_expose_a_partial_file(tmp_path: Path) -> None:
    target = tmp_path / "model.onnx"
    payload = b"x" * 1_000_000
    seen: list[int] = []
    stop = threading.Event()

    def write(tmp: Path) -> None:
        with tmp.open("wb") as fh:
            for i in range(0, len(payload), 100_000):
                fh.write(payload[i : i + 100_000])

    def watch() -> None:
        while not stop.is_set():
            if target.exists():
                seen.append(len(target.read_bytes()))

    watcher = threading.Thread(target=watch)
    watcher.start()
    writers = [threading.Thread(target=_atomic_write, args=(target, write)) for _ in range(4)]
    for w in writers:
        w.start()
    for w in writers:
        w.join(timeout=30)
    stop.set()
    watcher.join(timeout=30)
    assert target.read_bytes() == payload
    assert set(seen) <= {len(payload)}
    assert [p.name for p in tmp_path.iterdir()] == ["model.onnx"]


def test_imagenet_labels() -> None:
    labels = imagenet_labels()
    assert len(labels) == 1000
    assert labels[0] == "tench" and labels[281] == "tabby" and labels[967] == "espresso"
