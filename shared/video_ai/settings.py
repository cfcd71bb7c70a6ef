"""Configuration: one pydantic model, read from YAML, overridden by `VIDEO_AI__SECTION__KEY` variables.

Secrets (Qdrant API key, webhook secrets, API keys) come only from the environment or AWS, never from YAML.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator, model_validator

from video_ai.domain.errors import ConfigError
from video_ai.domain.models import MIN_FPS, Feature

ENV_PREFIX = "VIDEO_AI__"
DEFAULT_CONFIG_PATH = Path("config/config.yml")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class QdrantSettings(_Section):
    backend: Literal["edge", "server"] = Field(
        default="edge", description="edge: Qdrant's embedded engine under data_dir; server: a Qdrant server by URL"
    )
    host: str = Field(default="127.0.0.1", description="Qdrant server host (backend: server)")
    port: int = Field(default=6333, ge=1, le=65535)
    url: str | None = Field(default=None, description="Full server URL; wins over host/port when set")
    https: bool = False
    api_key: SecretStr | None = Field(
        default=None, description="From the environment only (VIDEO_AI__QDRANT__API_KEY or QDRANT_API_KEY)"
    )
    timeout_s: float = Field(default=10.0, gt=0)
    upsert_batch: int = Field(default=256, ge=1, le=10_000)
    # Embedded engine (backend: edge) search index; measured in BENCHMARKS.md "Vector store".
    exact_search: bool = Field(default=False, description="edge: always brute force, never build HNSW")
    index_after: int = Field(
        default=5_000, ge=0,
        description="edge: build HNSW once this many points are not in a graph (0: never). The points not yet in a "
        "graph are scanned exactly by every search: 5,000 keeps that scan near 1-2 ms (BENCHMARKS.md)",
    )
    hnsw_m: int = Field(default=16, ge=4, le=128, description="edge: HNSW edges per node")
    hnsw_ef_construct: int = Field(default=100, ge=8, le=1000, description="edge: HNSW build candidates")
    hnsw_ef: int = Field(default=64, ge=10, le=1000, description="edge: HNSW search candidates (recall vs speed)")
    quantization: Literal["none", "int8"] = Field(
        default="none", description="edge: int8 scalar quantisation (lower recall on real embeddings, see BENCHMARKS)"
    )
    oversampling: float = Field(default=4.0, ge=1.0, le=32.0, description="edge: int8 candidates rescored per hit")

    def server_url(self) -> str:
        if self.url:
            return self.url
        scheme = "https" if self.https else "http"
        return f"{scheme}://{self.host}:{self.port}"


class LoggingSettings(_Section):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"
    json_logs: bool = Field(default=True, alias="json", description="JSON lines (powertools) or plain text")

    model_config = ConfigDict(extra="forbid", validate_assignment=True, populate_by_name=True)


class SamplingSettings(_Section):
    mode: Literal["fps", "shots", "keyframes"] = "fps"
    fps: float = Field(default=1.0, ge=MIN_FPS, le=60)
    max_frames: int | None = Field(default=None, ge=1, le=100_000)
    shot_threshold: float = Field(default=27.0, gt=0, description="PySceneDetect ContentDetector threshold")
    min_shot_s: float = Field(default=0.5, ge=0, description="Shortest shot; cuts closer than this are merged")
    shot_stride: int = Field(
        default=4, ge=1, le=64,
        description="The shot detector scores every Nth decoded frame and examines the frames between only where a "
        "cut may be (same cuts, ~N times cheaper); 1 = score every frame",
    )


class ModelSettings(_Section):
    name: str = "efficientnet-lite0"
    version: str = "imagenet-1"
    path: Path | None = Field(
        default=None, description="ONNX file; unset: the built-in EfficientNet-Lite0, built on first use into cache_dir"
    )
    cache_dir: Path | None = Field(
        default=None,
        description="Where the built-in model is built, once per user; unset: the platform's user cache "
        "($XDG_CACHE_HOME/video-ai/models, ~/.cache/video-ai/models, ~/Library/Caches/video-ai/models on macOS), or "
        "data_dir/models when that is not writable (a read-only home, as on Lambda)",
    )
    precision: Literal["fp32", "int8"] = "fp32"
    input_width: int = Field(default=224, ge=16, le=4096)
    input_height: int = Field(default=224, ge=16, le=4096)
    mean: tuple[float, float, float] = (127.0, 127.0, 127.0)
    std: tuple[float, float, float] = (128.0, 128.0, 128.0)
    color_order: Literal["RGB", "BGR"] = "RGB"
    layout: Literal["NCHW", "NHWC"] = "NCHW"
    input_name: str | None = None
    output_name: str = "embedding"
    dim: int = Field(default=1280, ge=1)
    batch_size: int = Field(
        default=8, ge=1, le=1024,
        description="Frames per session.run; small batches let embedding follow the decode and leave a short tail",
    )
    threads: int = Field(
        default=1, ge=0,
        description="onnxruntime intra-op threads; 0 = one per core. 1: analyze overlaps embedding with a decode that "
        "uses the other cores, and one thread costs the least CPU per image",
    )


class LabelSettings(_Section):
    """The labels analyzer: ImageNet classes of each shot's informative frames, from crops (FACTS: squashing a wide
    frame to the model's square labels it poorly)."""

    crops: Literal["centre", "three", "none"] = Field(
        default="centre",
        description="centre: one centre square crop per labelled frame; three: three square crops along a wide (or "
        "tall) frame (three model runs); none: the whole frame only (no model run of its own with visual). A class "
        "scores its best input",
    )
    whole_frame: bool = Field(
        default=True,
        description="Also score the whole frame as the embedder sees it (free when the visual feature runs: its "
        "logits come from the same model run)",
    )
    window_s: float = Field(
        default=10.0, gt=0,
        description="A shot gets one labelled frame (its most detailed one) per started window of this length",
    )
    min_contrast: float = Field(
        default=12.0, ge=0, le=128,
        description="Frames whose luma standard deviation is below this (black, fades, flat colour) are not labelled",
    )
    crop_below: float = Field(
        default=0.8, ge=0, le=1,
        description="With whole_frame, a frame's crops are scored only when its whole frame's top label is below this "
        "calibrated confidence (a confident whole frame rarely changes: BENCHMARKS.md \"Label calibration\"); 1: "
        "always score the crops",
    )
    temperature: float | None = Field(
        default=None, gt=0, le=20,
        description="Confidences are softmax(logits / temperature); unset: the temperature fitted for the built-in "
        "model (video_ai/model/label_calibration.json), or 1 (raw softmax, with a job warning) for another model",
    )
    top_k: int = Field(default=5, ge=1, le=20, description="Labels kept per frame and per shot")
    min_confidence: float = Field(default=0.05, ge=0, le=1, description="Labels below this confidence are dropped")


