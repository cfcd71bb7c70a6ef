"""Peak RSS and wall time of one worker process analysing a 10-minute clip with every feature, against MemorySize.

    python benchmarks/bench_all_features.py [--minutes 10] [--clip PATH] [--features visual,labels,speech,ocr]
                                            [--baseline visual]

Builds a long 720p H.264 file by remuxing the clip end to end (bench_long.make_long's way, no re-encode) and gives it
an AAC audio track of real speech (the committed JFK recording, tests/fixtures/speech, repeated with a second of
pause between), so the speech analyzer transcribes all along while the frames are decoded. Then runs
`video-ai analyze FILE --features ... --json` in a fresh process with its own data dir (the CLI's composition root:
the same analyzers a worker builds; one process, no split), once with the baseline features and once with all, and
prints each run's wall time and peak RSS (the child's ru_maxrss) beside the worker's MemorySize in template.yaml.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "shared"))
DEFAULT_CLIP = ROOT.parent / "shared" / "clips" / "cuts_720p_60s.mp4"
RATE = 16_000


def make_long_with_speech(src: Path, dst: Path, minutes: float, speech: np.ndarray) -> Path:
    """`src`'s video end to end for `minutes`, with `speech` (16 kHz) looped as an AAC track, interleaved per copy."""
    import av

    from bench_long import clip_length, mux_copies  # run as `python benchmarks/...`: benchmarks/ is on sys.path

    clip_s = clip_length(src)[1]
    copies = max(1, round(minutes * 60 / clip_s))
    loop = np.concatenate([speech, np.zeros(RATE, np.float32)])
    track = np.tile(loop, int(np.ceil(copies * clip_s * RATE / len(loop))))
    with av.open(str(dst), "w") as out:
        with av.open(str(src)) as first:
            video = out.add_stream_from_template(first.streams.video[0])
        audio = out.add_stream("aac", rate=RATE, layout="mono")
        audio.time_base = Fraction(1, RATE)
        frame_size = 1024
        done = 0
        for k in mux_copies(src, out, video, copies):
            until = int((k + 1) * clip_s * RATE)
            while done + frame_size <= until:
                frame = av.AudioFrame.from_ndarray(track[None, done : done + frame_size], format="fltp", layout="mono")
                frame.sample_rate, frame.pts, frame.time_base = RATE, done, Fraction(1, RATE)
                for packet in audio.encode(frame):
                    out.mux(packet)
                done += frame_size
        for packet in audio.encode(None):
            out.mux(packet)
    return dst


def run(clip: Path, features: str, data: Path) -> dict[str, object]:
    env = {**os.environ, "VIDEO_AI__DATA_DIR": str(data)}
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "video_ai.cli", "analyze", str(clip), "--features", features,
                           "--json"], cwd=data, env=env, capture_output=True, text=True, check=False, timeout=7200)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-3000:])
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    job = json.loads(proc.stdout)
    return {"features": features, "wall_s": round(wall, 1), "peak_rss_mb": round(peak / 1024),
            "rss_is_new_max": peak > before, "status": job["status"], "frames": job["frames_indexed"],
            "feature_stats": job.get("feature_stats"), "warnings": job.get("warnings")}


def worker_memory_mb() -> int:
    import cfnlint.decode

    template, _ = cfnlint.decode.decode(str(ROOT / "template.yaml"))
    assert template is not None
    return int(template["Parameters"]["WorkerMemorySize"]["Default"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--clip", type=Path, default=DEFAULT_CLIP)
    parser.add_argument("--features", default="visual,labels,speech,ocr")
    parser.add_argument("--baseline", default="visual")
    args = parser.parse_args()
    from tests.fixtures.speech_media import load

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        clip = make_long_with_speech(args.clip, work / "long.mp4", args.minutes, load())
        print(f"clip: {args.minutes:g} min of {args.clip.name} with a speech track, "
              f"{clip.stat().st_size / 1e6:.0f} MB")
        # The baseline first: RUSAGE_CHILDREN's maxrss is the largest child so far, so the second run's figure is its
        # own only when it is the larger (said by rss_is_new_max).
        for features in (args.baseline, args.features):
            data = work / features.replace(",", "-")
            data.mkdir()
            print(json.dumps(run(clip, features, data)))
    print(f"worker MemorySize (template.yaml WorkerMemorySize default): {worker_memory_mb()} MB")


if __name__ == "__main__":
    main()
