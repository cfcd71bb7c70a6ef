"""API cold import and warm latency (issue 8 item 6), measured in one run.

    python benchmarks/bench_api.py [--quick] [--requests N]

Cold: a fresh interpreter importing the API handler module (which builds the app) vs a bare
`import fastapi, mangum, boto3` baseline; best of N runs each, interleaved. Target: <= 1.2x the baseline. Both
read byte-code, as in Lambda (the layer ships .pyc).
Warm: POST /analyze through the Mangum handler in-process against moto (in-process mock_aws); p50/p99.
Target: p99 < 20 ms. The jobs queue is drained between requests, outside the clock, as the worker drains it.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BASELINE = "import fastapi, mangum, boto3"
# For scale, not the target: the smallest app of this shape (one POST route with a body model behind Mangum). A
# FastAPI app pays for its first route things a bare import does not (e.g. FastAPI's pydantic.v1 check, ~30 ms).
ONE_ROUTE = (
    "import fastapi, mangum, boto3, pydantic\n"
    "class Body(pydantic.BaseModel):\n    video_url: str\n"
    "app = fastapi.FastAPI()\n"
    "@app.post('/analyze', status_code=202)\ndef analyze(body: Body) -> dict[str, str]:\n    return {}\n"
    "handler = mangum.Mangum(app, lifespan='off')\n"
)
HANDLER = "from video_ai.local.functions import load_function; load_function('api')"
# The same with FastAPI's own pydantic.v1 check left as it is (video_ai.api.fastapi_compat not installed).
HANDLER_V1_CHECK = (
    "import video_ai.api.fastapi_compat as compat; compat.skip_unused_pydantic_v1_check = lambda: 0\n" + HANDLER
)
KEY = "bench-key"


def _env() -> dict[str, str]:
    return {
        **os.environ,
        "AWS_ACCESS_KEY_ID": "x",
        "AWS_SECRET_ACCESS_KEY": "x",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_LAMBDA_FUNCTION_NAME": "video-ai-api-bench",  # the handler builds the app as it does in Lambda
        "POWERTOOLS_METRICS_NAMESPACE": "VideoAI",
        "POWERTOOLS_SERVICE_NAME": "video-ai",
        "POWERTOOLS_LOG_LEVEL": "WARNING",
        "VIDEO_AI__AWS__JOBS_TABLE": "jobs",
        "VIDEO_AI__AWS__JOBS_QUEUE_URL": "https://sqs.us-east-1.amazonaws.com/123456789012/jobs",
        "VIDEO_AI__AWS__TOPIC_ARN": "arn:aws:sns:us-east-1:123456789012:finished",
        "VIDEO_AI__API__API_KEY_HASHES": json.dumps({hashlib.sha256(KEY.encode()).hexdigest(): "bench"}),
        # As in Lambda: no config file, settings from the environment only; the handler found via VIDEO_AI_HOME.
        "VIDEO_AI_HOME": str(ROOT),
    }


def cold(code: str) -> float:
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as empty:  # a Lambda's cwd holds no config/ folder
        subprocess.run([sys.executable, "-c", code], cwd=empty, env=_env(), check=True)
    return time.perf_counter() - started


def drain(sqs: Any, queue_url: str) -> None:
    """Receive and delete everything queued (bounded: at most 100 receives)."""
    for _ in range(100):
        messages = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10).get("Messages", [])
        if not messages:
            return
        sqs.delete_message_batch(QueueUrl=queue_url, Entries=[
            {"Id": str(n), "ReceiptHandle": m["ReceiptHandle"]} for n, m in enumerate(messages)])


def warm(requests: int) -> tuple[list[float], list[float]]:
    os.environ.update(_env())
    import boto3
    from moto import mock_aws

    from video_ai.local.functions import lambda_context, load_function

    with mock_aws():
        boto3.client("dynamodb").create_table(
            TableName="jobs", BillingMode="PAY_PER_REQUEST",
            AttributeDefinitions=[{"AttributeName": "job_id", "AttributeType": "S"}],
            KeySchema=[{"AttributeName": "job_id", "KeyType": "HASH"}])
        boto3.client("sqs").create_queue(QueueName="jobs")
        module = load_function("api")
        event = json.loads((ROOT / "events" / "api_post_analyze.json").read_text())
        event["headers"]["x-api-key"] = KEY
        event["body"] = json.dumps({"video_url": "https://93.184.216.34/v.mp4"})
        for _ in range(20):
            module.handler(event, lambda_context("api"))
        sqs = boto3.client("sqs")
        drain(sqs, sqs.get_queue_url(QueueName="jobs")["QueueUrl"])
        times = []
        floor = []
        ddb = boto3.client("dynamodb")
        queue_url = sqs.get_queue_url(QueueName="jobs")["QueueUrl"]
        for i in range(requests):
            started = time.perf_counter()
            response = module.handler(event, lambda_context("api"))
            times.append(time.perf_counter() - started)
            assert response["statusCode"] == 202, response
            # The floor in the same run: the two AWS calls a submit makes, straight to moto, nothing else.
            started = time.perf_counter()
            ddb.put_item(TableName="jobs", Item={"job_id": {"S": f"floor-{i}"}, "status": {"S": "queued"}},
                         ConditionExpression="attribute_not_exists(job_id)")
            sqs.send_message(QueueUrl=queue_url, MessageBody=json.dumps({"job_id": f"floor-{i}"}))
            floor.append(time.perf_counter() - started)
            # Outside the clock, the queue is drained as the worker drains it: moto's send_message walks every
            # message in the queue (to compute the queue's attributes), so an undrained queue makes each send
            # O(queued messages) (18 ms per send at ~1,000 messages), which real SQS is not.
            drain(sqs, queue_url)
    return times, floor


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--v1-check", action="store_true",
                        help="also time the handler with FastAPI's pydantic.v1 import (without fastapi_compat)")
    args = parser.parse_args()
    runs = 3 if args.quick else args.runs
    # As deployed: the layer ships byte-code (layers/shared/Makefile), like the installed dependencies here. An
    # editable install under PYTHONDONTWRITEBYTECODE would otherwise compile video_ai from source on every run.
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(ROOT / "shared" / "video_ai"),
                    str(ROOT / "functions" / "api")], check=True, stdout=subprocess.DEVNULL)
    base, handler, one_route, v1_check = [], [], [], []
    for _ in range(runs):
        base.append(cold(BASELINE))
        handler.append(cold(HANDLER))
        one_route.append(cold(ONE_ROUTE))
        if args.v1_check:
            v1_check.append(cold(HANDLER_V1_CHECK))
    print(f"cold import, best of {runs}: baseline {min(base) * 1000:.0f} ms, api handler {min(handler) * 1000:.0f} ms"
          f" -> ratio {min(handler) / min(base):.2f} (target <= 1.2); for scale, a one-route FastAPI app behind Mangum"
          f" {min(one_route) * 1000:.0f} ms ({min(one_route) / min(base):.2f})")
    # The host drifts between interpreters by more than the difference measured: per-round ratios of neighbouring
    # runs are steadier than a ratio of minima taken minutes apart.
    paired = sorted(h / b for h, b in zip(handler, base, strict=True))
    print(f"  per-round ratio handler/baseline: median {statistics.median(paired):.2f}, range {paired[0]:.2f}-"
          f"{paired[-1]:.2f}; one-route app median "
          f"{statistics.median(o / b for o, b in zip(one_route, base, strict=True)):.2f}")
    if v1_check:
        print(f"  without fastapi_compat (FastAPI imports pydantic.v1): best {min(v1_check) * 1000:.0f} ms, per-round "
              f"ratio median {statistics.median(v / b for v, b in zip(v1_check, base, strict=True)):.2f}")
    times, floor = (sorted(t) for t in warm(200 if args.quick else args.requests))
    p50 = statistics.median(times) * 1000
    p99 = times[int(len(times) * 0.99) - 1] * 1000
    f50 = statistics.median(floor) * 1000
    f99 = floor[int(len(floor) * 0.99) - 1] * 1000
    print(f"warm POST /analyze via Mangum against moto, {len(times)} requests: p50 {p50:.1f} ms, p99 {p99:.1f} ms"
          f" (target p99 < 20 ms)")
    print(f"floor, same run: moto put_item + send_message alone p50 {f50:.1f} ms, p99 {f99:.1f} ms"
          f" -> the service's own share p50 {p50 - f50:.1f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
