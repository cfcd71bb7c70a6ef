"""int8 vs fp32 on real frames: cosine, top-1/top-5 neighbour agreement and throughput, in one run.

    .venv/bin/python benchmarks/bench_int8.py [--quick] [--clips DIR] [--variants NAME,...] [--speed-variant NAME]

Frames: 1 fps plus every 10th frame of every clip in --clips (default ../shared/clips), resized to 224x224 once.
Frames whose time t has (t mod 10 s) < 5 s calibrate the "real" variants; the others (disjoint times) are the
evaluation set. Each evaluation frame queries all other evaluation frames (exact cosine search) in an fp32 index
and in an int8 index; agreement = same top-1, same top-5 set. Throughput ratios are int8 over fp32 on the same
tensors, all sessions taking turns round by round.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from bench_embed import _rates  # run as `python benchmarks/bench_int8.py`: benchmarks/ is on sys.path
from video_ai.adapters.onnx_embedder import OnnxEmbedder, create_session
from video_ai.model import ensure_model
from video_ai.model.quantize import FP32_NODES_V1, default_calibration_images, quantize_int8
from video_ai.settings import ModelSettings

HEAD = ("_conv_head", "pool")
BLOCK1 = ("_blocks.1._expand_conv", "_blocks.1._depthwise_conv", "_blocks.1._project_conv")
FP32_NODES = FP32_NODES_V1  # the variants below are named relative to the first cut (stem + block 0)
BLOCK2 = ("_blocks.2._expand_conv", "_blocks.2._depthwise_conv", "_blocks.2._project_conv", "_blocks.2.add")
# Near-duplicate frames (a still shot, 3 frames a second) tie in fp32; their order is noise, so "tolerant" top-5
# also accepts an int8 neighbour whose fp32 score is within TIE of fp32's 5th best.
TIE = 0.005


@dataclass
class Variant:
    """One way of quantising: calibration source and quantize_int8 keyword options."""

    calibration: str  # "generated" | "real"
    options: dict[str, Any] = field(default_factory=dict)


VARIANTS: dict[str, Variant] = {
    "default": Variant("generated"),  # what ensure_model builds: quantize_int8's defaults, generated frames
    "gen-minmax": Variant("generated", {"fp32_nodes": FP32_NODES}),
    "real-minmax": Variant("real", {"fp32_nodes": FP32_NODES}),
    "gen-minmax-head": Variant("generated", {"fp32_nodes": FP32_NODES + HEAD}),
    "real-minmax-head": Variant("real", {"fp32_nodes": FP32_NODES + HEAD}),
    "gen-pct-head": Variant(
        "generated", {"method": "percentile", "percentile": 99.99, "fp32_nodes": FP32_NODES + HEAD}
    ),
    "gen-entropy-head": Variant("generated", {"method": "entropy", "fp32_nodes": FP32_NODES + HEAD}),
    "gen-minmax-head-reduce": Variant("generated", {"fp32_nodes": FP32_NODES + HEAD, "reduce_range": True}),
    "gen-minmax-head-tensor": Variant("generated", {"fp32_nodes": FP32_NODES + HEAD, "per_channel": False}),
    "gen-minmax-head-qop": Variant("generated", {"fp32_nodes": FP32_NODES + HEAD, "quant_format": "qoperator"}),
    "gen-minmax-all": Variant("generated", {"fp32_nodes": ()}),
    "gen-minmax-head-b1": Variant("generated", {"fp32_nodes": FP32_NODES + HEAD + BLOCK1}),
    "gen-minmax-b1": Variant("generated", {"fp32_nodes": FP32_NODES + BLOCK1}),
    "gen-minmax-head-b12": Variant("generated", {"fp32_nodes": FP32_NODES + HEAD + BLOCK1 + BLOCK2}),
    "real-minmax-head-b1": Variant("real", {"fp32_nodes": FP32_NODES + HEAD + BLOCK1}),
    "real-entropy-head": Variant("real", {"method": "entropy", "fp32_nodes": FP32_NODES + HEAD}),
}
QUICK_VARIANTS = ("default", "gen-minmax")


def decode_frames(clips: list[Path], every: int = 10) -> tuple[list[np.ndarray], list[float], list[str]]:
    """224x224 RGB frames at 1 fps plus every `every`-th frame, with their times and clip names."""
    import av

    frames: list[np.ndarray] = []
    times: list[float] = []
    names: list[str] = []
    for clip in clips:
        with av.open(str(clip)) as container:
            stream = container.streams.video[0]
            next_second = 0.0
            for n, frame in enumerate(container.decode(stream)):
                t = float(frame.time or 0.0)
                if n % every and t < next_second:
                    continue
                if t >= next_second:
                    next_second = float(int(t)) + 1.0
                rgb = frame.to_ndarray(format="rgb24")
                frames.append(cv2.resize(rgb, (224, 224), interpolation=cv2.INTER_AREA))
                times.append(t)
                names.append(clip.name)
    return frames, times, names


def neighbours(vectors: np.ndarray, k: int) -> np.ndarray:
    """Indices of each row's k nearest other rows by cosine (rows are unit length)."""
    sims = vectors @ vectors.T
    np.fill_diagonal(sims, -np.inf)
    return np.argsort(-sims, axis=1, kind="stable")[:, :k]


