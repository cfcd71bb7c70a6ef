"""Labels with the real model: a clip assembled from real photographs (the repo's fixtures), analyzed end to end."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from video_ai.adapters.frame_source import PyAVFrameSource
from video_ai.adapters.http_fetch import HttpVideoFetcher
from video_ai.adapters.local_jobs import InMemoryJobRepository
from video_ai.adapters.onnx_embedder import OnnxEmbedder
from video_ai.adapters.qdrant_edge_index import QdrantEdgeIndex
from video_ai.analyzers import AnalyzerContext, AnalyzerSet
from video_ai.domain.models import Job, JobStatus, SearchFilter, Source
from video_ai.model import build_model
from video_ai.services.analyze_video import AnalyzeDeps, analyze_video
from video_ai.settings import LabelSettings, LimitsSettings, ModelSettings, NetworkSettings, SamplingSettings

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "model"
CATS = set(range(281, 286))  # tabby, tiger cat, Persian, Siamese, Egyptian cat
COFFEE = {967, 968, 504}  # espresso, cup, coffee mug
SIZE = (640, 360)


@pytest.fixture(scope="module")
def logits_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_model(tmp_path_factory.mktemp("model") / "lite0-logits.onnx", include_logits=True)


def _wide(name: str) -> np.ndarray:
    """The photo as a 16:9 frame: at full height, centred on a dark grey band (a wide shot of the subject)."""
    photo = Image.open(FIXTURES / name).convert("RGB")
    w, h = photo.size
    photo = photo.resize((round(w * SIZE[1] / h), SIZE[1]), Image.Resampling.LANCZOS)
    frame = np.full((SIZE[1], SIZE[0], 3), 40, dtype=np.uint8)
    x = (SIZE[0] - photo.width) // 2
    frame[:, x : x + photo.width] = np.asarray(photo)
    return frame


@pytest.fixture(scope="module")
def photo_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three 2 s shots at 10 fps: the cat, the coffee, black."""
    import av

    path = tmp_path_factory.mktemp("clips") / "photos.mp4"
    shots = [_wide("chelsea_224.png"), _wide("coffee_300x200.jpg"), np.zeros((SIZE[1], SIZE[0], 3), np.uint8)]
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = SIZE[0], SIZE[1], "yuv420p"
        stream.options = {"crf": "18", "g": "10"}
        for picture in shots:
            for _ in range(20):
                container.mux(stream.encode(av.VideoFrame.from_ndarray(picture, format="rgb24")))
        container.mux(stream.encode(None))
    return path


def _deps(data: Path, model: Path, labels: LabelSettings) -> AnalyzeDeps:
    embedder = OnnxEmbedder(ModelSettings(), model)
    index = QdrantEdgeIndex(data)
    return AnalyzeDeps(
        jobs=InMemoryJobRepository(),
        fetcher=HttpVideoFetcher(NetworkSettings(), LimitsSettings(), allow_local_files=True),
        frames=PyAVFrameSource(SamplingSettings(), LimitsSettings()), embedder=embedder, index=index,
        notifier=None, workdir=data / "tmp",
        analyzers=AnalyzerSet(AnalyzerContext(embedder=embedder, index=index, labels=labels)),
    )


def test_vectors_and_logits_from_one_run_equal_those_of_separate_runs(logits_model: Path) -> None:
    embedder = OnnxEmbedder(ModelSettings(batch_size=2), logits_model)
    images = [_wide("chelsea_224.png"), _wide("coffee_300x200.jpg"), np.zeros((90, 160, 3), np.uint8)]
    vectors, logits = embedder.embed_with_logits(images)
    assert logits is not None
    np.testing.assert_allclose(vectors, embedder.embed(images), atol=1e-6)
    np.testing.assert_allclose(logits, embedder.logits(images), atol=1e-5)


@pytest.mark.parametrize("crops", ["centre", "three"])
def test_each_shot_of_real_photographs_is_labelled_with_its_subject(
    tmp_path: Path, logits_model: Path, photo_clip: Path, crops: str
) -> None:
    deps = _deps(tmp_path, logits_model, LabelSettings(crops=crops))  # type: ignore[arg-type]
    deps.jobs.create(Job(job_id="job", tenant="t", source=Source(url=photo_clip.resolve().as_uri()),
                         features=["visual", "labels"]))
    job = analyze_video("job", deps).job
    assert job.status is JobStatus.SUCCEEDED, job.error
    assert job.shots_detected == 3 and job.labels is not None
    cat, coffee, black = job.labels
    assert cat.labels[0].class_id in CATS and cat.labels[0].confidence > 0.3
    assert coffee.labels[0].class_id in COFFEE and coffee.labels[0].confidence > 0.3
    assert (cat.start_s, cat.end_s) == pytest.approx((0.0, 2.0), abs=0.11)
    assert black.labels == [] and black.frames == []  # black frames are not labelled
    assert [len(s.frames) for s in job.labels] == [1, 1, 0]  # one frame per shot and 10 s window
    assert job.feature_stats["labels"].count == 2 and job.feature_stats["visual"].count == 6
    assert deps.index.count(deps.embedder.info, SearchFilter(job_id="job")) == 6
    deps.index.close()


def test_cli_prints_each_shots_top_labels_and_json_carries_them(
    tmp_path: Path, logits_model: Path, photo_clip: Path
) -> None:
    env = {**os.environ, "VIDEO_AI__DATA_DIR": str(tmp_path / "data"), "VIDEO_AI__MODEL__PATH": str(logits_model),
           "VIDEO_AI__LOGGING__LEVEL": "WARNING"}

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "video_ai.cli", "analyze", str(photo_clip), *args], env=env,
                              capture_output=True, text=True, timeout=180, check=False)

    text = cli("--features", "visual,labels")
    assert text.returncode == 0, text.stderr
    shot_lines = [line for line in text.stdout.splitlines() if line.strip().startswith("shot ")]
    assert len(shot_lines) == 3 and "cat" in shot_lines[0] and shot_lines[2].rstrip().endswith("0:06.000")
    record = json.loads(cli("--json", "--features", "labels").stdout)
    assert record["features"] == ["labels"] and record["frames_indexed"] == 0 and record["frames"] == []
    assert record["labels"][1]["labels"][0]["class_id"] in COFFEE
    bad = cli("--features", "visual,smell")
    assert bad.returncode == 2 and "smell" in bad.stderr
