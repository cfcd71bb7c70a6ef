"""analyze vs a bare decode pass vs a naive pipeline, on the same files, in the same run (issue 2 / issue 8 items 1, 3).

    python benchmarks/bench_analyze.py [--quick] [--clip PATH ...] [--mode fps|shots ...] [--repeat N]
                                       [--config LABEL:threads=1,batch_size=8,pipeline_queue=4 ...] [--no-naive]

Default matrix: `fps` and `shots` modes on 720p H.264, 1080p H.264, VP8 and VP9. Clips: ../shared/clips when present
(cuts_720p_60s.mp4, big_buck_bunny_0_30.webm), the others transcoded from the 720p one (30 s) once and cached in
--clips-dir. --quick: fps mode on the shared 720p clip (else a generated 10 s 640x360 one), one round (< 60 s).

Per clip and mode it prints wall time, process CPU time (all threads) and realtime factor (video s / wall s) of:
  bare      one PyAV pass decoding every frame with threads, nothing converted
  analyze   analyze_video end to end (decode+shots in a thread, embed, upsert into qdrant-edge), once per --config
  naive     OpenCV read() of every frame, one session.run per sampled frame, one upsert per point (fps mode only)
and the ratios the issues set: analyze / bare >= 0.8, analyze / naive >= 2.5. Rounds are interleaved, best of N.
Embedding (item 3): the embedder's throughput inside analyze (overlapping the decode) and alone on the same batches,
each against bare `session.run` on those batches' tensors (>= 0.9).
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

SHARED_CLIPS = Path(__file__).resolve().parents[2] / "shared" / "clips"


def cpu_s() -> float:
    t = os.times()
    return t.user + t.system


def timed(fn: Callable[[], Any]) -> tuple[float, float, Any]:
    """(wall s, process CPU s, result) of one call."""
    c0, w0 = cpu_s(), time.perf_counter()
    out = fn()
    return time.perf_counter() - w0, cpu_s() - c0, out


def bare_decode(path: Path) -> int:
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        return sum(1 for _ in container.decode(stream))


def naive(path: Path, model_path: Path, data_dir: Path, fps: float) -> tuple[float, float]:
    """(wall s, CPU s) of the pass; session and index are built before the clock starts, as for analyze."""
    import cv2
    import onnxruntime as ort

    from video_ai.adapters.qdrant_edge_index import QdrantEdgeIndex
    from video_ai.domain.models import FramePoint, ModelInfo

    session = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    input_name = session.get_inputs()[0].name
    model = ModelInfo(name="naive", version="1", dim=1280)
    index = QdrantEdgeIndex(data_dir)
    index.ensure_collection(model)
    c0, w0 = cpu_s(), time.perf_counter()
    capture = cv2.VideoCapture(str(path))
    native_fps = capture.get(cv2.CAP_PROP_FPS) or 25.0
    step = max(1, round(native_fps / fps))
    number = kept = 0
    job = str(uuid.uuid4())
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        if number % step == 0:
            rgb = cv2.cvtColor(cv2.resize(frame, (224, 224), interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2RGB)
            x = ((rgb.astype(np.float32) - 127.0) / 128.0).transpose(2, 0, 1)[None]
            vector = session.run(None, {input_name: x})[0][0]
            index.upsert(model, [FramePoint(id=str(uuid.uuid4()), vector=vector,
                                            payload={"job_id": job, "tenant": "b", "frame_number": number,
                                                     "pts_s": number / native_fps, "shot": 0, "index": 0})])
            kept += 1
        number += 1
    capture.release()
    wall, cpu = time.perf_counter() - w0, cpu_s() - c0
    index.close()
    assert kept > 0
    return wall, cpu


class RecordingEmbedder:
    """Wraps the real embedder: records each batch and the wall time embed() took inside analyze."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.batches: list[list[np.ndarray]] = []
        self.seconds = 0.0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def embed(self, images: Sequence[np.ndarray]) -> np.ndarray:
        t0 = time.perf_counter()
        out = self.inner.embed(images)
        self.seconds += time.perf_counter() - t0
        self.batches.append(list(images))
        return out  # type: ignore[no-any-return]