class OcrSettings(_Section):
    """The ocr analyzer: PP-OCR (RapidOCR) on the frames where on-screen text may have changed."""

    image_short_side: int = Field(
        default=720, ge=240, le=2160,
        description="OCR reads a grey, upright, display-aspect copy of each frame with at most this short side",
    )
    det_long_side: int = Field(
        default=640, ge=320, le=2560,
        description="The text detector sees the frame with its long side at most this long (its cost follows the "
        "pixels); recognition reads each line at full size",
    )
    det_gate: bool = Field(
        default=False,
        description="Run the text detector at 320 px first and skip the full detection when it finds no text "
        "(a textless frame's detection ~2x cheaper, a frame with text ~11 ms dearer, 12 px text missed more often: "
        "BENCHMARKS.md)",
    )
    precision: Literal["int8", "fp32"] = Field(
        default="int8",
        description="int8: the PP-OCR models quantised once from the packaged ones (~40% less CPU, character "
        "accuracy within half a point: BENCHMARKS.md); fp32: the packaged models as they are",
    )
    model_dir: Path | None = Field(
        default=None,
        description="Where the int8 OCR models are kept (built there on first use, ~30 s); null: beside the image "
        "model's cache (model.cache_dir). The worker image bakes them: `video-ai model build --ocr --out DIR`",
    )
    min_confidence: float = Field(default=0.6, ge=0, le=1, description="Lines read with less confidence are dropped")
    max_lines: int = Field(default=64, ge=1, le=1000, description="Most lines detected (and read) on one frame")
    threads: int = Field(default=1, ge=1, le=16, description="ONNX Runtime threads of each OCR model")
    every_frame: bool = Field(
        default=False,
        description="Read every sampled frame instead of only those where text may have changed (to measure the test)",
    )


