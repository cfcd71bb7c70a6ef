"""Load on `video-ai serve`: N POST /analyze at concurrency C, then every accepted job must finish (issue 9 item 3).

    python benchmarks/bench_load.py [--quick] [--requests 200] [--concurrency 20] [--keyframes]

Starts `video-ai serve --port 0` as a subprocess (loopback only, its own temp data dir, the model built once and
cached under .video-ai/bench-load-model/), serves a tiny clip (2 s, 160x120, 10 fps) from a loopback file server,
fires the requests from a thread pool (httpx, one client per thread), then polls GET /jobs/{id} until every accepted
job is `succeeded` or `failed` or the drain bound passes. Reports accepted/s, POST latency p50/p95/max, the time to
drain, outcome counts, 5xx and transport errors. Baseline in the same run: the same number of GET /health at the
same concurrency (the API's floor), so the POST figures read as a ratio. Exit status 1 if a job is lost or stuck,
any 5xx, or the requests took longer than 30 s to send.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
SEND_BOUND_S = 30.0


@dataclass
class LoadResult:
    """What one load run saw."""

    requests: int
    concurrency: int
    accepted: int = 0
    rejected: Counter[int] = field(default_factory=Counter)
    server_errors: int = 0
    transport_errors: int = 0
    latencies_s: list[float] = field(default_factory=list)
    send_s: float = 0.0
    drain_s: float = 0.0
    statuses: Counter[str] = field(default_factory=Counter)
    error_codes: Counter[str] = field(default_factory=Counter)
    unfinished: list[str] = field(default_factory=list)

    def percentile(self, q: float) -> float:
        if not self.latencies_s:
            return float("nan")
        ordered = sorted(self.latencies_s)
        return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]

    @property
    def accepted_per_s(self) -> float:
        return self.accepted / self.send_s if self.send_s else 0.0


def _fire(api: str, headers: dict[str, str], method: str, path: str, bodies: list[dict[str, Any] | None],
          concurrency: int) -> tuple[list[tuple[int | None, float, str | None]], float]:
    """Send every body at `concurrency`; (status or None, latency, job id) per request, and the wall time."""
    local = threading.local()
    clients: list[httpx.Client] = []  # one per pool thread, closed when the pool is done

    def one(body: dict[str, Any] | None) -> tuple[int | None, float, str | None]:
        client = getattr(local, "client", None)
        if client is None:
            client = local.client = httpx.Client(base_url=api, headers=headers, timeout=30.0)
            clients.append(client)
        started = time.perf_counter()
        try:
            response = client.request(method, path, json=body)
        except httpx.HTTPError:
            return None, time.perf_counter() - started, None
        took = time.perf_counter() - started
        job_id = response.json().get("job_id") if response.status_code == 202 else None
        return response.status_code, took, job_id

    started = time.perf_counter()
    try:
        with ThreadPoolExecutor(concurrency) as pool:
            results = list(pool.map(one, bodies))
    finally:
        for client in clients:
            client.close()
    return results, time.perf_counter() - started


def run_load(api: str, api_key: str, video_urls: list[str], *, total: int = 200, concurrency: int = 20,
             keyframes: bool = False, drain_timeout_s: float = 300.0, poll_interval_s: float = 0.5) -> LoadResult:
    """Send `total` POST /analyze (cycling through `video_urls`), then wait for every accepted job to finish."""
    headers = {"x-api-key": api_key}
    sampling = {"mode": "keyframes"} if keyframes else {"mode": "fps", "fps": 1.0}
    bodies: list[dict[str, Any] | None] = [
        {"video_url": video_urls[i % len(video_urls)], "sampling": sampling, "tags": {"load": str(i)}}
        for i in range(total)
    ]
    result = LoadResult(requests=total, concurrency=concurrency)
    answers, result.send_s = _fire(api, headers, "POST", "/analyze", bodies, concurrency)
    job_ids: list[str] = []
    for status, took, job_id in answers:
        result.latencies_s.append(took)
        if status is None:
            result.transport_errors += 1
        elif status >= 500:
            result.server_errors += 1
        elif status == 202 and job_id:
            result.accepted += 1
            job_ids.append(job_id)
        else:
            result.rejected[status] += 1
    drain_started = time.perf_counter()
    pending = set(job_ids)
    with httpx.Client(base_url=api, headers=headers, timeout=30.0) as client:
        while pending and time.perf_counter() - drain_started < drain_timeout_s:
            for job_id in list(pending):
                response = client.get(f"/jobs/{job_id}")
                if response.status_code >= 500:
                    result.server_errors += 1
                    continue
                job = response.json()
                if job.get("status") in ("succeeded", "failed"):
                    pending.discard(job_id)
                    result.statuses[job["status"]] += 1
                    if job.get("error"):
                        result.error_codes[job["error"]["code"]] += 1
            if pending:
                time.sleep(poll_interval_s)
    result.drain_s = time.perf_counter() - drain_started
    result.unfinished = sorted(pending)
    return result


def health_baseline(api: str, total: int, concurrency: int) -> list[float]:
    answers, _ = _fire(api, {}, "GET", "/health", [None] * total, concurrency)
    return [took for _, took, _ in answers]


def _start_serve(data: Path, model: Path) -> Any:
    from tests.integration.serve_helpers import ServeProcess, write_config

    config = data / "config.yml"
    write_config(config, data / "data", level="WARNING")
    proc = ServeProcess(config, env={"VIDEO_AI__MODEL__PATH": str(model)}).start()
    proc.wait_ready(180)
    return proc


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=20)
    parser.add_argument("--keyframes", action="store_true", help="sampling mode keyframes (one frame per GOP)")
    parser.add_argument("--quick", action="store_true", help="40 requests at concurrency 8 (< 60 s)")
    parser.add_argument("--drain-timeout", type=float, default=600.0)
    args = parser.parse_args()
    total, concurrency = (40, 8) if args.quick else (args.requests, args.concurrency)
    sys.path.insert(0, str(ROOT))  # the serve subprocess and file server helpers live with the tests

    from tests.integration.serve_helpers import FileServer
    from video_ai.model import build_model
    from video_ai.samples import make_clip

    model = ROOT / ".video-ai" / "bench-load-model" / "efficientnet-lite0.onnx"
    if not model.exists():
        model.parent.mkdir(parents=True, exist_ok=True)
        build_model(model)
    with tempfile.TemporaryDirectory(prefix="bench-load-") as tmp:
        work = Path(tmp)
        media = work / "media"
        media.mkdir()
        make_clip(media / "tiny.mp4", duration_s=2.0, fps=10.0, size=(160, 120), shots=[1.0])
        files = FileServer(media)
        proc = _start_serve(work, model)
        try:
            api, key = proc.info["api"], proc.info["api_key"]
            baseline = health_baseline(api, total, concurrency)
            result = run_load(api, key, [files.url("tiny.mp4")], total=total, concurrency=concurrency,
                              keyframes=args.keyframes, drain_timeout_s=args.drain_timeout)
            alive = proc.proc.poll() is None
        finally:
            proc.terminate(30)
            files.close()
    base_p50 = statistics.median(baseline)
    print(f"requests {result.requests} at concurrency {result.concurrency}, 2 s 160x120 clip, "
          f"sampling {'keyframes' if args.keyframes else 'fps 1'}")
    print(f"sent in {result.send_s:.2f} s: accepted {result.accepted} ({result.accepted_per_s:.1f}/s), "
          f"rejected {dict(result.rejected)}, 5xx {result.server_errors}, transport errors {result.transport_errors}")
    print(f"POST /analyze latency p50 {result.percentile(0.5) * 1000:.1f} ms, p95 {result.percentile(0.95) * 1000:.1f} "
          f"ms, max {max(result.latencies_s) * 1000:.1f} ms; GET /health baseline p50 {base_p50 * 1000:.1f} ms "
          f"(POST p50 = {result.percentile(0.5) / base_p50:.1f}x health)")
    print(f"drained in {result.drain_s:.1f} s: {dict(result.statuses)} errors {dict(result.error_codes)}; "
          f"unfinished {len(result.unfinished)}; serve alive {alive}")
    ok = (not result.unfinished and result.server_errors == 0 and result.transport_errors == 0
          and result.send_s <= SEND_BOUND_S and alive)
    print("OK" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