@dataclass
class AnalyzeRun:
    wall_s: float
    cpu_s: float
    duration_s: float
    frames: int
    shots: int
    embedder: RecordingEmbedder


def analyze(
    path: Path, model_path: Path, data_dir: Path, mode: str, fps: float, overrides: dict[str, int]
) -> AnalyzeRun:
    from video_ai.adapters.local_jobs import InMemoryJobRepository
    from video_ai.composition import build_embedder, build_fetcher, build_frame_source, build_index
    from video_ai.domain.models import Job, Sampling, Source
    from video_ai.services.analyze_video import AnalyzeDeps, analyze_video
    from video_ai.settings import Settings

    model_over = {k: v for k, v in overrides.items() if k in ("threads", "batch_size")}
    scale_over = {k: v for k, v in overrides.items() if k == "pipeline_queue"}
    settings = Settings.model_validate({"data_dir": str(data_dir), "model": {"path": str(model_path), **model_over},
                                        "scale": scale_over}).development()
    jobs = InMemoryJobRepository()
    index = build_index(settings)
    embedder = RecordingEmbedder(build_embedder(settings))
    embedder.inner.embed([np.zeros((224, 224, 3), np.uint8)])  # session load is a cold-start cost, not throughput
    frames = build_frame_source(settings)
    if "decode_threads" in overrides:
        from video_ai.adapters.frame_source import PyAVFrameSource

        frames = PyAVFrameSource(settings.sampling, settings.limits, threads=bool(overrides["decode_threads"]))
    deps = AnalyzeDeps(jobs=jobs, fetcher=build_fetcher(settings, allow_local_files=True),
                       frames=frames, embedder=embedder, index=index, notifier=None,
                       workdir=data_dir / "tmp", batch_size=settings.model.batch_size,
                       pipeline_queue=settings.scale.pipeline_queue)
    job = jobs.create(Job(job_id=str(uuid.uuid4()), source=Source(url=path.resolve().as_uri()),
                          sampling=Sampling(mode=mode, fps=fps)))
    wall, cpu, result = timed(lambda: analyze_video(job.job_id, deps))
    index.close()
    assert result.job.video is not None, result.job.error
    job = result.job
    return AnalyzeRun(wall, cpu, job.video.duration_s, job.frames_indexed, job.shots_detected, embedder)


def embedding_ratios(run: AnalyzeRun, rounds: int) -> tuple[int, float, float, float]:
    """(frames, embed() s inside analyze, embed() s alone, bare session.run s) on the batches analyze made."""
    inner = run.embedder.inner
    session = inner.session
    name = session.get_inputs()[0].name
    tensors = [inner.preprocess(b) for b in run.embedder.batches]
    best_alone = best_bare = float("inf")
    for _ in range(rounds):
        t0 = time.perf_counter()
        for b in run.embedder.batches:
            inner.embed(b)
        best_alone = min(best_alone, time.perf_counter() - t0)
        t0 = time.perf_counter()
        for x in tensors:
            session.run(["embedding"], {name: x})
        best_bare = min(best_bare, time.perf_counter() - t0)
    frames = sum(len(b) for b in run.embedder.batches)
    return frames, run.embedder.seconds, best_alone, best_bare