def agreement(ref: np.ndarray, test: np.ndarray) -> dict[str, float]:
    """Cosine per row and neighbour agreement of `test` vectors against `ref` ones."""
    cos = (ref * test).sum(axis=1)
    ref5, test5 = neighbours(ref, 5), neighbours(test, 5)
    same5 = [set(a) == set(b) for a, b in zip(ref5.tolist(), test5.tolist(), strict=True)]
    sims = ref @ ref.T
    fifth = np.take_along_axis(sims, ref5[:, 4:5], axis=1)
    tolerant = (np.take_along_axis(sims, test5, axis=1) >= fifth - TIE).all(axis=1)
    overlap = [len(set(a) & set(b)) / 5 for a, b in zip(ref5.tolist(), test5.tolist(), strict=True)]
    return {
        "mean": float(cos.mean()),
        "min": float(cos.min()),
        "p05": float(np.percentile(cos, 5)),
        "top1": float(np.mean(ref5[:, 0] == test5[:, 0])),
        "top5": float(np.mean(same5)),
        "overlap5": float(np.mean(overlap)),
        "tol5": float(np.mean(tolerant)),
    }


def _ratio(rates: dict[str, list[float]], name: str, base: str) -> float:
    return statistics.median(a / b for a, b in zip(rates[name], rates[base], strict=True))


def speed(
    fp32_path: Path, int8_paths: dict[str, Path], frames: list[np.ndarray], repeats: int, *, basic_opt: bool = True
) -> None:
    """session.run and embed, int8 over fp32, for batch 8/32 and 1/2 threads (plus int8 at basic graph opts)."""
    import onnxruntime as ort

    print(f"\nthroughput, median of {repeats} interleaved rounds (img/s; ratio = int8/fp32 per round, median)")
    for threads in (1, 2):
        sessions = {"fp32": create_session(fp32_path, threads)}
        sessions.update({name: create_session(path, threads) for name, path in int8_paths.items()})
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
        first = next(iter(int8_paths))
        basic = ort.InferenceSession(str(int8_paths[first]), sess_options=options, providers=["CPUExecutionProvider"])
        for batch in (8, 32):
            images = frames[:batch]
            settings = ModelSettings(threads=threads, batch_size=batch)
            embedders = {name: OnnxEmbedder(settings, fp32_path, session) for name, session in sessions.items()}
            tensor = embedders["fp32"].preprocess(images)
            fns: dict[str, Callable[[], object]] = {}
            for name, session in sessions.items():
                fns[f"{name} run"] = lambda s=session, x=tensor: s.run(["embedding"], {"input": x})  # type: ignore[misc]
                fns[f"{name} embed"] = lambda e=embedders[name], x=images: e.embed(x)  # type: ignore[misc]
            if basic_opt:
                fns["basic run"] = lambda s=basic, x=tensor: s.run(["embedding"], {"input": x})  # type: ignore[misc]
            r = _rates(fns, batch, repeats)
            med = {k: statistics.median(v) for k, v in r.items()}
            line = (
                f"threads {threads}, batch {batch:>2}: fp32 run {med['fp32 run']:6.1f} embed {med['fp32 embed']:6.1f}"
            )
            for name in int8_paths:
                line += (
                    f" | {name}: run {med[f'{name} run']:6.1f} ({_ratio(r, f'{name} run', 'fp32 run'):.2f})"
                    f" embed {med[f'{name} embed']:6.1f} ({_ratio(r, f'{name} embed', 'fp32 embed'):.2f})"
                )
            if basic_opt:
                line += f" | {first} basic-opt run ({_ratio(r, 'basic run', 'fp32 run'):.2f})"
            print(line, flush=True)


