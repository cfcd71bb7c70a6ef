"""A/B of the frame reader's pass: this tree's frame_source against the one at a git ref, same file, same process.

    .venv/bin/python benchmarks/bench_reader_ab.py [FILE] [--ref main] [--against REF] [--mode fps|shots|keyframes]
                                                   [--fps 1] [--rounds 8]

The baseline module is `git show REF:shared/video_ai/adapters/frame_source.py` (and `--against` the other one,
else this tree's), loaded beside the current package (both must speak its domain models). Rounds alternate which
reader goes first, so load from other processes hits both alike; wall and process CPU per pass are printed with
best and median, and the ratios current / baseline.
Without FILE: ../shared/clips/cuts_720p_60s.mp4 when present, else a generated 20 s 1280x720 clip with cuts.
For a change to the per-frame path (what issue 19 asks of anyone touching the hot loop).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[1]
SHARED_CLIP = Path(__file__).resolve().parents[2] / "shared" / "clips" / "cuts_720p_60s.mp4"


def module_at(ref: str) -> ModuleType:
    source = subprocess.run(["git", "-C", str(ROOT), "show", f"{ref}:shared/video_ai/adapters/frame_source.py"],
                            check=True, capture_output=True, text=True).stdout
    name = "frame_source_" + "".join(c if c.isalnum() else "_" for c in ref)
    path = Path(tempfile.mkdtemp()) / f"{name}.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location(f"video_ai.adapters.{name}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def one_pass(module: ModuleType, clip: Path, mode: str, fps: float) -> tuple[float, float, int]:
    from video_ai.domain.models import Sampling

    cpu0, wall0 = sum(os.times()[:2]), time.perf_counter()
    with module.PyAVFrameSource().open(clip, Sampling(mode=mode, fps=fps), image_size=(224, 224)) as reader:
        samples = sum(1 for _ in reader)
    return time.perf_counter() - wall0, sum(os.times()[:2]) - cpu0, samples


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("file", nargs="?", type=Path)
    parser.add_argument("--ref", default="main", help="git ref of the baseline (default: main)")
    parser.add_argument("--against", help="git ref of the reader to compare (default: this working tree)")
    parser.add_argument("--mode", default="fps", choices=["fps", "shots", "keyframes"])
    parser.add_argument("--fps", type=float, default=1.0)
    parser.add_argument("--rounds", type=int, default=8)
    args = parser.parse_args()
    import video_ai.adapters.frame_source as current

    clip = args.file or (SHARED_CLIP if SHARED_CLIP.exists() else None)
    if clip is None:
        from video_ai.samples import make_clip

        clip = Path(tempfile.mkdtemp()) / "ab.mp4"
        make_clip(clip, duration_s=20.0, fps=30.0, size=(1280, 720), shots=[5.0, 10.0, 15.0])
    readers = {"baseline": module_at(args.ref), "current": module_at(args.against) if args.against else current}
    runs: dict[str, list[tuple[float, float, int]]] = {name: [] for name in readers}
    for i in range(args.rounds):
        order = list(readers) if i % 2 == 0 else list(reversed(readers))
        for name in order:
            runs[name].append(one_pass(readers[name], clip, args.mode, args.fps))
    print(f"{clip.name}, mode {args.mode}, fps {args.fps}, {args.rounds} rounds, baseline {args.ref}, "
          f"load {os.getloadavg()[0]:.1f}")
    for name, results in runs.items():
        walls, cpus = [r[0] for r in results], [r[1] for r in results]
        print(f"  {name:8s} wall best {min(walls):.2f} s median {statistics.median(walls):.2f} s; "
              f"CPU best {min(cpus):.2f} s median {statistics.median(cpus):.2f} s; samples {results[0][2]}")
    ratio = {k: min(r[k] for r in runs["current"]) / min(r[k] for r in runs["baseline"]) for k in (0, 1)}
    med = {k: statistics.median(r[k] for r in runs["current"]) / statistics.median(r[k] for r in runs["baseline"])
           for k in (0, 1)}
    print(f"  current / baseline: wall best {ratio[0]:.3f}, median {med[0]:.3f}; "
          f"CPU best {ratio[1]:.3f}, median {med[1]:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