def transcode(src: Path, dst: Path, codec: str, size: tuple[int, int] | None, seconds: float) -> Path:
    """Re-encode the first `seconds` of `src` (keyframes kept where the source has them: the cuts)."""
    import av

    tmp = dst.with_name(dst.stem + ".part" + dst.suffix)
    with av.open(str(src)) as inp, av.open(str(tmp), "w") as out:
        vin = inp.streams.video[0]
        rate = vin.average_rate or Fraction(30)
        enc = out.add_stream(codec, rate=rate)
        assert isinstance(enc, av.VideoStream)
        enc.width, enc.height = size or (vin.width, vin.height)
        enc.pix_fmt = "yuv420p"
        enc.codec_context.options = (
            {"preset": "veryfast", "crf": "23", "bf": "3"} if codec == "libx264"
            else {"deadline": "realtime", "cpu-used": "8", "crf": "32", "b": "1M"}
        )
        enc.gop_size = 250
        for n, frame in enumerate(inp.decode(vin)):
            if frame.time is not None and frame.time >= seconds:
                break
            picture = frame.reformat(width=enc.width, height=enc.height, format="yuv420p")
            picture.pts, picture.time_base = n, 1 / rate
            picture.pict_type = av.video.frame.PictureType.I if frame.key_frame else av.video.frame.PictureType.NONE
            for packet in enc.encode(picture):
                out.mux(packet)
        for packet in enc.encode(None):
            out.mux(packet)
    tmp.rename(dst)
    return dst


def matrix_clips(clips_dir: Path) -> dict[str, Path]:
    from video_ai.samples import make_clip

    clips_dir.mkdir(parents=True, exist_ok=True)
    base = SHARED_CLIPS / "cuts_720p_60s.mp4"
    if not base.exists():
        base = clips_dir / "h264_720p_60s.mp4"
        if not base.exists():
            make_clip(base, duration_s=60.0, fps=30.0, size=(1280, 720), shots=[5.0 * k for k in range(1, 12)],
                      gop=250)
    clips = {"h264 720p": base}
    for label, name, codec, size in (("h264 1080p", "h264_1080p_30s.mp4", "libx264", (1920, 1080)),
                                     ("vp9 720p", "vp9_720p_30s.webm", "libvpx-vp9", None)):
        path = clips_dir / name
        if not path.exists():
            print(f"transcoding {label} (once, cached in {clips_dir}) ...", file=sys.stderr, flush=True)
            transcode(base, path, codec, size, 30.0)
        clips[label] = path
    vp8 = SHARED_CLIPS / "big_buck_bunny_0_30.webm"
    if not vp8.exists():
        vp8 = clips_dir / "vp8_720p_30s.webm"
        if not vp8.exists():
            transcode(base, vp8, "libvpx", None, 30.0)
    clips["vp8 720p"] = vp8
    return clips


@dataclass
class Cell:
    wall: dict[str, float] = field(default_factory=dict)
    cpu: dict[str, float] = field(default_factory=dict)
    info: str = ""
    embed: dict[str, tuple[int, float, float, float]] = field(default_factory=dict)

    def keep(self, name: str, wall: float, cpu: float) -> None:
        if wall < self.wall.get(name, float("inf")):
            self.wall[name], self.cpu[name] = wall, cpu


