"""Labels: quality of what gets labelled (squash vs centre crop vs three crops) and what labels cost in analyze.

    python benchmarks/bench_labels.py [--quality] [--cost] [--search] [--clip PATH] [--rounds N]
                                      [--crops centre|three|none]

--quality (needs scikit-image for its data photos: `pip install scikit-image`; not a project dependency): real
photographs that ship in scikit-image, each made into 16:9 frames two ways: `fill` (the photo cropped to 16:9, the
subject filling the frame, as in footage) and `side` (the photo at full height at the left or right of a wide frame
whose rest is grass). Each frame is labelled like the analyzer does, with one of three inputs: `squash` (the whole
frame resized to 224x224, what the frame embedder sees), `centre` (one centre square crop), `three` (three square
crops along the frame, a class scoring its best crop). A frame is right when its top-1 (top-5) class is one of the
photo's accepted ImageNet classes (listed below; several are fine-grained neighbours). Model: fp32, 1 thread.

--search (scikit-image too): a clip of those photographs, one per 2 s shot (the `fill` frames, then a black shot),
analyzed with labels into a text index on qdrant-edge; each query in SEARCHES names a shot's subject or a WordNet
hypernym of it; prints which shot each query finds first and how often that is the subject's shot.

--cost: analyze_video on the 60 s 720p clip (../shared/clips/cuts_720p_60s.mp4, else a generated 60 s 1280x720 clip
with a cut every 5 s), features [visual] and [visual, labels] in alternating rounds in this process, each with its
own qdrant-edge directory; prints process CPU seconds (all threads) and wall seconds, best of N rounds, and the ratio.
That clip's shots are test patterns (testsrc, bars, noise, fractals), which no ImageNet class names. `--photos DIR`
runs the same measurement on a 60 s 1280x720 clip assembled from 12 photographs of DIR (every len/12-th file in name
order, each cropped to fill 16:9, one per 5 s shot; e.g. github:EliSchwartz/imagenet-sample-images), where labels
name things: there, a confident whole frame spares its crop (`analysis.labels.crop_below`).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED_CLIPS = ROOT.parent / "shared" / "clips"
sys.path.insert(0, str(ROOT / "shared"))

# scikit-image photo -> the ImageNet class ids that count as right (names in video_ai/model/imagenet_classes.txt).
PHOTOS: dict[str, tuple[str, set[int]]] = {
    "chelsea.png": ("cat", {281, 282, 283, 284, 285, 287}),  # tabby, tiger cat, Persian, Siamese, Egyptian, lynx
    "coffee.png": ("coffee", {967, 968, 504, 969}),  # espresso, cup, coffee mug, eggnog
    "rocket.jpg": ("rocket", {657, 744, 812}),  # missile, projectile, space shuttle
    "motorcycle_left.png": ("motorcycle", {670, 665, 671}),  # motor scooter, moped, mountain bike
    "astronaut.png": ("astronaut", {834, 869, 652, 457}),  # suit, trench coat, military uniform, bow tie
}


def cpu_s() -> float:
    t = os.times()
    return t.user + t.system


def _photo(name: str) -> np.ndarray:
    import skimage
    from skimage import io

    image = io.imread(Path(skimage.__file__).parent / "data" / name)
    if image.ndim == 2:
        image = np.stack([image] * 3, axis=-1)
    return np.ascontiguousarray(image[..., :3])


def _frames(photo: np.ndarray, grass: np.ndarray) -> dict[str, np.ndarray]:
    """16:9 frames at 398x224 (the analyzer's detail copy): `fill`, `side-left`, `side-right`."""
    import cv2

    h, w = photo.shape[:2]
    target = 16 / 9
    if w / h > target:
        cw = int(h * target)
        fill = photo[:, (w - cw) // 2 : (w - cw) // 2 + cw]
    else:
        ch = int(w / target)
        fill = photo[(h - ch) // 2 : (h - ch) // 2 + ch]
    out = {"fill": cv2.resize(fill, (398, 224), interpolation=cv2.INTER_AREA)}
    side_w = min(398 // 2, round(224 * w / h))
    subject = cv2.resize(photo, (round(224 * w / h), 224), interpolation=cv2.INTER_AREA)[:, :side_w]
    canvas = cv2.resize(grass, (398, 224), interpolation=cv2.INTER_AREA)
    left = canvas.copy()
    left[:, :side_w] = subject
    right = canvas.copy()
    right[:, 398 - side_w :] = subject
    out["side-left"], out["side-right"] = left, right
    return out


def quality(model_path: Path) -> None:
    import cv2

    from video_ai.adapters.onnx_embedder import OnnxEmbedder
    from video_ai.analyzers.labels import softmax, square_crops
    from video_ai.model import imagenet_labels
    from video_ai.settings import ModelSettings

    embedder = OnnxEmbedder(ModelSettings(threads=1), model_path)
    names = imagenet_labels()
    grass = _photo("grass.png")
    modes = ("squash", "centre", "three", "centre+squash", "three+squash")
    hits = {m: [0, 0] for m in modes}
    total = 0
    print(f"{'photo':<20} {'frame':<11} " + " ".join(f"{m:<28}" for m in modes))
    for photo_name, (_, accepted) in PHOTOS.items():
        for kind, frame in _frames(_photo(photo_name), grass).items():
            total += 1
            cells = []
            for mode in modes:
                squashed = [cv2.resize(frame, (224, 224), interpolation=cv2.INTER_AREA)]
                crops = (squashed if mode == "squash" else square_crops(frame, mode.split("+")[0])
                         + (squashed if mode.endswith("+squash") else []))
                probs = softmax(embedder.logits(crops)).max(axis=0)
                top = [int(c) for c in np.argsort(-probs)[:5]]
                hits[mode][0] += top[0] in accepted
                hits[mode][1] += bool(accepted & set(top))
                mark = "+" if top[0] in accepted else ("~" if accepted & set(top) else "-")
                cells.append(f"{mark} {names[top[0]][:18]} {probs[top[0]]:.2f}".ljust(28))
            print(f"{photo_name:<20} {kind:<11} " + " ".join(cells))
    print(f"\n{total} frames; + top-1 right, ~ right in top-5, - neither")
    for mode in modes:
        print(f"  {mode:<7} top-1 {hits[mode][0]}/{total}   top-5 {hits[mode][1]}/{total}")


SEARCHES: dict[str, list[str]] = {
    "chelsea.png": ["cat", "a cat", "kitten", "feline", "animal", "pet"],
    "coffee.png": ["coffee", "espresso", "a cup of coffee", "drink", "beverage", "food"],
    "rocket.jpg": ["rocket", "missile", "space shuttle", "weapon"],
    "motorcycle_left.png": ["motorcycle", "moped", "scooter", "vehicle", "motor vehicle"],
    "astronaut.png": ["astronaut", "helmet", "person"],
}


def search(model_path: Path) -> None:
    import av
    import cv2

    from video_ai.adapters.frame_source import PyAVFrameSource
    from video_ai.adapters.http_fetch import HttpVideoFetcher
    from video_ai.adapters.local_jobs import InMemoryJobRepository
    from video_ai.adapters.onnx_embedder import OnnxEmbedder
    from video_ai.adapters.onnx_text_embedder import INFO, OnnxTextEmbedder
    from video_ai.adapters.qdrant_edge_index import QdrantEdgeIndex
    from video_ai.adapters.qdrant_edge_moments import QdrantEdgeMoments
    from video_ai.analyzers import AnalyzerContext, AnalyzerSet, MomentStore
    from video_ai.domain.models import Job, MomentFilter, Source
    from video_ai.services.analyze_video import AnalyzeDeps, analyze_video
    from video_ai.settings import LabelSettings, LimitsSettings, ModelSettings, NetworkSettings, SamplingSettings

    grass = _photo("grass.png")
    names = list(SEARCHES)
    with tempfile.TemporaryDirectory() as tmp:
        clip = Path(tmp) / "photos.mp4"
        with av.open(str(clip), "w") as container:
            stream = container.add_stream("libx264", rate=10)
            stream.width, stream.height, stream.pix_fmt = 1280, 720, "yuv420p"
            stream.options = {"crf": "18", "g": "10"}
            pictures = [cv2.resize(_frames(_photo(n), grass)["fill"], (1280, 720), interpolation=cv2.INTER_CUBIC)
                        for n in names] + [np.zeros((720, 1280, 3), np.uint8)]
            for picture in pictures:
                for _ in range(20):
                    container.mux(stream.encode(av.VideoFrame.from_ndarray(picture, format="rgb24")))
            container.mux(stream.encode(None))
        embedder = OnnxEmbedder(ModelSettings(), model_path)
        text = OnnxTextEmbedder()
        index = QdrantEdgeIndex(Path(tmp))
        moments = QdrantEdgeMoments(Path(tmp), INFO)
        deps = AnalyzeDeps(
            jobs=InMemoryJobRepository(),
            fetcher=HttpVideoFetcher(NetworkSettings(), LimitsSettings(), allow_local_files=True),
            frames=PyAVFrameSource(SamplingSettings(), LimitsSettings()), embedder=embedder, index=index,
            notifier=None, workdir=Path(tmp) / "work",
            analyzers=AnalyzerSet(AnalyzerContext(embedder=embedder, index=index, labels=LabelSettings(),
                                                  moments=MomentStore(moments, text))),
        )
        deps.jobs.create(Job(job_id="photos", tenant="t", source=Source(url=clip.resolve().as_uri()),
                             features=["visual", "labels"]))
        job = analyze_video("photos", deps).job
        assert job.status.value == "succeeded", job.error
        for shot in job.labels or []:
            print(f"shot {shot.shot} ({shot.start_s:.1f}-{shot.end_s:.1f} s): "
                  + ", ".join(f"{lb.name} {lb.confidence:.2f}" for lb in shot.labels[:3]))
        right = total = 0
        for shot, name in enumerate(names):
            for query in SEARCHES[name]:
                hits = moments.search(query, text.embed([query])[0], 5, MomentFilter(tenant="t"))
                found = hits[0].shot if hits else None
                total += 1
                right += found == shot
                print(f"  {query!r:<22} -> shot {found} {'right' if found == shot else 'WRONG'} (subject: {name})")
        print(f"\n{right}/{total} queries find their subject's shot first")
        moments.close()
        index.close()


def cost(model_path: Path, clip: Path, rounds: int, crops: str, compare_gate: bool = False) -> None:
    from video_ai.adapters.frame_source import PyAVFrameSource
    from video_ai.adapters.http_fetch import HttpVideoFetcher
    from video_ai.adapters.local_jobs import InMemoryJobRepository
    from video_ai.adapters.onnx_embedder import OnnxEmbedder
    from video_ai.adapters.qdrant_edge_index import QdrantEdgeIndex
    from video_ai.analyzers import AnalyzerContext, AnalyzerSet
    from video_ai.analyzers import labels as labels_module
    from video_ai.domain.models import Job, Source
    from video_ai.services.analyze_video import AnalyzeDeps, analyze_video
    from video_ai.settings import LabelSettings, LimitsSettings, ModelSettings, NetworkSettings, SamplingSettings

    runs: list[tuple[int, int]] = []  # (model runs, crops spared) of each labelled round
    finish = labels_module.LabelRun.finish

    def counted(self: Any, shots: Any) -> Any:
        out = finish(self, shots)  # labels the last pending frames
        runs.append((self.model_runs, self.crops_skipped))
        return out

    labels_module.LabelRun.finish = counted  # type: ignore[method-assign]
    embedder = OnnxEmbedder(ModelSettings(), model_path)
    embedder.embed([np.zeros((224, 224, 3), np.uint8)])  # load the session outside the rounds
    # name -> (features, label settings): the baseline, and labels with the crop gate (default) and without it.
    variants: dict[str, tuple[list[str], LabelSettings]] = {
        "visual": (["visual"], LabelSettings(crops=crops)),  # type: ignore[arg-type]
        "+labels": (["visual", "labels"], LabelSettings(crops=crops)),  # type: ignore[arg-type]
    }
    if compare_gate:
        variants["+labels nogate"] = (["visual", "labels"], LabelSettings(crops=crops, crop_below=1.0))  # type: ignore[arg-type]
    best: dict[str, tuple[float, float]] = {}
    rounds_of: dict[str, list[tuple[float, float]]] = {name: [] for name in variants}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(rounds):
            for name, (features, settings) in variants.items():
                job_id = f"{name.replace(' ', '-').replace('+', 'p')}-{r}"
                index = QdrantEdgeIndex(Path(tmp) / job_id)
                deps = AnalyzeDeps(
                    jobs=InMemoryJobRepository(),
                    fetcher=HttpVideoFetcher(NetworkSettings(), LimitsSettings(), allow_local_files=True),
                    frames=PyAVFrameSource(SamplingSettings(), LimitsSettings()), embedder=embedder, index=index,
                    notifier=None, workdir=Path(tmp) / "work",
                    analyzers=AnalyzerSet(AnalyzerContext(embedder=embedder, index=index, labels=settings)),
                )
                deps.jobs.create(Job(job_id=job_id, tenant="t", source=Source(url=clip.resolve().as_uri()),
                                     features=features))  # type: ignore[arg-type]
                c0, w0 = cpu_s(), time.perf_counter()
                job = analyze_video(job_id, deps).job
                wall, cpu = time.perf_counter() - w0, cpu_s() - c0
                index.close()
                assert job.status.value == "succeeded", job.error
                rounds_of[name].append((cpu, wall))
                old = best.get(name)
                best[name] = (min(cpu, old[0]) if old else cpu, min(wall, old[1]) if old else wall)
                stats = ", ".join(f"{k} {v.count} in {v.seconds:.2f} s" for k, v in job.feature_stats.items())
                spared = f", model runs {runs[-1][0]}, crops spared {runs[-1][1]}" if "labels" in features else ""
                print(f"round {r} {name:<15} cpu {cpu:6.2f} s  wall {wall:6.2f} s  ({stats}{spared})", flush=True)
    vc, vw = best["visual"]
    print(f"\nbest of {rounds}: visual cpu {vc:.2f} s wall {vw:.2f} s")
    for name in list(variants)[1:]:
        lc, lw = best[name]
        # Per-round ratio, then the median: the runs of a round saw about the same load on a shared machine.
        ratios = [(b[0] / a[0], b[1] / a[1]) for a, b in zip(rounds_of["visual"], rounds_of[name], strict=True)]
        cpu_med = float(np.median([q[0] for q in ratios]))
        wall_med = float(np.median([q[1] for q in ratios]))
        print(f"{name:<15} cpu {lc:.2f} s wall {lw:.2f} s: adds {100 * (lc / vc - 1):+.1f}% CPU, "
              f"{100 * (lw / vw - 1):+.1f}% wall (best of each); per-round median {100 * (cpu_med - 1):+.1f}% CPU, "
              f"{100 * (wall_med - 1):+.1f}% wall")


def photo_clip(directory: Path, out: Path, shots: int = 12, shot_s: float = 5.0, fps: int = 30) -> Path:
    import av
    import cv2

    files = sorted(p for p in directory.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    chosen = files[:: max(1, len(files) // shots)][:shots]
    with av.open(str(out), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = 1280, 720, "yuv420p"
        stream.options = {"crf": "23", "g": "60"}
        for path in chosen:
            photo = cv2.cvtColor(cv2.imread(str(path), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
            h, w = photo.shape[:2]
            if w / h > 16 / 9:
                cw = round(h * 16 / 9)
                photo = photo[:, (w - cw) // 2 : (w - cw) // 2 + cw]
            else:
                ch = round(w * 9 / 16)
                photo = photo[(h - ch) // 2 : (h - ch) // 2 + ch]
            picture = cv2.resize(photo, (1280, 720), interpolation=cv2.INTER_CUBIC)
            for _ in range(round(shot_s * fps)):
                container.mux(stream.encode(av.VideoFrame.from_ndarray(picture, format="rgb24")))
        container.mux(stream.encode(None))
    print(f"photo clip: {', '.join(p.name for p in chosen)}")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quality", action="store_true")
    parser.add_argument("--cost", action="store_true")
    parser.add_argument("--search", action="store_true")
    parser.add_argument("--clip", type=Path)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--crops", default="centre", choices=["centre", "three", "none"])
    parser.add_argument("--photos", type=Path, metavar="DIR", help="--cost on a clip of 12 photographs of DIR")
    parser.add_argument("--compare-gate", action="store_true",
                        help="--cost also runs labels with crop_below=1 (every labelled frame's crop scored)")
    args = parser.parse_args()
    from video_ai.model import build_model

    work = Path(tempfile.mkdtemp(prefix="bench-labels-"))
    model_path = build_model(work / "lite0.onnx", include_logits=True)
    if args.search:
        search(model_path)
        return
    if args.quality or not args.cost:
        quality(model_path)
    if args.cost or not args.quality:
        clip = args.clip or SHARED_CLIPS / "cuts_720p_60s.mp4"
        if args.photos:
            clip = photo_clip(args.photos, work / "photos_60s.mp4")
        elif not clip.exists():
            from video_ai.samples import make_clip

            clip = work / "cuts_60s.mp4"
            make_clip(clip, duration_s=60.0, fps=30.0, size=(1280, 720), shots=[5.0 * i for i in range(1, 12)])
        cost(model_path, clip, args.rounds, args.crops, args.compare_gate)


if __name__ == "__main__":
    main()
