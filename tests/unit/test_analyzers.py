"""The analyzer port and registry, and the labels analyzer on fakes (real model: tests/integration/test_labels.py)."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.fakes import (
    FakeEmbedder,
    FakeFetcher,
    FakeFrameSource,
    FakeIndex,
    FakeReader,
    RecordingMetrics,
    RecordingNotifier,
    RecordingQueue,
)
from video_ai.adapters.local_jobs import InMemoryJobRepository
from video_ai.analyzers import AnalyzerContext, AnalyzerSet, analyzer_class
from video_ai.analyzers.labels import aggregate, contrast, square_crops
from video_ai.domain.errors import FeatureUnavailable
from video_ai.domain.models import (
    FrameLabels,
    Job,
    JobStatus,
    Label,
    ModelInfo,
    Moment,
    SampledFrame,
    Sampling,
    Shot,
    Source,
)
from video_ai.domain.ports import FeatureOutput, FrameNeeds, MediaFile
from video_ai.model.label_calibration import shipped_temperature, softmax
from video_ai.services.analyze_video import AnalyzeDeps, analyze_video
from video_ai.settings import LabelSettings

CLASSES = 1000


class ClassifyingEmbedder(FakeEmbedder):
    """Logits that pick a class from the image's mean red level (class = red // 10), and record each crop."""

    def __init__(self) -> None:
        super().__init__()
        self.crops: list[tuple[int, int]] = []

    @property
    def input_size(self) -> tuple[int, int]:
        return (16, 16)

    def logits(self, images: Sequence[np.ndarray]) -> np.ndarray:
        out = np.zeros((len(images), CLASSES), dtype=np.float32)
        for row, image in enumerate(images):
            self.crops.append(image.shape[:2])
            out[row, int(image[..., 0].mean()) // 10] = 12.0
        return out


class EmbedderWithLogits(ClassifyingEmbedder):
    """Like the ONNX embedder: vectors and logits of the same images in one call (not counted as crops)."""

    def embed_with_logits(self, images: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        vectors = self.embed(images)
        logits = np.zeros((len(images), CLASSES), dtype=np.float32)
        for row, image in enumerate(images):
            logits[row, 900 + int(image[..., 0].mean()) // 40] = 9.0
        return vectors, logits


class WideFrameSource(FakeFrameSource):
    """FakeFrameSource whose frames also carry a 16:9 `detail` copy when asked; frames 0 and 5 are black."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.detail_sides: list[int | None] = []

    def open(self, path: Path | MediaFile, sampling: Sampling, image_size: tuple[int, int] | None = None,
             thumbnail_width: int | None = None, start_s: float | None = None, end_s: float | None = None,
             detail_short_side: int | None = None, luma_short_side: int | None = None) -> FakeReader:
        reader = super().open(path, sampling, image_size, thumbnail_width, start_s, end_s)
        self.detail_sides.append(detail_short_side)
        if detail_short_side:
            side = detail_short_side
            for frame in reader._frames:
                second = round(frame.pts_s)
                detail = np.zeros((side, side * 16 // 9, 3), dtype=np.uint8)
                if second % 5 != 0:
                    # A textured picture whose red level names the shot (shot s -> class 3 + s) and, a little, the
                    # frame: the most detailed frame of a shot is its last one.
                    detail[..., 0] = 35 + 10 * (second // 5)
                    detail[::3, :, 1] = 60 * (second % 5)
                frame.detail = detail
        return reader


THREE_CROPS = LabelSettings(crops="three", whole_frame=False)


def _deps(tmp_path: Path, labels: LabelSettings = THREE_CROPS, **overrides: object) -> AnalyzeDeps:
    embedder = overrides.pop("embedder", None) or ClassifyingEmbedder()
    index = overrides.pop("index", None) or FakeIndex()
    values: dict[str, object] = dict(
        jobs=InMemoryJobRepository(), fetcher=FakeFetcher(), frames=WideFrameSource(), embedder=embedder,
        index=index, notifier=RecordingNotifier(), workdir=tmp_path / "work", metrics=RecordingMetrics(),
        batch_size=3, progress_every=3,
        analyzers=AnalyzerSet(AnalyzerContext(embedder=embedder, index=index, labels=labels)),  # type: ignore[arg-type]
    )
    values.update(overrides)
    return AnalyzeDeps(**values)  # type: ignore[arg-type]


def _job(deps: AnalyzeDeps, features: list[str], job_id: str = "job-1") -> Job:
    return deps.jobs.create(Job(job_id=job_id, tenant="t1", source=Source(url="https://example.com/v.mp4"),
                                features=features))  # type: ignore[arg-type]


class RecordingAnalyzer:
    """An analyzer the registry does not know, plugged in by name: the orchestrator must feed it like the others."""

    feature = "ocr"
    needs = FrameNeeds()

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.finished_with: list[int] = []

    def start(self, job: Job) -> RecordingAnalyzer:
        return self

    def add(self, frames: Sequence[SampledFrame]) -> None:
        self.batches.append([f.index for f in frames])

    def finish(self, shots: Sequence[Shot]) -> FeatureOutput:
        self.finished_with = [s.index for s in shots]
        return FeatureOutput(count=sum(map(len, self.batches)), warnings=["ocr: recorded"])

    def reuse(self, job: Job, previous: Job) -> FeatureOutput:
        return FeatureOutput()

    def merge(self, job: Job, segments: Sequence[Any], shots: Sequence[Shot]) -> FeatureOutput:
        return FeatureOutput()

    def discard(self, job: Job) -> None:
        return None


def test_an_unknown_feature_is_refused_by_name() -> None:
    from video_ai.analyzers import REGISTRY

    with pytest.raises(FeatureUnavailable) as err:
        analyzer_class("speech", {"visual": REGISTRY["visual"]})  # a version without speech
    assert err.value.field == "features" and "visual" in err.value.message


def test_the_registry_builds_an_analyzer_only_when_a_job_asks_for_it(tmp_path: Path) -> None:
    sys.modules.pop("video_ai.analyzers.labels", None)
    deps = _deps(tmp_path)
    _job(deps, ["visual"])
    assert analyze_video("job-1", deps).job.status is JobStatus.SUCCEEDED
    assert "video_ai.analyzers.labels" not in sys.modules
    frames = deps.frames
    assert isinstance(frames, WideFrameSource) and frames.detail_sides == [None]


def test_every_analyzer_of_a_job_gets_every_batch_and_is_counted_and_timed_on_its_own(tmp_path: Path) -> None:
    recorder = RecordingAnalyzer()
    embedder = ClassifyingEmbedder()
    deps = _deps(tmp_path, embedder=embedder,
                 analyzers=AnalyzerSet(AnalyzerContext(embedder=embedder, index=FakeIndex()),
                                       overrides={"ocr": recorder}))
    _job(deps, ["visual", "ocr"])
    result = analyze_video("job-1", deps)
    job = result.job
    assert job.status is JobStatus.SUCCEEDED
    assert recorder.batches == [[0, 1, 2], [3, 4, 5], [6, 7, 8], [9]] and recorder.finished_with == [0, 1]
    assert job.feature_stats["ocr"].count == 10 and job.feature_stats["visual"].count == 10
    assert job.feature_stats["visual"].seconds >= 0 and job.warnings == ["ocr: recorded"]
    assert job.frames_indexed == 10 and len(result.frames) == 10
    metrics = deps.metrics
    assert isinstance(metrics, RecordingMetrics)
    assert metrics.counts[("analyzer_ocr_items", ())] == 10.0 and metrics.observations["analyzer_visual_seconds"]


def test_labels_alone_label_the_most_detailed_frame_of_each_shot_from_three_square_crops(tmp_path: Path) -> None:
    deps = _deps(tmp_path)
    _job(deps, ["labels"])
    job = analyze_video("job-1", deps).job
    assert job.status is JobStatus.SUCCEEDED and job.frames_indexed == 0
    index = deps.index
    assert isinstance(index, FakeIndex) and index.points == {}
    assert job.labels is not None and [s.shot for s in job.labels] == [0, 1]
    first, second = job.labels
    # Frame 0 and 5 are black (skipped); the most detailed frame of each shot is its last (4 and 9).
    assert [f.frame_number for f in first.frames] == [4 * 25] and [f.frame_number for f in second.frames] == [9 * 25]
    assert first.labels[0].class_id == 3 and second.labels[0].class_id == 4
    assert first.labels[0].confidence > 0.9 and (first.start_s, first.end_s) == (0.0, 5.0)
    embedder = deps.embedder
    assert isinstance(embedder, ClassifyingEmbedder)
    assert embedder.crops == [(16, 16)] * 6  # two frames x three square crops, already model-size
    assert embedder.embedded == 0 and job.feature_stats["labels"].count == 2
    frames = deps.frames
    assert isinstance(frames, WideFrameSource) and frames.detail_sides == [16]


def test_a_long_shot_gets_one_labelled_frame_per_window(tmp_path: Path) -> None:
    embedder = ClassifyingEmbedder()
    deps = _deps(tmp_path, LabelSettings(window_s=2.0, crops="centre", whole_frame=False), embedder=embedder,
                 frames=WideFrameSource(n_frames=10, shot_len=10))
    _job(deps, ["labels"])
    job = analyze_video("job-1", deps).job
    assert job.labels is not None and len(job.labels) == 1
    # Windows [0,2) [2,4) [4,6) [6,8) [8,10): frames 0 and 5 are black, the last frame of each window wins.
    assert [f.pts_s for f in job.labels[0].frames] == [1.0, 3.0, 4.0, 7.0, 9.0]
    assert len(embedder.crops) == 5


def test_by_default_the_centre_crop_joins_the_whole_frame_logits_the_embedder_computed_already(tmp_path: Path) -> None:
    embedder = EmbedderWithLogits()
    deps = _deps(tmp_path, LabelSettings(crop_below=1.0), embedder=embedder)
    _job(deps, ["visual", "labels"])
    job = analyze_video("job-1", deps).job
    assert job.labels is not None
    # One model run per labelled frame (its centre crop); the whole frame's class (900 + grey // 40) came free.
    assert embedder.crops == [(16, 16)] * 2
    assert [sorted(lb.class_id for lb in s.labels) for s in job.labels] == [[3, 900], [4, 901]]
    alone = _deps(tmp_path / "alone", LabelSettings(crop_below=1.0), embedder=ClassifyingEmbedder())
    _job(alone, ["labels"])
    analyze_video("job-1", alone)
    assert isinstance(alone.embedder, ClassifyingEmbedder) and len(alone.embedder.crops) == 4  # + the whole frame


def test_a_model_without_class_output_gives_a_warning_not_a_failed_job(tmp_path: Path) -> None:
    deps = _deps(tmp_path, embedder=FakeEmbedder())
    _job(deps, ["visual", "labels"])
    job = analyze_video("job-1", deps).job
    assert job.status is JobStatus.SUCCEEDED and job.frames_indexed == 10
    assert job.labels is not None and all(s.labels == [] for s in job.labels)
    assert job.warnings == ["labels: the image model has no ImageNet class output; no labels were made"]


def test_reuse_never_hands_back_results_computed_without_a_requested_feature(tmp_path: Path) -> None:
    deps = _deps(tmp_path)
    _job(deps, ["visual"], "plain")
    analyze_video("plain", deps)
    _job(deps, ["visual", "labels"], "labelled")
    labelled = analyze_video("labelled", deps).job
    assert labelled.reused_from is None and labelled.labels is not None and labelled.labels[0].labels
    _job(deps, ["labels", "visual"], "again")
    again = analyze_video("again", deps).job
    assert again.reused_from == "labelled" and again.labels == labelled.labels
    assert again.frames_indexed == 10 and again.feature_stats["labels"].count == 2
    # Labels made with another temperature (or before calibration), or other label settings, are not reused.
    for name, settings in (("hotter", LabelSettings(crops="three", whole_frame=False, temperature=2.0)),
                           ("wider", LabelSettings(crops="centre", whole_frame=False))):
        other = _deps(tmp_path / name, settings, jobs=deps.jobs, index=deps.index)
        _job(other, ["visual", "labels"], name)
        assert analyze_video(name, other).job.reused_from is None


def test_a_split_job_labels_its_segments_and_merges_them_on_the_whole_videos_shots(tmp_path: Path) -> None:
    queue = RecordingQueue()
    deps = _deps(tmp_path, frames=WideFrameSource(n_frames=10, shot_len=5), segment_queue=queue, segment_s=3.0)
    _job(deps, ["visual", "labels"], "job")
    assert analyze_video("job", deps).job.segments_total == 4
    for message in queue.messages:
        analyze_video("job", deps, segment=message["segment"])
    job = deps.jobs.get("job")
    assert job is not None and job.status is JobStatus.SUCCEEDED and job.labels is not None
    assert [s.shot for s in job.labels] == [0, 1]
    # Segments [0,3) [3,6) [6,9) [9,..): each picks its own best frame per shot, then the merge regroups them.
    assert [f.pts_s for f in job.labels[0].frames] == [2.0, 4.0]
    assert [f.pts_s for f in job.labels[1].frames] == [8.0, 9.0]
    assert all(f.shot == s.shot for s in job.labels for f in s.frames)
    assert [lb.class_id for lb in job.labels[1].labels][:1] == [4]
    assert job.feature_stats["labels"].count == 4 and job.feature_stats["visual"].count == 10


def test_square_crops_follow_the_long_side_and_contrast_tells_black_from_detail() -> None:
    wide = np.arange(9 * 16 * 3, dtype=np.uint8).reshape(9, 16, 3)
    crops = square_crops(wide, "three")
    assert [c.shape for c in crops] == [(9, 9, 3)] * 3
    assert np.array_equal(crops[0], wide[:, :9]) and np.array_equal(crops[2], wide[:, 7:])
    tall = wide.transpose(1, 0, 2)
    assert [c.shape for c in square_crops(tall, "three")] == [(9, 9, 3)] * 3
    assert [c.shape for c in square_crops(wide, "centre")] == [(9, 9, 3)]
    assert np.array_equal(square_crops(wide, "centre")[0], wide[:, 3:12])
    assert len(square_crops(np.zeros((10, 11, 3), np.uint8), "three")) == 1  # near-square: one crop
    assert contrast(np.zeros((20, 20, 3), np.uint8)) == 0.0
    checker = np.zeros((20, 20, 3), np.uint8)
    checker[:10] = 200  # half bright, half dark
    assert contrast(checker) > 50


def test_shot_labels_keep_each_class_at_its_best_frame_and_list_every_shot() -> None:
    def label(c: int, p: float) -> Label:
        return Label(class_id=c, name=f"c{c}", confidence=p)

    frames = [FrameLabels(pts_s=1, frame_number=1, shot=0, labels=[label(1, 0.5), label(2, 0.3)]),
              FrameLabels(pts_s=2, frame_number=2, shot=0, labels=[label(2, 0.6)])]
    shots = [Shot(index=0, start_s=0, end_s=3, start_frame=0, end_frame=2),
             Shot(index=1, start_s=3, end_s=4, start_frame=3, end_frame=4)]
    first, second = aggregate(frames, shots, top_k=5)
    assert [(lb.class_id, lb.confidence) for lb in first.labels] == [(2, 0.6), (1, 0.5)]
    assert second.labels == [] and second.frames == [] and (second.start_s, second.end_s) == (3, 4)


def test_a_moment_has_the_shape_the_text_index_stores() -> None:
    moment = Moment(job_id="j", tenant="t", kind="label", text="tabby, cat", start_s=0, end_s=5, shot=0,
                    confidence=0.8)
    assert set(moment.model_dump()) == {"job_id", "tenant", "kind", "text", "start_s", "end_s", "shot", "confidence",
                                        "pts_s"}  # DESIGN §3 plus a representative time for the hit
    with pytest.raises(ValueError):
        Moment(job_id="j", tenant="t", kind="smell", text="x", start_s=0, end_s=1,  # type: ignore[arg-type]
               confidence=0.5)


def test_the_config_default_names_only_features_this_version_can_run(monkeypatch: pytest.MonkeyPatch) -> None:
    import video_ai.analyzers
    from video_ai.domain.errors import ConfigError
    from video_ai.settings import parse_settings

    # A version without speech (one feature the domain names but this build has no analyzer for).
    monkeypatch.setattr(video_ai.analyzers, "REGISTRY", {k: v for k, v in video_ai.analyzers.REGISTRY.items()
                                                         if k != "speech"})
    with pytest.raises(ConfigError) as err:
        parse_settings({"analysis": {"features": ["visual", "speech"]}}, "config.yml")
    assert err.value.field == "analysis.features" and "speech" in err.value.message
    assert parse_settings({"analysis": {"features": ["labels", "labels"]}}).analysis.features == ["labels"]


class BuiltInModelEmbedder(ClassifyingEmbedder):
    """Reports the built-in model's identity (so the shipped temperature applies) and logits that are not peaked:
    the class the red level names at 3.0, its neighbour at 2.0, the rest at 0."""

    @property
    def info(self) -> ModelInfo:
        return ModelInfo(name="efficientnet-lite0", version="imagenet-1", dim=self.dim)

    def logits(self, images: Sequence[np.ndarray]) -> np.ndarray:
        out = np.zeros((len(images), CLASSES), dtype=np.float32)
        for row, image in enumerate(images):
            self.crops.append(image.shape[:2])
            out[row, int(image[..., 0].mean()) // 10] = 7.0
            out[row, int(image[..., 0].mean()) // 10 + 1] = 6.0
        return out


def _reported(tmp_path: Path, embedder: ClassifyingEmbedder, labels: LabelSettings) -> tuple[Job, float]:
    deps = _deps(tmp_path, labels, embedder=embedder)
    _job(deps, ["labels"])
    job = analyze_video("job-1", deps).job
    assert job.labels is not None
    return job, job.labels[0].frames[0].labels[0].confidence


def test_label_confidences_are_calibrated_with_the_temperature_fitted_for_the_model(tmp_path: Path) -> None:
    row = np.zeros(CLASSES)
    row[3], row[4] = 7.0, 6.0
    temperature = shipped_temperature("efficientnet-lite0", "imagenet-1")
    assert temperature is not None and abs(temperature - 1.0) > 0.05
    calibrated, raw = softmax(row, temperature)[3], softmax(row, 1.0)[3]
    assert abs(calibrated - raw) > 0.02
    settings = LabelSettings(crops="centre", whole_frame=False)
    job, confidence = _reported(tmp_path / "a", BuiltInModelEmbedder(), settings)
    assert confidence == pytest.approx(calibrated, abs=1e-4) and job.warnings == []
    # Another model has no fitted temperature: the raw softmax, and the job says so.
    other = type("OtherModel", (BuiltInModelEmbedder,), {"info": ClassifyingEmbedder.info})()
    job, confidence = _reported(tmp_path / "b", other, settings)
    assert confidence == pytest.approx(raw, abs=1e-4)
    assert job.warnings == ["labels: confidences are the raw softmax (no temperature is fitted for this model)"]
    # A configured temperature wins.
    _, confidence = _reported(tmp_path / "c", other, LabelSettings(crops="centre", whole_frame=False, temperature=0.5))
    assert confidence == pytest.approx(softmax(row, 0.5)[3], abs=1e-4)


def test_a_frame_whose_whole_frame_is_confident_skips_its_crop(tmp_path: Path) -> None:
    # The whole frame's logits (from the embedder's run) put 9.0 on one class: softmax 0.89 (no fitted temperature).
    confident = EmbedderWithLogits()
    deps = _deps(tmp_path, LabelSettings(crop_below=0.85), embedder=confident)
    _job(deps, ["visual", "labels"])
    job = analyze_video("job-1", deps).job
    assert confident.crops == [] and job.labels is not None
    assert [[lb.class_id for lb in s.labels] for s in job.labels] == [[900], [901]]
    unsure = EmbedderWithLogits()
    deps = _deps(tmp_path / "unsure", LabelSettings(crop_below=0.9), embedder=unsure)
    _job(deps, ["visual", "labels"])
    job = analyze_video("job-1", deps).job
    assert unsure.crops == [(16, 16)] * 2 and job.labels is not None
    assert [sorted(lb.class_id for lb in s.labels) for s in job.labels] == [[3, 900], [4, 901]]
