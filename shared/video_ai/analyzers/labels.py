"""The "labels" analyzer: ImageNet classes of each shot's informative frames, from the frame model's own logits.

What runs on which frames, and why (FACTS, measured on real footage; BENCHMARKS.md "Labels"):
* Squashing a 16:9 frame to the model's square labels it poorly ("fur coat" for a cockatoo). The decoder hands this
  analyzer an aspect-keeping copy whose short side is the model's input size, so square crops of it need no resize:
  one centre crop (default), or three along a wide (or tall) frame. The whole (squashed) frame is scored too: when
  the frame embedder ran, its logits came with the vectors from the same run, at no cost. A class scores its best
  input. Three crops cost three model runs per labelled frame, and their quality was no better on the photographs
  measured (BENCHMARKS.md), so they are an option.
* Black, fading and flat frames get low, meaningless labels and cost as much as any: frames whose luma standard
  deviation is under `min_contrast` are skipped.
* Frames of one shot look alike: each shot gets one labelled frame, its most detailed (highest contrast) one, per
  started `window_s` of the shot, so the cost follows the number of shots and the length, not the sampling rate.
* The whole frame goes first (its logits are usually free); its crops are scored only when its top label is less
  confident than `crop_below`: on photographs a confident whole frame kept its top label with the crop 99.8% of the
  time, and 59% of the photographs skipped their crop's model run (BENCHMARKS.md "Label calibration").
Confidences are calibrated (video_ai.model.label_calibration): softmax(logits / T) of the input that supports the
class most, T fitted on held-out ImageNet validation photographs, so a label at 0.8 is right about 80% of the time
on such photographs. A shot's label takes its best labelled frame's confidence.
"""

from __future__ import annotations

import bisect
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from video_ai.domain.models import FrameLabels, Job, Label, Moment, SampledFrame, Shot, ShotLabels
from video_ai.domain.ports import FeatureOutput, FrameNeeds
from video_ai.model.label_calibration import combine, shipped_temperature, softmax

if TYPE_CHECKING:
    from video_ai.analyzers import AnalyzerContext
    from video_ai.settings import LabelSettings

logger = logging.getLogger(__name__)

# Frames held before one batched model run (x3 crops each).
PENDING_FRAMES = 8


