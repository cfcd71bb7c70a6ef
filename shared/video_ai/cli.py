"""`video-ai` command: analyze, search, serve, model build, config check."""

from __future__ import annotations

import argparse
import base64
import json
import logging
import os
import sys
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn, TextIO

from video_ai.domain.errors import ConfigError, VideoAIError
from video_ai.domain.models import Job, JobStatus, ModelInfo, SampledFrame, Sampling, SearchFilter, Source
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
}
EXIT_OTHER = 1
CLI_JOB_NAMESPACE = uuid.UUID("3d6f4b0e-9c1a-4f7e-8b2d-5a0c7e9f1d24")


def exit_code_for(code: str) -> int:
    return EXIT_CODES.get(code, EXIT_OTHER)


def _err(message: str, stream: TextIO | None = None) -> None:
    (stream or sys.stderr).write(f"video-ai: error: {message}\n")


def _settings(args: argparse.Namespace) -> Settings:
    settings = load_settings(Path(args.config) if args.config else None)
    return settings.development()


def _setup_logging(level: str) -> None:
    logging.basicConfig(level=getattr(logging, level), stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")


# ---------------------------------------------------------------- analyze


def _source_from_arg(raw: str) -> Source:
    if raw.startswith("s3://"):
        from video_ai.adapters.s3_store import parse_s3_uri

        return Source(s3=parse_s3_uri(raw))
    if raw.startswith(("http://", "https://")):
        return Source(url=raw)
    path = Path(raw).expanduser()
    if not path.exists():
        from video_ai.domain.errors import VideoNotFound

        raise VideoNotFound(f"{raw}: no such file")
    return Source(url=path.resolve().as_uri())


def _sampling_from_args(args: argparse.Namespace, settings: Settings) -> Sampling:
    mode = "shots" if args.shots else "keyframes" if args.keyframes else settings.sampling.mode
    fps = args.fps if args.fps is not None else settings.sampling.fps
    max_frames = args.max_frames if args.max_frames is not None else settings.sampling.max_frames
    if args.fps is not None:
        mode = "fps"
    try:
        return Sampling(mode=mode, fps=fps, max_frames=max_frames)
    except ValueError as err:
        raise VideoAIError(str(err).splitlines()[-1].strip(), field="sampling") from None


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


def _summary(result: Any) -> str:
    job: Job = result.job
    lines = [f"job {job.job_id}: {job.status.value}"]
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
    for shot in result.shots[:50]:
        lines.append(f"  shot {shot.index:3d}: {_fmt_time(shot.start_s)} - {_fmt_time(shot.end_s)}")
    if len(result.shots) > 50:
        lines.append(f"  … {len(result.shots) - 50} more shots")
    t = job.timings
    lines.append(f"timings: fetch {t.fetch_s:.2f} s, decode {t.decode_s:.2f} s, embed {t.embed_s:.2f} s, "
                 f"index {t.index_s:.2f} s, total {t.total_s:.2f} s")
    if job.video is not None and t.total_s > 0:
        lines.append(f"realtime factor: {job.video.duration_s / t.total_s:.1f}x")
    if job.error is not None:
        lines.append(f"error: {job.error.code}: {job.error.message}")
    return "\n".join(lines)


def cmd_analyze(args: argparse.Namespace) -> int:
    from video_ai import composition
    from video_ai.adapters.local_jobs import FileJobRepository
    from video_ai.services.analyze_video import AnalyzeDeps, analyze_video

    settings = _settings(args)
    _setup_logging(settings.logging.level)
    if args.sample:
        from video_ai.samples import make_demo_clip

        sample = settings.data_dir / "samples" / "demo.mp4"
        if not sample.exists():
            sample.parent.mkdir(parents=True, exist_ok=True)
            logger.info("generating the sample clip %s", sample)
            make_demo_clip(sample)
        args.source = str(sample)
    if not args.source:
        raise VideoAIError("give a SOURCE (path, http(s) URL or s3://bucket/key) or --sample", field="SOURCE")
    sampling = _sampling_from_args(args, settings)
    source = _source_from_arg(args.source)
    jobs = FileJobRepository(settings.data_dir)
    index = composition.build_index(settings)
    # The same source with the same sampling is the same local job: a re-run replaces its frames, never adds copies.
    job_id = str(uuid.uuid5(CLI_JOB_NAMESPACE, json.dumps(
        {"source": source.model_dump(mode="json"), "sampling": sampling.model_dump(mode="json")}, sort_keys=True)))
    previous = jobs.get(job_id)
    if previous is not None:
        stale_model = previous.model or ModelInfo(name=settings.model.name, version=settings.model.version,
                                                  dim=settings.model.dim)
        index.delete(stale_model, SearchFilter(tenant="local", job_id=job_id))
        jobs.delete(job_id)
    job = jobs.create(Job(job_id=job_id, tenant="local", source=source, sampling=sampling))
    thumbs: list[SampledFrame] = []
    try:
        deps = AnalyzeDeps(
            jobs=jobs,
            fetcher=composition.build_fetcher(settings, allow_local_files=True),
            frames=composition.build_frame_source(settings),
            embedder=composition.build_embedder(settings),
            index=index,
            notifier=None,
            workdir=composition.workdir(settings),
            batch_size=settings.model.batch_size,
            pipeline_queue=settings.scale.pipeline_queue,
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
    if args.contact_sheet and result.job.status is JobStatus.SUCCEEDED:
        from video_ai.contact_sheet import render_contact_sheet

        render_contact_sheet(thumbs, Path(args.contact_sheet), title=f"{args.source} — job {job.job_id}")
        sys.stderr.write(f"contact sheet: {args.contact_sheet}\n")
    if args.json:
        record = result.job.public()
        record["shots"] = [s.model_dump(mode="json") for s in result.shots]
        record["frames"] = [f.model_dump(mode="json") for f in result.frames]
        sys.stdout.write(json.dumps(record, indent=2) + "\n")
    else:
        sys.stdout.write(_summary(result) + "\n")
    if result.job.error is not None:
        if not args.json:
            _err(f"{result.job.error.code}: {result.job.error.message}")
        return exit_code_for(result.job.error.code)
    return 0


# ---------------------------------------------------------------- search


def cmd_search(args: argparse.Namespace) -> int:
    from video_ai import composition
    from video_ai.services.search_frames import FrameRef, SearchDeps, SearchQuery, search_frames

    settings = _settings(args)
    _setup_logging(settings.logging.level)
    image = None
    frame = None
    if args.image:
        image = _read_image(Path(args.image))
    else:
        job_id, _, index = args.frame.rpartition(":")
        if not job_id or not index.isdigit():
            raise VideoAIError("--frame takes JOB:INDEX, e.g. 3f2a…:12", field="frame")
        frame = FrameRef(job_id=job_id, index=int(index))
    model = ModelInfo(name=settings.model.name, version=settings.model.version, dim=settings.model.dim)
    index_store = composition.build_index(settings)
    try:
        hits = search_frames(
            SearchQuery(tenant="local", image=image, frame=frame, top_k=args.top_k, job_id=args.job_id,
                        start_s=args.start_s, end_s=args.end_s, collapse=args.collapse),
            SearchDeps(index=index_store, model=model, embedder=lambda: composition.build_embedder(settings)),
        )
    finally:
        index_store.close()
    if args.json:
        sys.stdout.write(json.dumps([h.model_dump(mode="json") for h in hits], indent=2) + "\n")
    else:
        if not hits:
            sys.stdout.write("no matching frames\n")
        for rank, hit in enumerate(hits, start=1):
            sys.stdout.write(f"{rank:3d}. {hit.score:.4f}  job {hit.job_id}  t={_fmt_time(hit.pts_s)}  "
                             f"frame {hit.frame_number}  shot {hit.shot}\n")
    return 0


def _read_image(path: Path) -> Any:
    from video_ai.images import decode_image

    try:
        data = path.read_bytes()
    except FileNotFoundError:
        from video_ai.domain.errors import VideoNotFound

        raise VideoNotFound(f"{path}: no such file", field="image") from None
    return decode_image(base64.b64encode(data).decode(), field="image")


# ---------------------------------------------------------------- model, config, serve


def cmd_model_build(args: argparse.Namespace) -> int:
    from video_ai.model import build_model, ensure_model

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
        if not 1 <= args.workers <= 16:
            raise VideoAIError("--workers takes 1 to 16", field="workers")
        os.environ["VIDEO_AI_SERVE_WORKERS"] = str(args.workers)
    return serve(host=args.host, port=args.port, config_path=Path(args.config) if args.config else None,
                 allow_remote=True if args.allow_remote else None)


# ---------------------------------------------------------------- parser


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        _err(message)
        raise SystemExit(EXIT_CODES["usage"])


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="video-ai", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    def with_config(p: argparse.ArgumentParser) -> None:
        p.add_argument("--config", help="config YAML (default: $VIDEO_AI_CONFIG or config/config.yml)")

    analyze = sub.add_parser("analyze", help="analyze a video: sample frames, embed, index")
    analyze.add_argument("source", nargs="?", help="path, http(s) URL or s3://bucket/key")
    analyze.add_argument("--sample", action="store_true", help="generate and analyze the built-in demo clip")
    mode = analyze.add_mutually_exclusive_group()
    mode.add_argument("--fps", type=float, help="sample F frames per second (default from config: 1.0)")
    mode.add_argument("--shots", action="store_true", help="one frame per detected shot")
    mode.add_argument("--keyframes", action="store_true", help="keyframes only (fastest)")
    analyze.add_argument("--max-frames", type=int)
    analyze.add_argument("--json", action="store_true", help="print the job record, shots and frames as JSON")
    analyze.add_argument("--contact-sheet", metavar="PNG", help="write a grid of the sampled frames")
    with_config(analyze)
    analyze.set_defaults(func=cmd_analyze)

    search = sub.add_parser("search", help="find the nearest frames")
    what = search.add_mutually_exclusive_group(required=True)
    what.add_argument("--image", metavar="PNG", help="an image (PNG or JPEG)")
    what.add_argument("--frame", metavar="JOB:INDEX", help="a sampled frame of an analyzed job")
    search.add_argument("--top-k", type=int, default=10)
    search.add_argument("--job-id")
    search.add_argument("--start-s", type=float)
    search.add_argument("--end-s", type=float)
    search.add_argument("--collapse", choices=["shot"])
    search.add_argument("--json", action="store_true")
    with_config(search)
    search.set_defaults(func=cmd_search)

    serve = sub.add_parser("serve", help="run the whole stack on this machine")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000, help="0 picks a free port (the printed URL shows it)")
    serve.add_argument("--workers", type=int, help="worker pollers running jobs at once (default 2)")
    serve.add_argument("--allow-remote", action="store_true",
                       help="bind a non-loopback --host (inside a container only: plain http, development key)")
    with_config(serve)
    serve.set_defaults(func=cmd_serve)

    model = sub.add_parser("model", help="model tools")
    model_sub = model.add_subparsers(dest="model_command", required=True, parser_class=_Parser)
    build = model_sub.add_parser("build", help="build the ONNX model (cached under the data dir)")
    build.add_argument("--out", help="write to this path instead of the cache")
    build.add_argument("--logits", action="store_true", help="keep the ImageNet classifier output")
    with_config(build)
    build.set_defaults(func=cmd_model_build)

    config = sub.add_parser("config", help="configuration tools")
    config_sub = config.add_subparsers(dest="config_command", required=True, parser_class=_Parser)
    check = config_sub.add_parser("check", help="validate a config file")
    check.add_argument("path", nargs="?")
    check.set_defaults(func=cmd_config_check)
    schema = config_sub.add_parser("schema", help="print the JSON schema of the config")
    schema.add_argument("--out")
    schema.set_defaults(func=cmd_config_schema)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code: int = args.func(args)
        return code
    except ConfigError as err:
        _err(err.message)
        return EXIT_CODES["invalid_config"]
    except VideoAIError as err:
        if getattr(args, "json", False):
            sys.stdout.write(json.dumps({"status": "failed", "error": err.to_dict()}) + "\n")
        _err(f"{err.code}: {err.message}")
        return exit_code_for(err.code)
    except KeyboardInterrupt:
        _err("interrupted")
        return 130


if __name__ == "__main__":
    sys.exit(main())
