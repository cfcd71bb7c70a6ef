"""The clock (DESIGN §3): a frame's pts_s is what a browser's <video>.currentTime reads while it is on screen.

Checked in Chromium on clips whose first frame is at 2 s and at 0 (MP4 with B-frames, WebM): for each sample the
reader gives, the page seeks the video to pts_s and reads the number drawn on the frame it shows. Needs Chromium
and Playwright (FACTS: `apt-get install chromium`, `pip install playwright`, no browser download); skipped without
them: neither is a dependency of the project.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.timed_media import BITS, BLOCK, make_numbered
from video_ai.adapters.frame_source import PyAVFrameSource
from video_ai.domain.models import Sampling

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no Chromium on this machine")

# Seek to each time, wait for the frame, read the number's blocks off a canvas copy.
SHOWN_AT = """
async (times) => {
  const v = document.querySelector('video');
  await new Promise((ok, fail) => {
    if (v.readyState >= 2) return ok();
    v.addEventListener('loadeddata', ok, {once: true});
    v.addEventListener('error', () => fail(new Error('video error')), {once: true});
  });
  const c = document.createElement('canvas'); c.width = v.videoWidth; c.height = v.videoHeight;
  const g = c.getContext('2d');
  const shown = () => { g.drawImage(v, 0, 0); const y = Math.floor(c.height / 2); let n = 0;
    for (let b = 0; b < BITS; b++) {
      const p = g.getImageData(BLOCK + b * BLOCK + BLOCK / 2, y, 1, 1).data;
      if ((p[0] + p[1] + p[2]) / 3 > 128) n |= (1 << b);
    }
    return n; };
  const out = {initial: v.currentTime, seeks: []};
  for (const t of times) {
    await new Promise(ok => { v.addEventListener('seeked', ok, {once: true}); v.currentTime = t; });
    await new Promise(ok => setTimeout(ok, 100));
    out.seeks.push([v.currentTime, shown()]);
  }
  return out;
}""".replace("BITS", str(BITS)).replace("BLOCK", str(BLOCK))


@pytest.fixture(scope="module")
def page() -> Any:
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--allow-file-access-from-files", "--autoplay-policy=no-user-gesture-required"])
        try:
            yield browser.new_page()
        finally:
            browser.close()


@pytest.mark.parametrize(("codec", "suffix", "bframes", "start_frames"), [
    ("h264", ".mp4", True, 50), ("h264", ".mp4", True, 0), ("vp9", ".webm", False, 50), ("vp9", ".webm", False, 0),
], ids=["mp4-at-2s", "mp4", "webm-at-2s", "webm"])
def test_pts_s_is_the_browsers_current_time(page: Any, tmp_path: Path, codec: str, suffix: str, bframes: bool,
                                            start_frames: int) -> None:
    clip = make_numbered(tmp_path / f"clip{suffix}", codec, bframes=bframes, frames=75, start_frames=start_frames)
    with PyAVFrameSource().open(clip.path, Sampling(fps=2.0)) as reader:
        samples = [(s.pts_s, s.frame_number) for s in reader]
    html = tmp_path / "page.html"
    html.write_text(f'<video src="{clip.path.name}" muted preload="auto"></video>')
    page.goto(html.as_uri())
    result = page.evaluate(SHOWN_AT, [pts for pts, _ in samples])
    assert result["initial"] == pytest.approx(samples[0][0], abs=0.001)  # the player opens on the first frame
    for (pts_s, number), (current, shown) in zip(samples, result["seeks"], strict=True):
        assert (round(current, 3), shown) == (round(pts_s, 3), number)
