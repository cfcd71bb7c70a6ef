"""Decode benchmark: PyAVFrameSource against bare PyAV and OpenCV passes over the same file, in the same run.

    .venv/bin/python benchmarks/bench_decode.py [FILE] [--quick] [--repeat N] [--json]

Without FILE it generates a 60 s 1280x720 30 fps H.264 clip with a cut every 5 s (10 s with --quick). Each
variant runs `--repeat` times, round-robin (so load from other processes hits all alike), and the best wall
time counts. Figures are realtime factors (video seconds per wall second) and ratios to the bare decode pass.
Target (issue 8): PyAVFrameSource at 1 fps >= 0.8x the bare decode-all pass.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Literal

import av
import cv2

from video_ai import samples
from video_ai.adapters.frame_source import PyAVFrameSource
from video_ai.domain.models import Sampling


def bare_decode(path: Path, threads: bool = False, skip: Literal["NONREF", "NONKEY"] | None = None) -> int:
    """Decode every frame, convert none: the floor any reader pays."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        if threads:
            stream.codec_context.thread_type = "AUTO"
        if skip:
            stream.codec_context.skip_frame = skip
        return sum(1 for _ in container.decode(stream))


def reader_pass(path: Path, sampling: Sampling, skip_nonref: bool = True) -> int:
    """PyAVFrameSource as the worker uses it: 224x224 RGB per sample, shots detected in the same pass."""
    reader = PyAVFrameSource(skip_nonref=skip_nonref).open(path, sampling, image_size=(224, 224))
    with reader:
        return sum(1 for _ in reader)


def opencv_naive(path: Path, fps: float = 1.0) -> int:
    """OpenCV read() of every frame, keep one per 1/fps by frame count (what naive code does)."""
    cap = cv2.VideoCapture(str(path))
    step = max(1, round((cap.get(cv2.CAP_PROP_FPS) or 25.0) / fps))
    n = kept = 0
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        if n % step == 0:
            cv2.resize(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB), (224, 224), interpolation=cv2.INTER_AREA)
            kept += 1
        n += 1
    cap.release()
    return kept


def duration_of(path: Path) -> float:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        if stream.duration and stream.time_base:
            return float(stream.duration * stream.time_base)
        return (container.duration or 0) / av.time_base


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("file", nargs="?", type=Path, help="video to decode (default: a generated 720p clip)")
    parser.add_argument("--quick", action="store_true", help="10 s generated clip, 1 repeat (< 60 s)")
    parser.add_argument("--repeat", type=int, default=None, help="runs per variant (best counts); default 3, 1 quick")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args(argv)
    repeat = args.repeat or (1 if args.quick else 3)

    with tempfile.TemporaryDirectory(prefix="bench-decode-") as tmp:
        path: Path = args.file
        if path is None:
            seconds = 10.0 if args.quick else 60.0
            path = Path(tmp) / "cuts_720p.mp4"
            t0 = time.perf_counter()
            samples.make_clip(path, duration_s=seconds, fps=30.0, size=(1280, 720),
                              shots=[float(t) for t in range(5, int(seconds), 5)], gop=250)
            print(f"generated {seconds:.0f} s 720p H.264 clip in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
        duration = duration_of(path)
        variants: dict[str, Callable[[], int]] = {
            "pyav decode-all (bare)": lambda: bare_decode(path),
            "pyav threads": lambda: bare_decode(path, threads=True),
            "pyav threads+NONREF": lambda: bare_decode(path, threads=True, skip="NONREF"),
            "reader fps=1 (fps mode)": lambda: reader_pass(path, Sampling(mode="fps", fps=1.0)),
            "reader fps=1 no NONREF": lambda: reader_pass(path, Sampling(mode="fps", fps=1.0), skip_nonref=False),
            "reader shots mode": lambda: reader_pass(path, Sampling(mode="shots")),
            "reader keyframes mode": lambda: reader_pass(path, Sampling(mode="keyframes")),
            "opencv read() naive": lambda: opencv_naive(path),
        }
        best: dict[str, float] = {name: float("inf") for name in variants}
        counts: dict[str, int] = {}
        for _ in range(repeat):
            for name, run in variants.items():
                t0 = time.perf_counter()
                counts[name] = run()
                best[name] = min(best[name], time.perf_counter() - t0)

    base = duration / best["pyav decode-all (bare)"]
    fast = duration / best["pyav threads+NONREF"]
    rows = [
        {"variant": name, "wall_s": round(wall, 3), "realtime_x": round(duration / wall, 1),
         "vs_bare": round(duration / wall / base, 2), "vs_threads_nonref": round(duration / wall / fast, 2),
         "frames": counts[name]}
        for name, wall in best.items()
    ]
    if args.json:
        print(json.dumps({"file": str(args.file or "generated"), "duration_s": duration, "repeat": repeat,
                          "results": rows}, indent=2))
        return 0
    print(f"{args.file or 'generated clip'}: {duration:.1f} s of video, best of {repeat}")
    print(f"{'variant':28} {'wall s':>8} {'realtime':>9} {'vs bare':>8} {'vs thr+NONREF':>14} {'frames':>7}")
    for r in rows:
        print(f"{r['variant']:28} {r['wall_s']:8.2f} {r['realtime_x']:8.1f}x {r['vs_bare']:8.2f} "
              f"{r['vs_threads_nonref']:14.2f} {r['frames']:7d}")
    target = duration / best["reader fps=1 (fps mode)"] / base
    print(f"target: reader fps mode >= 0.8x bare decode-all -> {target:.2f}x {'OK' if target >= 0.8 else 'MISSED'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
