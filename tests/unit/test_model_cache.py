"""ensure_model: configured path, cache location, build-once, atomic writes."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

import video_ai.model as model_pkg
from video_ai.domain.errors import ConfigError
from video_ai.model import _atomic_write, cached_model_path, ensure_model, imagenet_labels
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


def test_builds_once_into_the_cache(tmp_path: Path, builds: list[Path]) -> None:
    settings = ModelSettings()
    first = ensure_model(settings, tmp_path)
    second = ensure_model(settings, tmp_path)
    assert first == second == tmp_path / "models" / "efficientnet-lite0-imagenet-1-fp32.onnx"
    assert first == cached_model_path(settings, tmp_path)
    assert first.read_bytes() == b"onnx"
    assert builds == [first]


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
