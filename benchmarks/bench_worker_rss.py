"""Peak memory of one worker with every feature on a 10-minute clip (issue 16), against the worker's MemorySize.

    python benchmarks/bench_worker_rss.py [--minutes 10] [--features visual,labels,speech,ocr] [--baseline]
                                          [--clip PATH]

Makes a 1280x720 H.264 + AAC clip (20 shots, each with captions: a title, a caption that appears mid-shot; speech:
the repo's JFK recording, tests/fixtures/speech/jfk.flac, every 30 s, silence between) and runs `video-ai analyze`
on it in a child process (the embedded setup: qdrant-edge, files; one pass, as one worker invocation would run it:
no split), reading the child's peak resident set (ru_maxrss) when it ends. `--baseline` also runs it with
features=visual. The worker's MemorySize is read from template.yaml (WorkerMemorySize's default).
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "shared"))
sys.path.insert(0, str(ROOT))

from tests.fixtures.speech_media import RATE, load  # noqa: E402
from video_ai.text_samples import Caption, TextShot, render  # noqa: E402

FPS = 25
SHOT_S = 30


def make_clip(path: Path, minutes: float) -> None:
    speech = load()
    total_s = int(minutes * 60)
    with av.open(str(path), "w") as container:
        video = container.add_stream("libx264", rate=FPS)
        assert isinstance(video, av.VideoStream)
        video.width, video.height, video.pix_fmt = 1280, 720, "yuv420p"
        video.codec_context.options = {"preset": "ultrafast", "crf": "28", "g": str(FPS * 2)}
        audio = container.add_stream("aac", rate=RATE, layout="mono")
        assert isinstance(audio, av.AudioStream)
        block = audio.codec_context.frame_size or 1024
        track = np.zeros(total_s * RATE, np.float32)
        for start in range(0, total_s - 12, SHOT_S):
            track[start * RATE : start * RATE + len(speech)] = speech
        sent = 0
        n = 0
        for shot_index in range(0, total_s // SHOT_S):
            shot = TextShot(SHOT_S, [Caption(f"Chapter {shot_index + 1}: the lecture goes on", 0.06, 0.08, 40),
                                     Caption(f"Slide {shot_index + 1} of {total_s // SHOT_S}", 0.06, 0.85, 28,
                                             start_s=10.0)],
                            background="flat", color=((40 + 23 * shot_index) % 200, 70, 110))
            before, after = render(shot, 0.0, 1280, 720), render(shot, 10.0, 1280, 720)
            for k in range(SHOT_S * FPS):
                frame = av.VideoFrame.from_ndarray(before if k < 10 * FPS else after, format="rgb24")
                frame.pts = n
                frame.time_base = Fraction(1, FPS)
                n += 1
                for packet in video.encode(frame):
                    container.mux(packet)
                while sent < min(len(track), n * RATE // FPS):
                    piece = track[sent : sent + block]
                    if len(piece) < block:
                        piece = np.pad(piece, (0, block - len(piece)))
                    aframe = av.AudioFrame.from_ndarray(piece[None, :], format="fltp", layout="mono")
                    aframe.sample_rate, aframe.pts, aframe.time_base = RATE, sent, Fraction(1, RATE)
                    for packet in audio.encode(aframe):
                        container.mux(packet)
                    sent += block
        for stream in (video, audio):
            for packet in stream.encode(None):
                container.mux(packet)


def worker_memory_mb() -> int:
    from cfnlint.decode import decode

    template, _ = decode(str(ROOT / "template.yaml"))
    assert template is not None
    return int(template["Parameters"]["WorkerMemorySize"]["Default"])


def run(clip: Path, features: str, data: Path) -> tuple[float, float, float]:
    """(peak RSS MiB, wall s, CPU s) of `video-ai analyze` in a fresh child process."""
    env = dict(os.environ, VIDEO_AI__DATA_DIR=str(data))
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "video_ai.cli", "analyze", str(clip), "--features", features, "--json"],
                   check=True, env=env, stdout=subprocess.DEVNULL, cwd=data)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return after.ru_maxrss / 1024, wall, cpu  # Linux reports KiB; the max over children so far


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--features", default="visual,labels,speech,ocr")
    parser.add_argument("--baseline", action="store_true")
    parser.add_argument("--clip", type=Path, help="analyze this file instead of the generated lecture")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-rss-"))
    clip = args.clip or work / "lecture.mp4"
    if args.clip is None:
        t0 = time.perf_counter()
        make_clip(clip, args.minutes)
        print(f"clip: {args.minutes:g} min 1280x720 {FPS} fps + AAC speech, {clip.stat().st_size / 1e6:.1f} MB, made "
              f"in {time.perf_counter() - t0:.0f} s", flush=True)
    memory = worker_memory_mb()
    # ru_maxrss of RUSAGE_CHILDREN is the largest child so far: the smaller run goes first.
    runs = ([("visual", work / "base")] if args.baseline else []) + [(args.features, work / "all")]
    for features, data in runs:
        data.mkdir()
        peak, wall, cpu = run(clip, features, data)
        print(f"features {features}: peak RSS {peak:.0f} MiB ({100 * peak / memory:.0f}% of the worker's "
              f"{memory} MB), wall {wall:.0f} s, CPU {cpu:.0f} s", flush=True)


if __name__ == "__main__":
    main()
