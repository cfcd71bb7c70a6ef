"""`video-ai` command: analyze, search, serve, model build, config check."""

from __future__ import annotations

import argparse
import base64
import json
import logging
import os
import sys
import traceback
import uuid
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any, NoReturn, TextIO

from video_ai.domain.errors import ConfigError, VideoAIError
from video_ai.domain.models import Job, JobStatus, ModelInfo, SampledFrame, Sampling, SearchFilter, Source
from video_ai.domain.transcript import Transcript
from video_ai.settings import Settings, load_settings

logger = logging.getLogger("video_ai.cli")

# Distinct exit codes per error, so scripts can tell a missing file from a broken one.
EXIT_CODES: dict[str, int] = {
    "invalid_config": 2,
    "usage": 2,
    "not_found": 3,
    "unsupported_media": 4,
    "no_video_stream": 5,
    "corrupt_media": 6,
    "empty_video": 7,
    "fetch_failed": 8,
    "forbidden_address": 9,
    "source_too_large": 10,
    "decode_timeout": 11,
    "invalid_request": 12,
    "index_unavailable": 13,
    "data_dir_busy": 14,
}
EXIT_OTHER = 1
EXIT_INTERRUPTED = 130
LOCAL_TENANT = "local"
MAX_FRAME_INDEX = 1_000_000
DEBUG_ENV = "VIDEO_AI_DEBUG"
CLI_JOB_NAMESPACE = uuid.UUID("3d6f4b0e-9c1a-4f7e-8b2d-5a0c7e9f1d24")


def exit_code_for(code: str) -> int:
    return EXIT_CODES.get(code, EXIT_OTHER)


def _err(message: str, stream: TextIO | None = None) -> None:
    (stream or sys.stderr).write(f"video-ai: error: {message}\n")


def config_in_use(explicit: str | None) -> Path | None:
    """The file `load_settings` reads: --config, else $VIDEO_AI_CONFIG, else config/config.yml if present."""
    from video_ai.settings import DEFAULT_CONFIG_PATH

    if explicit:
        return Path(explicit)
    if os.environ.get("VIDEO_AI_CONFIG"):
        return Path(os.environ["VIDEO_AI_CONFIG"])
    return DEFAULT_CONFIG_PATH if DEFAULT_CONFIG_PATH.exists() else None


def _settings(args: argparse.Namespace) -> Settings:
    path = config_in_use(getattr(args, "config", None))
    settings = load_settings(path).development()
    if path is None:
        # Outside the repo root nothing says which config applies; say it rather than guess silently.
        sys.stderr.write(f"video-ai: note: no config file (no --config, $VIDEO_AI_CONFIG or ./config/config.yml): "
                         f"built-in defaults, data dir {settings.data_dir.resolve()}\n")
    args.config_used = path
    return settings


def _log_config(args: argparse.Namespace, settings: Settings) -> None:
    """With logging set up: the config file in use (INFO; its absence was a note already)."""
    path = getattr(args, "config_used", None)
    if path is not None:
        logger.info("config %s; data dir %s", path, settings.data_dir.resolve())


class _JobErrorReportedOnce(logging.Filter):
    """The CLI prints a failed job's error itself, as its one error line; the service's log line would repeat it."""

    def filter(self, record: logging.LogRecord) -> bool:
        return getattr(record, "error_code", None) is None


