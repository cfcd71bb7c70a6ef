"""On-screen text (issue 16): what OCR reads right, what it costs in analyze, and what the change test saves.

    python benchmarks/bench_ocr.py --accuracy
    python benchmarks/bench_ocr.py --cost [--rounds N] [--clip PATH ...]
    python benchmarks/bench_ocr.py --saving [--clip PATH ...]
    python benchmarks/bench_ocr.py --overhead [--rounds N] [--clip PATH ...]

Every mode takes --gate: the reader with its small-detector gate on (`det_gate`; off by default), and --precision
int8|fp32: the int8 models (the default) or the packaged fp32 ones.

--accuracy: frames rendered with known text (fonts: Pillow's own, DejaVu Sans, DejaVu Serif, Liberation Mono when
installed; sizes 12-48 px on a 1280x720 frame; backgrounds: flat dark, flat light, a soft colour field, sharp busy
texture, with or without a dark band behind the letters), each read by the engine as the analyzer runs it (grey,
det at `det_long_side`), and a rotated source (some of the same frames in a 90-degree phone clip, decoded upright by
the frame source). Character accuracy =
1 - (Levenshtein distance / reference length), over all lines, per group; a line not found counts all its characters.

--cost: analyze_video in this process with features [visual] and [visual, ocr], alternating rounds (each its own
qdrant-edge directory), on: a generated 60 s 1280x720 clip with text in every one of its 12 shots (three lines per
shot, one appearing mid-shot, flat or soft moving backgrounds), the clips of ../shared/clips with text drawn into every
shot (a title, and a lower third from 3 s into the shot) and without text (Big Buck Bunny's first 20 s, before "The
Peach Open Movie Project presents" at ~21 s and its title at ~26 s; the cuts clip without its testsrc2 and testsrc
shots, whose counters are text). Prints process CPU seconds (all threads) best of N and the per-round median ratio,
the frames read of those sampled, OCR CPU ms per video minute, and the CPU of the ocr analyzer's own calls as a share
of the baseline (steadier on a loaded machine). --labels: against the default job's features (visual, labels).

--overhead: --cost's comparison with an engine that finds nothing at no cost: what every sampled frame pays (the
decoder's grey copy, the change test) whatever the text.

--saving: the ocr analyzer alone with the change test and with `every_frame` (every sampled frame read): engine
calls, CPU, and whether the lines are the same.
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

from video_ai.text_samples import Caption, TextShot, make_text_clip  # noqa: E402

FONTS = {
    "pillow": None,
    "dejavu-sans": "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "dejavu-serif": "/usr/share/fonts/truetype/dejavu/DejaVuSerif.ttf",
    "liberation-mono": "/usr/share/fonts/truetype/liberation/LiberationMono-Regular.ttf",
}
PHRASES = ["Quarterly results 2026", "Breaking news tonight", "Welcome to the lecture", "Price 1,299 EUR",
           "Chapter 3: Signals", "Open 9am - 5pm daily", "www.example.org/talks", "Subscribe for more"]


def cpu_s() -> float:
    t = os.times()
    return t.user + t.system


def levenshtein(a: str, b: str) -> int:
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


def text_heavy_shots() -> list[TextShot]:
    shots = []
    for i in range(12):
        title = PHRASES[i % len(PHRASES)]
        shots.append(TextShot(5, [
            Caption(title, 0.06, 0.08, 40),
            Caption(f"Part {i + 1} of 12", 0.06, 0.82, 28, start_s=2.0),
            Caption(f"00:{5 * i:02d}", 0.85, 0.08, 28),
        ], background="moving" if i % 3 else "flat", color=((30 + 17 * i) % 200, 60, 120)))
    return shots


def _reencode(src: Path, dst: Path, edit: Any) -> Path:
    """`src` re-encoded (H.264, same size and rate), each frame through `edit(image, t)`: the PIL image to write, or
    None to drop the frame (timestamps stay contiguous)."""
    import av

    with av.open(str(src)) as source, av.open(str(dst), "w") as out:
        stream = source.streams.video[0]
        rate = stream.average_rate or 25
        video = out.add_stream("libx264", rate=rate)
        assert isinstance(video, av.VideoStream)
        video.width, video.height, video.pix_fmt = stream.width, stream.height, "yuv420p"
        video.codec_context.options = {"preset": "veryfast", "crf": "23"}
        n = 0
        for frame in source.decode(stream):
            img = edit(frame.to_image(), float(frame.time or 0.0))  # type: ignore[no-untyped-call]
            if img is None:
                continue
            new = av.VideoFrame.from_image(img)  # type: ignore[no-untyped-call]
            new.pts = n
            new.time_base = 1 / rate
            n += 1
            for packet in video.encode(new):
                out.mux(packet)
        for packet in video.encode(None):
            out.mux(packet)
    return dst


def captioned(src: Path, dst: Path, cuts: list[float]) -> Path:
    """`src` with text in every shot: a title from the shot's start, a lower third from 3 s into it (on a band),
    both in Pillow's font."""
    from PIL import ImageDraw, ImageFont

    starts = [0.0, *cuts]
    title_font, caption_font = ImageFont.load_default(size=44), ImageFont.load_default(size=30)

    def draw_text(img: Any, t: float) -> Any:
        shot = max(i for i, start in enumerate(starts) if start <= t + 1e-6)
        draw = ImageDraw.Draw(img)
        draw.text((60, 50), PHRASES[shot % len(PHRASES)], font=title_font, fill=(255, 255, 255),
                  stroke_width=2, stroke_fill=(0, 0, 0))
        if t - starts[shot] >= 3.0:
            xy = (60, img.height - 110)
            text = f"Scene {shot + 1}: {PHRASES[(shot + 3) % len(PHRASES)]}"
            box = draw.textbbox(xy, text, font=caption_font)
            draw.rectangle((box[0] - 10, box[1] - 8, box[2] + 10, box[3] + 8), fill=(15, 15, 15))
            draw.text(xy, text, font=caption_font, fill=(255, 255, 255))
        return img

    return _reencode(src, dst, draw_text)


