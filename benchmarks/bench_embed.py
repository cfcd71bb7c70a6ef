"""Embedding throughput: fp32 (baseline) vs int8, and bare `session.run` vs `OnnxEmbedder.embed` on the same batches.

    .venv/bin/python benchmarks/bench_embed.py [--quick] [--threads N] [--batch N] [--data-dir DIR] [--no-int8]

Every ratio compares runs made in this process on the same machine, so it survives a noisy, shared host better
than the absolute img/s figures do.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from video_ai.adapters.onnx_embedder import OnnxEmbedder
from video_ai.model import cached_model_path, ensure_model
from video_ai.model.quantize import default_calibration_images
from video_ai.settings import ModelSettings


def _rates(fns: dict[str, Callable[[], object]], images: int, repeats: int) -> dict[str, list[float]]:
    """Images per second of each function per round; the functions take turns so load spikes hit all of them."""
    for fn in fns.values():
        fn()
    rates: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            rates[name].append(images / (time.perf_counter() - start))
    return rates


def _report(rates: dict[str, list[float]], name: str, baseline: str | None, label: str) -> None:
    rate = statistics.median(rates[name])
    line = f"{label:<34} {rate:8.1f} img/s"
    if baseline is not None:
        ratio = statistics.median(a / b for a, b in zip(rates[name], rates[baseline], strict=True))
        line += f"  ratio {ratio:.2f} vs {baseline}"
    print(line)


def _frames(count: int, size: tuple[int, int], seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    w, h = size
    # Smooth random fields rather than white noise: closer to real frames for the resize and the network.
    small = rng.integers(0, 256, (count, h // 16, w // 16, 3), dtype=np.uint8)
    return [np.ascontiguousarray(np.repeat(np.repeat(s, 16, axis=0), 16, axis=1)) for s in small]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats and calibration frames (<60 s)")
    parser.add_argument("--threads", type=int, default=ModelSettings().threads, help="default: model.threads")
    parser.add_argument("--batch", type=int, default=ModelSettings().batch_size, help="default: model.batch_size")
    parser.add_argument("--data-dir", type=Path, default=None, help="reuse built models from here")
    parser.add_argument("--no-int8", action="store_true")
    args = parser.parse_args()
    repeats = 3 if args.quick else 10
    data_dir = args.data_dir or Path(tempfile.mkdtemp(prefix="bench-embed-"))

    fp32_settings = ModelSettings(threads=args.threads, batch_size=args.batch)
    fresh = not cached_model_path(fp32_settings, data_dir).exists()
    start = time.perf_counter()
    fp32_path = ensure_model(fp32_settings, data_dir)
    build_s = time.perf_counter() - start
    print(f"fp32 model: {fp32_path.stat().st_size / 1e6:.1f} MB, {'built' if fresh else 'cached'} in {build_s:.2f} s")

    at_size = _frames(args.batch, (224, 224), seed=1)
    hd = _frames(args.batch, (1280, 720), seed=2)
    fp32 = OnnxEmbedder(fp32_settings, fp32_path)
    tensor = fp32.preprocess(at_size)
    session = fp32.session
    fns: dict[str, Callable[[], object]] = {
        "fp32 session.run": lambda: session.run(["embedding"], {"input": tensor}),
        "fp32 embed": lambda: fp32.embed(at_size),
        "fp32 embed 720p": lambda: fp32.embed(hd),
    }
    int8: OnnxEmbedder | None = None
    if not args.no_int8:
        int8 = _int8(args, data_dir)
        int8_session = int8.session
        fns["int8 session.run"] = lambda: int8_session.run(["embedding"], {"input": tensor})
        fns["int8 embed"] = lambda: int8.embed(at_size)
    rates = _rates(fns, args.batch, repeats)
    print(f"batch {args.batch}, {args.threads} intra-op threads, median of {repeats} interleaved rounds")
    _report(rates, "fp32 session.run", None, "fp32 session.run (baseline)")
    _report(rates, "fp32 embed", "fp32 session.run", "fp32 embed, 224x224 frames")
    _report(rates, "fp32 embed 720p", "fp32 session.run", "fp32 embed, 1280x720 frames")
    if int8 is not None:
        _report(rates, "int8 session.run", "fp32 session.run", "int8 session.run")
        _report(rates, "int8 embed", "fp32 embed", "int8 embed, 224x224 frames")
        cos = (fp32.embed(hd) * int8.embed(hd)).sum(axis=1)
        print(f"int8 vs fp32 cosine on the 720p frames: mean {cos.mean():.4f}, min {cos.min():.4f}")


def _int8(args: argparse.Namespace, data_dir: Path) -> OnnxEmbedder:
    int8_settings = ModelSettings(threads=args.threads, batch_size=args.batch, precision="int8")
    fresh = not cached_model_path(int8_settings, data_dir).exists()
    calibration = default_calibration_images(16 if args.quick else 64)
    start = time.perf_counter()
    int8_path = ensure_model(int8_settings, data_dir, calibration_images=calibration)
    quant_s = time.perf_counter() - start
    how = "quantised" if fresh else "cached"
    print(f"int8 model: {int8_path.stat().st_size / 1e6:.1f} MB, {how} in {quant_s:.2f} s")
    return OnnxEmbedder(int8_settings, int8_path)


if __name__ == "__main__":
    main()