def _setup_logging(level: str) -> None:
    logging.basicConfig(level=getattr(logging, level), stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
    for handler in logging.getLogger().handlers:
        handler.addFilter(_JobErrorReportedOnce())
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one INFO line per request is noise on a CLI


# ---------------------------------------------------------------- analyze


def _source_from_arg(raw: str) -> Source:
    """SOURCE checked before any job exists, so a mistake leaves no failed job behind and names SOURCE."""
    from urllib.parse import urlsplit

    from video_ai.domain.errors import InvalidRequest

    if raw.startswith("s3://"):
        from video_ai.adapters.s3_store import parse_s3_uri

        try:
            return Source(s3=parse_s3_uri(raw))
        except VideoAIError as err:
            raise InvalidRequest(f"{raw}: {err.message}", field="source") from None
    if raw.startswith(("http://", "https://")):
        if not urlsplit(raw).hostname:
            raise InvalidRequest(f"{raw}: the URL has no host", field="source")
        return Source(url=raw)
    scheme = raw.split("://", 1)[0] if "://" in raw else ""
    if scheme.isalpha() and len(scheme) > 1:
        raise InvalidRequest(f"{raw}: {scheme}:// is not supported (a path, an http(s) URL or s3://bucket/key)",
                             field="source")
    path = Path(raw).expanduser()
    if not path.exists():
        from video_ai.domain.errors import VideoNotFound

        raise VideoNotFound(f"{raw}: no such file", field="source")
    if not path.is_file():
        from video_ai.domain.errors import UnsupportedMedia

        raise UnsupportedMedia(f"{raw}: is a directory, not a video file" if path.is_dir() else
                               f"{raw}: not a regular file", field="source")
    return Source(url=path.resolve().as_uri())


def _features_arg(text: str) -> list[str]:
    """`--features visual,labels`: names the analyzer registry knows, each once, in the order given."""
    from video_ai.analyzers import available_features

    names = [part.strip() for part in text.split(",") if part.strip()]
    unknown = [n for n in names if n not in available_features()]
    if not names or unknown:
        raise argparse.ArgumentTypeError(f"choose from {', '.join(available_features())} (comma-separated)"
                                         + (f"; not available: {', '.join(unknown)}" if unknown else ""))
    return list(dict.fromkeys(names))


def _shot_labels(result: Any) -> dict[int, str]:
    """Each shot's top three labels as one line's tail."""
    return {shot.shot: ", ".join(f"{lb.name} {lb.confidence:.2f}" for lb in shot.labels[:3])
            for shot in result.job.labels or [] if shot.labels}


def _sampling_from_args(args: argparse.Namespace, settings: Settings) -> Sampling:
    mode = "shots" if args.shots else "keyframes" if args.keyframes else settings.sampling.mode
    fps = args.fps if args.fps is not None else settings.sampling.fps
    max_frames = args.max_frames if args.max_frames is not None else settings.sampling.max_frames
    if args.fps is not None:
        mode = "fps"
    try:
        return Sampling(mode=mode, fps=fps, max_frames=max_frames)
    except ValueError as err:
        from video_ai.domain.errors import InvalidRequest

        raise InvalidRequest(str(err).splitlines()[-1].strip(), field="sampling") from None


class _Progress:
    """A one-line progress bar on stderr (only when stderr is a terminal or VIDEO_AI_PROGRESS=1)."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self._last = -1

    def __call__(self, fraction: float) -> None:
        if not self.enabled:
            return
        pct = int(fraction * 100)
        if pct == self._last:
            return
        self._last = pct
        filled = pct * 30 // 100
        sys.stderr.write(f"\ranalyzing [{'#' * filled}{'.' * (30 - filled)}] {pct:3d}%")
        if pct >= 100:
            sys.stderr.write("\n")
        sys.stderr.flush()


def _fmt_time(seconds: float) -> str:
    minutes, secs = divmod(seconds, 60)
    return f"{int(minutes):02d}:{secs:06.3f}"


def _stored_transcript(settings: Settings, job: Job) -> Transcript | None:
    """The transcript a speech job stored (GET /jobs/{id}/transcript's JSON), None without speech or one stored."""
    from video_ai import composition

    store = composition.build_artifacts(settings) if "speech" in job.features else None
    raw = store.get(job.job_id, "transcript.json") if store is not None else None
    return Transcript.model_validate_json(raw) if raw else None


def _summary(result: Any, transcript: Transcript | None = None) -> str:
    job: Job = result.job
    lines = [f"job {job.job_id}: {job.status.value}"]
    if job.reused_from is not None:
        # Same bytes, same sampling, same model: the vectors were copied, nothing was decoded or embedded.
        lines.append(f"reused: same content as job {job.reused_from}; its frames were copied, not decoded again")
    if job.video is not None:
        v = job.video
        rot = f", rotated {v.rotation}°" if v.rotation else ""
        fps = f"{v.fps:.3f} fps{' (variable)' if v.vfr else ''}" if v.fps else "fps unknown"
        lines.append(f"video: {v.container}/{v.codec} {v.width}x{v.height}{rot}, {fps}, {v.duration_s:.3f} s")
    if job.model is not None:
        lines.append(f"model: {job.model.name} {job.model.version} ({job.model.dim}-d)")
    lines.append(f"sampling: {job.sampling.mode}"
                 + (f" at {job.sampling.fps:g} fps" if job.sampling.mode == "fps" else "")
                 + (f", max {job.sampling.max_frames} frames" if job.sampling.max_frames else ""))
    lines.append(f"frames indexed: {job.frames_indexed}; shots: {job.shots_detected}")
    labels = _shot_labels(result)
    for shot in result.shots[:50]:
        tail = f"  {labels[shot.index]}" if shot.index in labels else ""
        lines.append(f"  shot {shot.index:3d}: {_fmt_time(shot.start_s)} - {_fmt_time(shot.end_s)}{tail}")
    if len(result.shots) > 50:
        lines.append(f"  … {len(result.shots) - 50} more shots")
    if transcript is not None:
        said = f"{len(transcript.segments)} segments" + (f", language {transcript.language}"
                                                         if transcript.language else "")
        lines.append(f"speech ({transcript.model}): {said}" + (f"; {transcript.reason}" if transcript.reason else ""))
        lines += [f"  {_fmt_time(s.start_s)} {s.text}" for s in transcript.segments[:50]]
        if len(transcript.segments) > 50:
            lines.append(f"  … {len(transcript.segments) - 50} more segments")
    t = job.timings
    lines.append(f"timings: fetch {t.fetch_s:.2f} s, decode {t.decode_s:.2f} s, embed {t.embed_s:.2f} s, "
                 f"index {t.index_s:.2f} s, total {t.total_s:.2f} s")
    if job.video is not None and t.total_s > 0 and job.reused_from is None:
        lines.append(f"realtime factor: {job.video.duration_s / t.total_s:.1f}x")
    return "\n".join(lines)


def cmd_analyze(args: argparse.Namespace) -> int:
    settings = _settings(args)
    _setup_logging(settings.logging.level)
    _log_config(args, settings)
    if args.sample:
        from video_ai.samples import make_demo_clip

        sample = settings.data_dir / "samples" / "demo.mp4"
        if not sample.exists():
            sample.parent.mkdir(parents=True, exist_ok=True)
            logger.info("generating the sample clip %s", sample)
            make_demo_clip(sample)
        args.source = str(sample)
    sampling = _sampling_from_args(args, settings)
    features = args.features or list(settings.analysis.features)
    source = _source_from_arg(args.source)
    if args.contact_sheet:
        sheet_dir = Path(args.contact_sheet).expanduser().resolve().parent
        if not sheet_dir.is_dir() or not os.access(sheet_dir, os.W_OK):
            from video_ai.domain.errors import InvalidRequest

            # Found out before the analysis, not after it.
            raise InvalidRequest(f"--contact-sheet {args.contact_sheet}: {sheet_dir} is not a writable directory",
                                 field="contact_sheet")
    with _hold_data_dir(settings, "video-ai analyze"):
        return _analyze_locked(args, settings, sampling, source, features)


def _hold_data_dir(settings: Settings, command: str) -> AbstractContextManager[object]:
    """The embedded index has one writer: hold the data dir (DataDirBusy names the holder) unless Qdrant is a server."""
    if settings.qdrant.backend != "edge":
        return nullcontext()
    from video_ai.data_dir_lock import DataDirLock

    return DataDirLock(settings.data_dir, command)


def _analyze_locked(args: argparse.Namespace, settings: Settings, sampling: Sampling, source: Source,
                    features: list[str]) -> int:
    from video_ai import composition
    from video_ai.adapters.local_jobs import FileJobRepository
    from video_ai.analyzers import MomentStore
    from video_ai.domain.models import MomentFilter
    from video_ai.services.analyze_video import AnalyzeDeps, analyze_video

    jobs = FileJobRepository(settings.data_dir)
    index = composition.build_index(settings)
    # Every feature that finds words (labels, speech, on-screen text) puts them in the text index.
    moment_index = composition.build_moment_index(settings) if set(features) - {"visual"} else None
    # The same source with the same sampling is the same local job: a re-run replaces its frames, never adds copies.
    key: dict[str, Any] = {"source": source.model_dump(mode="json"), "sampling": sampling.model_dump(mode="json")}
    if features != ["visual"]:
        key["features"] = sorted(features)
    job_id = str(uuid.uuid5(CLI_JOB_NAMESPACE, json.dumps(key, sort_keys=True)))
    previous = jobs.get(job_id)
    if previous is not None:
        stale_model = previous.model or ModelInfo(name=settings.model.name, version=settings.model.version,
                                                  dim=settings.model.dim)
        index.delete(stale_model, SearchFilter(tenant=LOCAL_TENANT, job_id=job_id))
        if moment_index is not None:
            moment_index.delete(MomentFilter(tenant=LOCAL_TENANT, job_id=job_id))
        jobs.delete(job_id)
    job = jobs.create(Job(job_id=job_id, tenant=LOCAL_TENANT, source=source, sampling=sampling,
                          features=features))
    thumbs: list[SampledFrame] = []
    try:
        embedder = composition.build_embedder(settings)
        deps = AnalyzeDeps(
            jobs=jobs,
            fetcher=composition.build_fetcher(settings, allow_local_files=True),
            frames=composition.build_frame_source(settings),
            embedder=embedder,
            index=index,
            notifier=None,
            workdir=composition.workdir(settings),
            batch_size=settings.model.batch_size,
            pipeline_queue=settings.scale.pipeline_queue,
            analyzers=composition.build_analyzers(
                settings, embedder, index,
                moments=MomentStore(moment_index, composition.build_text_embedder(settings)) if moment_index else None,
                thumbnails=composition.build_thumbnails(settings),
                artifacts=composition.build_artifacts(settings),
            ),
            audio=composition.build_audio_source(),
        )
        progress = _Progress(sys.stderr.isatty() or os.environ.get("VIDEO_AI_PROGRESS") == "1")
        result = analyze_video(
            job.job_id,
            deps,
            on_progress=progress,
            on_frame=thumbs.append if args.contact_sheet else None,
            thumbnail_width=320 if args.contact_sheet else None,
        )
    finally:
        index.close()
        if moment_index is not None:
            moment_index.close()
    if args.contact_sheet and result.job.status is JobStatus.SUCCEEDED:
        from video_ai.contact_sheet import render_contact_sheet

        render_contact_sheet(thumbs, Path(args.contact_sheet), title=f"{args.source} — job {job.job_id}")
        sys.stderr.write(f"contact sheet: {args.contact_sheet}\n")
    if args.json:
        record = result.job.public()
        record["shots"] = [s.model_dump(mode="json") for s in result.shots]
        record["frames"] = [f.model_dump(mode="json") for f in result.frames]
        if result.job.labels is not None:
            record["labels"] = [s.model_dump(mode="json") for s in result.job.labels]
        transcript = _stored_transcript(settings, result.job)
        if transcript is not None:
            record["transcript"] = transcript.model_dump(mode="json")
        sys.stdout.write(json.dumps(record, indent=2) + "\n")
    else:
        sys.stdout.write(_summary(result, _stored_transcript(settings, result.job)) + "\n")
    if result.job.error is not None:
        _err(f"{result.job.error.code}: {result.job.error.message}")  # with --json too: stdout is the record only
        return exit_code_for(result.job.error.code)
    return 0


# ---------------------------------------------------------------- search


def cmd_search(args: argparse.Namespace) -> int:
    from video_ai.domain.models import SearchHit

    settings = _settings(args)
    _setup_logging(settings.logging.level)
    _log_config(args, settings)
    owner = None
    if settings.qdrant.backend == "edge":
        from video_ai.data_dir_lock import current_owner

        owner = current_owner(settings.data_dir)
    if args.text is not None:
        return _search_text(args, settings, None if owner is None else (owner.api, owner.api_key))
    hits: list[SearchHit]
    if owner is not None and owner.api and owner.api_key:
        hits = _search_through_serve(args, owner.api, owner.api_key)
    else:
        with _hold_data_dir(settings, "video-ai search"):
            hits = _search_data_dir(args, settings)
    if args.json:
        sys.stdout.write(json.dumps([h.model_dump(mode="json") for h in hits], indent=2) + "\n")
    else:
        if not hits:
            sys.stdout.write("no matching frames\n")
        for rank, hit in enumerate(hits, start=1):
            number = "?" if hit.index is None else str(hit.index)
            sys.stdout.write(f"{rank:3d}. {hit.score:.4f}  job {hit.job_id}  frame {number} (t={_fmt_time(hit.pts_s)}, "
                             f"video frame {hit.frame_number})  shot {hit.shot}\n")
    return 0


def _search_text(args: argparse.Namespace, settings: Settings, serve: tuple[str | None, str | None] | None) -> int:
    """`--text [--image]`: moments whose words match (those whose shots look like the image first), from the data
    dir's indexes (or through a running serve's API)."""
    from video_ai.domain.models import MomentHit

    text = args.text.strip()
    if not text or len(text) > 1000:
        raise VideoAIError("--text takes 1 to 1000 characters of words", field="text")
    image = _read_image(Path(args.image)) if args.image else None  # one-line error for a missing or bad file
    hits: list[MomentHit]
    if serve is not None and serve[0] and serve[1]:
        import httpx

        body = {k: v for k, v in {"text": text, "top_k": args.top_k, "job_id": args.job_id, "start_s": args.start_s,
                                  "end_s": args.end_s}.items() if v is not None}
        if args.image:
            body["image_base64"] = base64.b64encode(Path(args.image).read_bytes()).decode()
        try:
            response = httpx.post(f"{serve[0]}/search", json=body, headers={"x-api-key": serve[1]}, timeout=60.0)
        except httpx.HTTPError as err:
            raise VideoAIError(f"the running `video-ai serve` at {serve[0]} did not answer: {err}") from None
        if response.status_code != 200:
            error = _api_error(response)
            raised = VideoAIError(f"{error.get('message', response.text[:200])} (from serve at {serve[0]})",
                                  field=error.get("field"))
            raised.code = str(error.get("code", "internal_error"))
            raise raised
        hits = [MomentHit.model_validate(item) for item in response.json()["items"]]
    else:
        with _hold_data_dir(settings, "video-ai search"):
            hits = _search_words_in_data_dir(args, settings, text, image)
    if args.json:
        sys.stdout.write(json.dumps([h.model_dump(mode="json") for h in hits], indent=2) + "\n")
        return 0
    if not hits:
        sys.stdout.write("no matching moments\n")
    for rank, hit in enumerate(hits, start=1):
        words = ", ".join(hit.text.split(", ")[:3])
        why = f"  (matched: {', '.join(hit.matched)})" if hit.matched else ""
        sys.stdout.write(f"{rank:3d}. {hit.score:.4f}  job {hit.job_id}  {hit.kind} {_fmt_time(hit.start_s)} - "
                         f"{_fmt_time(hit.end_s)}  shot {hit.shot}  {words}{why}\n")
    return 0


def _search_words_in_data_dir(args: argparse.Namespace, settings: Settings, text: str, image: Any) -> list[Any]:
    from video_ai import composition
    from video_ai.services.search_frames import SearchDeps
    from video_ai.services.search_moments import TextQuery, TextSearchDeps, search_words

    tenant = args.tenant or LOCAL_TENANT
    index = composition.build_moment_index(settings)
    frames = composition.build_index(settings) if image is not None else None
    try:
        model = ModelInfo(name=settings.model.name, version=settings.model.version, dim=settings.model.dim)
        return search_words(
            TextQuery(tenant=tenant, text=text, top_k=args.top_k, job_id=args.job_id, start_s=args.start_s,
                      end_s=args.end_s),
            TextSearchDeps(index=index, embedder=lambda: composition.build_text_embedder(settings)),
            image,
            None if frames is None else SearchDeps(index=frames, model=model,
                                                   embedder=lambda: composition.build_embedder(settings)),
        )
    finally:
        index.close()
        if frames is not None:
            frames.close()


def _search_data_dir(args: argparse.Namespace, settings: Settings) -> list[Any]:
    """Search the embedded index under the data dir as `--tenant` (default: the CLI's own tenant)."""
    from video_ai import composition
    from video_ai.adapters.local_jobs import FileJobRepository
    from video_ai.domain.errors import NotFound
    from video_ai.services.search_frames import SearchDeps, SearchQuery, search_frames

    tenant = args.tenant or LOCAL_TENANT
    image = _read_image(Path(args.image)) if args.image else None
    model = ModelInfo(name=settings.model.name, version=settings.model.version, dim=settings.model.dim)
    # The CLI's own jobs are on disk: an unknown job id is named as such. Other tenants' records live elsewhere
    # (serve's are in moto's memory), so for them the index alone answers.
    jobs = FileJobRepository(settings.data_dir) if tenant == LOCAL_TENANT else None
    index_store = composition.build_index(settings)
    try:
        return search_frames(
            SearchQuery(tenant=tenant, image=image, frame=args.frame, top_k=args.top_k, job_id=args.job_id,
                        start_s=args.start_s, end_s=args.end_s, collapse=args.collapse),
            SearchDeps(index=index_store, model=model, embedder=lambda: composition.build_embedder(settings),
                       jobs=jobs),
        )
    except NotFound as err:
        if tenant == LOCAL_TENANT and args.frame is not None:
            err.message += (f"; `video-ai analyze` jobs are tenant {LOCAL_TENANT}, jobs submitted to `video-ai serve` "
                            f"are tenant dev (--tenant dev, or search while serve runs)")
        raise
    finally:
        index_store.close()


def _search_through_serve(args: argparse.Namespace, api: str, api_key: str) -> list[Any]:
    """The data dir's index belongs to a running `serve`: ask its API (as its development tenant) instead."""
    import httpx

    from video_ai.data_dir_lock import DataDirBusy
    from video_ai.domain.models import SearchHit

    if args.tenant not in (None, "dev"):
        raise DataDirBusy(f"--tenant {args.tenant}: the data dir is held by `video-ai serve` ({api}), which searches "
                          f"as tenant dev (its development key); stop it to search tenant {args.tenant}",
                          field="tenant")
    body: dict[str, Any] = {"top_k": args.top_k, "job_id": args.job_id, "start_s": args.start_s,
                            "end_s": args.end_s, "collapse": args.collapse}
    if args.image:
        _read_image(Path(args.image))  # the same one-line error for a missing or undecodable file
        body["image_base64"] = base64.b64encode(Path(args.image).read_bytes()).decode()
    else:
        body["frame"] = {"job_id": args.frame.job_id, "index": args.frame.index}
    sys.stderr.write(f"video-ai: the data dir is held by `video-ai serve`: searching through its API at {api} "
                     f"(tenant dev)\n")
    try:
        response = httpx.post(f"{api}/search", json={k: v for k, v in body.items() if v is not None},
                              headers={"x-api-key": api_key}, timeout=60.0)
    except httpx.HTTPError as err:
        raise VideoAIError(f"the running `video-ai serve` at {api} did not answer: {err}") from None
    if response.status_code != 200:
        error = _api_error(response)
        hint = (f"; `video-ai analyze` jobs (tenant {LOCAL_TENANT}) are searchable once serve stops"
                if response.status_code == 404 and args.frame is not None else "")
        raised = VideoAIError(f"{error.get('message', response.text[:200])} (from serve at {api}){hint}",
                              field=error.get("field"))
        raised.code = str(error.get("code", "internal_error"))
        raise raised
    return [SearchHit.model_validate(item) for item in response.json()["items"]]


def _api_error(response: Any) -> dict[str, Any]:
    try:
        error = response.json()["error"]
    except (ValueError, KeyError, TypeError):
        return {}
    return error if isinstance(error, dict) else {}


def _read_image(path: Path) -> Any:
    from video_ai.domain.errors import InvalidRequest, VideoNotFound
    from video_ai.images import decode_image

    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise VideoNotFound(f"{path}: no such file", field="image") from None
    except IsADirectoryError:
        raise InvalidRequest(f"{path}: is a directory, not an image", field="image") from None
    except OSError as err:
        raise InvalidRequest(f"{path}: cannot read: {err.strerror}", field="image") from None
    return decode_image(base64.b64encode(data).decode(), field="image")


# ---------------------------------------------------------------- model, config, serve


def cmd_model_build(args: argparse.Namespace) -> int:
    from video_ai.model import build_model, ensure_model

    if args.ocr:
        from video_ai.model import ocr_model_dir
        from video_ai.model.ocr_int8 import build_int8, ensure_int8

        paths = build_int8(Path(args.out)) if args.out else ensure_int8(ocr_model_dir(_settings(args)))
        sys.stdout.write("".join(f"{path}\n" for path in paths.values()))
        return 0
    if args.out:
        path = build_model(Path(args.out), include_logits=args.logits)
    else:
        settings = _settings(args)
        path = ensure_model(settings.model, settings.data_dir)
    sys.stdout.write(f"{path}\n")
    return 0


def cmd_config_check(args: argparse.Namespace) -> int:
    path = Path(args.path) if args.path else None
    settings = load_settings(path)
    sys.stdout.write(f"{path or 'config'}: ok (profile {settings.profile}, qdrant backend {settings.qdrant.backend})\n")
    return 0


def cmd_config_schema(args: argparse.Namespace) -> int:
    from video_ai.settings import json_schema

    text = json.dumps(json_schema(), indent=2, sort_keys=True) + "\n"
    if args.out:
        Path(args.out).write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from video_ai.local.serve import serve

    if args.workers is not None:
        os.environ["VIDEO_AI_SERVE_WORKERS"] = str(args.workers)
    return serve(host=args.host, port=args.port, config_path=Path(args.config) if args.config else None,
                 allow_remote=True if args.allow_remote else None)


# ---------------------------------------------------------------- parser


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        _err(message)
        raise SystemExit(EXIT_CODES["usage"])


def _positive_float(raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {raw!r}") from None
    if not value > 0 or value != value or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a number above 0, got {raw!r}")
    return value


def _int_in(low: int, high: int) -> Callable[[str], int]:
    def parse(raw: str) -> int:
        try:
            value = int(raw)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {raw!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"expected {low} to {high}, got {value}")
        return value

    parse.__name__ = "whole number"
    return parse


def _non_negative_float(raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {raw!r}") from None
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"expected a number of seconds from 0, got {raw!r}")
    return value


def _frame_ref(raw: str) -> Any:
    from video_ai.services.search_frames import FrameRef

    job_id, _, index = raw.rpartition(":")
    if not job_id or not index.isascii() or not index.isdigit():
        raise argparse.ArgumentTypeError(f"expected JOB_ID:INDEX (a job id and a sampled frame's index, e.g. "
                                         f"3f2a…:12), got {raw!r}")
    if int(index) > MAX_FRAME_INDEX:  # the API's bound too: the embedded index overflows on 2**64
        raise argparse.ArgumentTypeError(f"INDEX is at most {MAX_FRAME_INDEX}, got {index}")
    return FrameRef(job_id=job_id, index=int(index))


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="video-ai", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    def with_config(p: argparse.ArgumentParser) -> None:
        p.add_argument("--config", metavar="PATH",
                       help="config YAML (default: $VIDEO_AI_CONFIG, else ./config/config.yml if present, else "
                            "built-in defaults)")

    analyze = sub.add_parser("analyze", help="analyze a video: sample frames, embed, index")
    analyze.add_argument("source", nargs="?", metavar="SOURCE", help="path, http(s) URL or s3://bucket/key")
    analyze.add_argument("--sample", action="store_true", help="generate and analyze the built-in demo clip")
    mode = analyze.add_mutually_exclusive_group()
    mode.add_argument("--fps", type=_positive_float, metavar="F",
                      help="sample F frames per second (default: sampling.fps in the config, 1.0)")
    mode.add_argument("--shots", action="store_true", help="one frame per detected shot")
    mode.add_argument("--keyframes", action="store_true", help="keyframes only (fastest)")
    analyze.add_argument("--max-frames", type=_int_in(1, 1_000_000), metavar="N",
                         help="stop after N sampled frames (default: sampling.max_frames in the config, none)")
    analyze.add_argument("--features", type=_features_arg, metavar="LIST",
                         help="what to find, comma-separated: visual (frame vectors), labels (ImageNet classes per "
                         "shot), speech (transcript), ocr (on-screen text); default from config: visual,labels")
    analyze.add_argument("--json", action="store_true", help="print the job record, shots and frames as JSON")
    analyze.add_argument("--contact-sheet", metavar="PNG", help="write a grid of the sampled frames")
    with_config(analyze)
    analyze.set_defaults(func=cmd_analyze, usage_parser=analyze)

    search = sub.add_parser("search", help="find the nearest frames, or moments by words",
                            description="Find the frames nearest to an image or to a sampled frame. While `video-ai "
                                        "serve` holds the data dir, the search goes through its API (tenant dev).")
    what = search.add_mutually_exclusive_group()
    what.add_argument("--image", metavar="PNG",
                      help="an image (PNG or JPEG); with --text, the matching moments whose shots look like it first")
    what.add_argument("--frame", metavar="JOB_ID:INDEX", type=_frame_ref,
                      help="sampled frame INDEX (0-based, the `index` of GET /jobs/{id}/frames) of an analyzed job")
    search.add_argument("--text", metavar="WORDS",
                        help="words: moments (shot labels, widened by WordNet) whose words match, best first; "
                        "combines with --image")
    search.add_argument("--top-k", type=_int_in(1, 100), default=10, metavar="K",
                        help="how many hits, 1-100 (default: 10)")
    search.add_argument("--job-id", help="only frames of this job (default: all your jobs)")
    search.add_argument("--start-s", type=_non_negative_float, metavar="S",
                        help="only frames at or after S seconds (default: from the start)")
    search.add_argument("--end-s", type=_non_negative_float, metavar="S",
                        help="only frames at or before S seconds (default: to the end)")
    search.add_argument("--collapse", choices=["shot"], help="at most one hit per shot (default: every frame)")
    search.add_argument("--tenant", help=f"whose vectors to search (default: {LOCAL_TENANT}, the tenant of "
                                         f"`video-ai analyze`; jobs submitted to `video-ai serve` are tenant dev)")
    search.add_argument("--json", action="store_true", help="print the hits as a JSON array")
    with_config(search)
    search.set_defaults(func=cmd_search, usage_parser=search)

    serve = sub.add_parser("serve", help="run the whole stack on this machine")
    serve.add_argument("--host", default="127.0.0.1",
                       help="address to listen on (default: 127.0.0.1; others need --allow-remote)")
    serve.add_argument("--port", type=_int_in(0, 65535), default=8000,
                       help="API port; 0 picks a free port and the printed URL shows it (default: 8000)")
    serve.add_argument("--workers", type=_int_in(1, 16), metavar="N",
                       help="worker pollers running jobs at once, 1-16 (default: $VIDEO_AI_SERVE_WORKERS, else 2)")
    serve.add_argument("--allow-remote", action="store_true",
                       help="bind a non-loopback --host (inside a container only: plain http, development key)")
    with_config(serve)
    serve.set_defaults(func=cmd_serve, usage_parser=serve)

    model = sub.add_parser("model", help="model tools")
    model_sub = model.add_subparsers(dest="model_command", required=True, parser_class=_Parser)
    build = model_sub.add_parser("build", help="build the ONNX model (cached once per user)")
    build.add_argument("--out", metavar="PATH", help="write to this path (default: the model cache, see README)")
    build.add_argument("--logits", action="store_true", help="keep the ImageNet classifier output")
    build.add_argument("--ocr", action="store_true",
                       help="build the int8 OCR models instead (--out: a directory; default: analysis.ocr.model_dir, "
                       "else the model cache's ocr/)")
    with_config(build)
    build.set_defaults(func=cmd_model_build, usage_parser=build)

    config = sub.add_parser("config", help="configuration tools")
    config_sub = config.add_subparsers(dest="config_command", required=True, parser_class=_Parser)
    check = config_sub.add_parser("check", help="validate a config file")
    check.add_argument("path", nargs="?", metavar="PATH",
                       help="the file (default: $VIDEO_AI_CONFIG, else ./config/config.yml if present)")
    check.set_defaults(func=cmd_config_check, usage_parser=check)
    schema = config_sub.add_parser("schema", help="print the JSON schema of the config")
    schema.add_argument("--out", metavar="PATH", help="write it to PATH (default: stdout)")
    schema.set_defaults(func=cmd_config_schema, usage_parser=schema)
    return parser


def _check_usage(args: argparse.Namespace) -> None:
    """Mistakes argparse cannot see alone: exit 2 with the usage line, like its own errors."""
    usage: argparse.ArgumentParser = args.usage_parser
    if args.command == "analyze":
        if not args.source and not args.sample:
            usage.error("give a SOURCE (path, http(s) URL or s3://bucket/key) or --sample")
        if args.source and args.sample:
            usage.error("give a SOURCE or --sample, not both")
    if args.command == "search":
        if args.text is None and args.image is None and args.frame is None:
            usage.error("give one of --image, --frame or --text (--text combines with --image)")
        if args.text is not None and args.frame is not None:
            usage.error("--text combines with --image, not with --frame")
        if args.start_s is not None and args.end_s is not None and args.end_s < args.start_s:
            usage.error(f"--end-s {args.end_s:g} is before --start-s {args.start_s:g}")


def _failure_json(err: VideoAIError) -> str:
    """Every `--json` failure has job_id (null when no job was created), status "failed" and error."""
    return json.dumps({"job_id": None, "status": "failed", "error": err.to_dict()})


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _check_usage(args)
    try:
        code: int = args.func(args)
        return code
    except ConfigError as err:
        if getattr(args, "json", False):
            sys.stdout.write(_failure_json(err) + "\n")
        _err(err.message)
        return EXIT_CODES["invalid_config"]
    except VideoAIError as err:
        if getattr(args, "json", False):
            sys.stdout.write(_failure_json(err) + "\n")
        _err(f"{err.code}: {err.message}")
        return exit_code_for(err.code)
    except KeyboardInterrupt:
        _err("interrupted")
        return EXIT_INTERRUPTED
    except Exception as err:
        # A bug or an environment problem (a read-only output path, a missing template.yaml): still one line; the
        # traceback on request, for the report.
        text = " ".join(str(err).split())
        failure = VideoAIError(f"{type(err).__name__}: {text}" if text else type(err).__name__)
        if getattr(args, "json", False):
            sys.stdout.write(_failure_json(failure) + "\n")
        _err(f"internal_error: {failure.message}"
             + ("" if os.environ.get(DEBUG_ENV) else f" (set {DEBUG_ENV}=1 for the traceback)"))
        if os.environ.get(DEBUG_ENV):
            traceback.print_exc(file=sys.stderr)
        return EXIT_OTHER


if __name__ == "__main__":
    sys.exit(main())
