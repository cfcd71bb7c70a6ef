"""POST /uploads: a presigned S3 POST for one browser upload into the caller's prefix of the uploads bucket, whose
ObjectCreated notification makes it a job (ingest). The API never carries the video's bytes."""

from __future__ import annotations

import re
import uuid
from pathlib import PurePosixPath

from fastapi import APIRouter

from video_ai.api.app import Ctx, Tenant
from video_ai.api.schemas import UploadRequest, UploadTicket
from video_ai.domain.errors import InvalidRequest, NotFound, SourceTooLarge
from video_ai.domain.models import S3Location

router = APIRouter()

# The uploads bucket notifies only these suffixes (template.yaml, lower and upper case): other keys would never
# become jobs, so they are refused here, and the key always gets the lower-case one.
UPLOAD_SUFFIXES = (".mp4", ".mov", ".mkv", ".webm", ".avi", ".m4v")
UPLOAD_EXPIRES_S = 900
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


@router.post("/uploads", status_code=201, response_model=UploadTicket)
def create_upload(body: UploadRequest, tenant_id: Tenant, ctx: Ctx) -> UploadTicket:
    """Where the browser sends one video file (tenant-scoped key, size capped, 15 minutes)."""
    bucket = ctx.settings.aws.uploads_bucket
    if bucket is None or ctx.links_factory is None:
        raise NotFound("uploads are not configured here (no uploads bucket)")
    limit = ctx.settings.limits.max_source_bytes
    if body.size > limit:
        raise SourceTooLarge(f"the file is {body.size} bytes; this deployment takes videos of at most {limit} bytes "
                             f"(limits.max_source_bytes)", field="size")
    name = PurePosixPath(body.filename.replace("\\", "/")).name
    suffix = PurePosixPath(name).suffix.lower()
    if suffix not in UPLOAD_SUFFIXES:
        raise InvalidRequest(f"filename: uploads must end in one of {', '.join(UPLOAD_SUFFIXES)}", field="filename")
    stem = _UNSAFE.sub("-", PurePosixPath(name).stem).strip("-.")[:100] or "video"
    location = S3Location(bucket=bucket, key=f"tenants/{tenant_id}/uploads/{uuid.uuid4()}/{stem}{suffix}")
    url, fields = ctx.links_factory().presigned_post(location, limit, body.content_type, UPLOAD_EXPIRES_S)
    return UploadTicket(url=url, fields=fields, bucket=bucket, key=location.key, max_bytes=limit,
                        expires_in=UPLOAD_EXPIRES_S)
