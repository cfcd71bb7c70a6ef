"""The built-in embedding model: EfficientNet-Lite0 read from its PyPI wheel, built as ONNX and cached on disk.

Public API: `build_model`, `ensure_model`, `cached_model_path`, `model_cache_dir`, `imagenet_labels`. Importing
this package pulls in no onnx/numpy-heavy work; the builders import lazily.
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile
from collections.abc import Callable, Sequence
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

from video_ai.domain.errors import ConfigError

if TYPE_CHECKING:
    import numpy as np

    from video_ai.settings import ModelSettings, Settings

log = logging.getLogger(__name__)

BUILTIN_MODEL_NAME = "efficientnet-lite0"
LABELS_FILE = "imagenet_classes.txt"


def _atomic_write(out_path: Path, write: Callable[[Path], object]) -> Path:
    """Write via a unique temp file in the target directory, then os.replace: readers never see half a file."""
    out_path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{out_path.name}.", suffix=".tmp", dir=out_path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        write(tmp)
        # mkstemp creates 0600; a model baked into an image as root must be readable by Lambda's non-root user.
        tmp.chmod(0o644)
        os.replace(tmp, out_path)
    finally:
        tmp.unlink(missing_ok=True)
    return out_path


def build_model(out_path: Path, *, include_logits: bool = False, weights: Path | None = None) -> Path:
    """Build the fp32 EfficientNet-Lite0 ONNX model at `out_path` (atomically) and return the path."""
    import onnx

    from video_ai.model.efficientnet_lite import build_model_proto

    proto = build_model_proto(weights, include_logits=include_logits)
    return _atomic_write(Path(out_path), lambda tmp: onnx.save_model(proto, str(tmp)))


def user_cache_dir() -> Path:
    """The platform's per-user cache for video-ai's models (XDG on Linux, ~/Library/Caches on macOS)."""
    xdg = os.environ.get("XDG_CACHE_HOME")
    if xdg and Path(xdg).is_absolute():
        return Path(xdg) / "video-ai" / "models"
    base = Path.home() / ("Library/Caches" if sys.platform == "darwin" else ".cache")
    return base / "video-ai" / "models"


def _writable(directory: Path) -> bool:
    """True when `directory` exists or can be made, and a file can be created in it."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".probe-", dir=directory)
    except (OSError, RuntimeError):  # RuntimeError: Path.home() without $HOME or a passwd entry
        return False
    os.close(fd)
    os.unlink(probe)
    return True


def model_cache_dir(settings: ModelSettings, data_dir: Path) -> Path:
    """model.cache_dir when set; else the user cache, so every checkout and working directory shares one build;
    else (read-only home, as on Lambda) data_dir/models."""
    if settings.cache_dir is not None:
        return Path(settings.cache_dir)
    try:
        user = user_cache_dir()
    except RuntimeError:
        return Path(data_dir) / "models"
    return user if _writable(user) else Path(data_dir) / "models"


def ocr_model_dir(settings: Settings) -> Path:
    """Where the int8 OCR models are: analysis.ocr.model_dir, else `ocr/` in the image model's cache."""
    return settings.analysis.ocr.model_dir or model_cache_dir(settings.model, settings.data_dir) / "ocr"


def cached_model_path(settings: ModelSettings, data_dir: Path) -> Path:
    """Where the built-in model is cached: {model_cache_dir}/{name}-{version}-{precision}.onnx."""
    return model_cache_dir(settings, data_dir) / f"{settings.name}-{settings.version}-{settings.precision}.onnx"


def ensure_model(
    settings: ModelSettings,
    data_dir: Path,
    *,
    calibration_images: Sequence[np.ndarray] | None = None,
) -> Path:
    """Return settings.path when set, else the cached built-in model, building it first when missing.

    `precision: int8` quantises the fp32 model statically, calibrated on `calibration_images` (RGB uint8) or, when
    none are given, on frames decoded from a generated clip.
    """
    if settings.path is not None:
        if not Path(settings.path).is_file():
            raise ConfigError(f"model.path: {settings.path} does not exist", field="model.path")
        return Path(settings.path)
    if settings.name != BUILTIN_MODEL_NAME:
        raise ConfigError(
            f"model.path: required for model {settings.name!r} (only {BUILTIN_MODEL_NAME} is built in)",
            field="model.path",
        )
    target = cached_model_path(settings, data_dir)
    if target.is_file():
        return target
    legacy = Path(data_dir) / "models" / target.name
    if settings.cache_dir is None and legacy.is_file():
        return legacy  # built under the data dir before the model moved to the user cache: no second build
    # Logits ride along (4 MB) so the cached model can also label frames; `embedding` stays the first output.
    fp32 = target.with_name(f"{settings.name}-{settings.version}-fp32.onnx")
    if not fp32.is_file():
        log.info("building %s into %s", BUILTIN_MODEL_NAME, fp32)
        build_model(fp32, include_logits=True)
    if settings.precision == "fp32":
        return fp32
    from video_ai.model.quantize import default_calibration_images, quantize_int8

    images = list(calibration_images) if calibration_images is not None else default_calibration_images()
    log.info("quantising %s to int8 on %d calibration images", fp32.name, len(images))
    return _atomic_write(target, lambda tmp: quantize_int8(fp32, tmp, images, settings))


@lru_cache(maxsize=1)
def imagenet_labels() -> tuple[str, ...]:
    """The 1000 ImageNet-1k class names, index-aligned with the `logits` output."""
    text = resources.files(__package__).joinpath(LABELS_FILE).read_text(encoding="utf-8")
    labels = tuple(line for line in text.splitlines() if line)
    if len(labels) != 1000:
        raise RuntimeError(f"{LABELS_FILE}: expected 1000 labels, found {len(labels)}")
    return labels


__all__ = ["BUILTIN_MODEL_NAME", "build_model", "cached_model_path", "ensure_model", "imagenet_labels",
           "model_cache_dir", "ocr_model_dir", "user_cache_dir"]
