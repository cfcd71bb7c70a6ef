"""Composition root of the worker function: decode, model and index adapters, built once per container."""

from __future__ import annotations

from video_ai.observability import lambda_metrics
from video_ai.runtime import Runtime, load_secrets, shared_runtime
from video_ai.settings import load_settings


def build_runtime() -> Runtime:
    return shared_runtime(lambda: Runtime(load_settings(), secrets=load_secrets(), metrics=lambda_metrics()))
