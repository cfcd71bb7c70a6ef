"""Analyzers: one per feature behind the `Analyzer` port (domain.ports), found by name in one registry.

The registry holds import paths, not classes: the API validates feature names without importing numpy or a model,
and a worker imports only the analyzers its jobs ask for. A new feature is a new module plus one line here.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from video_ai.domain.errors import FeatureUnavailable
from video_ai.domain.models import Moment, MomentFilter
from video_ai.domain.ports import (
    Analyzer,
    ArtifactStore,
    Embedder,
    MomentIndex,
    NullTracing,
    TextEmbedder,
    TextReader,
    ThumbnailStore,
    Tracing,
    VectorIndex,
)
from video_ai.settings import LabelSettings, OcrSettings, SpeechSettings

REGISTRY: Mapping[str, str] = {
    "visual": "video_ai.analyzers.visual:VisualAnalyzer",
    "labels": "video_ai.analyzers.labels:LabelAnalyzer",
    "speech": "video_ai.analyzers.speech:SpeechAnalyzer",
    "ocr": "video_ai.analyzers.ocr:OcrAnalyzer",
}


def available_features() -> tuple[str, ...]:
    return tuple(REGISTRY)


@dataclass(slots=True)
class MomentStore:
    """Where analyzers put what they found as words: the text index, each moment with its sentence vector."""

    index: MomentIndex
    embedder: TextEmbedder

    def replace(self, job_id: str, tenant: str, kind: str, moments: list[Moment]) -> None:
        """A job's moments of one kind, replacing those of an earlier run of the same job."""
        self.index.delete(MomentFilter(tenant=tenant, job_id=job_id, kinds=(kind,)))
        if moments:
            self.index.upsert(moments, self.embedder.embed([m.text for m in moments]))

    def delete(self, job_id: str, tenant: str) -> None:
        self.index.delete(MomentFilter(tenant=tenant, job_id=job_id))


@dataclass(slots=True)
class AnalyzerContext:
    """What analyzers are built from: the shared image model and index of the process, the text index (None: words
    are not indexed, e.g. in unit tests), and their settings."""

    embedder: Embedder
    index: VectorIndex
    tracing: Tracing = field(default_factory=NullTracing)
    labels: LabelSettings = field(default_factory=LabelSettings)
    ocr: OcrSettings = field(default_factory=OcrSettings)
    # The OCR engine (None: RapidOCR from the `ocr` settings, loaded on the first job that asks for ocr).
    text_reader: TextReader | None = None
    speech: SpeechSettings = field(default_factory=SpeechSettings)
    moments: MomentStore | None = None
    # Where the visual analyzer keeps a JPEG per sampled frame (None: no thumbnails here).
    thumbnails: ThumbnailStore | None = None
    # Where analyzers keep results too big for the job record (transcript.json, text.json); None: not kept here.
    # The orchestrator copies them on reuse and removes them with a cancelled job; DELETE /jobs/{id} removes them too.
    artifacts: ArtifactStore | None = None


AnalyzerFactory = Callable[[AnalyzerContext], Analyzer]


def analyzer_class(feature: str, registry: Mapping[str, str] = REGISTRY) -> AnalyzerFactory:
    """The class (any callable taking an AnalyzerContext) registered for `feature`, imported now."""
    target = registry.get(feature)
    if target is None:
        raise FeatureUnavailable(f"feature {feature!r} is not available here (available: {', '.join(registry)})",
                                 field="features")
    module_name, _, attr = target.partition(":")
    factory: AnalyzerFactory = getattr(importlib.import_module(module_name), attr)
    return factory


class AnalyzerSet:
    """The analyzers of one process, each built on first use and kept (their models load lazily too)."""

    def __init__(self, context: AnalyzerContext, registry: Mapping[str, str] = REGISTRY,
                 overrides: Mapping[str, Analyzer] | None = None) -> None:
        self.context = context
        self._registry = registry
        self._built: dict[str, Analyzer] = dict(overrides or {})
        self._lock = threading.Lock()

    def get(self, feature: str) -> Analyzer:
        with self._lock:
            analyzer = self._built.get(feature)
            if analyzer is None:
                analyzer = analyzer_class(feature, self._registry)(self.context)
                self._built[feature] = analyzer
            return analyzer

    def for_features(self, features: list[str]) -> list[Analyzer]:
        """The analyzers of a job's features, in the registry's order (visual first: its frames are the job's)."""
        ordered = [f for f in self._registry if f in features] + [f for f in features if f not in self._registry]
        return [self.get(f) for f in dict.fromkeys(ordered)]


__all__ = ["REGISTRY", "AnalyzerContext", "AnalyzerSet", "MomentStore", "analyzer_class", "available_features"]
