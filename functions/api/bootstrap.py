"""Composition root of the API function: settings, secrets and adapters, built once per container."""

from __future__ import annotations

import os

from fastapi import FastAPI

from video_ai.api.app import create_app
from video_ai.observability import lambda_metrics
from video_ai.runtime import Runtime, load_secrets, shared_runtime
from video_ai.settings import load_settings


def _build() -> Runtime:
    settings = load_settings()
    return Runtime(settings, secrets=load_secrets(), metrics=lambda_metrics(settings))


def build_app() -> FastAPI:
    # In Lambda nothing scrapes /metrics (metrics leave as CloudWatch EMF), so it and its imports stay out; `serve`
    # runs this same module outside Lambda and keeps them.
    in_lambda = "AWS_LAMBDA_FUNCTION_NAME" in os.environ
    # In Lambda POST /search, GET /jobs/{id}/frames and DELETE /jobs/{id} are the SearchFunction's (template.yaml).
    return create_app(shared_runtime(_build).api_context(), prometheus=not in_lambda, index_routes=not in_lambda)
