"""The page at /ui in a real browser (Debian's chromium driven by Playwright) against `video-ai serve`.

Signs in, submits a generated clip, watches it succeed, opens it, clicks a shot and reads the player's clock, runs a
text search and opens a hit; on a clip with words on screen over a real speech recording, clicks transcript and
on-screen text lines and finds both by search; checks that the API key never appears in a request URL, that a wrong
key is refused on the sign-in screen and that another tenant's job is "not found". CI installs chromium
(scripts/test.sh); elsewhere the module is skipped without it. Screenshots go to $VIDEO_AI_SCREENSHOTS (default: the
test's temporary directory).
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import threading
from collections.abc import Iterator
from http import HTTPStatus
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest
from botocore.config import Config

from tests.integration.serve_helpers import ServeProcess, wait_for, write_config
from video_ai.samples import make_clip

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# Required in CI (scripts/test.sh installs it there): a missing browser fails instead of skipping.
pytestmark = [pytest.mark.skipif(CHROMIUM is None and os.environ.get("CI") != "true",
                                 reason="no Chromium here (scripts/test.sh installs it as root)"),
              pytest.mark.timeout(240)]

OTHER_KEY = "other-tenant-key"
CUTS = [1.5, 3.0]  # three shots in a 4.5 s clip


class _RangeFiles(SimpleHTTPRequestHandler):
    """http.server with single byte ranges: a <video> seeks only in a source that answers Range (FACTS)."""

    def send_head(self) -> Any:
        match = re.fullmatch(r"bytes=(\d+)-(\d*)", self.headers.get("Range", ""))
        path = Path(self.translate_path(self.path))
        if match is None or not path.is_file():
            return super().send_head()
        size = path.stat().st_size
        start = int(match[1])
        end = min(int(match[2]) if match[2] else size - 1, size - 1)
        if start > end:
            self.send_error(HTTPStatus.REQUESTED_RANGE_NOT_SATISFIABLE)
            return None
        handle = path.open("rb")
        handle.seek(start)
        self.send_response(HTTPStatus.PARTIAL_CONTENT)
        self.send_header("Content-Type", self.guess_type(str(path)))
        self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        self.send_header("Content-Length", str(end - start + 1))
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()
        self._remaining = end - start + 1
        return handle

    def copyfile(self, source: Any, outputfile: Any) -> None:
        remaining = getattr(self, "_remaining", None)
        if remaining is None:
            super().copyfile(source, outputfile)
            return
        while remaining > 0:
            chunk = source.read(min(64 * 1024, remaining))
            if not chunk:
                break
            outputfile.write(chunk)
            remaining -= len(chunk)

    def log_message(self, format: str, *args: Any) -> None:
        return None


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("page")


@pytest.fixture(scope="module")
def clip_url(workdir: Path) -> Iterator[str]:
    media = workdir / "media"
    media.mkdir()
    make_clip(media / "clip.mp4", duration_s=4.5, fps=12.0, size=(320, 180), shots=CUTS)
    handler = lambda *a: _RangeFiles(*a, directory=str(media))  # noqa: E731
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/clip.mp4"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture(scope="module")
def stack(workdir: Path) -> Iterator[ServeProcess]:
    config = workdir / "config.yml"
    other = hashlib.sha256(OTHER_KEY.encode()).hexdigest()
    write_config(config, workdir / "data", fps=2.0, extra=f"api:\n  api_key_hashes:\n    {other}: other\n")
    proc = ServeProcess(config).start()
    try:
        proc.wait_ready()
        yield proc
    finally:
        proc.kill()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        launched = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--no-first-run", "--autoplay-policy=no-user-gesture-required"])
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1200, "height": 900})
    tab = context.new_page()
    tab.set_default_timeout(30_000)
    tab.urls = []  # every URL the page requests, to check the key is in none
    tab.on("request", lambda request: tab.urls.append(request.url))
    try:
        yield tab
    finally:
        context.close()


@pytest.fixture(scope="module")
def shots_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = Path(os.environ.get("VIDEO_AI_SCREENSHOTS") or tmp_path_factory.mktemp("screenshots"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _sign_in(page: Any, api: str, key: str) -> None:
    page.goto(f"{api}/ui/")
    page.fill("#signin-key", key)
    page.click("#signin-form button[type=submit]")


def test_the_page_is_served_with_strict_headers_and_no_inline_script(stack: ServeProcess) -> None:
    api = stack.info["api"]
    with httpx.Client(base_url=api, timeout=10) as client:
        assert client.get("/ui").headers["location"] == "/ui/"
        html = client.get("/ui/")
        assert html.status_code == 200 and html.headers["content-type"].startswith("text/html")
        csp = html.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp and "unsafe-inline" not in csp
        assert html.headers["x-content-type-options"] == "nosniff"
        assert html.headers["referrer-policy"] == "no-referrer"
        scripts = re.findall(r"<script\b[^>]*>", html.text)
        assert scripts and all(" src=" in tag for tag in scripts)
        assert stack.info["api_key"] not in html.text
        for asset, kind in (("app.js", "text/javascript"), ("style.css", "text/css")):
            served = client.get(f"/ui/{asset}")
            assert served.status_code == 200 and served.headers["content-type"].startswith(kind)
            assert served.headers["x-content-type-options"] == "nosniff"
        missing = client.get("/ui/../config.yml")
        assert missing.status_code == 404 and "error" in missing.json()
        assert client.get("/ui/secrets.txt").status_code == 404


def test_a_wrong_key_shows_a_sign_in_error(stack: ServeProcess, page: Any) -> None:
    _sign_in(page, stack.info["api"], "not-a-key")
    error = page.locator("#signin-error")
    error.wait_for(state="visible")
    assert "invalid API key" in error.inner_text()
    assert page.locator("#home").is_hidden()
    assert page.evaluate("sessionStorage.length") == 0


def test_submit_watch_open_seek_search(stack: ServeProcess, page: Any, clip_url: str, shots_dir: Path) -> None:
    api, key = stack.info["api"], stack.info["api_key"]
    _sign_in(page, api, key)
    page.locator("#home").wait_for(state="visible")
    page.fill("#submit-source", clip_url)
    page.click("#submit-form button[type=submit]")
    link = page.locator("#submit-result a")
    link.wait_for()
    job_id = link.inner_text()
    # The jobs table polls the API: the row turns succeeded without a reload.
    page.locator(f'#jobs tr[data-job="{job_id}"] td.status-succeeded').wait_for(timeout=120_000)
    page.screenshot(path=str(shots_dir / "jobs.png"))

    page.click(f'#jobs tr[data-job="{job_id}"] a')
    page.wait_for_function("id => document.body.dataset.jobReady === id", arg=job_id)
    buttons = page.locator("#shots button")
    assert buttons.count() == len(CUTS) + 1
    shots = httpx.get(f"{api}/jobs/{job_id}/shots", headers={"x-api-key": key}).json()["items"]
    starts = [float(b.get_attribute("data-start") or "nan") for b in buttons.all()]
    assert starts == [s["start_s"] for s in shots]
    labels = httpx.get(f"{api}/jobs/{job_id}/labels", headers={"x-api-key": key}).json()["items"]
    top_label = labels[1]["labels"][0]["name"]
    assert top_label in buttons.nth(1).locator(".labels").inner_text()

    # Thumbnails: fetched with the key in a header, shown from blob: URLs; all decoded, none left loading.
    page.wait_for_function("""() => [...document.querySelectorAll('#shots img.thumb')].every(
        i => i.dataset.state === 'loaded' && i.complete && i.naturalWidth > 0)""")
    sizes = page.eval_on_selector_all("#shots img.thumb", "imgs => imgs.map(i => [i.naturalWidth, i.naturalHeight])")
    assert sizes == [[192, 108]] * len(shots)
    assert all(src.startswith("blob:") for src in page.eval_on_selector_all("#shots img.thumb",
                                                                             "imgs => imgs.map(i => i.src)"))

    page.wait_for_function("document.querySelector('#player').readyState >= 1")
    buttons.nth(2).click()
    page.wait_for_function("t => Math.abs(document.querySelector('#player').currentTime - t) < 0.1", arg=starts[2])
    assert "current" in (buttons.nth(2).get_attribute("class") or "")
    page.screenshot(path=str(shots_dir / "job.png"))

    page.fill("#search-text", top_label)
    page.click("#search-form button[type=submit]")
    hit = page.locator(f'#hits a[data-job="{job_id}"]').first
    hit.wait_for()
    page.screenshot(path=str(shots_dir / "search.png"))
    start = float(hit.get_attribute("data-start") or "nan")
    hit.click()
    page.wait_for_function("id => document.body.dataset.jobReady === id", arg=job_id)
    page.wait_for_function("t => Math.abs(document.querySelector('#player').currentTime - t) < 0.1", arg=start)

    # Search by image: a frame's own thumbnail finds that frame first; its hit opens the job at the frame's time.
    frames = httpx.get(f"{api}/jobs/{job_id}/frames", headers={"x-api-key": key}).json()["items"]
    probe = next(f for f in frames if f["shot"] == 2)
    jpeg = httpx.get(f"{api}/jobs/{job_id}/frames/{probe['index']}/thumbnail", headers={"x-api-key": key}).content
    page.set_input_files("#search-image", files=[{"name": "probe.jpg", "mimeType": "image/jpeg", "buffer": jpeg}])
    page.locator("#results-note", has_text="probe.jpg").wait_for()
    best = page.locator("#hits a").first
    assert best.get_attribute("data-job") == job_id
    assert float(best.get_attribute("data-start") or "nan") == pytest.approx(probe["pts_s"], abs=1e-6)
    page.wait_for_function("""() => [...document.querySelectorAll('#hits img.thumb')].every(
        i => i.dataset.state === 'loaded' && i.naturalWidth > 0)""")
    page.screenshot(path=str(shots_dir / "image-search.png"))
    best.click()
    page.wait_for_function("id => document.body.dataset.jobReady === id", arg=job_id)
    page.wait_for_function("t => Math.abs(document.querySelector('#player').currentTime - t) < 0.1",
                           arg=probe["pts_s"])

    # More like this, from a shot of the job page.
    page.locator("#shots a.similar").first.click()
    page.locator("#results-note", has_text=f"frame 0 of job {job_id}").wait_for()
    assert page.locator("#hits a").count() > 0

    assert page.urls and not [u for u in page.urls if key in u]


def test_thumbnails_are_jpegs_cached_per_key_scoped_to_the_tenant_and_deleted_with_the_job(
    stack: ServeProcess, clip_url: str
) -> None:
    with stack.client() as client:
        job_id = client.post("/analyze", json={"video_url": clip_url, "features": ["visual"]}).json()["job_id"]
        job = wait_for(lambda: (j := client.get(f"/jobs/{job_id}").json())["status"] in ("succeeded", "failed") and j,
                       timeout=120, what="the job to end")
        assert job["status"] == "succeeded" and job["frames_indexed"] == 9  # 4.5 s at 2 fps
        first = client.get(f"/jobs/{job_id}/frames/0/thumbnail")
        assert first.status_code == 200 and first.headers["content-type"] == "image/jpeg"
        assert first.content[:3] == b"\xff\xd8\xff" and 500 < len(first.content) < 20_000
        assert "private" in first.headers["cache-control"] and "x-api-key" in first.headers["vary"]
        last = client.get(f"/jobs/{job_id}/frames/8/thumbnail")
        assert last.status_code == 200 and last.content != first.content
        past = client.get(f"/jobs/{job_id}/frames/9/thumbnail")
        assert past.status_code == 404 and "has 9 frames" in past.json()["error"]["message"]
        assert client.get(f"/jobs/{job_id}/frames/-1/thumbnail").status_code == 422
        other = httpx.get(f"{stack.info['api']}/jobs/{job_id}/frames/0/thumbnail", headers={"x-api-key": OTHER_KEY})
        assert other.status_code == 404
        assert httpx.get(f"{stack.info['api']}/jobs/{job_id}/frames/0/thumbnail").status_code == 401
        stored = stack.config.parent / "data" / "thumbnails" / job_id
        assert sorted(p.name for p in stored.iterdir()) == sorted(f"{i}.jpg" for i in range(9))
        assert client.delete(f"/jobs/{job_id}").status_code == 204
    assert not stored.exists()


def test_an_uploaded_video_plays_from_a_presigned_url_and_seeks(stack: ServeProcess, page: Any, workdir: Path) -> None:
    api, key = stack.info["api"], stack.info["api_key"]
    s3 = boto3.client("s3", endpoint_url=stack.info["s3"], region_name="us-east-1", aws_access_key_id="testing",
                      aws_secret_access_key="testing", config=Config(retries={"max_attempts": 2}))
    bucket = s3.list_buckets()["Buckets"][0]["Name"]
    upload = "tenants/dev/uploads/page clip.mp4"
    s3.put_object(Bucket=bucket, Key=upload, Body=(workdir / "media" / "clip.mp4").read_bytes())
    with stack.client() as client:
        def uploaded() -> dict[str, Any] | None:
            items = client.get("/jobs").json()["items"]
            return next((j for j in items if (j["source"].get("s3") or {}).get("key") == upload
                         and j["status"] in ("succeeded", "failed")), None)

        job = wait_for(uploaded, 120, what="the upload's job to end")
        assert job["status"] == "succeeded"
        link = client.get(f"/jobs/{job['job_id']}/video").json()
        assert link["kind"] == "presigned_s3" and link["expires_in"] == 3600
        assert link["url"].startswith(stack.info["s3"]) and "Signature=" in link["url"]
    other = httpx.get(f"{api}/jobs/{job['job_id']}/video", headers={"x-api-key": OTHER_KEY})
    assert other.status_code == 404

    _sign_in(page, api, key)
    page.locator("#home").wait_for(state="visible")
    page.goto(f"{api}/ui/#/jobs/{job['job_id']}")
    page.wait_for_function("id => document.body.dataset.jobReady === id", arg=job["job_id"])
    page.wait_for_function("document.querySelector('#player').readyState >= 1")
    assert (page.get_attribute("#player", "src") or "").startswith(stack.info["s3"])
    button = page.locator("#shots button").nth(1)
    start = float(button.get_attribute("data-start") or "nan")
    button.click()
    page.wait_for_function("t => Math.abs(document.querySelector('#player').currentTime - t) < 0.1", arg=start)
    assert page.locator("#player-note").is_hidden()
    assert not [u for u in page.urls if key in u]


def test_a_file_uploaded_from_the_page_becomes_a_job_and_a_refused_one_says_why(
    stack: ServeProcess, page: Any, workdir: Path
) -> None:
    api, key = stack.info["api"], stack.info["api_key"]
    with stack.client() as client:
        big = client.post("/uploads", json={"filename": "big.mp4", "size": 3 * 1024**3})
        assert big.status_code == 413 and big.json()["error"]["field"] == "size"
        assert "at most" in big.json()["error"]["message"]
        ticket = client.post("/uploads", json={"filename": "../My Clip!.MP4", "size": 10}).json()
        assert re.fullmatch(r"tenants/dev/uploads/[0-9a-f-]{36}/My-Clip\.mp4", ticket["key"]), ticket["key"]
    _sign_in(page, api, key)
    page.locator("#home").wait_for(state="visible")
    notes = workdir / "notes.txt"
    notes.write_text("not a video")
    page.set_input_files("#upload-file", str(notes))
    page.click("#upload-form button[type=submit]")
    page.locator("#upload-result", has_text="Upload refused").wait_for()
    assert "uploads must end in one of" in page.inner_text("#upload-result")

    page.set_input_files("#upload-file", str(workdir / "media" / "clip.mp4"))
    page.click("#upload-form button[type=submit]")
    link = page.locator("#upload-result a")
    link.wait_for(timeout=60_000)
    job_id = link.inner_text()
    with stack.client() as client:
        job = wait_for(lambda: (j := client.get(f"/jobs/{job_id}").json())["status"] in ("succeeded", "failed") and j,
                       timeout=120, what="the uploaded file's job")
    assert job["status"] == "succeeded" and job["source"]["s3"]["key"].endswith("/clip.mp4")
    assert not [u for u in page.urls if key in u]


def test_a_failed_job_shows_its_error_as_words(stack: ServeProcess, page: Any, clip_url: str) -> None:
    _sign_in(page, stack.info["api"], stack.info["api_key"])
    page.locator("#home").wait_for(state="visible")
    page.fill("#submit-source", clip_url.replace("clip.mp4", "missing.mp4"))
    page.click("#submit-form button[type=submit]")
    link = page.locator("#submit-result a")
    link.wait_for()
    row = page.locator(f'#jobs tr[data-job="{link.inner_text()}"]')
    row.locator("td.status-failed .job-error").wait_for(timeout=60_000)
    message = row.locator(".job-error").inner_text()
    assert message.startswith("The video was not found at its address. (not_found: video_url: ")
    assert message.endswith("answered 404)")


def test_another_tenants_job_is_not_found(stack: ServeProcess, page: Any, clip_url: str) -> None:
    api = stack.info["api"]
    with stack.client() as client:
        job_id = client.post("/analyze", json={"video_url": clip_url, "features": ["visual"]}).json()["job_id"]
    _sign_in(page, api, OTHER_KEY)
    page.locator("#home").wait_for(state="visible")
    page.goto(f"{api}/ui/#/jobs/{job_id}")
    status = page.locator("#job-status")
    wait_for(lambda: "not found" in status.inner_text().lower(), timeout=20, what="'not found' on the job page")
    assert page.locator("#shots button").count() == 0
    assert not [u for u in page.urls if OTHER_KEY in u]


def _contract_transcript(job_id: str, lines: int) -> dict[str, Any]:
    # As many lines as a 2 h talk has, packed into the 4.5 s clip (3 ms apart) so every one is reachable by the player.
    times = [(round(0.003 * k, 4), round(0.003 * k + 0.0025, 4)) for k in range(lines)]
    segments = [{"start_s": start, "end_s": end, "text": f" line {k} of the talk", "confidence": 0.9,
                 "words": [{"start_s": start, "end_s": end, "text": "line", "confidence": 0.9}]}
                for k, (start, end) in enumerate(times)]
    return {"job_id": job_id, "language": "en", "language_probability": 0.99, "model": "tiny.en",
            "segments": segments, "reason": None}


def _contract_text_page(start: int, count: int, total: int) -> dict[str, Any]:
    items = [{"text": f"SIGN {k}", "confidence": 0.95, "box": {"left": 0.1, "top": 0.1, "width": 0.3, "height": 0.1},
              "start_s": 0.5 * k, "end_s": 0.5 * k + 0.4, "shot": 0, "pts_s": 0.5 * k}
             for k in range(start, min(total, start + count))]
    end = start + len(items)
    return {"items": items, "next_token": str(end) if end < total else None, "reason": None}


def test_a_long_transcript_and_paged_on_screen_text_stay_light_and_follow_the_player(
    stack: ServeProcess, page: Any, clip_url: str
) -> None:
    """The page against CONTRACT16's shapes, at a size no CI job can afford to make: 1,500 transcript lines and 250
    on-screen text lines (GET /jobs/{id}'s features, /transcript and /text answered in the browser, the rest real)."""
    api, key = stack.info["api"], stack.info["api_key"]
    with stack.client() as client:
        job_id = client.post("/analyze", json={"video_url": clip_url, "features": ["visual"]}).json()["job_id"]
        wait_for(lambda: client.get(f"/jobs/{job_id}").json()["status"] == "succeeded", 120, what="the job")
    lines, texts = 1500, 250
    asked: list[str] = []

    def job_with_words(route: Any) -> None:
        job = route.fetch().json()
        route.fulfill(json={**job, "features": ["visual", "speech", "ocr"]})

    def transcript(route: Any) -> None:
        asked.append(route.request.url)
        doc = _contract_transcript(job_id, lines)
        if "words=false" in route.request.url:  # as the API answers it: the segments without their words
            doc["segments"] = [{k: v for k, v in s.items() if k != "words"} for s in doc["segments"]]
        route.fulfill(json=doc | {"next_token": None})

    def text(route: Any) -> None:
        asked.append(route.request.url)
        query = dict(part.split("=", 1) for part in route.request.url.split("?", 1)[1].split("&"))
        route.fulfill(json=_contract_text_page(int(query.get("next_token", "0")), int(query["limit"]), texts))

    page.route(f"{api}/jobs/{job_id}", job_with_words)
    page.route(re.compile(rf".*/jobs/{job_id}/transcript\?.*"), transcript)
    page.route(re.compile(rf".*/jobs/{job_id}/text\?.*"), text)
    _sign_in(page, api, key)
    page.locator("#home").wait_for(state="visible")
    page.goto(f"{api}/ui/#/jobs/{job_id}")
    page.wait_for_function("id => document.body.dataset.jobReady === id", arg=job_id)
    assert page.locator("#transcript li").count() == 200  # rendered a window at a time, not 1,500
    assert page.locator("#ocr-text li").count() == 100  # one page of GET /jobs/{id}/text
    assert page.inner_text("#transcript-meta") == "(en, tiny.en)"
    assert page.locator("#transcript-more").inner_text() == "More lines (1300 left)"
    page.click("#text-more")
    page.wait_for_function("() => document.querySelectorAll('#ocr-text li').length === 200")
    page.click("#text-more")
    page.wait_for_function("() => document.querySelectorAll('#ocr-text li').length === 250")
    assert page.locator("#text-more").is_hidden()
    assert asked[0].endswith("/transcript?format=json&words=false")  # whole, without the word timings
    assert asked[-1].endswith("limit=100&next_token=200")

    # A line is a link: a click seeks the player to its start, and the line under the playhead is marked.
    page.wait_for_function("document.querySelector('#player').readyState >= 1")
    line = page.locator("#transcript li").nth(150).locator("a")
    assert line.get_attribute("href") == f"#/jobs/{job_id}?t=0.45"
    line.click()
    page.wait_for_function("() => Math.abs(document.querySelector('#player').currentTime - 0.45) < 0.1")
    assert page.locator("#transcript li.current").inner_text().endswith("line 150 of the talk")
    assert page.evaluate("location.hash") == f"#/jobs/{job_id}?t=0.45"
    sign = page.locator("#ocr-text a").nth(7)
    assert "0:03.500 – 0:03.900" in sign.inner_text()
    sign.click()
    page.wait_for_function("() => Math.abs(document.querySelector('#player').currentTime - 3.5) < 0.1")
    assert page.locator("#ocr-text a.current").all_inner_texts() == [sign.inner_text()]
    # Its box is drawn over the picture: inside the player, with the frame's proportions (0.3 x 0.1 of 320x180).
    box = page.locator("#ocr-boxes .ocr-box").bounding_box()
    player = page.locator("#player").bounding_box()
    assert box is not None and player is not None and page.locator("#ocr-boxes .ocr-box").count() == 1
    assert player["x"] < box["x"] < box["x"] + box["width"] < player["x"] + player["width"]
    assert player["y"] < box["y"] < box["y"] + box["height"] < player["y"] + player["height"]
    assert box["width"] / box["height"] == pytest.approx((0.3 * 320) / (0.1 * 180), rel=0.05)
    # Opening the job at a moment far down the transcript renders up to that line and marks it, nothing more.
    page.goto(f"{api}/ui/#/jobs/{job_id}?t=3.0015")
    page.wait_for_function("id => document.body.dataset.jobReady === id", arg=job_id)
    page.wait_for_function("() => document.querySelector('#transcript li.current') !== null")
    assert page.locator("#transcript li.current").get_attribute("data-line") == "1000"
    assert page.locator("#transcript li").count() == 1020
    assert not [u for u in page.urls if key in u]


WRITTEN = ["Quarterly results 2026", "Hello world"]
SPEECH_START_S = 0.5


@pytest.fixture(scope="module")
def words_clip_url(clip_url: str, workdir: Path) -> str:
    """Words on screen (drawn by text_samples) over a real speech recording (tests/fixtures/speech/NOTICE.md) from
    0.5 s: 12 s, served beside the plain clip."""
    from tests.fixtures.speech_media import add_speech, load
    from video_ai.text_samples import Caption, TextShot, make_text_clip

    silent = workdir / "words-silent.mp4"
    make_text_clip(silent, [
        TextShot(6, [Caption(WRITTEN[0], 0.08, 0.1, 34)]),
        TextShot(6, [Caption(WRITTEN[1], 0.45, 0.45, 30)], background="flat"),
    ], size=(960, 540), fps=4)
    add_speech(silent, workdir / "media" / "words.mp4", load(), SPEECH_START_S)
    return clip_url.replace("clip.mp4", "words.mp4")


def test_a_real_jobs_transcript_and_on_screen_text_seek_the_player_and_are_found(
    stack: ServeProcess, page: Any, words_clip_url: str, shots_dir: Path
) -> None:
    from tests.fixtures.speech_media import words

    api, key = stack.info["api"], stack.info["api_key"]
    # Submitted from the page, with the speech and on-screen text boxes ticked and labels not.
    _sign_in(page, api, key)
    page.locator("#home").wait_for(state="visible")
    page.fill("#submit-source", words_clip_url)
    page.uncheck("input[name=feature][value=labels]")
    page.check("input[name=feature][value=speech]")
    page.check("input[name=feature][value=ocr]")
    page.click("#submit-form button[type=submit]")
    link = page.locator("#submit-result a")
    link.wait_for()
    job_id = link.inner_text()
    with stack.client() as client:
        job = wait_for(lambda: (j := client.get(f"/jobs/{job_id}").json())["status"] in ("succeeded", "failed") and j,
                       timeout=180, what="the words job")
        assert job["status"] == "succeeded", job["error"]
        assert job["features"] == ["visual", "speech", "ocr"]
        lines = client.get(f"/jobs/{job_id}/text").json()["items"]
        segments = client.get(f"/jobs/{job_id}/transcript", params={"format": "json"}).json()["segments"]
        frames = client.get(f"/jobs/{job_id}/frames").json()["items"]
    assert [line["text"] for line in lines] == WRITTEN
    assert {"fellow", "americans", "country"} <= set(words(" ".join(s["text"] for s in segments)))
    page.goto(f"{api}/ui/#/jobs/{job_id}")
    page.wait_for_function("id => document.body.dataset.jobReady === id", arg=job_id)
    page.wait_for_function("() => document.querySelector('#player').readyState >= 1")

    # On-screen text: exactly the drawn lines, as the API has them; a click seeks and outlines the line's box.
    shown = page.locator("#ocr-text a")
    assert [a.split(" ", 3)[-1] for a in shown.all_inner_texts()] == WRITTEN
    shown.nth(1).click()
    page.wait_for_function("t => Math.abs(document.querySelector('#player').currentTime - t) < 0.1",
                           arg=lines[1]["start_s"])
    page.locator("#ocr-boxes .ocr-box").wait_for()

    # Transcript: the API's segments, each a link; a click seeks the player to the line's start and marks the line.
    said = page.locator("#transcript a")
    assert [a.split(" ", 1)[1] for a in said.all_inner_texts()] == [s["text"].strip() for s in segments]
    said.first.click()
    page.wait_for_function("t => Math.abs(document.querySelector('#player').currentTime - t) < 0.1",
                           arg=segments[0]["start_s"])
    assert segments[0]["start_s"] >= SPEECH_START_S - 0.1  # on the video's clock: the speech starts 0.5 s in
    assert page.locator("#transcript li.current").count() == 1
    page.wait_for_function("() => !document.querySelector('#player').seeking")
    page.screenshot(path=str(shots_dir / "job-words.png"), full_page=True)

    # Searches for written and for spoken words find their moments; a hit shows the words it matched and opens the
    # job at its start, with its line marked.
    for query, kind, marked, line_start, box in (
            ("quarterly results", "ocr", ["Quarterly", "results"], lines[0]["start_s"], "#ocr-text a.current"),
            ("fellow americans", "speech", None, None, "#transcript li.current")):
        page.fill("#search-text", query)
        page.click("#search-form button[type=submit]")
        hit = page.locator(f'#hits a[data-job="{job_id}"][data-kind="{kind}"]').first
        hit.wait_for()
        if marked is not None:
            assert hit.locator("mark").all_inner_texts() == marked
        assert {w.lower() for w in hit.locator("mark").all_inner_texts()} >= set(query.split())
        assert "matched" in hit.locator(".matched").inner_text()
        start = float(hit.get_attribute("data-start") or "nan")
        if line_start is not None:
            assert start == pytest.approx(line_start)
        # Its picture: the sampled frame at (or just before) the moment, fetched as for frame hits.
        thumb = hit.locator("img.thumb")
        page.wait_for_function("img => img.dataset.state === 'loaded' && img.naturalWidth > 0",
                               arg=thumb.element_handle())
        assert int(thumb.get_attribute("data-frame") or "-1") == max(
            f["index"] for f in frames if f["pts_s"] <= start + 1e-6)
        if kind == "speech":
            page.screenshot(path=str(shots_dir / "search-words.png"))
        hit.click()
        page.wait_for_function("id => document.body.dataset.jobReady === id", arg=job_id)
        page.wait_for_function("t => Math.abs(document.querySelector('#player').currentTime - t) < 0.1", arg=start)
        page.locator(box).first.wait_for()
    assert not [u for u in page.urls if key in u]


def test_a_job_with_speech_but_no_audio_says_why_its_transcript_is_empty(
    stack: ServeProcess, page: Any, clip_url: str
) -> None:
    api, key = stack.info["api"], stack.info["api_key"]
    with stack.client() as client:
        answer = client.post("/analyze", json={"video_url": clip_url, "features": ["visual", "speech"]})
        job_id = answer.json()["job_id"]
        job = wait_for(lambda: (j := client.get(f"/jobs/{job_id}").json())["status"] in ("succeeded", "failed") and j,
                       timeout=120, what="the job")
        assert job["status"] == "succeeded", job["error"]
        transcript = client.get(f"/jobs/{job_id}/transcript", params={"format": "json"}).json()
    assert transcript["segments"] == [] and transcript["reason"]
    _sign_in(page, api, key)
    page.locator("#home").wait_for(state="visible")
    page.goto(f"{api}/ui/#/jobs/{job_id}")
    page.wait_for_function("id => document.body.dataset.jobReady === id", arg=job_id)
    assert page.inner_text("#transcript-note") == transcript["reason"]
    assert page.locator("#transcript li").count() == 0 and page.locator("#text-box").is_hidden()