def square_crops(image: np.ndarray, mode: str) -> list[np.ndarray]:
    """Square crops of an upright image: three along its long side (ends and centre) when it is clearly longer than
    wide or tall, else (or in `centre` mode) the centre one; none in `none` mode."""
    if mode == "none":
        return []
    h, w = image.shape[:2]
    side = min(h, w)
    if mode == "three" and max(h, w) >= 1.2 * side:
        starts = [0, (max(h, w) - side) // 2, max(h, w) - side]
        if w >= h:
            return [image[:, x : x + side] for x in starts]
        return [image[y : y + side, :] for y in starts]
    y, x = (h - side) // 2, (w - side) // 2
    return [image[y : y + side, x : x + side]]


def contrast(image: np.ndarray) -> float:
    """Standard deviation of an approximate luma on every other pixel: ~0 on black, fades in from black and flat
    colour; higher on detailed frames (cheap: ~0.3 ms on a 398x224 frame)."""
    small = image[::2, ::2].astype(np.float32)
    luma = small[..., 0] * 0.299 + small[..., 1] * 0.587 + small[..., 2] * 0.114
    return float(luma.std())


def aggregate(frames: Sequence[FrameLabels], shots: Sequence[Shot], top_k: int) -> list[ShotLabels]:
    """Per shot: each class at its best confidence over the shot's labelled frames, best first; every shot is listed
    (a shot with no informative frame has no labels)."""
    by_shot: dict[int, list[FrameLabels]] = {}
    for frame in frames:
        by_shot.setdefault(frame.shot, []).append(frame)
    out: list[ShotLabels] = []
    known = {shot.index for shot in shots}
    ranges = [(shot.index, shot.start_s, shot.end_s) for shot in shots]
    # A frame whose shot the pass did not report (none should) still gets a range: its own frames' times.
    ranges += [(i, min(f.pts_s for f in fs), max(f.pts_s for f in fs)) for i, fs in by_shot.items() if i not in known]
    for index, start_s, end_s in sorted(ranges):
        best: dict[int, Label] = {}
        for frame in by_shot.get(index, []):
            for label in frame.labels:
                if label.class_id not in best or label.confidence > best[label.class_id].confidence:
                    best[label.class_id] = label
        ranked = sorted(best.values(), key=lambda lb: (-lb.confidence, lb.class_id))[:top_k]
        out.append(ShotLabels(shot=index, start_s=start_s, end_s=end_s, labels=ranked,
                              frames=sorted(by_shot.get(index, []), key=lambda f: f.frame_number)))
    return out


def label_moments(job_id: str, tenant: str, shots: Sequence[ShotLabels]) -> list[Moment]:
    """Shot labels as moments for the text index: one per shot and label, its text every word that names the class
    (name, WordNet synonyms and hypernyms), on the shot's time range, at the labelled frame that scored it best."""
    from video_ai.model.wordnet import class_words

    moments = []
    for shot in shots:
        for label in shot.labels:
            text = class_words(label.class_id).text() if 0 <= label.class_id < 1000 else label.name
            scored = [(lb.confidence, f.pts_s) for f in shot.frames for lb in f.labels if lb.class_id == label.class_id]
            moments.append(Moment(job_id=job_id, tenant=tenant, kind="label", text=text, start_s=shot.start_s,
                                  end_s=shot.end_s, shot=shot.shot, confidence=min(1.0, max(0.0, label.confidence)),
                                  pts_s=max(scored)[1] if scored else None))
    return moments


class LabelAnalyzer:
    feature = "labels"

    def __init__(self, context: AnalyzerContext) -> None:
        self.embedder = context.embedder
        self.settings: LabelSettings = context.labels
        self.moments = context.moments
        width, height = context.embedder.input_size
        # The whole-frame-only mode needs no aspect-keeping copy (its conversion alone is ~3% of analyze's CPU).
        self.needs = FrameNeeds(detail_short_side=min(width, height) if self.settings.crops != "none" else None)
        self._names: tuple[str, ...] | None = None
        info = context.embedder.info
        fitted = shipped_temperature(info.name, info.version)
        self.temperature = self.settings.temperature or fitted or 1.0
        # A model of one's own with ImageNet logits has no fitted temperature: say so on its jobs.
        self.uncalibrated = self.settings.temperature is None and fitted is None
        # Joins the content key: a job never reuses labels made with other settings or before calibration.
        self.variant = f"labels={self.settings.model_dump_json(exclude={'temperature'})},T={self.temperature}"

    def names(self) -> tuple[str, ...]:
        if self._names is None:
            from video_ai.model import imagenet_labels

            self._names = imagenet_labels()
        return self._names

    def classify(self, images: Sequence[np.ndarray]) -> np.ndarray | None:
        """(N, classes) logits, or None when the image model has no class output (e.g. a configured CLIP tower)."""
        logits = getattr(self.embedder, "logits", None)
        if logits is None:
            return None
        try:
            out: np.ndarray = logits(images)
        except ValueError:
            return None
        return out

    def start(self, job: Job) -> LabelRun:
        return LabelRun(self, job)

    def index(self, job: Job, labels: Sequence[ShotLabels]) -> None:
        """Put the job's shot labels in the text index (when this process has one)."""
        if self.moments is not None:
            self.moments.replace(job.job_id, job.tenant, "label", label_moments(job.job_id, job.tenant, labels))

    def reuse(self, job: Job, previous: Job) -> FeatureOutput:
        labels = previous.labels or []
        self.index(job, labels)
        return FeatureOutput(count=sum(len(s.frames) for s in labels), fields={"labels": labels},
                             warnings=[w for w in previous.warnings if w.startswith("labels:")])

    def merge(self, job: Job, segments: Sequence[Mapping[str, Any]], shots: Sequence[Shot]) -> FeatureOutput:
        """Segments label their own frames; the merged shots regroup them (a segment's frames before its first cut
        carried shot -1)."""
        starts = [shot.start_frame for shot in shots]
        frames = []
        for segment in segments:
            for raw in segment.get("frames", []):
                frame = FrameLabels.model_validate(raw)
                frames.append(frame.model_copy(update={"shot": max(0, bisect.bisect_right(starts, frame.frame_number)
                                                                    - 1)}))
        warnings = [str(w) for segment in segments for w in segment.get("warnings", [])]
        labels = aggregate(frames, shots, self.settings.top_k)
        self.index(job, labels)
        return FeatureOutput(count=len(frames), fields={"labels": labels}, warnings=list(dict.fromkeys(warnings)))

    def discard(self, job: Job) -> None:
        if self.moments is not None:  # the labels themselves live in the job record, which DELETE removes
            self.moments.delete(job.job_id, job.tenant)


@dataclass(slots=True)
class _Candidate:
    frame: SampledFrame
    score: float


class LabelRun:
    """Keeps the best frame of the current (shot, window) and labels the chosen ones in small batches."""

    def __init__(self, analyzer: LabelAnalyzer, job: Job) -> None:
        self._analyzer = analyzer
        self._job = job
        self._settings = analyzer.settings
        self._key: tuple[int, int] | None = None
        self._best: _Candidate | None = None
        self._shot_start: dict[int, float] = {}
        self._pending: list[SampledFrame] = []
        self.labelled: list[FrameLabels] = []
        self.warnings: list[str] = []
        self.model_runs = 0
        self.crops_skipped = 0  # frames whose whole frame was confident enough
        self._disabled = False

    def add(self, frames: Sequence[SampledFrame]) -> None:
        if self._disabled:
            return
        for frame in frames:
            image = frame.detail if frame.detail is not None else frame.image
            start = self._shot_start.setdefault(frame.shot, frame.pts_s)
            key = (frame.shot, int((frame.pts_s - start) // self._settings.window_s))
            if key != self._key:
                self._choose()
                self._key = key
            score = contrast(image)
            if score >= self._settings.min_contrast and (self._best is None or score > self._best.score):
                self._best = _Candidate(frame, score)
        if len(self._pending) >= PENDING_FRAMES:
            self._label()

    def _choose(self) -> None:
        if self._best is not None:
            self._pending.append(self._best.frame)
        self._best = None

    def _classify(self, images: Sequence[np.ndarray]) -> np.ndarray | None:
        """Logits of the images, or None (and labels disabled for the job, with a warning) without class output."""
        logits = self._analyzer.classify(images)
        if logits is None or logits.shape[1] != len(self._analyzer.names()):
            self._disabled = True
            self.warnings.append("labels: the image model has no ImageNet class output; no labels were made")
            logger.warning("labels skipped: the image model has no ImageNet class output")
            return None
        self.model_runs += len(images)
        return logits

    def _label(self) -> None:
        frames, self._pending = self._pending, []
        if not frames or self._disabled:
            return
        mode, temperature = self._settings.crops, self._analyzer.temperature
        rows: list[np.ndarray] = []
        owners: list[int] = []
        confident: set[int] = set()
        if self._settings.whole_frame or mode == "none":
            missing = [i for i, frame in enumerate(frames) if frame.logits is None]
            computed = self._classify([frames[i].image for i in missing]) if missing else None
            if missing and computed is None:
                return
            whole = dict(zip(missing, computed if computed is not None else [], strict=True))
            for i, frame in enumerate(frames):
                row = frame.logits if frame.logits is not None else whole[i]
                rows.append(row)
                owners.append(i)
                if softmax(row.astype(np.float32), temperature).max() >= self._settings.crop_below:
                    confident.add(i)
        crops: list[np.ndarray] = []
        crop_owners: list[int] = []
        for i, frame in enumerate(frames):
            if i in confident:
                self.crops_skipped += mode != "none"
                continue
            inputs = square_crops(frame.detail if frame.detail is not None else frame.image, mode)
            crops.extend(inputs)
            crop_owners.extend([i] * len(inputs))
        if crops:
            logits = self._classify(crops)
            if logits is None:
                return
            rows.extend(logits)
            owners.extend(crop_owners)
        if not rows:
            return
        per_frame = combine(softmax(np.stack(rows).astype(np.float32), temperature), owners, len(frames))
        names = self._analyzer.names()
        k = self._settings.top_k
        floor = self._settings.min_confidence
        for frame, row in zip(frames, per_frame, strict=True):
            top = np.argsort(-row)[:k]
            labels = [Label(class_id=int(c), name=names[int(c)], confidence=round(float(row[c]), 4))
                      for c in top if row[c] >= floor]
            self.labelled.append(FrameLabels(pts_s=frame.pts_s, frame_number=frame.frame_number, shot=frame.shot,
                                             labels=labels))

    def finish(self, shots: Sequence[Shot]) -> FeatureOutput:
        self._choose()
        self._label()
        if self._analyzer.uncalibrated and not self._disabled and any(f.labels for f in self.labelled):
            self.warnings.append("labels: confidences are the raw softmax (no temperature is fitted for this model)")
        segment = {"frames": [f.model_dump(mode="json") for f in self.labelled], "warnings": self.warnings}
        labels = aggregate(self.labelled, shots, self._settings.top_k)
        if self._job.segments_total == 0:  # a segment's shots are its own: the merge indexes the whole job's
            self._analyzer.index(self._job, labels)
        return FeatureOutput(count=len(self.labelled), fields={"labels": labels}, segment=segment,
                             warnings=list(self.warnings))
