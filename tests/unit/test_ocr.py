"""The ocr analyzer with a fake engine: which frames it reads (the change test), how readings become timed lines,
split jobs, reuse, and GET /jobs/{id}/text."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import cv2
import numpy as np
import pytest
from fastapi.testclient import TestClient

from tests.fakes import FakeEmbedder, FakeIndex, RecordingQueue
from video_ai.adapters.file_artifacts import FileArtifacts
from video_ai.adapters.local_jobs import InMemoryJobRepository
from video_ai.analyzers import AnalyzerContext
from video_ai.analyzers.ocr import OcrAnalyzer, _Line, text_lines
from video_ai.analyzers.text_artifact import read_lines, write_lines
from video_ai.api.app import ApiContext, create_app
from video_ai.api.auth import ApiKeyAuth, hash_key
from video_ai.domain.models import Job, JobStatus, SampledFrame, Shot, Source, TextBox, TextLine
from video_ai.domain.ports import ReadLine
from video_ai.settings import OcrSettings, Settings
from video_ai.text_samples import Caption, TextShot, render

W, H = 640, 360


class ScriptedReader:
    """An OCR engine that reads what the test says is on screen (boxes in pixels of the image it gets). It knows the
    last few frames drawn: the analyzer reads a shot's first frame only once the next one is drawn."""

    def __init__(self) -> None:
        self.drawn: list[tuple[np.ndarray, list[tuple[str, tuple[float, float, float, float]]]]] = []
        self.calls = 0
        self.recognised = 0
        self.bands: list[int] = []  # height of each image detected on

    @property
    def on_screen(self) -> list[tuple[str, tuple[float, float, float, float]]]:
        return self.drawn[-1][1]

    @property
    def frame(self) -> np.ndarray:
        return self.drawn[-1][0]

    def draw(self, frame: np.ndarray, on_screen: list[tuple[str, tuple[float, float, float, float]]]) -> None:
        self.drawn = [*self.drawn[-3:], (frame, on_screen)]

    def _source(self, image: np.ndarray) -> tuple[np.ndarray, list[tuple[str, tuple[float, float, float, float]]],
                                                  int]:
        """The drawn frame `image` is (or is a band of rows of), what is on it, and the band's first row."""
        for frame, on_screen in reversed(self.drawn):
            if image.shape == frame.shape:
                if np.array_equal(image, frame):
                    return frame, on_screen, 0
                continue
            rows = np.flatnonzero((frame == image[0]).all(axis=1))
            for top in rows:
                if np.array_equal(frame[top : top + image.shape[0]], image):
                    return frame, on_screen, int(top)
        raise AssertionError("the engine got an image that is not a drawn frame")

    def detect(self, image: np.ndarray) -> list[tuple[float, float, float, float]]:
        """The lines on screen inside `image` (the frame, or a band of its rows)."""
        self.calls += 1
        frame, on_screen, top = self._source(image)
        h, w = frame.shape[:2]
        self.bands.append(image.shape[0])
        return [(b[0] * w, b[1] * h - top, b[2] * w, b[3] * h - top) for _, b in on_screen
                if top <= b[1] * h and b[3] * h <= top + image.shape[0]]

    def recognize(self, image: np.ndarray, boxes: Sequence[tuple[float, float, float, float]]) -> list[ReadLine | None]:
        self.recognised += len(boxes)
        frame, on_screen, _ = self._source(image)
        w = frame.shape[1]
        by_left = {round(b[0] * w): text for text, b in on_screen}
        return [ReadLine(text=by_left[round(box[0])], confidence=0.9, box=box) for box in boxes]


def _frame(shot: TextShot, t: float, index: int, shot_index: int, reader: ScriptedReader) -> SampledFrame:
    drawn: list[tuple[str, float, float, float, float]] = []
    rgb = render(shot, t, W, H, seed=abs(shot_index), boxes=drawn)
    reader.draw(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY),
                [(text, (left, top, right, bottom)) for text, left, top, right, bottom in drawn])
    return SampledFrame(index=index, pts_s=float(index), frame_number=index * 25, shot=shot_index,
                        image=np.zeros((8, 8, 3), np.uint8), luma=reader.frame)


