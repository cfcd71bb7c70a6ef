"""Composition root of the ingest function, built once per container."""

from __future__ import annotations

from video_ai.observability import lambda_metrics
from video_ai.runtime import Runtime, load_secrets, shared_runtime
from video_ai.settings import load_settings


def _build() -> Runtime:
    settings = load_settings()
    return Runtime(settings, secrets=load_secrets(), metrics=lambda_metrics(settings))


def build_runtime() -> Runtime:
    return shared_runtime(_build)
