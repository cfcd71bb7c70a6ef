"""Routes for what a job found, read from its record or a light store (the API function serves them): labels per shot,
frame thumbnails, on-screen text, the transcript."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Annotated, Literal, TypeVar

from fastapi import APIRouter, Path, Query, Response
from fastapi.responses import StreamingResponse

from video_ai.analyzers.text_artifact import read_lines
from video_ai.api.app import ApiContext, Ctx, OwnedJob, Tenant, owned_job
from video_ai.api.schemas import LabelsPage, TextPage, TranscriptPage, VideoLink
from video_ai.domain.errors import InvalidRequest, NotFound
from video_ai.domain.models import Job, ShotLabels
from video_ai.domain.transcript import Transcript, srt_parts, webvtt_parts

router = APIRouter()
T = TypeVar("T")


def _page(items: Sequence[T], next_token: str | None, limit: int, what: str) -> tuple[list[T], str | None]:
    """The page of `items` that `next_token` starts (None: the first), and the token of the next page (None: none).
    A token is the index of the next item (shot, line): not a secret, and checked against the job's items."""
    start = 0
    if next_token is not None:
        if not next_token.isdigit() or not 0 < int(next_token) <= len(items):
            raise InvalidRequest(f"next_token is not a token this job's {what} issued", field="next_token")
        start = int(next_token)
    page = list(items[start : start + limit])
    end = start + len(page)
    return page, str(end) if end < len(items) else None


def _without(job: Job, feature: str) -> str | None:
    """Why the job has nothing of `feature` to show: it was not asked for. None: it was."""
    if feature in job.features:
        return None
    return f"the job ran without the {feature} feature (features: {', '.join(job.features)})"


def _not_done(job: Job, feature: str, made: str, comes: str) -> str | None:
    """Why a result stored when a job succeeds is not there yet (not asked for, failed, still running); None: it
    succeeded. `made` and `comes` say it in the result's words ("its text was read", "text comes")."""
    reason = _without(job, feature)
    if reason is not None or job.status.value == "succeeded":
        return reason
    return (f"the job failed before {made}" if job.status.value == "failed" else
            f"the job is {job.status.value}; {comes} when it succeeds")


@router.get("/jobs/{job_id}/labels", response_model=LabelsPage, )
def list_labels(
    job: OwnedJob,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    next_token: Annotated[str | None, Query(max_length=32)] = None,
) -> LabelsPage:
    """Each shot's labels (best first, with its time range) and the labelled frames behind them, in shot order."""
    if (reason := _without(job, "labels")) is not None:
        return LabelsPage(items=[], next_token=None, reason=reason)
    if job.labels is None:
        reason = ("the job failed before its labels were made" if job.status.value == "failed" else
                  f"the job is {job.status.value}; labels come when it succeeds")
        return LabelsPage(items=[], next_token=None, reason=reason)
    page, token = _page(job.labels, next_token, limit, "labels")
    return LabelsPage(items=[_with_categories(shot) for shot in page], next_token=token)


@router.get("/jobs/{job_id}/text", response_model=TextPage)
def list_text(
    job: OwnedJob,
    ctx: Ctx,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    next_token: Annotated[str | None, Query(max_length=32)] = None,
) -> TextPage:
    """Lines of on-screen text (OCR) in time order, each with its box on the upright frame (fractions 0..1) and the
    time range it stayed on screen."""
    if (reason := _not_done(job, "ocr", "its text was read", "text comes")) is not None:
        return TextPage(items=[], next_token=None, reason=reason)
    store = ctx.artifacts()
    lines = read_lines(store, job.job_id) if store is not None else None
    if lines is None:
        return TextPage(items=[], next_token=None, reason="no text lines are stored for this job (this deployment "
                        "keeps no artifacts, or their store failed: see warnings)")
    page, token = _page(lines, next_token, limit, "text")
    return TextPage(items=page, next_token=token, reason=None if lines else "no text was read in this video")


# Long enough to watch a long video from one page load; short enough that a copied link soon stops working.
VIDEO_LINK_EXPIRES_S = 3600


@router.get("/jobs/{job_id}/video", response_model=VideoLink)
def video_link(job: OwnedJob, ctx: Ctx) -> VideoLink:
    """Where a browser can play the job's source: its http(s) URL as given, or a short-lived presigned S3 URL."""
    source = job.source
    if source.s3 is not None:
        if ctx.links_factory is None:
            raise NotFound(f"job {job.job_id}'s source is in S3 and this deployment signs no playback URLs")
        url = ctx.links_factory().presigned_get(source.s3, VIDEO_LINK_EXPIRES_S)
        return VideoLink(url=url, kind="presigned_s3", expires_in=VIDEO_LINK_EXPIRES_S)
    if source.url and source.url.lower().startswith(("http://", "https://")):
        return VideoLink(url=source.url, kind="source_url")
    raise NotFound(f"job {job.job_id}'s source has no address a browser can play (a local file)")


# A job's thumbnail never changes for a given index (a re-run writes the same frame's picture), so browsers keep it;
# `private` and Vary keep one key's cached answer from being served to another key in the same browser.
THUMBNAIL_HEADERS = {"Cache-Control": "private, max-age=86400", "Vary": "x-api-key, Authorization"}


@router.get("/jobs/{job_id}/frames/{index}/thumbnail", response_class=Response,
            responses={200: {"content": {"image/jpeg": {"schema": {"type": "string", "format": "binary"}}},
                             "description": "A JPEG, 192 px wide"}})