def _row(name: str, seconds: float, stats: dict[str, float]) -> None:
    print(
        f"{name:<26}{seconds:>8.1f}{stats['mean']:>8.4f}{stats['min']:>8.4f}{stats['p05']:>8.4f}"
        f"{stats['top1']:>7.2f}{stats['top5']:>7.2f}{stats['overlap5']:>7.2f}{stats['tol5']:>7.2f}",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 variants, 32 calibration frames, 2 rounds (<60 s)")
    parser.add_argument("--clips", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "clips")
    parser.add_argument("--variants", default=None, help=f"comma-separated, from: {', '.join(VARIANTS)}")
    parser.add_argument(
        "--speed-variant", default=None, help="comma-separated variants timed (default: best mean cosine)"
    )
    parser.add_argument("--calibration-frames", type=int, default=None, help="default 64 (--quick: 32)")
    parser.add_argument("--data-dir", type=Path, default=None)
    args = parser.parse_args()
    names = args.variants.split(",") if args.variants else list(QUICK_VARIANTS if args.quick else VARIANTS)
    count = args.calibration_frames or (32 if args.quick else 64)
    repeats = 2 if args.quick else 5
    data_dir = args.data_dir or Path(tempfile.mkdtemp(prefix="bench-int8-"))

    clips = sorted([*args.clips.glob("*.mp4"), *args.clips.glob("*.webm")])
    frames, times, clip_names = decode_frames(clips)
    is_eval = np.array([(t % 10.0) >= 5.0 for t in times])
    evaluation = [f for f, e in zip(frames, is_eval, strict=True) if e]
    real_pool = [f for f, e in zip(frames, is_eval, strict=True) if not e]
    real_calibration = [real_pool[i] for i in np.linspace(0, len(real_pool) - 1, count).astype(int)]
    generated = default_calibration_images(count)
    per_clip = {c: sum(1 for n, e in zip(clip_names, is_eval, strict=True) if n == c and e) for c in set(clip_names)}
    print(
        f"{len(frames)} frames from {len(clips)} clips; evaluation {len(evaluation)} {per_clip}; "
        f"calibration {count} real (disjoint times) or {count} generated"
    )

    settings = ModelSettings(threads=2, batch_size=8)
    fp32_path = ensure_model(settings, data_dir)
    fp32 = OnnxEmbedder(settings, fp32_path)
    fp32_vectors = fp32.embed(evaluation)
    print(f"\n{'variant':<26}{'quant s':>8}{'mean':>8}{'min':>8}{'p05':>8}{'top1':>7}{'top5':>7}{'ovl5':>7}{'tol5':>7}")
    # Noise floor: fp32 itself on the same frames after an (invisible) JPEG q95 round trip.
    jpeg: list[np.ndarray] = [
        np.asarray(cv2.imdecode(cv2.imencode(".jpg", f, [cv2.IMWRITE_JPEG_QUALITY, 95])[1], cv2.IMREAD_UNCHANGED))
        for f in evaluation
    ]
    _row("fp32 on JPEG q95 (floor)", 0.0, agreement(fp32_vectors, fp32.embed(jpeg)))
    results: dict[str, tuple[Path, dict[str, float], np.ndarray]] = {}
    for name in names:
        variant = VARIANTS[name]
        path = data_dir / f"{name}.onnx"
        start = time.perf_counter()
        calibration = real_calibration if variant.calibration == "real" else generated
        quantize_int8(fp32_path, path, calibration, settings, **variant.options)
        quant_s = time.perf_counter() - start
        vectors = OnnxEmbedder(settings, path).embed(evaluation)
        stats = agreement(fp32_vectors, vectors)
        results[name] = (path, stats, vectors)
        _row(name, quant_s, stats)
    timed = args.speed_variant.split(",") if args.speed_variant else [max(results, key=lambda n: results[n][1]["mean"])]
    chosen = timed[0]
    print(f"\ntimed variant: {chosen}; its search agreement with each clip's evaluation frames as the only index:")
    eval_clips = np.array([n for n, e in zip(clip_names, is_eval, strict=True) if e])
    for clip in sorted(set(eval_clips.tolist())):
        rows = eval_clips == clip
        if rows.sum() > 5:
            _row(clip[:26], 0.0, agreement(fp32_vectors[rows], results[chosen][2][rows]))
    speed(fp32_path, {name: results[name][0] for name in timed}, evaluation, repeats, basic_opt=not args.quick)


if __name__ == "__main__":
    main()
