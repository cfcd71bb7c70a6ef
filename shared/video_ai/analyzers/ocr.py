"""The "ocr" analyzer: lines of on-screen text with their boxes and the time they stayed on screen.

Reading a frame costs tens to hundreds of milliseconds (a text detector over the frame, then a recogniser per line),
while a sampled frame costs analyze a few, so the engine reads only frames where text may have changed
(BENCHMARKS.md "On-screen text" measures what this saves):
* the first frame of each shot (and of a segment's pass), unless it is blank (no sharp edge at all: nothing to read);
* a frame whose TEXT REGIONS differ from those of the last frame read. The test works on a 384 px wide map of sharp
  edges (morphological gradient of the grey frame >= EDGE_MIN), pooled into 8 px cells (~0.5 ms a frame):
  - text changed or left: in the cells the last read lines covered, the edges differ from the read frame's;
  - text appeared: cells gained edges that are STATIC (present in this and the previous sampled frame) where the read
    frame had none. Captions, titles and slides stand still while the picture behind them moves; moving texture
    (foliage, water, a panning camera) is not static from one sample to the next and does not wake the engine.
Between reads, the lines of the last read frame are taken to be still there.
The same text (nearly the same letters, overlapping boxes) on consecutive read frames is one line whose range runs
from the first frame it was read on to the first frame read without it (or the end of the pass): `start_s` and
`end_s` are sample times, so they are as exact as the sampling rate. A line keeps its best reading.
Boxes are fractions of the upright, display-aspect frame (the decoder's `luma` copy), so they fit the picture a
player shows whatever the source's rotation or sample aspect ratio.
Lines are stored as "text.json" in the job's artifacts (GET /jobs/{id}/text) and indexed as `ocr` moments.
"""

from __future__ import annotations

import bisect
import difflib
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from video_ai.analyzers.text_artifact import read_lines, write_lines
from video_ai.domain.models import Job, Moment, SampledFrame, Shot, TextBox, TextLine
from video_ai.domain.ports import FeatureOutput, FrameNeeds, ReadLine, TextReader

if TYPE_CHECKING:
    from video_ai.analyzers import AnalyzerContext
    from video_ai.settings import OcrSettings

logger = logging.getLogger(__name__)

MODEL = "PP-OCRv6 det/rec small (rapidocr 3.10.0)"
# The change test's map: width in pixels (a 30 px digit of a 720p frame changing to another still changes a few
# cells at 384; at 256 it did not), cell side, and the grey-level step that makes a sharp edge.
EDGE_WIDTH = 384
CELL = 8
EDGE_MIN = 48
# A cell "changed" when this share of its pixels changed (edge appeared or vanished).
CELL_CHANGE = 0.10
# Text changed or left: this share of the cells under the last read lines (and at least LOST_CELLS) lost edges. Text
# appeared: this many cells side by side in a row gained static edges (a word of 30 px letters at 720p spans ~5).
TEXT_CELLS_CHANGED = 0.25
LOST_CELLS = 2
NEW_CELLS = 6
# A change within a shot is read in the band of rows around it (the detector's cost follows the pixels; lines elsewhere
# are unchanged by the test's account): this many cells above and below, unless the band is most of the frame.
REGION_MARGIN = 2
REGION_MAX = 0.6
# A shot's first frame is read once the next sample shows where its STATIC edges are (text stands still; a moving
# picture does not): only the bands of rows with a run of this many static cells are read, none when no row has one.
START_CELLS = 3
# ... cells where at least this share of the pixels is a static edge: sharp texture that moves still matches itself at
# ~10% of its pixels by chance (an edge of about the same strength at the same place); a line's strokes fill more.
START_SHARE = 0.3
# ... unless the bands would be more of the frame than this: then it is read whole.
START_MAX = REGION_MAX
# Most change of an edge's gradient between two samples for it to count as static (compression noise is less).
STEADY = 12
# A frame with fewer sharp-edge pixels than this share is blank (black, a fade, flat colour): nothing to read.
BLANK = 0.002
# A detected line whose pixels differ from a followed line's at the same place by at most this mean (grey levels) is
# that line again: its text is reused, not recognised again.
SIGNATURE_HEIGHT = 16
SIGNATURE_MAX_WIDTH = 512
SAME_PIXELS = 10.0
PIXEL_CHANGED = 48
PIXELS_CHANGED = 2
# Two readings are the same line when their letters are this alike and their boxes overlap this much (IoU).
SAME_TEXT = 0.85
MIN_FUZZY = 10
SAME_BOX = 0.3


