"""On-screen text with the real engine (RapidOCR, PP-OCRv6 from its wheel): clips with known text rendered into them,
analyzed end to end, upright, rotated and anamorphic; text in a script the model lacks; words found by search."""

from __future__ import annotations

import time
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np
import pytest

from video_ai.adapters.file_artifacts import FileArtifacts
from video_ai.adapters.frame_source import PyAVFrameSource
from video_ai.adapters.http_fetch import HttpVideoFetcher
from video_ai.adapters.local_jobs import InMemoryJobRepository
from video_ai.adapters.onnx_embedder import OnnxEmbedder
from video_ai.adapters.onnx_text_embedder import INFO, OnnxTextEmbedder
from video_ai.adapters.qdrant_edge_index import QdrantEdgeIndex
from video_ai.adapters.qdrant_edge_moments import QdrantEdgeMoments
from video_ai.adapters.rapid_ocr import RapidOcrReader, packaged_models
from video_ai.analyzers import AnalyzerContext, AnalyzerSet, MomentStore
from video_ai.analyzers.text_artifact import read_lines
from video_ai.domain.models import Job, JobStatus, MomentFilter, Source
from video_ai.services.analyze_video import AnalyzeDeps, analyze_video
from video_ai.settings import LimitsSettings, ModelSettings, NetworkSettings, SamplingSettings
from video_ai.text_samples import Caption, TextShot, make_text_clip

SHOTS = [
    TextShot(3, [Caption("Quarterly results 2026", 0.08, 0.1, 34), Caption("Breaking news tonight", 0.2, 0.72, 26,
                                                                            start_s=1.5)]),
    TextShot(2, [Caption("Hello world", 0.5, 0.45, 30)], background="flat"),
    TextShot(2, []),
]


def test_the_packaged_models_are_the_pinned_ones() -> None:
    paths = packaged_models()
    assert {p.name for p in paths.values()} == {"PP-OCRv6_det_small.onnx", "PP-OCRv6_rec_small.onnx"}


def test_the_int8_models_read_what_the_packaged_ones_read(ocr_reader: RapidOcrReader) -> None:
    """The default (int8 copies built from the pinned models) against the packaged fp32 models, on rendered lines
    of several sizes, inks and backgrounds: the same text and about the same boxes (BENCHMARKS.md measures the
    character accuracy of both on the full set)."""
    from tests.fakes import FakeEmbedder, FakeIndex
    from video_ai.analyzers.ocr import OcrAnalyzer
    from video_ai.model.ocr_int8 import VERSION, int8_paths
    from video_ai.text_samples import render

    # The build version joins the analyzer's content key: lines read by other int8 models are never reused.
    analyzer = OcrAnalyzer(AnalyzerContext(embedder=FakeEmbedder(), index=FakeIndex()))
    assert ocr_reader.int8_dir is not None and analyzer.variant.endswith(f",v{VERSION}")
    fp32 = RapidOcrReader(det_long_side=640, min_confidence=0.6)
    for shot in (TextShot(1, [Caption("Evening bulletin at nine", 0.1, 0.2, 24),
                              Caption("Tickets from 12.50", 0.4, 0.7, 40, color=(255, 230, 0), band=None)]),
                 TextShot(1, [Caption("Platform seven delayed", 0.2, 0.5, 32)], background="busy")):
        grey = cv2.cvtColor(render(shot, 0.0, 1280, 720), cv2.COLOR_RGB2GRAY)
        quantised, packaged = ocr_reader.read(grey), fp32.read(grey)
        assert [line.text for line in quantised] == [line.text for line in packaged] == [
            caption.text for caption in shot.captions]
        for a, b in zip(quantised, packaged, strict=True):
            assert max(abs(x - y) for x, y in zip(a.box, b.box, strict=True)) <= 4  # pixels
    # Built where the reader was told, named by build version and source digest.
    loaded = ocr_reader._load().text_det.session.session
    assert int8_paths(ocr_reader.int8_dir)["PP-OCRv6_det_small.onnx"].is_file() and loaded is not None


