"""What a cold worker pays before its first frame, measured inside the worker image as Lambda runs it.

    bash scripts/lambda-local.sh --build-only        # builds video-ai/worker:local (once)
    .venv/bin/python benchmarks/bench_lambda_cold.py [--rounds 5]

Each round starts a fresh container of video-ai/worker:local as Lambda would (user 993, read-only root, /tmp a tmpfs,
3008 MB, no network) and times, in that one process: the interpreter's start (the baseline every figure is divided
by), `import handler` (the init phase: imports and the composition root, as the emulator's INIT_REPORT measures it),
the ONNX session on the baked model (built lazily by the first job), opening a clip and decoding its first sampled
frame, and embedding it. Needs podman and the config scripts/lambda-local.sh leaves in its cache dir.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

IMAGE = "video-ai/worker:local"
CACHE = Path(os.environ.get("VIDEO_AI_LAMBDA_CACHE", "/var/cache/video-ai-lambda"))

# Runs inside the container, under /var/lang/bin/python3.13.
PROBE = r"""
import json, os, sys, time
def age():
    with open("/proc/self/stat") as f:
        ticks = int(f.read().rsplit(")", 1)[1].split()[19])
    return time.clock_gettime(time.CLOCK_BOOTTIME) - ticks / os.sysconf("SC_CLK_TCK")
out = {"interpreter_s": age()}
sys.path[:0] = ["/var/task"]
os.chdir("/var/task")
t = time.perf_counter(); import handler; out["init_s"] = time.perf_counter() - t
from video_ai.adapters.onnx_embedder import create_session
t = time.perf_counter()
session = create_session(os.environ["VIDEO_AI__MODEL__PATH"])
out["session_s"] = time.perf_counter() - t
from video_ai.samples import make_demo_clip
make_demo_clip("/tmp/clip.mp4")
from video_ai.domain.models import Sampling
runtime = handler.runtime
deps = runtime.analyze_deps()
t = time.perf_counter()
reader = deps.frames.open("/tmp/clip.mp4", Sampling(), image_size=deps.embedder.input_size)
first = next(iter(reader))
out["first_frame_s"] = time.perf_counter() - t
t = time.perf_counter(); deps.embedder.embed([first.image]); out["first_embed_s"] = time.perf_counter() - t
print("BENCH " + json.dumps(out))
"""


def run_round() -> dict[str, float]:
    env = {"CONTAINERS_CONF": str(CACHE / "containers.conf"), **os.environ}
    cmd = [
        "podman", "run", "--rm", "--user", "993:990", "--read-only", "--tmpfs", "/tmp:rw,size=512m",
        "--memory", "3008m", "--network", "none", "--entrypoint", "/var/lang/bin/python3.13",
        "-e", "VIDEO_AI__DATA_DIR=/tmp/video-ai", "-e", "VIDEO_AI__QDRANT__BACKEND=edge",
        "-e", "VIDEO_AI__AWS__REGION=us-east-1", "-e", "AWS_LAMBDA_FUNCTION_NAME=WorkerFunction",
        # Names only: nothing here calls AWS (clients are built lazily, on first use).
        "-e", "VIDEO_AI__AWS__JOBS_TABLE=jobs",
        "-e", "VIDEO_AI__AWS__JOBS_QUEUE_URL=https://sqs.us-east-1.amazonaws.com/1/q",
        "-e", "VIDEO_AI__AWS__TOPIC_ARN=arn:aws:sns:us-east-1:123456789012:t", "-e", "VIDEO_AI__AWS__UPLOADS_BUCKET=b",
        IMAGE, "-c", PROBE,
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    line = next((line for line in proc.stdout.splitlines() if line.startswith("BENCH ")), None)
    if proc.returncode != 0 or line is None:
        sys.exit(f"bench_lambda_cold: the probe failed: {proc.stderr.strip().splitlines()[-1:]}")
    result: dict[str, float] = json.loads(line[len("BENCH "):])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    rounds = [run_round() for _ in range(args.rounds)]
    keys = ["interpreter_s", "init_s", "session_s", "first_frame_s", "first_embed_s"]
    medians = {key: statistics.median(r[key] for r in rounds) for key in keys}
    before_first_frame = medians["init_s"] + medians["session_s"] + medians["first_frame_s"]
    print(f"{'stage':<16}{'median s':>10}{'min s':>9}{'max s':>9}{'x interpreter':>15}")
    for key in keys:
        values = [r[key] for r in rounds]
        print(f"{key[:-2]:<16}{medians[key]:>10.3f}{min(values):>9.3f}{max(values):>9.3f}"
              f"{medians[key] / medians['interpreter_s']:>15.1f}")
    print(f"cold worker before its first frame (init + session + first frame): {before_first_frame:.2f} s "
          f"= {before_first_frame / medians['interpreter_s']:.0f}x the interpreter's start; {args.rounds} rounds")


if __name__ == "__main__":
    main()