def excerpt(src: Path, dst: Path, spans: list[tuple[float, float]]) -> Path:
    """Only the frames of `src` inside the spans (seconds, start inclusive, end exclusive), re-encoded."""
    return _reencode(src, dst, lambda img, t: img if any(a <= t < b for a, b in spans) else None)


def _deps(tmp: Path, embedder: Any, reader: Any, every_frame: bool = False) -> tuple[Any, Any, Any]:
    from video_ai.adapters.file_artifacts import FileArtifacts
    from video_ai.adapters.frame_source import PyAVFrameSource
    from video_ai.adapters.http_fetch import HttpVideoFetcher
    from video_ai.adapters.local_jobs import InMemoryJobRepository
    from video_ai.adapters.qdrant_edge_index import QdrantEdgeIndex
    from video_ai.analyzers import AnalyzerContext, AnalyzerSet
    from video_ai.services.analyze_video import AnalyzeDeps
    from video_ai.settings import LimitsSettings, NetworkSettings, OcrSettings, SamplingSettings

    index = QdrantEdgeIndex(tmp / "q")
    artifacts = FileArtifacts(tmp / "artifacts")
    deps = AnalyzeDeps(
        jobs=InMemoryJobRepository(),
        fetcher=HttpVideoFetcher(NetworkSettings(), LimitsSettings(), allow_local_files=True),
        frames=PyAVFrameSource(SamplingSettings(), LimitsSettings()), embedder=embedder, index=index,
        notifier=None, workdir=tmp / "work",
        analyzers=AnalyzerSet(AnalyzerContext(embedder=embedder, index=index, text_reader=reader,
                                              ocr=OcrSettings(every_frame=every_frame), artifacts=artifacts)),
    )
    return deps, index, artifacts


def analyze_once(tmp: Path, clip: Path, features: list[str], embedder: Any, reader: Any,
                 every_frame: bool = False) -> tuple[float, float, Any, dict[str, Any] | None]:
    import json

    from video_ai.domain.models import Job, Source
    from video_ai.services.analyze_video import analyze_video

    deps, index, artifacts = _deps(tmp, embedder, reader, every_frame)
    deps.jobs.create(Job(job_id="bench", tenant="t", source=Source(url=clip.resolve().as_uri()),
                         features=features))
    c0, w0 = cpu_s(), time.perf_counter()
    job = analyze_video("bench", deps).job
    cpu, wall = cpu_s() - c0, time.perf_counter() - w0
    index.close()
    assert job.status.value == "succeeded", job.error
    raw = artifacts.get("bench", "text.json")
    return cpu, wall, job, json.loads(raw) if raw else None


