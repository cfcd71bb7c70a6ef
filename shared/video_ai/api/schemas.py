"""Request and response bodies of the HTTP API (OpenAPI at /docs)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from video_ai.domain.models import (
    MIN_FPS,
    Feature,
    Frame,
    MomentHit,
    MomentKind,
    SamplingMode,
    SearchHit,
    Shot,
    ShotLabels,
    TextLine,
)
from video_ai.domain.transcript import Transcript


def _utf8(value: Any) -> None:
    if isinstance(value, str):
        value.encode("utf-8")
    elif isinstance(value, dict):
        for key, item in value.items():
            _utf8(key)
            _utf8(item)


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")

    @field_validator("*", mode="after")
    @classmethod
    def _no_lone_surrogates(cls, value: Any) -> Any:
        # JSON escapes can spell lone surrogates ("\ud800"); they are not UTF-8, and DynamoDB, SNS and the callback
        # body would fail on them later (a 5xx at submit, or a job that can never be stored).
        try:
            _utf8(value)
        except UnicodeEncodeError:
            raise ValueError("text must be valid Unicode (no lone surrogates)") from None
        return value


# Numbers are strict: the schema says integer/number, so true, "5" and (for integers) 5.0 are refused with a 422
# naming the field instead of being read as 1, 5 and 5 (pydantic's lax default).
class SamplingIn(_Body):
    mode: SamplingMode | None = None
    fps: float | None = Field(default=None, ge=MIN_FPS, le=60, strict=True)
    max_frames: int | None = Field(default=None, ge=1, le=100_000, strict=True)


class AnalyzeRequest(_Body):
    video_url: str | None = Field(default=None, max_length=2048, description="http(s) URL of the video")
    s3_uri: str | None = Field(default=None, max_length=2048, description="s3://bucket/key of the video")
    callback_url: str | None = Field(default=None, max_length=2048, description="signed POST when the job ends")
    sampling: SamplingIn | None = None
    tags: dict[str, str] | None = Field(default=None, description="up to 20 short labels, echoed back")
    features: list[Feature] | None = Field(
        default=None, min_length=1, max_length=4,
        description="what to find: visual (frame vectors), labels (ImageNet classes per shot), speech (a timed "
        "transcript), ocr (on-screen text); default from config",
    )
    language: str | None = Field(
        default=None, pattern=r"^[a-z]{2,3}$",
        description="speech: the ISO 639-1 code of the language spoken (e.g. fr); default: detected (an English-only "
        "speech model always hears English)",
    )

    @field_validator("features", mode="after")
    @classmethod
    def _known_features(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None
        from video_ai.analyzers import available_features

        missing = [f for f in value if f not in available_features()]
        if missing:
            raise ValueError(f"not available here: {', '.join(missing)} (available: "
                             f"{', '.join(available_features())})")
        return list(dict.fromkeys(value))

    @model_validator(mode="after")
    def _one_source(self) -> AnalyzeRequest:
        if (self.video_url is None) == (self.s3_uri is None):
            raise ValueError("give exactly one of video_url or s3_uri")
        return self


class Accepted(BaseModel):
    job_id: str
    status: str


class FramesPage(BaseModel):
    items: list[Frame]
    next_token: str | None


class ShotsPage(BaseModel):
    items: list[Shot]
    next_token: str | None = None


class LabelsPage(BaseModel):
    items: list[ShotLabels]
    next_token: str | None
    reason: str | None = Field(
        default=None, description="why the page is empty: the job ran without labels, or has not finished")


class TextPage(BaseModel):
    items: list[TextLine]
    next_token: str | None
    reason: str | None = Field(
        default=None, description="why the page is empty: the job ran without ocr, has not finished, or no text was "
        "read")


class TranscriptPage(Transcript):
    next_token: str | None = Field(
        default=None, description="asked with limit or next_token: the token of the next page of segments; null: "
        "this page is the last (or the transcript is whole)")


class VideoLink(BaseModel):
    url: str = Field(description="where a browser's <video> can read the job's source")
    kind: Literal["source_url", "presigned_s3"]
    expires_in: int | None = Field(default=None, description="seconds the presigned URL stays valid")


class UploadRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    filename: str = Field(min_length=1, max_length=255, description="the file's name; its suffix picks the container")
    size: int = Field(ge=1, description="bytes; at most limits.max_source_bytes")
    content_type: str = Field(default="application/octet-stream", max_length=100, pattern=r"^[\w.+-]+/[\w.+-]+$")


class UploadTicket(BaseModel):
    url: str = Field(description="POST the fields and then the file (multipart/form-data, field `file`) here")
    fields: dict[str, str]
    bucket: str
    key: str = Field(description="the object's key: the job it becomes has source.s3.key equal to it")
    max_bytes: int
    expires_in: int


class JobsPage(BaseModel):
    items: list[dict[str, Any]]
    next_token: str | None


# No job has more samples than 4 h at 60 fps (limits.max_duration_s, Sampling.fps); the bound also keeps the index's
# page size inside u64 (qdrant-edge raised OverflowError, a 500, on index 2**64).
MAX_FRAME_INDEX = 1_000_000


class FrameQuery(_Body):
    job_id: str = Field(min_length=1, max_length=128)
    index: int = Field(ge=0, le=MAX_FRAME_INDEX, strict=True)


class SearchRequest(_Body):
    image_base64: str | None = Field(default=None, description="PNG or JPEG, at most 5 MB")
    frame: FrameQuery | None = None
    top_k: int = Field(default=10, ge=1, le=100, strict=True)
    job_id: str | None = Field(default=None, min_length=1, max_length=128)
    start_s: float | None = Field(default=None, ge=0, strict=True)
    end_s: float | None = Field(default=None, ge=0, strict=True)
    collapse: Literal["shot"] | None = None
    text: str | None = Field(default=None, min_length=1, max_length=1000,
                             description="words to find in what was seen (labels), said or written: moment hits")
    kinds: list[MomentKind] | None = Field(default=None, min_length=1, max_length=3,
                                           description="with text: only these kinds of moments")

    @field_validator("text", mode="after")
    @classmethod
    def _plain_text(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not value.strip():
            raise ValueError("text must not be empty or only whitespace")
        if any((ord(c) < 32 and c not in "\t\n\r") or 127 <= ord(c) < 160 for c in value):
            raise ValueError("text must not contain control characters")
        return value.strip()

    @model_validator(mode="after")
    def _one_query(self) -> SearchRequest:
        if self.text is not None:
            if self.frame is not None:
                raise ValueError("text combines with image_base64, not with frame")
            if self.collapse is not None:
                raise ValueError("collapse applies to frame hits, not to text search")
            return self
        if self.kinds is not None:
            raise ValueError("kinds applies to text search: give text")
        if (self.image_base64 is None) == (self.frame is None):
            raise ValueError("give exactly one of image_base64, frame or text")
        return self


class SearchResponse(BaseModel):
    items: list[SearchHit] | list[MomentHit]


class ErrorBody(BaseModel):
    code: str
    message: str
    field: str | None = None


class ErrorResponse(BaseModel):
    error: ErrorBody
