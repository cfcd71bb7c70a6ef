"""API function: API Gateway (HTTP API, payload v2) -> FastAPI via Mangum."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Metrics
from aws_lambda_powertools.logging import correlation_paths
from mangum import Mangum

from bootstrap import build_app
from video_ai.observability import lambda_logger

logger = lambda_logger()
# No powertools Tracer here: importing the X-Ray SDK costs ~0.5 s of cold start on the POST /analyze path, and
# `Tracing: Active` on the function already records its segment (the worker, where stages matter, has spans).
metrics = Metrics()
asgi = Mangum(build_app(), lifespan="off", api_gateway_base_path="/")


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
@metrics.log_metrics
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    response: dict[str, Any] = asgi(event, context)
    return response