GATE = False
PRECISION = "int8"
BASE = ["visual"]  # --cost's baseline features (--labels: the default job's, visual and labels)


def int8_dir() -> Path | None:
    """Where the int8 models are (built on first use) with --precision int8 (the default), as the analyzer runs."""
    from video_ai.model import ocr_model_dir
    from video_ai.settings import Settings

    return ocr_model_dir(Settings()) if PRECISION == "int8" else None


def load(det_long_side: int) -> tuple[Any, Any]:
    from video_ai.adapters.onnx_embedder import OnnxEmbedder
    from video_ai.adapters.rapid_ocr import RapidOcrReader
    from video_ai.model import ensure_model
    from video_ai.settings import ModelSettings, Settings

    settings = Settings()
    embedder = OnnxEmbedder(ModelSettings(), ensure_model(settings.model, Path(tempfile.gettempdir()) / "bench-ocr"))
    embedder.embed([np.zeros((224, 224, 3), np.uint8)])
    reader = RapidOcrReader(det_long_side=det_long_side, min_confidence=settings.analysis.ocr.min_confidence,
                            gate=GATE, int8_dir=int8_dir())
    reader.read(np.zeros((64, 256), np.uint8))  # load the sessions outside the rounds
    return embedder, reader


class OwnCpu:
    """The CPU time the ocr analyzer's own calls take (OcrRun.add/finish, in the thread that makes them): a figure
    that the machine's other load moves much less than the difference of two whole runs does. It leaves out what the
    decoder does for OCR in its own thread (the grey copy: --overhead measures that with the change test)."""

    def __init__(self) -> None:
        from video_ai.analyzers.ocr import OcrRun

        self.seconds = 0.0
        for name in ("add", "finish"):
            original = getattr(OcrRun, name)
            setattr(OcrRun, name, self._timed(original))

    def _timed(self, original: Any) -> Any:
        def timed(run: Any, *args: Any) -> Any:
            t0 = time.thread_time()
            try:
                return original(run, *args)
            finally:
                self.seconds += time.thread_time() - t0
        return timed


def cost(clips: list[Path], rounds: int, det_long_side: int) -> None:
    embedder, reader = load(det_long_side)
    own = OwnCpu()
    for clip in clips:
        ratios, best = [], {"visual": float("inf"), "visual+ocr": float("inf")}
        shares = []
        doc: dict[str, Any] | None = None
        duration = 0.0
        for r in range(rounds):
            got = {}
            for label, features in (("visual", BASE), ("visual+ocr", [*BASE, "ocr"])):
                own.seconds = 0.0
                with tempfile.TemporaryDirectory() as tmp:
                    cpu, wall, job, text = analyze_once(Path(tmp), clip, features, embedder, reader)
                if label == "visual+ocr":
                    shares.append(own.seconds / got["visual"])
                got[label] = cpu
                best[label] = min(best[label], cpu)
                duration = job.video.duration_s if job.video else 0.0
                if text is not None:
                    doc = text
                print(f"  {clip.name} round {r} {label:<11} cpu {cpu:6.2f} s wall {wall:6.2f} s", flush=True)
            ratios.append(got["visual+ocr"] / got["visual"])
        added = best["visual+ocr"] - best["visual"]
        assert doc is not None
        print(f"{clip.name}: {'+'.join(BASE)} {best['visual']:.2f} s, +ocr {best['visual+ocr']:.2f} s CPU (best of "
              f"{rounds}); ocr adds {100 * (best['visual+ocr'] / best['visual'] - 1):+.1f}% (best of each), "
              f"{100 * (float(np.median(ratios)) - 1):+.1f}% (per-round median); read {doc['frames_read']} of "
              f"{doc['frames_seen']} frames, {len(doc['lines'])} lines; ocr ~{1000 * added / (duration / 60):.0f} "
              f"CPU ms per video minute; the analyzer's own calls {100 * float(np.median(shares)):.1f}% of the "
              f"baseline (median)", flush=True)


class NullReader:
    """An engine that finds nothing, at no cost: what is left is the decoder's grey copy and the change test."""

    def detect(self, image: np.ndarray) -> list[tuple[float, float, float, float]]:
        return []

    def recognize(self, image: np.ndarray, boxes: Any) -> list[Any]:
        return []