def frame_thumbnail(
    job_id: str, tenant_id: Tenant, ctx: Ctx, index: Annotated[int, Path(ge=0, le=100_000_000)]
) -> Response:
    """The sampled frame's small JPEG (the `index` of GET /jobs/{id}/frames), stored when the frame was analysed."""
    store = ctx.thumbnails()
    if store is not None and ctx.owners.owner(job_id) == tenant_id:
        # A finished job this container has seen: its owner is known, and the record has nothing more to say.
        jpeg = store.get(job_id, index)
        if jpeg is not None:
            return Response(jpeg, media_type="image/jpeg", headers=THUMBNAIL_HEADERS)
    job = owned_job(job_id, tenant_id, ctx)
    ctx.owners.remember(job)
    jpeg = store.get(job.job_id, index) if store is not None else None
    if jpeg is None:
        why = ("this deployment stores no thumbnails" if store is None else
               f"the job is {job.status.value}" if not job.status.terminal else
               "none was stored (a job analysed before thumbnails were kept, or its store failed: see warnings)"
               if index < job.frames_indexed else f"the job has {job.frames_indexed} frames")
        raise NotFound(f"no thumbnail for frame {index} of job {job.job_id}: {why}")
    return Response(jpeg, media_type="image/jpeg", headers=THUMBNAIL_HEADERS)


# The speech analyzer's artifact (analyzers.speech.ARTIFACT, not imported: the API stays free of numpy).
TRANSCRIPT_ARTIFACT = "transcript.json"
SUBTITLE_TYPES = {"vtt": "text/vtt; charset=utf-8", "srt": "application/x-subrip; charset=utf-8"}


# Subtitles go out in pieces of about this many characters: one send per piece, not one per cue, nor one string.
SUBTITLE_CHUNK = 64 * 1024


@router.get("/jobs/{job_id}/transcript", response_model=TranscriptPage,
            responses={200: {"content": {"text/vtt": {"schema": {"type": "string"}},
                                         "application/x-subrip": {"schema": {"type": "string"}}},
                             "description": "The transcript (json: whole, or a page of segments when asked with "
                                            "limit or next_token), or subtitles players read (vtt: WebVTT, srt), "
                                            "always whole"}})
def transcript(
    job: OwnedJob,
    ctx: Ctx,
    format: Annotated[Literal["json", "vtt", "srt"], Query()] = "json",
    limit: Annotated[int | None, Query(ge=1, le=500, description=(
        "json: at most this many segments, and next_token for the rest; omitted: every segment (from next_token "
        "on), as before paging existed"))] = None,
    next_token: Annotated[str | None, Query(max_length=32, description="json: where the page starts")] = None,
    words: Annotated[bool, Query(description=(
        "json: false leaves out each segment's word timings (most of a long transcript's bytes)"))] = True,
) -> Response:
    """What is said, segment by segment with word timings, on the video's clock (the clock of frame pts_s). JSON comes
    whole unless asked for a page (limit, next_token), so a client written before pages still gets every segment."""
    found = _transcript(job, ctx)
    if format != "json":
        # Players read a subtitle file whole; a page of one would be a different, shorter video's subtitles.
        for name, value in (("limit", limit), ("next_token", next_token)):
            if value is not None:
                raise InvalidRequest(f"{name} pages format=json only; {format} subtitles come whole", field=name)
        parts = webvtt_parts(found) if format == "vtt" else srt_parts(found)
        return StreamingResponse(_chunked(parts), media_type=SUBTITLE_TYPES[format])
    page = TranscriptPage.model_validate({**dict(found), "next_token": None})
    if limit is not None or next_token is not None:
        segments, token = _page(found.segments, next_token, limit or len(found.segments), "transcript")
        page = page.model_copy(update={"segments": segments, "next_token": token})
    # Serialised here, once: a long transcript is megabytes, and FastAPI would validate and encode it again.
    body = page.model_dump_json(exclude=None if words else {"segments": {"__all__": {"words"}}})
    return Response(body, media_type="application/json")


def _chunked(parts: Iterable[str]) -> Iterator[bytes]:
    pending: list[str] = []
    size = 0
    for part in parts:
        pending.append(part)
        size += len(part)
        if size >= SUBTITLE_CHUNK:
            yield "".join(pending).encode("utf-8")
            pending, size = [], 0
    if pending:
        yield "".join(pending).encode("utf-8")


def _transcript(job: Job, ctx: ApiContext) -> Transcript:
    def empty(reason: str) -> Transcript:
        return Transcript(job_id=job.job_id, language=None, model=None, segments=[], reason=reason)

    if (reason := _not_done(job, "speech", "its transcript was made", "the transcript comes")) is not None:
        return empty(reason)
    store = ctx.artifacts()
    stored = store.get(job.job_id, TRANSCRIPT_ARTIFACT) if store is not None else None
    if stored is None:
        return empty("this deployment stores no transcripts" if store is None else
                     "no transcript was stored (see the job's warnings)")
    return Transcript.model_validate_json(stored)


def _with_categories(shot: ShotLabels) -> ShotLabels:
    """A shot's labels with their WordNet hypernyms, so a client sees why "animal" finds a tabby."""
    from video_ai.model.wordnet import class_words

    labels = [label.model_copy(update={"categories": class_words(label.class_id).categories()})
              if 0 <= label.class_id < 1000 else label for label in shot.labels]
    return shot.model_copy(update={"labels": labels})