def grey(frame: SampledFrame) -> np.ndarray:
    """The frame as OCR reads it: the decoder's luma copy, else (fakes, old readers) a grey of the best RGB copy."""
    if frame.luma is not None:
        return frame.luma
    image = frame.detail if frame.detail is not None else frame.image
    return cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)


def gradient_map(luma: np.ndarray) -> np.ndarray:
    """Morphological gradient (max - min over 3x3) of an EDGE_WIDTH wide copy, cropped to whole cells (uint8)."""
    h, w = luma.shape[:2]
    height = max(CELL, round(h * EDGE_WIDTH / w) // CELL * CELL)
    small = cv2.resize(luma, (EDGE_WIDTH, height), interpolation=cv2.INTER_AREA)
    gradient: np.ndarray = cv2.morphologyEx(small, cv2.MORPH_GRADIENT, np.ones((3, 3), np.uint8))
    return gradient


def static_edges(gradient: np.ndarray, previous: np.ndarray) -> np.ndarray:
    """Edges of `gradient` that `previous` (the sampled frame before, same shape) has at the same pixel with about the
    same strength (within STEADY): an overlay's strokes; dense texture that moves has edges at most pixels of both
    frames, of unrelated strengths."""
    steady: np.ndarray = cv2.absdiff(gradient, previous) <= STEADY
    static: np.ndarray = (gradient >= EDGE_MIN) & steady & (previous >= EDGE_MIN)
    return static


def cell_share(mask: np.ndarray) -> np.ndarray:
    """Per CELL x CELL cell, the share of True pixels."""
    h, w = mask.shape
    out: np.ndarray = mask.reshape(h // CELL, CELL, w // CELL, CELL).mean(axis=(1, 3))
    return out


def box_cells(boxes: Sequence[tuple[float, float, float, float]], shape: tuple[int, int]) -> np.ndarray:
    """Cells (of an edge map of `shape`) covered by boxes given as fractions (left, top, right, bottom)."""
    rows, cols = shape[0] // CELL, shape[1] // CELL
    cells = np.zeros((rows, cols), dtype=bool)
    for left, top, right, bottom in boxes:
        r0, r1 = int(top * rows), min(rows, int(np.ceil(bottom * rows)))
        c0, c1 = int(left * cols), min(cols, int(np.ceil(right * cols)))
        cells[r0 : max(r1, r0 + 1), c0 : max(c1, c0 + 1)] = True
    return cells


class TextChange:
    """Decides which frames to read (the module docstring's test); `read` then records what the read frame found."""

    def __init__(self) -> None:
        self._previous: np.ndarray | None = None  # gradient of the previous sampled frame
        self._previous_shot: int | None = None
        self._reference: np.ndarray | None = None  # edges of the last frame read, dilated by a pixel
        self._reference_edges: np.ndarray | None = None
        self._weak: np.ndarray | None = None  # weaker edges of the last frame read
        self._gradient: np.ndarray | None = None
        self._text_cells: np.ndarray | None = None
        self._shot: int | None = None
        self.edges: np.ndarray | None = None
        # After a check within a shot: the band of rows (fractions) where the text changed; None: the whole frame.
        self.region: tuple[float, float] | None = None

    def check(self, luma: np.ndarray, shot: int, first: bool, gradient: np.ndarray | None = None) -> str | None:
        """Why this frame should be read ("shot", "changed", "appeared"), "blank" when it is blank at a shot start
        (nothing to read there, and whatever was on screen is gone), or None: the last reading still holds.
        `gradient`: the frame's gradient_map when the caller made it already."""
        self._gradient = gradient_map(luma) if gradient is None else gradient
        edges = self._gradient >= EDGE_MIN
        same_shot = not first and shot == self._previous_shot and self._previous is not None \
            and self._previous.shape == edges.shape
        gradient = self._gradient
        # Within a shot, only edges the previous sample had too (static_edges) can be an overlay's new text.
        static = static_edges(gradient, self._previous) if same_shot and self._previous is not None else edges
        self._previous, self._previous_shot = gradient, shot
        self.edges = edges
        self.region = None
        if first or shot != self._shot or self._reference is None or self._reference.shape != edges.shape:
            return "blank" if edges.mean() < BLANK else "shot"
        assert self._reference_edges is not None and self._text_cells is not None and self._weak is not None
        # Static edges the read frame did not have, minus those that were there already, only weaker (a fade-in or
        # a change of light strengthens the picture's own edges: not text).
        appeared = (cell_share(static & ~self._reference & ~self._weak) >= CELL_CHANGE).astype(np.uint8)
        if self._text_cells.any():
            # Strokes of the read lines that are gone (a pixel of slack for compression noise and tiny shifts).
            near = cv2.dilate(edges.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
            lost = cell_share(self._reference_edges & ~near) >= CELL_CHANGE
            if int(lost[self._text_cells].sum()) >= max(LOST_CELLS, TEXT_CELLS_CHANGED * self._text_cells.sum()):
                self._set_region(lost & self._text_cells)
                return "changed"
            # New strokes where the lines are (a digit of a score or clock) need no run of cells.
            if int(appeared[self._text_cells].sum()) >= LOST_CELLS:
                self._set_region(appeared.astype(bool) & self._text_cells)
                return "replaced"
        # A line of text is a horizontal run of cells; what settles in a natural picture is scattered.
        runs = cv2.erode(appeared, np.ones((1, NEW_CELLS), np.uint8), borderType=cv2.BORDER_CONSTANT, borderValue=0)
        if runs.any():
            self._set_region(runs.astype(bool))
            return "appeared"
        return None

    def start_bands(self, following: np.ndarray) -> list[tuple[float, float]] | None:
        """Where the frame last checked (a shot's first) may have text, judged with `following`, the gradient_map of
        the shot's next sample: the bands of rows (fractions, top and bottom, REGION_MARGIN cells either side) that
        hold a run of START_CELLS cells of static edges; [] when none does; None (the whole frame) when the bands
        would be most of it (a still picture: everything in it is static)."""
        assert self._gradient is not None
        previous = self._gradient
        if following.shape != previous.shape:
            return None
        cells = (cell_share(static_edges(following, previous)) >= START_SHARE).astype(np.uint8)
        runs = cv2.erode(cells, np.ones((1, START_CELLS), np.uint8), borderType=cv2.BORDER_CONSTANT, borderValue=0)
        rows = np.flatnonzero(runs.any(axis=1))
        if rows.size == 0:
            return []
        total = cells.shape[0]
        bands: list[list[int]] = []
        for row in rows:
            top, bottom = max(0, int(row) - REGION_MARGIN), min(total, int(row) + 1 + REGION_MARGIN)
            if bands and top <= bands[-1][1]:
                bands[-1][1] = bottom
            else:
                bands.append([top, bottom])
        if sum(bottom - top for top, bottom in bands) > START_MAX * total:
            return None
        return [(top / total, bottom / total) for top, bottom in bands]

    def _set_region(self, cells: np.ndarray) -> None:
        """The band of rows (fractions, top and bottom) where the change is, with REGION_MARGIN cells either side;
        None (the whole frame) when that band would be most of it."""
        rows = np.flatnonzero(cells.any(axis=1))
        total = cells.shape[0]
        top, bottom = max(0, int(rows[0]) - REGION_MARGIN), min(total, int(rows[-1]) + 1 + REGION_MARGIN)
        self.region = (top / total, bottom / total) if bottom - top <= REGION_MAX * total else None

    def read(self, shot: int, boxes: Sequence[tuple[float, float, float, float]]) -> None:
        """The frame last checked was read (or found blank) and these boxes (fractions) hold its lines."""
        assert self.edges is not None and self._gradient is not None
        self._shot = shot
        self._reference_edges = self.edges
        self._reference = cv2.dilate(self.edges.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
        self._weak = self._gradient >= EDGE_MIN // 3
        self._text_cells = box_cells(boxes, self.edges.shape)


def signature(luma: np.ndarray, box: tuple[float, float, float, float]) -> np.ndarray:
    """A line's pixels, SIGNATURE_HEIGHT rows high at its own aspect (a letter stays a few columns wide however long
    the line): unchanged pixels at the same place need no second recognition."""
    left, top, right, bottom = (round(v) for v in box)
    crop = luma[top : max(top + 1, bottom), left : max(left + 1, right)]
    width = min(SIGNATURE_MAX_WIDTH, max(1, round(crop.shape[1] * SIGNATURE_HEIGHT / crop.shape[0])))
    out: np.ndarray = cv2.resize(crop, (width, SIGNATURE_HEIGHT), interpolation=cv2.INTER_AREA).astype(np.int16)
    return out


def same_pixels(a: np.ndarray, b: np.ndarray) -> bool:
    """Two line signatures show the same text: alike on the whole, and hardly a pixel changed a lot (one digit of a
    clock moves the mean little but a few pixels a lot; compression noise moves many a little)."""
    if a.shape != b.shape:
        return False
    diff = np.abs(a - b)
    return float(diff.mean()) <= SAME_PIXELS and int(np.count_nonzero(diff > PIXEL_CHANGED)) <= PIXELS_CHANGED


def _key(text: str) -> str:
    return " ".join(text.casefold().split())


def _iou(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> float:
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    if w <= 0 or h <= 0:
        return 0.0
    inter = w * h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def same_line(a_text: str, a_box: tuple[float, float, float, float], b_text: str,
              b_box: tuple[float, float, float, float]) -> bool:
    if _iou(a_box, b_box) < SAME_BOX:
        return False
    a, b = _key(a_text), _key(b_text)
    if a == b:
        return True
    # A misread letter is the same line; a changed number (a score, a clock, a price) or a short word is not.
    if [c for c in a if c.isdigit()] != [c for c in b if c.isdigit()] or min(len(a), len(b)) < MIN_FUZZY:
        return False
    return difflib.SequenceMatcher(None, a, b, autojunk=False).ratio() >= SAME_TEXT


@dataclass(slots=True)
class _Line:
    """A line being followed: its best reading, where it started, and whether a pass ended with it on screen."""

    text: str
    confidence: float
    box: tuple[float, float, float, float]  # fractions: left, top, right, bottom
    start_s: float
    start_frame: int
    shot: int
    pts_s: float
    end_s: float = 0.0
    open_at_end: bool = False
    from_first: bool = False  # read on the pass's first frame (a segment's line may continue the previous one)
    signature: np.ndarray | None = None  # its pixels when last read (not stored)

    def seen(self, text: str, confidence: float, box: tuple[float, float, float, float], pts_s: float) -> None:
        if confidence > self.confidence:
            self.text, self.confidence, self.box, self.pts_s = text, confidence, box, pts_s

    def to_json(self) -> dict[str, Any]:
        return {"text": self.text, "confidence": self.confidence, "box": list(self.box), "start_s": self.start_s,
                "end_s": self.end_s, "start_frame": self.start_frame, "shot": self.shot, "pts_s": self.pts_s,
                "open_at_end": self.open_at_end, "from_first": self.from_first}

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> _Line:
        box = tuple(float(v) for v in raw["box"])
        return cls(text=str(raw["text"]), confidence=float(raw["confidence"]),
                   box=(box[0], box[1], box[2], box[3]), start_s=float(raw["start_s"]),
                   start_frame=int(raw["start_frame"]), shot=int(raw["shot"]), pts_s=float(raw["pts_s"]),
                   end_s=float(raw["end_s"]), open_at_end=bool(raw.get("open_at_end")),
                   from_first=bool(raw.get("from_first")))


@dataclass(slots=True)
class LineTracker:
    """Turns the readings of successive read frames into lines with time ranges."""

    open: list[_Line] = field(default_factory=list)
    closed: list[_Line] = field(default_factory=list)
    first: bool = True

    def unchanged(self, box: tuple[float, float, float, float], pixels: np.ndarray) -> _Line | None:
        """The followed line at about this box whose pixels are the same as when it was read, if any."""
        for line in self.open:
            if line.signature is not None and _iou(line.box, box) >= 0.5 and same_pixels(line.signature, pixels):
                return line
        return None

    def observe(self, frame: SampledFrame, reads: Sequence[ReadLine], since: float | None = None,
                pixels: Sequence[np.ndarray | None] = ()) -> None:
        """`reads`: the lines read on `frame`, boxes as fractions; lines not read again end at this frame. `since`:
        the change was on screen from this earlier time already (the change test saw it there): new lines start and
        lines no longer read end then."""
        still: list[_Line] = []
        for k, read in enumerate(reads):
            match = next((line for line in self.open if same_line(line.text, line.box, read.text, read.box)), None)
            if match is not None:
                self.open.remove(match)
                match.seen(read.text, read.confidence, read.box, frame.pts_s)
            else:
                start = frame.pts_s if since is None else since
                match = _Line(text=read.text, confidence=read.confidence, box=read.box, start_s=start,
                              start_frame=frame.frame_number, shot=frame.shot, pts_s=frame.pts_s,
                              from_first=self.first)
            match.signature = pixels[k] if k < len(pixels) else None
            still.append(match)
        for gone in self.open:
            gone.end_s = frame.pts_s if since is None else since
            self.closed.append(gone)
        self.open = still
        self.first = False

    def finish(self, end_s: float) -> list[_Line]:
        for line in self.open:
            line.end_s = max(end_s, line.start_s)
            line.open_at_end = True
            self.closed.append(line)
        self.open = []
        return sorted(self.closed, key=lambda line: (line.start_s, line.box[1], line.box[0]))


def join_segments(segments: Sequence[Sequence[_Line]]) -> list[_Line]:
    """A split job's lines: a line on screen at the end of a segment and read again on the next segment's first
    frame is one line (neither cut in two nor doubled)."""
    out: list[_Line] = []
    carried: list[_Line] = []
    for lines in segments:
        next_carried = []
        for line in lines:
            previous = next((c for c in carried if line.from_first and same_line(c.text, c.box, line.text, line.box)),
                            None)
            if previous is not None:
                carried.remove(previous)
                previous.end_s = line.end_s
                previous.open_at_end = line.open_at_end
                previous.seen(line.text, line.confidence, line.box, line.pts_s)
                line = previous
            else:
                out.append(line)
            if line.open_at_end:
                next_carried.append(line)
        carried = next_carried
    return sorted(out, key=lambda line: (line.start_s, line.box[1], line.box[0]))


def text_lines(lines: Sequence[_Line]) -> list[TextLine]:
    return [TextLine(text=line.text, confidence=round(line.confidence, 4),
                     box=TextBox(left=round(line.box[0], 4), top=round(line.box[1], 4),
                                 width=round(line.box[2] - line.box[0], 4), height=round(line.box[3] - line.box[1], 4)),
                     start_s=round(line.start_s, 6), end_s=round(line.end_s, 6), shot=max(0, line.shot),
                     pts_s=round(line.pts_s, 6))
            for line in lines]


def text_moments(job: Job, lines: Sequence[TextLine], shots: Sequence[Shot]) -> list[Moment]:
    """Each line as an `ocr` moment; its shot only when the line stays inside it (DESIGN: None across a cut)."""
    ends = {shot.index: shot.end_s for shot in shots}
    return [Moment(job_id=job.job_id, tenant=job.tenant, kind="ocr", text=line.text, start_s=line.start_s,
                   end_s=line.end_s, confidence=line.confidence, pts_s=line.pts_s,
                   shot=line.shot if line.end_s <= ends.get(line.shot, float("inf")) + 1e-6 else None)
            for line in lines]


class OcrAnalyzer:
    feature = "ocr"

    def __init__(self, context: AnalyzerContext) -> None:
        self.settings: OcrSettings = context.ocr
        self.moments = context.moments
        self.artifacts = context.artifacts
        self._reader = context.text_reader
        self.needs = FrameNeeds(luma_short_side=self.settings.image_short_side)
        # What decides the lines besides the video (joins the content key: a job never reuses lines read otherwise):
        # the settings and the int8 models' build version (that module imports onnx only when it builds).
        from video_ai.model.ocr_int8 import VERSION

        self.variant = f"ocr={self.settings.model_dump_json(exclude={'threads', 'model_dir'})},v{VERSION}"

    def reader(self) -> TextReader:
        if self._reader is None:
            from video_ai.adapters.rapid_ocr import RapidOcrReader

            s = self.settings
            int8_dir = None
            if s.precision == "int8":
                # Composition sets model_dir; without it (a bare context), the default settings' place for them.
                from video_ai.model import ocr_model_dir
                from video_ai.settings import Settings

                int8_dir = s.model_dir or ocr_model_dir(Settings())
            self._reader = RapidOcrReader(det_long_side=s.det_long_side, min_confidence=s.min_confidence,
                                          max_lines=s.max_lines, threads=s.threads, gate=s.det_gate,
                                          int8_dir=int8_dir)
        return self._reader

    def start(self, job: Job) -> OcrRun:
        return OcrRun(self, job)

    def store(self, job: Job, lines: list[TextLine], shots: Sequence[Shot], stats: dict[str, int]) -> list[str]:
        """Keep the lines (text.json) and index them; returns warnings."""
        warnings = []
        if self.artifacts is not None:
            try:
                write_lines(self.artifacts, job.job_id, lines, model=f"{MODEL} {self.settings.precision}", **stats)
            except Exception as err:  # a by-product store (disk full, S3 denied) must not fail the job
                logger.warning("text lines not stored: %s", err, extra={"job_id": job.job_id})
                warnings.append(f"ocr: text lines not stored: {type(err).__name__}")
        if self.moments is not None:
            self.moments.replace(job.job_id, job.tenant, "ocr", text_moments(job, lines, shots))
        return warnings

    def reuse(self, job: Job, previous: Job) -> FeatureOutput:
        # The orchestrator copied the artifacts already; the moments are the new job's own.
        lines: list[TextLine] = []
        if self.artifacts is not None:
            lines = read_lines(self.artifacts, job.job_id) or read_lines(self.artifacts, previous.job_id) or []
        if self.moments is not None:
            self.moments.replace(job.job_id, job.tenant, "ocr", text_moments(job, lines, job.shots or previous.shots))
        return FeatureOutput(count=len(lines), warnings=[w for w in previous.warnings if w.startswith("ocr:")])

    def merge(self, job: Job, segments: Sequence[Mapping[str, Any]], shots: Sequence[Shot]) -> FeatureOutput:
        """Segments read their own frames; lines across a boundary are joined, and shots renumbered on the merged
        shots (a segment's frames before its first cut carried shot -1)."""
        starts = [shot.start_frame for shot in shots]
        parts = [[_Line.from_json(raw) for raw in segment.get("lines", [])] for segment in segments]
        for part in parts:
            for line in part:
                line.shot = max(0, bisect.bisect_right(starts, line.start_frame) - 1)
        lines = text_lines(join_segments(parts))
        stats = {k: sum(int(s.get("stats", {}).get(k, 0)) for s in segments)
                 for k in ("frames_seen", "frames_read", "lines_recognised", "lines_reused")}
        warnings = [str(w) for segment in segments for w in segment.get("warnings", [])]
        warnings += self.store(job, lines, shots, stats)
        return FeatureOutput(count=len(lines), warnings=list(dict.fromkeys(warnings)))

    def discard(self, job: Job) -> None:
        if self.moments is not None:  # the orchestrator removes the artifacts
            self.moments.delete(job.job_id, job.tenant)


class OcrRun:
    """Checks every sampled frame with TextChange and reads the ones it picks; follows lines across reads."""

    def __init__(self, analyzer: OcrAnalyzer, job: Job) -> None:
        self._analyzer = analyzer
        self._job = job
        self._every = analyzer.settings.every_frame
        self._reader = analyzer.reader()
        self._change = TextChange()
        self._tracker = LineTracker()
        self._held: tuple[SampledFrame, np.ndarray] | None = None  # a shot's first frame, read at the next sample
        self._last_pts: float | None = None
        self._step = 0.0
        self.stats = {"frames_seen": 0, "frames_read": 0, "lines_recognised": 0, "lines_reused": 0}
        self.warnings: list[str] = []

    def add(self, frames: Sequence[SampledFrame]) -> None:
        for frame in frames:
            luma = grey(frame)
            gradient = self._resolve_held(frame, luma) if self._held is not None else None
            why = self._change.check(luma, frame.shot, first=self._last_pts is None, gradient=gradient)
            previous = self._last_pts
            if previous is not None:
                self._step = frame.pts_s - previous
            self._last_pts = frame.pts_s
            self.stats["frames_seen"] += 1
            if why == "shot" and not self._every:
                # Read when the next sample shows where the static edges are (START_CELLS), or whole at the end.
                self._held = (frame, luma)
                continue
            if why is None and not self._every:
                continue
            reads: list[ReadLine] = []
            pixels: list[np.ndarray | None] = []
            if why != "blank" or self._every:
                region = None if self._every or self._change.region is None else [self._change.region]
                try:
                    reads, pixels = self._read(luma, region, keep_outside=True)
                except Exception as err:  # one frame the engine cannot read must not fail the job's other features
                    self._unreadable(frame, err)
                    continue
                self.stats["frames_read"] += 1
            self._change.read(frame.shot, [r.box for r in reads])
            # Text that "appeared" has static edges: it was on the previous sampled frame already.
            self._tracker.observe(frame, reads, since=previous if why in ("appeared", "replaced") else None,
                                  pixels=pixels)

    def _resolve_held(self, following: SampledFrame | None, luma: np.ndarray | None) -> np.ndarray | None:
        """Read the held shot start: only in the bands where it and `following` (the next sample, in the same shot)
        share static edges, not at all when there are none, whole when `following` is None or another shot's (one
        sample of a shot: nothing to compare). Returns `following`'s gradient_map when it was made here."""
        assert self._held is not None
        frame, held = self._held
        self._held = None
        gradient = None
        bands: list[tuple[float, float]] | None = None
        if following is not None and luma is not None and following.shot == frame.shot:
            gradient = gradient_map(luma)
            bands = self._change.start_bands(gradient)
        reads: list[ReadLine] = []
        pixels: list[np.ndarray | None] = []
        if bands is None or bands:
            try:
                reads, pixels = self._read(held, bands, keep_outside=False)
            except Exception as err:
                self._unreadable(frame, err)
                return gradient
            self.stats["frames_read"] += 1
        else:
            self.stats["starts_skipped"] = self.stats.get("starts_skipped", 0) + 1
        self._change.read(frame.shot, [r.box for r in reads])
        self._tracker.observe(frame, reads, pixels=pixels)
        return gradient

    def _unreadable(self, frame: SampledFrame, err: Exception) -> None:
        """Skip the frame (the last reading holds, and the next change is read again); the job says so once."""
        self.stats["frames_failed"] = self.stats.get("frames_failed", 0) + 1
        logger.warning("ocr could not read the frame at %.3f s: %s", frame.pts_s, err,
                       extra={"job_id": self._job.job_id})
        if not self.warnings:
            self.warnings.append(f"ocr: some frames could not be read (first at {frame.pts_s:.3f} s: "
                                 f"{type(err).__name__})")

    def _read(self, luma: np.ndarray, bands: Sequence[tuple[float, float]] | None, keep_outside: bool
              ) -> tuple[list[ReadLine], list[np.ndarray | None]]:
        """Detect the lines of the frame (or of the `bands` of rows: fractions, top and bottom; with `keep_outside`,
        the followed lines elsewhere are kept as they are); recognise only those not seen before with the same pixels
        at the same place. Returns the readings (boxes as fractions) and each one's pixels."""
        h, w = luma.shape[:2]

        def fractions(box: tuple[float, float, float, float]) -> tuple[float, float, float, float]:
            return (min(1.0, max(0.0, box[0] / w)), min(1.0, max(0.0, box[1] / h)),
                    min(1.0, max(0.0, box[2] / w)), min(1.0, max(0.0, box[3] / h)))

        kept: list[_Line] = []
        if bands is None:
            boxes = self._reader.detect(luma)
        else:
            boxes = []
            for band in bands:
                top, bottom = round(band[0] * h), round(band[1] * h)
                boxes += [(b[0], b[1] + top, b[2], b[3] + top) for b in self._reader.detect(luma[top:bottom])]
            if keep_outside:
                kept = [line for line in self._tracker.open
                        if all(line.box[3] <= band[0] or line.box[1] >= band[1] for band in bands)]
        reads: list[ReadLine | None] = [None] * len(boxes)
        pixels = [signature(luma, box) for box in boxes]
        todo = []
        for i, box in enumerate(boxes):
            known = self._tracker.unchanged(fractions(box), pixels[i])
            if known is not None:
                reads[i] = ReadLine(text=known.text, confidence=known.confidence, box=fractions(box))
            else:
                todo.append(i)
        for i, line in zip(todo, self._reader.recognize(luma, [boxes[i] for i in todo]), strict=True):
            if line is not None:
                reads[i] = ReadLine(text=line.text, confidence=line.confidence, box=fractions(boxes[i]))
        self.stats["lines_recognised"] += len(todo)
        self.stats["lines_reused"] += len(boxes) - len(todo)
        found = [i for i, read in enumerate(reads) if read is not None]
        carried = [ReadLine(text=line.text, confidence=line.confidence, box=line.box) for line in kept]
        return ([r for r in reads if r is not None] + carried,
                [pixels[i] for i in found] + [line.signature for line in kept])

    def finish(self, shots: Sequence[Shot]) -> FeatureOutput:
        if self._held is not None:
            self._resolve_held(None, None)
        end = (self._last_pts or 0.0) + self._step
        if shots:
            end = max(end, shots[-1].end_s)
        lines = self._tracker.finish(end)
        logger.info("ocr read %d of %d frames, %d lines", self.stats["frames_read"], self.stats["frames_seen"],
                    len(lines), extra={"job_id": self._job.job_id})
        segment = {"lines": [line.to_json() for line in lines], "stats": dict(self.stats), "warnings": self.warnings}
        warnings = list(self.warnings)
        if self._job.segments_total == 0:  # a segment's lines are stored by the merge
            warnings += self._analyzer.store(self._job, text_lines(lines), shots, dict(self.stats))
        return FeatureOutput(count=len(lines), segment=segment, warnings=warnings)