class SpeechSettings(_Section):
    """The speech analyzer: Silero VAD on the streamed audio, then Whisper (faster-whisper, int8) on the speech."""

    model: Literal["tiny.en", "base"] = Field(
        default="tiny.en",
        description="tiny.en: English only, ~2x faster; base: multilingual, detects the language (BENCHMARKS.md "
        "Speech: word error rates and speed of both on this machine)",
    )
    language: str | None = Field(
        default=None, pattern=r"^[a-z]{2,3}$",
        description="ISO 639-1 code the speech is in (base only; tiny.en is English); null: detected per job",
    )
    threads: int = Field(default=2, ge=1, le=16, description="CTranslate2 threads for Whisper")
    beam_size: int = Field(default=1, ge=1, le=5, description="1: greedy decoding (BENCHMARKS.md: no worse here)")
    vad_threshold: float = Field(default=0.5, gt=0, lt=1, description="Silero speech probability that starts speech")
    min_silence_s: float = Field(default=1.0, gt=0, le=10, description="A pause this long ends a speech region")
    batch_s: float = Field(
        default=120.0, ge=10, le=600,
        description="Seconds of speech gathered (regions joined, silence left out) per Whisper call: whole 30 s "
        "windows, and a bounded buffer however long the track")


def _default_features() -> list[Feature]:
    return ["visual", "labels"]


class AnalysisSettings(_Section):
    features: list[Feature] = Field(
        default_factory=_default_features, min_length=1,
        description="What a job finds when its request names no `features` (new jobs read it; a reload applies)",
    )
    labels: LabelSettings = Field(default_factory=LabelSettings)
    ocr: OcrSettings = Field(default_factory=OcrSettings)
    speech: SpeechSettings = Field(default_factory=SpeechSettings)

    @field_validator("features", mode="after")
    @classmethod
    def _available(cls, value: list[Feature]) -> list[Feature]:
        # Imported here: the registry imports this module (LabelSettings) at its top.
        from video_ai.analyzers import available_features

        missing = [f for f in value if f not in available_features()]
        if missing:
            raise ValueError(f"not available in this version: {', '.join(missing)} (available: "
                             f"{', '.join(available_features())})")
        return list(dict.fromkeys(value))


class LimitsSettings(_Section):
    max_source_bytes: int = Field(default=2 * 1024**3, ge=1)
    max_duration_s: float = Field(default=4 * 3600.0, gt=0)
    max_pixels: int = Field(default=7680 * 4320, ge=1, description="Largest frame (width x height) decoded")
    decode_timeout_s: float = Field(default=600.0, gt=0, description="Watchdog: a decode pass longer than this fails")
    connect_timeout_s: float = Field(default=5.0, gt=0)
    read_timeout_s: float = Field(default=30.0, gt=0)
    max_redirects: int = Field(default=3, ge=0, le=10)
    max_url_length: int = Field(default=2048, ge=16)


class NetworkSettings(_Section):
    allow_http: bool = Field(default=False, description="Allow plain http:// for video_url and callback_url")
    allow_private_addresses: bool = Field(
        default=False, description="Allow loopback/private targets (development only; the deployed profile refuses)"
    )
    allowed_ports: list[int] = Field(default_factory=lambda: [80, 443, 8080, 8443])


class WebhookSettings(_Section):
    timeout_s: float = Field(default=10.0, gt=0)
    max_attempts: int = Field(default=5, ge=1, le=20)
    backoff_base_s: float = Field(default=0.5, ge=0)
    backoff_max_s: float = Field(default=30.0, ge=0)


class AwsSettings(_Section):
    region: str = "us-east-1"
    endpoint_url: str | None = Field(default=None, description="moto's server in `serve`; unset in AWS")
    jobs_table: str = "video-ai-jobs"
    jobs_queue_url: str | None = None
    topic_arn: str | None = None
    uploads_bucket: str | None = None


class ApiSettings(_Section):
    api_key_hashes: dict[str, str] = Field(
        default_factory=dict,
        description="sha256 hex of an API key -> tenant. Hashes, not keys: the keys themselves never live in config",
    )
    max_body_bytes: int = Field(default=8 * 1024 * 1024, ge=1024, description="Larger request bodies get 413")
    max_tags: int = Field(default=20, ge=0, le=100)


class ScaleSettings(_Section):
    segment_s: float = Field(default=300.0, gt=0, description="Videos longer than this are split into segments")
    pipeline_queue: int = Field(default=4, ge=1, le=64, description="Batches buffered between decode and embed")