def parse_config(text: str) -> tuple[str, dict[str, int]]:
    label, _, spec = text.partition(":")
    values = dict(item.split("=", 1) for item in spec.split(",") if item)
    allowed = {"threads", "batch_size", "pipeline_queue", "decode_threads"}
    if not set(values) <= allowed:
        raise SystemExit(f"--config keys: {sorted(allowed)}")
    return label, {k: int(v) for k, v in values.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="one clip, fps mode, one round (< 60 s)")
    parser.add_argument("--clip", type=Path, action="append", help="video file(s) instead of the matrix")
    parser.add_argument("--mode", action="append", choices=["fps", "shots"], help="default: both (fps only --quick)")
    parser.add_argument("--fps", type=float, default=1.0)
    parser.add_argument("--repeat", type=int, default=3, help="interleaved rounds, best counts")
    parser.add_argument("--config", action="append", default=[],
                        help="analyze variant LABEL:threads=N,batch_size=N,pipeline_queue=N,decode_threads=0|1 "
                             "(default: settings; decode_threads=0: FFmpeg decodes on the calling thread only)")
    parser.add_argument("--no-naive", action="store_true")
    parser.add_argument("--clips-dir", type=Path, default=Path(tempfile.gettempdir()) / "video-ai-bench-clips")
    args = parser.parse_args()

    from video_ai.model import build_model
    from video_ai.samples import make_clip

    work = Path(tempfile.mkdtemp(prefix="bench-analyze-"))
    model_path = build_model(work / "model.onnx")
    if args.quick:
        clip = SHARED_CLIPS / "cuts_720p_60s.mp4"
        if not clip.exists():
            clip = work / "quick.mp4"
            make_clip(clip, duration_s=10.0, fps=30.0, size=(640, 360), shots=[2.5, 5.0, 7.5], gop=250)
        clips = {clip.name: clip}
    elif args.clip:
        clips = {p.name: p for p in args.clip}
    else:
        clips = matrix_clips(args.clips_dir)
    modes = args.mode or (["fps"] if args.quick else ["fps", "shots"])
    repeat = 1 if args.quick else args.repeat
    configs = [parse_config(c) for c in args.config] or [("", {})]
    cells: dict[tuple[str, str], Cell] = {(c, m): Cell() for c in clips for m in modes}
    naive_cells: dict[str, Cell] = {c: Cell() for c in clips}
    run_id = 0
    for _ in range(repeat):
        # Interleaved, best-of-N: a shared machine's noise hits every variant alike.
        for label, path in clips.items():
            wall, cpu, _ = timed(lambda: bare_decode(path))  # noqa: B023
            for mode in modes:
                cells[(label, mode)].keep("bare", wall, cpu)
            for mode in modes:
                cell = cells[(label, mode)]
                for name, overrides in configs:
                    run_id += 1
                    data = work / f"data-{run_id}"
                    run = analyze(path, model_path, data, mode, args.fps, overrides)
                    key = f"analyze {name}".strip()
                    cell.keep(key, run.wall_s, run.cpu_s)
                    cell.wall["duration"] = run.duration_s
                    cell.info = f"{run.frames} frames, {run.shots} shots"
                    if key not in cell.embed or run.embedder.seconds < cell.embed[key][1]:
                        cell.embed[key] = embedding_ratios(run, 2 if args.quick else 3)
            if not args.no_naive and "fps" in modes:
                run_id += 1
                wall, cpu = naive(path, model_path, work / f"naive-{run_id}", args.fps)
                naive_cells[label].keep("naive", wall, cpu)

    print(f"best of {repeat} interleaved rounds; sampling {args.fps:g} fps; load average {os.getloadavg()[0]:.2f} "
          f"(nproc {os.cpu_count()})")
    print(f"{'clip':22} {'mode':5} {'variant':18} {'wall s':>7} {'cpu s':>6} {'realtime':>9} {'vs bare':>8} "
          f"{'vs naive':>8}")
    for (label, mode), cell in cells.items():
        duration = cell.wall.pop("duration")
        rows = dict(cell.wall)
        if mode == "fps" and "naive" in naive_cells[label].wall:
            rows["naive"] = naive_cells[label].wall["naive"]
            cell.cpu["naive"] = naive_cells[label].cpu["naive"]
        for name, wall in rows.items():
            rtf = duration / wall
            vs_bare = rows["bare"] / wall
            vs_naive = f"{rows['naive'] / wall:8.2f}" if "naive" in rows else f"{'-':>8}"
            print(f"{label:22} {mode:5} {name:18} {wall:7.2f} {cell.cpu[name]:6.2f} {rtf:8.1f}x {vs_bare:8.2f} "
                  f"{vs_naive}")
        print(f"{'':22} {'':5} ({duration:.1f} s of video, {cell.info})")
    print("targets: analyze vs bare >= 0.8, analyze vs naive >= 2.5 (fps mode)")
    print("embedding on analyze's own batches (img/s; ratio to bare session.run on the same tensors, target >= 0.9):")
    for (label, mode), cell in cells.items():
        for key, (frames, inside, alone, bare) in cell.embed.items():
            print(f"  {label:22} {mode:5} {key:18} session.run {frames / bare:6.1f}  embed() alone "
                  f"{frames / alone:6.1f} ({bare / alone:.2f})  embed() inside analyze {frames / inside:6.1f} "
                  f"({bare / inside:.2f})")
    print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