def test_without_int8_models_and_nowhere_to_build_them_the_packaged_models_read(tmp_path: Path) -> None:
    """A model directory that cannot be made (here: under a file; on Lambda, a read-only path without the baked
    models) costs CPU, not the job's text: the reader falls back to the packaged fp32 models and says so."""
    from video_ai.text_samples import render

    blocker = tmp_path / "a-file"
    blocker.write_text("")
    reader = RapidOcrReader(det_long_side=640, min_confidence=0.6, int8_dir=blocker / "ocr")
    grey = cv2.cvtColor(render(TextShot(1, [Caption("Gallery opens at noon", 0.1, 0.3, 32)]), 0.0, 1280, 720),
                        cv2.COLOR_RGB2GRAY)
    assert [line.text for line in reader.read(grey)] == ["Gallery opens at noon"]
    assert reader.fell_back


@pytest.mark.timeout(60)
def test_text_in_a_script_the_model_lacks_neither_hangs_nor_crashes(ocr_reader: RapidOcrReader) -> None:
    """Made-up glyphs (strokes in letter-sized cells, lines of them) stand for a script outside the model's
    dictionary: the engine answers quickly with whatever it makes of them, all within the confidence floor."""
    rng = np.random.default_rng(7)
    image = np.full((360, 640), 30, np.uint8)
    for row in range(4):
        for col in range(14):
            x, y = 30 + col * 42, 40 + row * 80
            for _ in range(3):
                pts = rng.integers(0, 30, size=(3, 2)) + np.array([x, y])
                cv2.polylines(image, [pts.astype(np.int32)], False, 230, 3)
    started = time.perf_counter()
    lines = ocr_reader.read(image)
    assert time.perf_counter() - started < 20
    assert all(line.confidence >= 0.6 and line.text for line in lines)


def test_the_gate_skips_the_full_detection_on_a_textless_frame_and_passes_text_and_busy_texture(
        ocr_reader: RapidOcrReader) -> None:
    """The small detector finds nothing on a picture without text (detect answers [] without the full run), finds
    24 px captions, and leaves sharp busy texture (which blurs text away at its size) to the full detection."""
    from video_ai.text_samples import render

    def grey(shot: TextShot) -> np.ndarray:
        return cv2.cvtColor(render(shot, 0.0, 1280, 720), cv2.COLOR_RGB2GRAY)

    textless = grey(TextShot(1, [], background="flat"))
    captioned = grey(TextShot(1, [Caption("Welcome to the lecture", 0.1, 0.7, 24)], background="moving"))
    busy = grey(TextShot(1, [], background="busy"))
    gated = RapidOcrReader(det_long_side=640, min_confidence=0.6, gate=True, engine=ocr_reader._load())
    assert not gated.may_have_text(textless)
    assert gated.may_have_text(captioned) and gated.may_have_text(busy)
    calls: list[tuple[int, ...]] = []
    full = gated._detect

    def counted(image: np.ndarray) -> list[tuple[float, float, float, float]]:
        calls.append(image.shape)
        return full(image)

    gated._detect = counted  # type: ignore[method-assign]
    assert gated.detect(textless) == [] and calls == []
    assert gated.detect(captioned) and calls == [captioned.shape]
    assert [line.text for line in gated.read(captioned)] == ["Welcome to the lecture"]


@pytest.fixture(scope="module")
def text_embedder() -> OnnxTextEmbedder:
    return OnnxTextEmbedder()