def overhead(clips: list[Path], rounds: int) -> None:
    embedder, _ = load(640)
    for clip in clips:
        ratios = []
        for _ in range(rounds):
            got = {}
            for label, features in (("visual", ["visual"]), ("visual+ocr", ["visual", "ocr"])):
                with tempfile.TemporaryDirectory() as tmp:
                    got[label] = analyze_once(Path(tmp), clip, features, embedder, NullReader())[0]
            ratios.append(got["visual+ocr"] / got["visual"])
        print(f"{clip.name}: the grey copy and the change test alone (an engine that finds nothing) add "
              f"{100 * (float(np.median(ratios)) - 1):+.1f}% CPU (median of {rounds} rounds)", flush=True)


def saving(clips: list[Path], det_long_side: int) -> None:
    embedder, reader = load(det_long_side)
    for clip in clips:
        out = {}
        for every in (False, True):
            with tempfile.TemporaryDirectory() as tmp:
                cpu, _, _, doc = analyze_once(Path(tmp), clip, ["ocr"], embedder, reader, every_frame=every)
            assert doc is not None
            out[every] = (cpu, doc)
            print(f"  {clip.name} {'every frame' if every else 'change test'}: cpu {cpu:.2f} s, read "
                  f"{doc['frames_read']} of {doc['frames_seen']}, {len(doc['lines'])} lines", flush=True)
        (c_cpu, c_doc), (e_cpu, e_doc) = out[False], out[True]
        ranges_c = {(x["text"], x["start_s"], x["end_s"]) for x in c_doc["lines"]}
        ranges_e = {(x["text"], x["start_s"], x["end_s"]) for x in e_doc["lines"]}
        same = ranges_c == ranges_e
        texts_c = {x["text"] for x in c_doc["lines"]}
        texts_e = {x["text"] for x in e_doc["lines"]}
        print(f"{clip.name}: change test reads {c_doc['frames_read']} frames vs {e_doc['frames_read']} "
              f"({100 * (1 - c_doc['frames_read'] / max(1, e_doc['frames_read'])):.0f}% fewer engine calls), CPU "
              f"{c_cpu:.2f} vs {e_cpu:.2f} s ({100 * (1 - c_cpu / e_cpu):.0f}% less); same lines and ranges: {same}; "
              f"texts only with every frame: {sorted(texts_e - texts_c)[:8]}; ranges only with the change test: "
              f"{sorted(ranges_c - ranges_e)[:4]}, only with every frame: {sorted(ranges_e - ranges_c)[:4]}",
              flush=True)


