"""The HTTP API (FastAPI): one app for Lambda (via Mangum) and for `video-ai serve` (via uvicorn)."""
