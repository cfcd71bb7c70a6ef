"""`video-ai serve` start-up on a data dir holding N finished jobs vs an empty one (issue 20).

    python benchmarks/bench_serve_restart.py [--jobs 1000] [--frames 6] [--repeat 2]
    python benchmarks/bench_serve_restart.py --writes 300      # the write-through cost alone, then exit
    python benchmarks/bench_serve_restart.py --keep DIR        # build the data dirs in DIR once, reuse them after

The populated data dir is built the way `serve` itself writes it: moto with `serve`'s durable state installed, the
template's resources, N jobs created and driven queued -> processing -> succeeded (announced, callback delivered)
through the DynamoDB job repository, and `--frames` vectors per job in the embedded index. Then `video-ai serve
--port 0` runs as a subprocess on each data dir, rounds interleaved, best of `--repeat`:
  ready    process start -> the four ready lines on stdout (the restore happens before them)
  restore  the `state restored in ...` log line's own figure
  sweep    the orphan sweep's own figure (after the model warm-up, in the background; every job is known here)
  stop     SIGTERM -> exit
--writes N: N x (PutItem, UpdateItem, SendMessage, ReceiveMessage+DeleteMessage) through moto's server from this
process, without and then with the durable state installed (same server, rounds interleaved, best of 3): the
per-request cost of writing through (SQLite WAL, synchronous=FULL, one fsync per change).
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import numpy as np

READY_KEYS = ("api:", "s3:", "api_key:", "webhook_secret:")


def populate(data_dir: Path, jobs: int, frames: int) -> None:
    from moto.core.models import DEFAULT_ACCOUNT_ID
    from moto.server import ThreadedMotoServer

    from video_ai.adapters.aws import AwsClients
    from video_ai.adapters.dynamodb_jobs import DynamoDBJobRepository
    from video_ai.adapters.qdrant_edge_index import QdrantEdgeIndex
    from video_ai.domain.models import CallbackState, FramePoint, Job, JobStatus, ModelInfo, Source, point_id, utc_now
    from video_ai.local.durable import DurableState
    from video_ai.local.functions import find_project_file
    from video_ai.local.resources import create_resources
    from video_ai.local.serve import STATE_DIR
    from video_ai.settings import Settings

    settings = Settings.model_validate({"data_dir": str(data_dir)})
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # moto's request log
    os.environ.update({"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"})
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    moto.start()
    host, port = moto.get_host_and_port()
    durable = DurableState(data_dir / STATE_DIR, DEFAULT_ACCOUNT_ID, settings.aws.region)
    durable.install()
    try:
        clients = AwsClients(settings.aws.region, endpoint_url=f"http://{host}:{port}")
        resources = create_resources(clients, find_project_file("template.yaml"), settings.stage)
        repo = DynamoDBJobRepository(resources.table_name, clients)
        m = settings.model
        model = ModelInfo(name=m.name, version=m.version, dim=m.dim)
        index = QdrantEdgeIndex(data_dir)
        rng = np.random.default_rng(20)
        for _ in range(jobs):
            job = repo.create(Job(job_id=str(uuid.uuid4()), tenant="dev", source=Source(url="http://127.0.0.1/x.mp4"),
                                  callback_url="http://127.0.0.1:9/hook"))
            repo.transition(job.job_id, JobStatus.PROCESSING, started_at=utc_now())
            repo.transition(job.job_id, JobStatus.SUCCEEDED, frames_indexed=frames, announced_at=utc_now(),
                            callback=CallbackState(status="delivered", attempts=1, last_status=200,
                                                   delivered_at=utc_now()))
            vectors = rng.standard_normal((frames, m.dim)).astype(np.float32)
            index.upsert(model, [FramePoint(id=point_id(job.job_id, i), vector=vectors[i],
                                            payload={"job_id": job.job_id, "tenant": "dev", "pts_s": float(i),
                                                     "frame_number": i, "shot": 0, "source": "x"})
                                 for i in range(frames)])
        index.close()
    finally:
        moto.stop()
        durable.close()


def write_overhead(n: int) -> None:
    from moto.core.models import DEFAULT_ACCOUNT_ID
    from moto.server import ThreadedMotoServer

    from video_ai.adapters.aws import AwsClients
    from video_ai.local.durable import DurableState

    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    os.environ.update({"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"})
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    moto.start()
    host, port = moto.get_host_and_port()
    clients = AwsClients("us-east-1", endpoint_url=f"http://{host}:{port}")
    ddb, sqs = clients.dynamodb, clients.sqs
    ddb.create_table(TableName="t", KeySchema=[{"AttributeName": "k", "KeyType": "HASH"}],
                     AttributeDefinitions=[{"AttributeName": "k", "AttributeType": "S"}], BillingMode="PAY_PER_REQUEST")
    url = sqs.create_queue(QueueName="q")["QueueUrl"]

    def round_s() -> float:
        started = time.perf_counter()
        for i in range(n):
            ddb.put_item(TableName="t", Item={"k": {"S": f"k{i}"}, "status": {"S": "queued"}})
            ddb.update_item(TableName="t", Key={"k": {"S": f"k{i}"}}, UpdateExpression="SET #s = :s",
                            ExpressionAttributeNames={"#s": "status"}, ExpressionAttributeValues={":s": {"S": "done"}})
            sqs.send_message(QueueUrl=url, MessageBody=f"m{i}")
            for message in sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=1).get("Messages", []):
                sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
        return (time.perf_counter() - started) / n

    with tempfile.TemporaryDirectory(prefix="bench-writes-") as tmp:
        state = DurableState(Path(tmp), DEFAULT_ACCOUNT_ID, "us-east-1")
        plain: list[float] = []
        durable: list[float] = []
        try:
            round_s()  # warm: clients, moto's first requests
            for _ in range(3):
                plain.append(round_s())
                state.install()
                durable.append(round_s())
                state.uninstall()
        finally:
            state.close()
            moto.stop()
    p, d = min(plain), min(durable)
    print(f"{n} x (put, update, send, receive+delete): in memory {p * 1000:.2f} ms, written through {d * 1000:.2f} ms "
          f"per job-like round; ratio {d / p:.2f}")


def run_serve(data_dir: Path) -> dict[str, float]:
    config = data_dir.parent / f"{data_dir.name}.yml"
    config.write_text(f"data_dir: {data_dir}\nlogging:\n  level: INFO\n  json: false\n", encoding="utf-8")
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("AWS_ENDPOINT_URL", None)
    started = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", "video_ai.cli", "serve", "--port", "0", "--config", str(config)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    assert proc.stdout is not None and proc.stderr is not None
    err_lines: list[str] = []
    stderr = proc.stderr
    pump = threading.Thread(target=lambda: err_lines.extend(stderr), daemon=True)
    pump.start()
    seen: set[str] = set()
    for line in proc.stdout:
        seen.update(k for k in READY_KEYS if line.startswith(k))
        if len(seen) == len(READY_KEYS):
            break
    ready = time.monotonic() - started
    deadline = time.monotonic() + 120
    while not any("orphan sweep:" in line for line in list(err_lines)) and time.monotonic() < deadline:
        time.sleep(0.1)
    stop_started = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    proc.wait(60)
    stop = time.monotonic() - stop_started
    pump.join(5)
    proc.stdout.close()
    proc.stderr.close()
    text = "".join(err_lines)
    restore = re.search(r"state restored in ([\d.]+) s: (\d+) items", text)
    sweep = re.search(r"orphan sweep: .* in ([\d.]+) s", text)
    return {"ready": ready, "restore": float(restore.group(1)) if restore else float("nan"),
            "items": float(restore.group(2)) if restore else float("nan"),
            "sweep": float(sweep.group(1)) if sweep else float("nan"), "stop": stop}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--frames", type=int, default=6)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--writes", type=int, default=0)
    parser.add_argument("--keep", type=Path, help="build the data dirs here once and reuse them on later runs")
    args = parser.parse_args()
    if args.writes:
        write_overhead(args.writes)
        return
    with tempfile.TemporaryDirectory(prefix="bench-restart-") as tmp:
        base = args.keep or Path(tmp)
        empty, full = base / "empty", base / "full"
        if not full.exists():
            empty.mkdir(parents=True, exist_ok=True)
            built = time.monotonic()
            populate(full, args.jobs, args.frames)
            print(f"populated {args.jobs} finished jobs x {args.frames} vectors in {time.monotonic() - built:.1f} s")
        results: dict[str, list[dict[str, float]]] = {"empty": [], "full": []}
        for _ in range(args.repeat):
            for name, path in (("empty", empty), ("full", full)):
                results[name].append(run_serve(path))
        print(f"{'data dir':<10} {'items':>6} {'ready s':>8} {'restore s':>10} {'sweep s':>8} {'stop s':>7}")
        best: dict[str, dict[str, float]] = {}
        for name, runs in results.items():
            b = min(runs, key=lambda r: r["ready"])
            best[name] = b
            print(f"{name:<10} {b['items']:>6.0f} {b['ready']:>8.2f} {b['restore']:>10.2f} {b['sweep']:>8.2f} "
                  f"{b['stop']:>7.2f}")
        print(f"ready ratio full / empty: {best['full']['ready'] / best['empty']['ready']:.2f}")


if __name__ == "__main__":
    main()