def accuracy(det_long_side: int) -> None:
    import cv2

    from video_ai.adapters.frame_source import PyAVFrameSource
    from video_ai.adapters.rapid_ocr import RapidOcrReader
    from video_ai.domain.models import Sampling
    from video_ai.text_samples import render

    reader = RapidOcrReader(det_long_side=det_long_side, min_confidence=0.6, gate=GATE, int8_dir=int8_dir())
    # (picture, its colour, ink, band behind the letters or None)
    backgrounds = {"flat dark, white ink": ("flat", (20, 30, 40), (255, 255, 255), None),
                   "flat light, black ink": ("flat", (225, 225, 215), (20, 20, 20), None),
                   "colour field, yellow ink": ("moving", (90, 120, 60), (255, 255, 0), None),
                   "colour field, white ink on a dark band": ("moving", (90, 120, 60), (255, 255, 255), (10, 10, 10)),
                   "busy texture, white ink": ("busy", (60, 60, 60), (255, 255, 255), None),
                   "busy texture, white ink on a dark band": ("busy", (60, 60, 60), (255, 255, 255), (10, 10, 10))}
    totals: dict[str, list[int]] = {}

    def score(group: str, truths: list[str], lines: list[Any]) -> None:
        errors = 0
        found = [line.text for line in lines]
        for truth in truths:
            best = min((levenshtein(truth, text) for text in found), default=len(truth))
            errors += min(best, len(truth))
        tot = totals.setdefault(group, [0, 0])
        tot[0] += errors
        tot[1] += sum(len(t) for t in truths)

    frames = []
    for font_name, font in FONTS.items():
        if font is not None and not Path(font).exists():
            continue
        for size in (12, 16, 24, 32, 48):
            for bg_name, (kind, colour, ink, band) in backgrounds.items():
                truths = PHRASES[:3] if size < 48 else PHRASES[:2]
                captions = [Caption(t, 0.05 + 0.1 * (k % 2), 0.15 + 0.3 * k, size, color=ink, band=band)
                            for k, t in enumerate(truths)]
                shot = TextShot(1, captions, background=kind, color=colour)
                img = render(shot, 0.0, 1280, 720, font=font)
                luma = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)
                lines = reader.read(luma)
                for group in (f"font {font_name}", f"size {size}px", f"background {bg_name}", "all upright"):
                    score(group, truths, lines)
                frames.append((shot, font, luma, truths))
    # A rotated source: a phone clip (coded 720x1280, rotate 90) of some of the frames, decoded upright.
    with tempfile.TemporaryDirectory() as tmp:
        pillow = [f for f in frames if f[1] is None]  # make_text_clip draws with one font: Pillow's
        chosen = pillow[:: max(1, len(pillow) // 12)]
        clip = make_text_clip(Path(tmp) / "rot.mp4", [shot for shot, _, _, _ in chosen], size=(1280, 720), fps=1,
                              rotation=90)
        reader_frames = list(PyAVFrameSource().open(clip.path, Sampling(), image_size=(224, 224),
                                                    luma_short_side=720))
        for frame, (_, _, upright, truths) in zip(reader_frames, chosen, strict=False):
            assert frame.luma is not None
            score("rotated source (90, decoded upright)", truths, reader.read(frame.luma))
            score("the same frames, rendered upright", truths, reader.read(upright))
    print("| group | characters | character accuracy |\n|---|---|---|")
    for group, (errors, chars) in totals.items():
        print(f"| {group} | {chars} | {100 * (1 - errors / chars):.1f}% |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--accuracy", action="store_true")
    parser.add_argument("--cost", action="store_true")
    parser.add_argument("--saving", action="store_true")
    parser.add_argument("--overhead", action="store_true")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--det-long-side", type=int, default=640)
    parser.add_argument("--clip", type=Path, action="append")
    parser.add_argument("--gate", action=argparse.BooleanOptionalAction, default=False,
                        help="the reader's small-detector gate (det_gate; off by default)")
    parser.add_argument("--labels", action="store_true",
                        help="--cost against the default job's features (visual, labels) instead of visual alone")
    parser.add_argument("--precision", choices=("int8", "fp32"), default="int8",
                        help="the OCR models: int8 copies (analysis.ocr.precision's default) or the packaged fp32")
    parser.add_argument("--shared-clips", type=Path, default=SHARED_CLIPS, help="where the shared clips are")
    args = parser.parse_args()
    global GATE, PRECISION, BASE
    GATE, PRECISION = args.gate, args.precision
    if args.labels:
        BASE = ["visual", "labels"]
    work = Path(tempfile.mkdtemp(prefix="bench-ocr-"))
    clips = args.clip
    if not clips:
        heavy = work / "text_heavy_720p_60s.mp4"
        make_text_clip(heavy, text_heavy_shots(), size=(1280, 720), fps=30)
        clips = [heavy]
        bunny, cuts = args.shared_clips / "big_buck_bunny_0_30.webm", args.shared_clips / "cuts_720p_60s.mp4"
        if bunny.exists():
            # Textless: its first 20 s (a fade from black and three shots), before the credit at ~21 s.
            clips += [captioned(bunny, work / "bunny_captioned.mp4", [11.79, 15.67, 22.96]),
                      excerpt(bunny, work / "bunny_textless.mp4", [(0.0, 20.0)])]
        if cuts.exists():
            # Textless: without its testsrc2 (0-5 s) and testsrc (45-50 s) shots, whose counters are text.
            clips += [captioned(cuts, work / "cuts_captioned.mp4", [5.0 * i for i in range(1, 12)]),
                      excerpt(cuts, work / "cuts_textless.mp4", [(5.0, 45.0), (50.0, 60.0)])]
    if args.accuracy:
        accuracy(args.det_long_side)
    if args.saving:
        saving(clips, args.det_long_side)
    if args.cost:
        cost(clips, args.rounds, args.det_long_side)
    if args.overhead:
        overhead(clips, args.rounds)


if __name__ == "__main__":
    main()