class Settings(_Section):
    profile: Literal["development", "deployed"] = "deployed"
    stage: str = "dev"
    data_dir: Path = Path(".video-ai")
    qdrant: QdrantSettings = Field(default_factory=QdrantSettings)
    logging: LoggingSettings = Field(default_factory=LoggingSettings)
    sampling: SamplingSettings = Field(default_factory=SamplingSettings)
    model: ModelSettings = Field(default_factory=ModelSettings)
    analysis: AnalysisSettings = Field(default_factory=AnalysisSettings)
    limits: LimitsSettings = Field(default_factory=LimitsSettings)
    network: NetworkSettings = Field(default_factory=NetworkSettings)
    webhook: WebhookSettings = Field(default_factory=WebhookSettings)
    aws: AwsSettings = Field(default_factory=AwsSettings)
    api: ApiSettings = Field(default_factory=ApiSettings)
    scale: ScaleSettings = Field(default_factory=ScaleSettings)

    @model_validator(mode="after")
    def _deployed_refuses_unsafe_network(self) -> Settings:
        if self.profile == "deployed" and (self.network.allow_http or self.network.allow_private_addresses):
            raise ValueError("network.allow_http / allow_private_addresses are for the development profile only")
        return self

    def development(self) -> Settings:
        """The profile `serve` and the CLI use: plain http and loopback allowed for local servers."""
        data = self.model_dump(mode="python")
        data["profile"] = "development"
        data["network"]["allow_http"] = True
        data["network"]["allow_private_addresses"] = True
        return Settings.model_validate(data)


def _yaml() -> Any:
    # Imported on first use: a Lambda reads only environment variables, and yaml costs ~20 ms of its cold start.
    import yaml

    return yaml


def _env_value(raw: str) -> Any:
    """An environment value: JSON for lists and maps, `null` for None, else the string (pydantic coerces numbers and
    booleans in lax mode). Not YAML: a Lambda's cold start would import a parser for a handful of scalars."""
    text = raw.strip()
    if text in ("null", "~"):
        return None
    if text[:1] in ("[", "{"):
        try:
            return json.loads(text)
        except ValueError:
            return raw  # let validation name the field
    return raw


def _env_overrides(environ: Mapping[str, str]) -> dict[str, Any]:
    tree: dict[str, Any] = {}
    for name, value in environ.items():
        if not name.startswith(ENV_PREFIX):
            continue
        parts = [p.lower() for p in name[len(ENV_PREFIX) :].split("__") if p]
        node = tree
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = _env_value(value)
    if "QDRANT_API_KEY" in environ:
        tree.setdefault("qdrant", {}).setdefault("api_key", environ["QDRANT_API_KEY"])
    return tree


def _merge(base: dict[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def _describe(err: ValidationError, source: str) -> str:
    first = err.errors()[0]
    loc = ".".join(str(p) for p in first["loc"]) or "(root)"
    return f"{source}: {loc}: {first['msg']}"


def parse_settings(data: Mapping[str, Any], source: str = "config") -> Settings:
    """Validate a mapping; raise ConfigError with one line naming the source, the field and the problem."""
    qdrant = data.get("qdrant")
    if isinstance(qdrant, Mapping) and "api_key" in qdrant and source != "environment":
        raise ConfigError(f"{source}: qdrant.api_key: secrets come from the environment, not the config file",
                          field="qdrant.api_key")
    try:
        return Settings.model_validate(data)
    except ValidationError as err:
        raise ConfigError(_describe(err, source), field=".".join(map(str, err.errors()[0]["loc"]))) from None


def read_yaml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found") from None
    except OSError as err:
        raise ConfigError(f"{path}: cannot read: {err.strerror}") from None
    except UnicodeDecodeError as err:
        raise ConfigError(f"{path}: not a YAML text file (byte {err.start} is not UTF-8)") from None
    try:
        data = _yaml().safe_load(text)
    except _yaml().YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{path}:{where} not valid YAML: {getattr(err, 'problem', err)}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: (root): expected a mapping of sections, got {type(data).__name__}")
    return data


def load_settings(path: Path | None = None, environ: Mapping[str, str] | None = None) -> Settings:
    """YAML file (if any) + environment overrides. `path=None` uses $VIDEO_AI_CONFIG or config/config.yml if present."""
    env = os.environ if environ is None else environ
    if path is None:
        configured = env.get("VIDEO_AI_CONFIG")
        path = Path(configured) if configured else (DEFAULT_CONFIG_PATH if DEFAULT_CONFIG_PATH.exists() else None)
    file_data = read_yaml(path) if path is not None else {}
    source = str(path) if path is not None else "config"
    parse_settings(file_data, source)  # file errors name the file, not the merged result
    merged = _merge(file_data, _env_overrides(env))
    try:
        return Settings.model_validate(merged)
    except ValidationError as err:
        raise ConfigError(_describe(err, f"{source} + environment")) from None


def json_schema() -> dict[str, Any]:
    return Settings.model_json_schema(by_alias=True)
