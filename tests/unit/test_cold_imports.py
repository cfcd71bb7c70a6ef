"""The API's cold path must not import the heavy worker stack (qdrant_client alone costs ~1.3 s of import)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.conftest import ROOT

HEAVY = ["cv2", "av", "onnxruntime", "onnx", "qdrant_client", "qdrant_edge", "scenedetect", "PIL",
         # In Lambda metrics leave as EMF: no Prometheus endpoint, instrumentation or X-Ray SDK on this path either.
         "prometheus_client", "prometheus_fastapi_instrumentator", "aws_xray_sdk",
         # FastAPI imports it (~35 ms) only to refuse v1 models: skipped while nothing imported it (fastapi_compat).
         "pydantic.v1"]

PROBE = """
import json, sys
from video_ai.local.functions import load_function, lambda_context
module = load_function("api")
event = json.loads(open("events/api_post_analyze.json").read())
event["headers"]["x-api-key"] = "cold-key"
# An address literal: no DNS on this machine, and the guard still checks it.
event["body"] = json.dumps({"video_url": "https://93.184.216.34/v.mp4", "callback_url": "https://93.184.216.34/h"})
# Handle one POST /analyze end to end (moto in-process), then look at what got imported.
from moto import mock_aws
import boto3
with mock_aws():
    ddb = boto3.client("dynamodb", region_name="us-east-1")
    ddb.create_table(TableName="jobs", BillingMode="PAY_PER_REQUEST",
                     AttributeDefinitions=[{"AttributeName": "job_id", "AttributeType": "S"}],
                     KeySchema=[{"AttributeName": "job_id", "KeyType": "HASH"}])
    boto3.client("sqs", region_name="us-east-1").create_queue(QueueName="placeholder")
    response = module.handler(event, lambda_context("api"))
print(json.dumps({"status": response["statusCode"], "body": response["body"],
                  "heavy": sorted(m for m in %r if m in sys.modules)}))
"""


def test_api_handler_cold_path_imports_no_worker_stack() -> None:
    env = {
        **os.environ,
        "VIDEO_AI__AWS__JOBS_TABLE": "jobs",
        "VIDEO_AI__AWS__JOBS_QUEUE_URL": "https://sqs.us-east-1.amazonaws.com/123456789012/placeholder",
        "VIDEO_AI__AWS__TOPIC_ARN": "arn:aws:sns:us-east-1:123456789012:jobs-finished",
        "VIDEO_AI__API__API_KEY_HASHES": json.dumps({__import__("hashlib").sha256(b"cold-key").hexdigest(): "t"}),
        "VIDEO_AI_CONFIG": str(ROOT / "config" / "config.yml"),
        "AWS_LAMBDA_FUNCTION_NAME": "video-ai-api-test",
    }
    env.pop("AWS_ENDPOINT_URL", None)
    proc = subprocess.run([sys.executable, "-c", PROBE % (HEAVY,)], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["status"] == 202, (result, proc.stderr[-3000:])
    assert result["heavy"] == [], f"POST /analyze imported {result['heavy']}"
