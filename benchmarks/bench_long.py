"""Long videos (issue 8 item 4): time and peak RSS of one worker invocation, split vs unsplit, in one run.

    python benchmarks/bench_long.py [--minutes 60] [--segment-s 300] [--quick] [--clip PATH] [--whole]

Builds a long H.264 file by remuxing a clip end to end (packets copied with shifted timestamps: no re-encode), then
runs each measured pass in a fresh subprocess (so peak RSS is that pass's own, like one Lambda invocation):
  segment k  - `analyze_video(segment=k)`: what one worker invocation does for a split job (fetch, decode its
               5-minute window from the keyframe before it, embed, upsert, record)
  whole      - the unsplit pass over the full file (--whole; what a job would cost without splitting)
Prints wall seconds, realtime factor and peak RSS for each, and the projected wall time of the split job with N
segments running in parallel (the slowest segment plus the fan-out).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CLIP = ROOT.parent / "shared" / "clips" / "cuts_720p_60s.mp4"

CHILD = r"""
import json, resource, sys, time
from pathlib import Path
from tests.fakes import RecordingQueue
from video_ai.adapters.frame_source import PyAVFrameSource
from video_ai.adapters.http_fetch import HttpVideoFetcher
from video_ai.adapters.local_jobs import InMemoryJobRepository
from video_ai.adapters.onnx_embedder import OnnxEmbedder
from video_ai.adapters.qdrant_edge_index import QdrantEdgeIndex
from video_ai.domain.models import Job, JobStatus, Source
from video_ai.services.analyze_video import AnalyzeDeps, analyze_video
from video_ai.settings import LimitsSettings, ModelSettings, NetworkSettings, SamplingSettings

video, model, data, segment_s, segment = sys.argv[1], sys.argv[2], Path(sys.argv[3]), float(sys.argv[4]), sys.argv[5]
queue = RecordingQueue()
deps = AnalyzeDeps(jobs=InMemoryJobRepository(),
                   fetcher=HttpVideoFetcher(NetworkSettings(), LimitsSettings(), allow_local_files=True),
                   frames=PyAVFrameSource(SamplingSettings(), LimitsSettings()),
                   embedder=OnnxEmbedder(ModelSettings(), Path(model)), index=QdrantEdgeIndex(data), notifier=None,
                   workdir=data / "tmp", segment_queue=None if segment == "whole" else queue, segment_s=segment_s)
deps.jobs.create(Job(job_id="long", source=Source(url=Path(video).resolve().as_uri())))
started = time.perf_counter()
first = analyze_video("long", deps)  # whole: the full pass; else: probe and fan out (fast)
fan_out = time.perf_counter() - started
result = {"fan_out_s": fan_out, "segments": first.job.segments_total}
if segment != "whole":
    started = time.perf_counter()
    done = analyze_video("long", deps, segment=int(segment))
    result["frames"] = len(done.frames) or deps.jobs.segment_results("long")[int(segment)]["frames"]
    result["wall_s"] = time.perf_counter() - started
else:
    result["frames"] = first.job.frames_indexed
    result["wall_s"] = fan_out
    assert first.job.status is JobStatus.SUCCEEDED, first.job.error
result["duration_s"] = first.job.video.duration_s if first.job.video else 0.0
result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
deps.index.close()
print(json.dumps(result))
"""


def make_long(src: Path, dst: Path, minutes: float) -> Path:
    """Remux `src` end to end until `minutes` (timestamps shifted per copy; keyframes at every clip start)."""
    import av

    with av.open(str(src)) as probe:
        stream = probe.streams.video[0]
        assert stream.duration is not None and stream.time_base is not None
        clip_ticks = int(stream.duration)
        clip_s = float(stream.duration * stream.time_base)
    copies = max(1, round(minutes * 60 / clip_s))
    with av.open(str(dst), "w") as out:
        with av.open(str(src)) as first:
            out_stream = out.add_stream_from_template(first.streams.video[0])
        for k in range(copies):
            with av.open(str(src)) as inp:
                for packet in inp.demux(inp.streams.video[0]):
                    if packet.dts is None:
                        continue
                    packet.pts = (packet.pts or 0) + k * clip_ticks
                    packet.dts += k * clip_ticks
                    packet.stream = out_stream
                    out.mux(packet)
    return dst


def child(video: Path, model: Path, data: Path, segment_s: float, segment: str) -> dict[str, float]:
    proc = subprocess.run([sys.executable, "-c", CHILD, str(video), str(model), str(data), str(segment_s), segment],
                          cwd=ROOT, capture_output=True, text=True, check=False, timeout=3600)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-3000:])
    result: dict[str, float] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=60.0)
    parser.add_argument("--segment-s", type=float, default=300.0)
    parser.add_argument("--clip", type=Path, default=DEFAULT_CLIP)
    parser.add_argument("--quick", action="store_true", help="a 6-minute file, 2-minute segments")
    parser.add_argument("--whole", action="store_true", help="also run the unsplit pass over the whole file")
    args = parser.parse_args()
    if args.quick:
        args.minutes, args.segment_s = 6.0, 120.0
    from video_ai.model import build_model

    work = Path(tempfile.mkdtemp(prefix="bench-long-"))
    model = build_model(work / "model.onnx")
    clip = args.clip
    if not clip.exists():
        from video_ai.samples import make_clip

        clip = make_clip(work / "clip.mp4", duration_s=60.0, size=(1280, 720), shots=[10, 20, 30, 40, 50]).path
    started = time.perf_counter()
    video = make_long(clip, work / "long.mp4", args.minutes)
    print(f"built {video.stat().st_size / 1e6:.0f} MB, {args.minutes:g} min by remux in "
          f"{time.perf_counter() - started:.1f} s")
    rows = []
    segments = max(1, int(-(-args.minutes * 60 // args.segment_s)))
    for segment in sorted({0, segments // 2, segments - 1}):
        rows.append((f"segment {segment}", child(video, model, work / f"data-{segment}", args.segment_s, str(segment))))
    if args.whole:
        rows.append(("whole (unsplit)", child(video, model, work / "data-whole", args.segment_s, "whole")))
    for name, r in rows:
        print(f"  {name:16s} frames {int(r['frames']):5d}  wall {r['wall_s']:7.1f} s"
              f"  peak RSS {r['peak_rss_mb']:6.0f} MB  (probe + fan-out {r['fan_out_s']:.2f} s,"
              f" {int(r['segments'])} segments)")
    slowest = max(r["wall_s"] for name, r in rows if name.startswith("segment"))
    print(f"split job, {segments} segments in parallel: ~{slowest + rows[0][1]['fan_out_s']:.0f} s wall "
          f"for {args.minutes:g} min of video (Lambda limit 900 s per invocation)")
    print(f"this process peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