def _run(shots: Sequence[tuple[TextShot, int]], settings: OcrSettings | None = None, first_index: int = 0,
         shot_base: int = 0, artifacts: FileArtifacts | None = None, job: Job | None = None,
         ) -> tuple[ScriptedReader, OcrAnalyzer, dict[str, object], list[TextLine]]:
    """Feed one frame a second through an OcrRun: each (shot, seconds) in turn."""
    reader = ScriptedReader()
    analyzer = OcrAnalyzer(AnalyzerContext(embedder=FakeEmbedder(), index=FakeIndex(), text_reader=reader,
                                           ocr=settings or OcrSettings(), artifacts=artifacts))
    job = job or Job(job_id="j", tenant="t", source=Source(url="https://example.com/v.mp4"), features=["ocr"])
    run = analyzer.start(job)
    index = first_index
    shot_list = []
    for k, (shot, seconds) in enumerate(shots):
        shot_list.append(Shot(index=shot_base + k, start_s=float(index), end_s=float(index + seconds),
                              start_frame=index * 25, end_frame=(index + seconds) * 25 - 1))
        for t in range(seconds):
            run.add([_frame(shot, float(t), index, shot_base + k, reader)])
            index += 1
    output = run.finish(shot_list)
    lines = text_lines([_Line.from_json(raw) for raw in output.segment["lines"]])
    return reader, analyzer, output.segment, lines


TITLE = Caption("Quarterly results", 0.1, 0.1, 30)


def test_a_caption_over_a_moving_picture_is_read_once_and_lasts_the_shot() -> None:
    reader, _, segment, lines = _run([(TextShot(10, [TITLE]), 10)])
    assert reader.calls == 1
    assert segment["stats"] == {"frames_seen": 10, "frames_read": 1, "lines_recognised": 1, "lines_reused": 0}
    assert [(line.text, line.start_s, line.end_s) for line in lines] == [("Quarterly results", 0.0, 10.0)]


def test_text_that_appears_changes_or_leaves_is_read_again_and_timed_from_when_it_was_there() -> None:
    shot = TextShot(12, [TITLE, Caption("Breaking news", 0.2, 0.7, 30, start_s=4, end_s=8),
                         Caption("Score 1", 0.7, 0.4, 30, end_s=6), Caption("Score 2", 0.7, 0.4, 30, start_s=6)])
    reader, _, segment, lines = _run([(shot, 12)])
    got = sorted((line.text, line.start_s, line.end_s) for line in lines)
    # Static edges need two samples, so "Breaking news" is read at 5 s but dated from 4 s, when it was there.
    assert got == [("Breaking news", 4.0, 8.0), ("Quarterly results", 0.0, 12.0), ("Score 1", 0.0, 6.0),
                   ("Score 2", 6.0, 12.0)]
    assert reader.calls <= 5  # start, appeared, changed, left (+1 at most), not 12
    # A re-read recognises only the lines whose pixels changed: the title is read once, then kept or reused.
    stats = segment["stats"]
    assert isinstance(stats, dict)
    assert stats["lines_recognised"] == reader.recognised == 4  # the title, Score 1, Breaking news, Score 2
    # The shot start is read in the band of its static text, changes within the shot in a band of rows around them.
    assert len(reader.bands) > 1 and all(band <= 0.6 * H for band in reader.bands)


def test_a_shot_start_without_static_edges_is_not_read() -> None:
    """Sharp texture that moves (a crowd, foliage in the wind, a pan) has no static edges: no engine call."""
    reader, _, segment, lines = _run([(TextShot(5, [], background="busy"), 5)])
    assert reader.calls == 0 and lines == []
    assert segment["stats"] == {"frames_seen": 5, "frames_read": 0, "lines_recognised": 0, "lines_reused": 0,
                                "starts_skipped": 1}


def test_shot_start_bands_hold_each_static_line_and_nothing_else() -> None:
    shot = TextShot(4, [TITLE, Caption("Live from the studio", 0.3, 0.8, 24)], background="busy")
    reader, _, _, lines = _run([(shot, 4)])
    assert sorted((line.text, line.start_s, line.end_s) for line in lines) == [
        ("Live from the studio", 0.0, 4.0), ("Quarterly results", 0.0, 4.0)]
    assert reader.calls == 2 and sum(reader.bands) < 0.6 * H  # two bands, not the frame


def test_a_still_picture_or_a_one_sample_shot_is_read_whole() -> None:
    """Everything in a still picture is static (the bands would be the frame); a shot of one sample has no next
    sample to compare with."""
    still, _, _, lines = _run([(TextShot(3, [TITLE], background="still"), 3)])
    assert still.bands == [H] and [line.text for line in lines] == ["Quarterly results"]
    short, _, _, lines = _run([(TextShot(1, [TITLE], background="busy"), 1),
                               (TextShot(1, [Caption("Hello", 0.5, 0.5)], background="busy"), 1)])
    assert short.bands == [H, H]
    assert [(line.text, line.start_s, line.end_s) for line in lines] == [
        ("Quarterly results", 0.0, 1.0), ("Hello", 1.0, 2.0)]


