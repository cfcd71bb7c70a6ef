"""The page at /ui on `video-ai serve` (issue 17 "Measured"): job page paint with 300 frames, thumbnail route latency,
bytes per page load.

    python benchmarks/bench_page.py [--repeat N]

Starts `video-ai serve --port 0` (its own temp data dir, the model cached as bench_load.py does), analyses a generated
60 s 320x180 clip with a cut every 2 s at sampling fps 5 (300 frames, 30 shots), then, in Debian's chromium driven by
Playwright:
  paint     from navigation to the job page until its shots are rendered and every thumbnail in the viewport is
            decoded (performance.now() in the page, median of N fresh browser contexts, cold HTTP cache)
  baseline  the same navigation to the sign-in screen (the page's own files only), same contexts
  bytes     every response of one job-page load (performance resource entries + the document), and the largest asset
and over loopback HTTP (httpx, sequential): GET /jobs/{id}/frames/{index}/thumbnail for all 300 frames, against
GET /health in the same run.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

READY = """() => {
  if (!document.body.dataset.jobReady) return false;
  const imgs = [...document.querySelectorAll('#shots img.thumb')].filter(i => {
    const r = i.getBoundingClientRect(); return r.top < innerHeight && r.bottom > 0; });
  return imgs.length > 0 && imgs.every(i => i.dataset.state === 'loaded' && i.naturalWidth > 0) && performance.now();
}"""
SIGN_IN = "() => !document.querySelector('#signin').hidden && performance.now()"
BYTES = """() => {
  const nav = performance.getEntriesByType('navigation')[0];
  const all = [nav, ...performance.getEntriesByType('resource')];
  return all.map(e => [e.name, e.initiatorType || 'navigation', e.encodedBodySize, e.transferSize]);
}"""


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    from playwright.sync_api import sync_playwright

    from tests.integration.serve_helpers import FileServer, ServeProcess, wait_for, write_config
    from video_ai.adapters.file_thumbnails import FileThumbnails
    from video_ai.model import build_model
    from video_ai.samples import make_clip

    chromium = shutil.which("chromium")
    if chromium is None:
        print("chromium is not installed (apt-get install chromium)")
        return 2
    model = ROOT / ".video-ai" / "bench-load-model" / "efficientnet-lite0.onnx"
    if not model.exists():
        model.parent.mkdir(parents=True, exist_ok=True)
        build_model(model)
    with tempfile.TemporaryDirectory(prefix="bench-page-") as tmp:
        work = Path(tmp)
        media = work / "media"
        media.mkdir()
        make_clip(media / "clip.mp4", duration_s=60.0, fps=10.0, size=(320, 180),
                  shots=[2.0 * k for k in range(1, 30)])
        files = FileServer(media)
        config = work / "config.yml"
        write_config(config, work / "data", fps=5.0, level="WARNING")
        proc = ServeProcess(config, env={"VIDEO_AI__MODEL__PATH": str(model)}).start()
        try:
            proc.wait_ready(180)
            api, key = proc.info["api"], proc.info["api_key"]
            with proc.client() as client:
                job_id = client.post("/analyze", json={"video_url": files.url("clip.mp4"),
                                                       "features": ["visual", "labels"]}).json()["job_id"]
                job = wait_for(lambda: (j := client.get(f"/jobs/{job_id}").json())["status"]
                               in ("succeeded", "failed") and j, timeout=600, what="the job")
                print(f"job {job['status']}: {job['frames_indexed']} frames, {job['shots_detected']} shots")
                health, records, thumbs = [], [], []
                for index in range(job["frames_indexed"]):
                    for path, into in (("/health", health), (f"/jobs/{job_id}", records),
                                       (f"/jobs/{job_id}/frames/{index}/thumbnail", thumbs)):
                        t0 = time.perf_counter()
                        client.get(path).raise_for_status()
                        into.append(time.perf_counter() - t0)
            store = FileThumbnails(work / "data" / "thumbnails")
            reads = []
            for index in range(job["frames_indexed"]):
                t0 = time.perf_counter()
                assert store.get(job_id, index)
                reads.append(time.perf_counter() - t0)
            paints, bases, loads = [], [], []
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=chromium, args=[
                    "--no-sandbox", "--disable-background-networking", "--disable-component-update",
                    "--disable-sync", "--no-first-run"])
                try:
                    for _ in range(args.repeat):
                        context = browser.new_context(viewport={"width": 1200, "height": 900})
                        page = context.new_page()
                        page.goto(f"{api}/ui/")
                        bases.append(page.wait_for_function(SIGN_IN, polling="raf").json_value())
                        page.evaluate("k => sessionStorage.setItem('video-ai.api-key', k)", key)
                        page.goto("about:blank")
                        page.goto(f"{api}/ui/#/jobs/{job_id}")
                        paints.append(page.wait_for_function(READY, polling="raf", timeout=30_000).json_value())
                        loads.append(page.evaluate(BYTES))
                        context.close()
                finally:
                    browser.close()
        finally:
            proc.terminate(30)
            files.close()
    p50_health, p50_thumb, p50_job = statistics.median(health), statistics.median(thumbs), statistics.median(records)
    print(f"thumbnail route over loopback ({len(thumbs)} GETs, keep-alive): p50 {p50_thumb * 1000:.2f} ms, "
          f"p95 {_percentile(thumbs, 0.95) * 1000:.2f} ms, the job's first {thumbs[0] * 1000:.2f} ms; "
          f"GET /jobs/{{id}} p50 {p50_job * 1000:.2f} ms "
          f"(thumbnail = {p50_thumb / p50_job:.2f}x); GET /health p50 {p50_health * 1000:.2f} ms "
          f"(thumbnail = {p50_thumb / p50_health:.2f}x); the store's file read p50 "
          f"{statistics.median(reads) * 1e6:.0f} us")
    print(f"job page paint (shots + visible thumbnails), {args.repeat} cold loads: median "
          f"{statistics.median(paints):.0f} ms, max {max(paints):.0f} ms; sign-in screen median "
          f"{statistics.median(bases):.0f} ms (paint = {statistics.median(paints) / statistics.median(bases):.1f}x)")
    entries = loads[-1]
    by_kind: dict[str, list[int]] = {}
    for name, kind, size, _ in entries:
        key_name = "thumbnail" if name.endswith("/thumbnail") else "api" if kind == "fetch" else "page"
        by_kind.setdefault(key_name, []).append(size)
    largest = max(entries, key=lambda e: e[2])
    total = sum(e[2] for e in entries)
    print(f"one job-page load: {len(entries)} responses, {total / 1024:.1f} KiB; " + ", ".join(
        f"{kind} {len(sizes)} x = {sum(sizes) / 1024:.1f} KiB" for kind, sizes in sorted(by_kind.items()))
          + f"; largest {largest[0].rsplit('/', 1)[-1] or largest[0]} {largest[2] / 1024:.1f} KiB")
    ok = statistics.median(paints) <= 1000 and p50_thumb <= 0.010 and largest[2] <= 200 * 1024
    print("OK" if ok else "FAILED (bounds: paint <= 1 s, thumbnail p50 <= 10 ms, no asset over 200 KB)")
    return 0 if ok else 1




if __name__ == "__main__":
    raise SystemExit(main())