@pytest.mark.parametrize("geometry", ["upright", "rotated", "anamorphic"])
def test_lines_are_read_timed_boxed_on_the_display_frame_and_searchable(
        tmp_path: Path, model_path: Path, ocr_reader: RapidOcrReader, text_embedder: OnnxTextEmbedder,
        geometry: str) -> None:
    kwargs = {"upright": {}, "rotated": {"rotation": 90}, "anamorphic": {"sar": Fraction(4, 3)}}[geometry]
    clip = make_text_clip(tmp_path / "text.mp4", SHOTS, size=(960, 540), fps=2, **kwargs)  # type: ignore[arg-type]
    embedder = OnnxEmbedder(ModelSettings(), model_path)
    index = QdrantEdgeIndex(tmp_path / "q")
    moments = QdrantEdgeMoments(tmp_path / "q", INFO)
    artifacts = FileArtifacts(tmp_path / "artifacts")
    deps = AnalyzeDeps(
        jobs=InMemoryJobRepository(),
        fetcher=HttpVideoFetcher(NetworkSettings(), LimitsSettings(), allow_local_files=True),
        frames=PyAVFrameSource(SamplingSettings(), LimitsSettings()), embedder=embedder, index=index,
        notifier=None, workdir=tmp_path / "work",
        analyzers=AnalyzerSet(AnalyzerContext(embedder=embedder, index=index, text_reader=ocr_reader,
                                              artifacts=artifacts, moments=MomentStore(moments, text_embedder))),
    )
    try:
        deps.jobs.create(Job(job_id="j", tenant="t", source=Source(url=clip.path.resolve().as_uri()),
                             features=["ocr"]))
        job = analyze_video("j", deps, ).job
        assert job.status is JobStatus.SUCCEEDED, job.error
        lines = read_lines(artifacts, "j")
        assert lines is not None
        # Sampled at 1 fps: a caption that appears at 1.5 s is first seen on the 2 s sample (the shot detector may
        # take its arrival for a cut; either way it is read then).
        assert [(line.text, line.start_s, line.end_s) for line in lines] == [
            ("Quarterly results 2026", 0.0, 3.0), ("Breaking news tonight", 2.0, 3.0), ("Hello world", 3.0, 5.0)]
        assert lines[2].shot > lines[0].shot
        drawn = {text: box for text, _, *box in clip.boxes}
        for line in lines:
            left, top, right, bottom = drawn[line.text]
            got = line.box
            # The engine's box hugs the letters; the drawn one is Pillow's text box: within ~2% of the frame.
            assert abs(got.left - left) < 0.03 and abs(got.top - top) < 0.03, (line.text, got, drawn[line.text])
            assert abs(got.left + got.width - right) < 0.03 and abs(got.top + got.height - bottom) < 0.03
        assert job.feature_stats["ocr"].count == 3
        hits = moments.search("quarterly results", text_embedder.embed(["quarterly results"])[0], 5,
                              MomentFilter(tenant="t", kinds=("ocr",)))
        assert hits and hits[0].text == "Quarterly results 2026" and hits[0].kind == "ocr"
    finally:
        moments.close()
        index.close()


def test_a_split_job_reads_the_same_lines_as_one_pass(tmp_path: Path, model_path: Path,
                                                      ocr_reader: RapidOcrReader) -> None:
    """Segments of 4 s over a 10 s clip: a caption on screen across two boundaries is one line, not cut or doubled."""
    import random

    from tests.fakes import RecordingNotifier, RecordingQueue

    clip = make_text_clip(tmp_path / "long.mp4", [
        TextShot(6, [Caption("Across the boundary", 0.1, 0.2, 34), Caption("Second caption", 0.1, 0.7, 30,
                                                                           start_s=2.0)]),
        TextShot(4, [Caption("Across the boundary", 0.1, 0.2, 34)], background="flat"),
    ], size=(640, 360), fps=5)
    results = {}
    for name, queue in (("whole", None), ("split", RecordingQueue())):
        embedder = OnnxEmbedder(ModelSettings(), model_path)
        index = QdrantEdgeIndex(tmp_path / name / "q")
        artifacts = FileArtifacts(tmp_path / name / "artifacts")
        deps = AnalyzeDeps(
            jobs=InMemoryJobRepository(),
            fetcher=HttpVideoFetcher(NetworkSettings(), LimitsSettings(), allow_local_files=True),
            frames=PyAVFrameSource(SamplingSettings(), LimitsSettings()), embedder=embedder, index=index,
            notifier=RecordingNotifier(), workdir=tmp_path / name / "work", segment_queue=queue, segment_s=4.0,
            analyzers=AnalyzerSet(AnalyzerContext(embedder=embedder, index=index, text_reader=ocr_reader,
                                                  artifacts=artifacts)),
        )
        deps.jobs.create(Job(job_id="job", tenant="t", source=Source(url=clip.path.resolve().as_uri()),
                             features=["ocr"]))
        job = analyze_video("job", deps).job
        if queue is not None:
            assert job.segments_total == 3
            messages = list(queue.messages)
            random.Random(5).shuffle(messages)
            for message in messages:
                analyze_video("job", deps, segment=message["segment"])
            job = deps.jobs.get("job")  # type: ignore[assignment]
        assert job is not None and job.status is JobStatus.SUCCEEDED, job
        results[name] = read_lines(artifacts, "job")
        index.close()
    whole, split = results["whole"], results["split"]
    assert whole is not None and split is not None
    assert [(line.text, line.start_s, line.end_s) for line in split] == [
        (line.text, line.start_s, line.end_s) for line in whole]
    assert [line.text for line in whole] == ["Across the boundary", "Second caption"]
    assert (whole[0].start_s, whole[0].end_s) == (0.0, 10.0)