def test_each_shot_start_is_read_but_blank_ones_are_not_and_end_what_was_on_screen() -> None:
    black = TextShot(3, [], background="flat", color=(0, 0, 0))
    reader, _, _, lines = _run([(TextShot(3, [TITLE]), 3), (black, 3), (TextShot(3, [Caption("Hello", 0.5, 0.5)]), 3)])
    assert reader.calls == 2
    assert [(line.text, line.start_s, line.end_s, line.shot) for line in lines] == [
        ("Quarterly results", 0.0, 3.0, 0), ("Hello", 6.0, 9.0, 2)]


def test_the_same_text_across_a_cut_is_one_line() -> None:
    _, _, _, lines = _run([(TextShot(3, [TITLE]), 3), (TextShot(3, [TITLE], color=(120, 30, 30)), 3)])
    assert [(line.text, line.start_s, line.end_s) for line in lines] == [("Quarterly results", 0.0, 6.0)]


def test_every_frame_mode_reads_every_sampled_frame_to_the_same_lines() -> None:
    shot = TextShot(8, [TITLE, Caption("Later", 0.2, 0.7, 30, start_s=4)])
    every_reader, _, _, every = _run([(shot, 8)], OcrSettings(every_frame=True))
    tested_reader, _, _, tested = _run([(shot, 8)])
    assert every_reader.calls == 8 and tested_reader.calls == 2
    assert [(line.text, line.start_s, line.end_s) for line in tested] == [
        (line.text, line.start_s, line.end_s) for line in every]


def test_a_split_job_joins_lines_across_segments_and_renumbers_shots(tmp_path: Path) -> None:
    artifacts = FileArtifacts(tmp_path)
    job = Job(job_id="split", tenant="t", source=Source(url="https://example.com/v.mp4"), features=["ocr"],
              segments_total=2)
    shot = TextShot(10, [TITLE, Caption("Second half", 0.2, 0.7, 30)])
    # Segment 0 has frames 0-4 (one shot), segment 1 frames 5-9 continuing it (shot -1 until the merge).
    _, analyzer, first, _ = _run([(shot, 5)], artifacts=artifacts, job=job)
    _, _, second, _ = _run([(shot, 5)], first_index=5, shot_base=-1, artifacts=artifacts, job=job)
    assert read_lines(artifacts, "split") is None  # segments store nothing themselves
    whole = [Shot(index=0, start_s=0.0, end_s=10.0, start_frame=0, end_frame=249)]
    output = analyzer.merge(job, [first, second], whole)
    lines = read_lines(artifacts, "split")
    assert output.count == 2 and lines is not None
    assert sorted((line.text, line.start_s, line.end_s, line.shot) for line in lines) == [
        ("Quarterly results", 0.0, 10.0, 0), ("Second half", 0.0, 10.0, 0)]


@pytest.fixture()
def ctx(tmp_path: Path) -> ApiContext:
    settings = Settings.model_validate({"api": {"api_key_hashes": {hash_key("key-a"): "a", hash_key("key-b"): "b"}}})
    artifacts = FileArtifacts(tmp_path)
    return ApiContext(settings=settings, jobs=InMemoryJobRepository(), queue=RecordingQueue(),
                      auth=ApiKeyAuth(settings.api.api_key_hashes), index_factory=FakeIndex,
                      embedder_factory=FakeEmbedder, artifacts_factory=lambda: artifacts)


@pytest.fixture()
def client(ctx: ApiContext) -> Iterator[TestClient]:
    with TestClient(create_app(ctx, prometheus=False), raise_server_exceptions=False) as c:
        yield c


A = {"x-api-key": "key-a"}


def test_text_pages_through_a_jobs_lines_for_its_tenant_only(client: TestClient, ctx: ApiContext) -> None:
    job = ctx.jobs.create(Job(job_id="j-text", tenant="a", source=Source(url="https://example.com/v.mp4"),
                              features=["visual", "ocr"]))
    ctx.jobs.transition(job.job_id, JobStatus.PROCESSING)
    assert client.get("/jobs/j-text/text", headers=A).json()["reason"].startswith("the job is processing")
    ctx.jobs.transition(job.job_id, JobStatus.SUCCEEDED)
    lines = [TextLine(text=f"line {i}", confidence=0.9, box=TextBox(left=0.1, top=0.1 * i, width=0.3, height=0.05),
                      start_s=float(i), end_s=i + 1.0, shot=0, pts_s=float(i)) for i in range(5)]
    store = ctx.artifacts()
    assert store is not None
    write_lines(store, "j-text", lines)
    first = client.get("/jobs/j-text/text?limit=3", headers=A).json()
    assert [item["text"] for item in first["items"]] == ["line 0", "line 1", "line 2"]
    assert first["items"][1]["box"] == {"left": 0.1, "top": 0.1, "width": 0.3, "height": 0.05}
    rest = client.get(f"/jobs/j-text/text?limit=3&next_token={first['next_token']}", headers=A).json()
    assert [item["text"] for item in rest["items"]] == ["line 3", "line 4"] and rest["next_token"] is None
    assert client.get("/jobs/j-text/text", headers={"x-api-key": "key-b"}).status_code == 404
    bad = client.get("/jobs/j-text/text?next_token=99", headers=A)
    assert bad.status_code == 422 and bad.json()["error"]["field"] == "next_token"


def test_a_job_without_ocr_answers_an_empty_page_with_the_reason(client: TestClient, ctx: ApiContext) -> None:
    ctx.jobs.create(Job(job_id="j-plain", tenant="a", source=Source(url="https://example.com/v.mp4"),
                        features=["visual"]))
    page = client.get("/jobs/j-plain/text", headers=A).json()
    assert page["items"] == [] and "without the ocr feature" in page["reason"]


def test_a_line_whose_pixels_changed_a_little_is_recognised_again() -> None:
    """A time stamp at the same place across a cut: one digit moves the pixels' mean little, yet it is read anew."""
    flat = {"background": "flat", "color": (30, 60, 120)}
    before, after = "Updated 2026-12-02 at 12:20", "Updated 2026-12-02 at 12:25"
    reader, _, _, lines = _run([(TextShot(2, [Caption(before, 0.1, 0.1, 30)], **flat), 2),  # type: ignore[arg-type]
                                (TextShot(2, [Caption(after, 0.1, 0.1, 30)], **flat), 2)])  # type: ignore[arg-type]
    assert [(line.text, line.start_s, line.end_s) for line in lines] == [(before, 0.0, 2.0), (after, 2.0, 4.0)]
    assert reader.recognised == 2


def test_reuse_indexes_the_copied_lines_under_the_new_job_and_discard_removes_them(tmp_path: Path) -> None:
    """Content-hash reuse: the orchestrator copied text.json already; the analyzer indexes its lines as the new job's
    ocr moments (a line across a cut gets no shot)."""
    from tests.unit.test_text_search import FakeMomentIndex, FakeTextEmbedder
    from video_ai.analyzers import MomentStore
    from video_ai.domain.models import MomentFilter

    artifacts, index = FileArtifacts(tmp_path), FakeMomentIndex()
    analyzer = OcrAnalyzer(AnalyzerContext(embedder=FakeEmbedder(), index=FakeIndex(), text_reader=ScriptedReader(),
                                           artifacts=artifacts, moments=MomentStore(index, FakeTextEmbedder())))
    shots = [Shot(index=0, start_s=0.0, end_s=2.0, start_frame=0, end_frame=49),
             Shot(index=1, start_s=2.0, end_s=4.0, start_frame=50, end_frame=99)]
    old = Job(job_id="old", tenant="t", source=Source(url="https://example.com/v.mp4"), features=["ocr"], shots=shots)
    new = old.model_copy(update={"job_id": "new", "reused_from": "old"})
    box = TextBox(left=0.1, top=0.1, width=0.3, height=0.05)
    write_lines(artifacts, "old", [TextLine(text="logo", confidence=0.9, box=box, start_s=0.0, end_s=4.0, shot=0,
                                            pts_s=1.0),
                                   TextLine(text="title", confidence=0.8, box=box, start_s=0.0, end_s=2.0, shot=0,
                                            pts_s=0.0)])
    artifacts.copy("old", "new")
    output = analyzer.reuse(new, old)
    assert output.count == 2
    moments = sorted(index.moments.values(), key=lambda m: m.text)
    assert [(m.job_id, m.kind, m.text, m.shot) for m in moments] == [("new", "ocr", "logo", None),
                                                                      ("new", "ocr", "title", 0)]
    analyzer.discard(new)
    assert index.count(MomentFilter(job_id="new")) == 0


def test_a_frame_the_engine_fails_on_is_skipped_with_one_warning() -> None:
    class Failing(ScriptedReader):
        def detect(self, image: np.ndarray) -> list[tuple[float, float, float, float]]:
            if self.calls == 0:
                self.calls += 1
                raise RuntimeError("onnxruntime: bad input")
            return super().detect(image)

    reader = Failing()
    analyzer = OcrAnalyzer(AnalyzerContext(embedder=FakeEmbedder(), index=FakeIndex(), text_reader=reader))
    run = analyzer.start(Job(job_id="j", tenant="t", source=Source(url="https://example.com/v.mp4"),
                             features=["ocr"]))
    shot = TextShot(4, [TITLE])
    for t in range(4):  # the first frame fails; the next one is read as the shot's start
        run.add([_frame(shot, float(t), t, 0, reader)])
    output = run.finish([Shot(index=0, start_s=0.0, end_s=4.0, start_frame=0, end_frame=99)])
    assert output.warnings == ["ocr: some frames could not be read (first at 0.000 s: RuntimeError)"]
    assert [line["text"] for line in output.segment["lines"]] == ["Quarterly results"]
