"""`video-ai analyze` / `search` as a user runs them: real clips, the real model, embedded Qdrant, subprocesses."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from threading import Thread
from typing import Any

import numpy as np
import pytest

from video_ai.samples import ClipInfo, make_audio_only, make_clip, make_empty_video, make_truncated


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory, model_path: Path) -> dict[str, str]:
    data = tmp_path_factory.mktemp("cli-data")
    return {**os.environ, "VIDEO_AI__DATA_DIR": str(data), "VIDEO_AI__MODEL__PATH": str(model_path),
            "VIDEO_AI__LOGGING__LEVEL": "WARNING"}


@pytest.fixture(scope="module")
def cut_clip(tmp_path_factory: pytest.TempPathFactory) -> ClipInfo:
    return make_clip(tmp_path_factory.mktemp("clips") / "cuts.mp4", duration_s=12.0, fps=25.0, size=(320, 240),
                     shots=[3.0, 6.5, 9.0])


def run(env: dict[str, str], *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "video_ai.cli", *args], env=env, capture_output=True, text=True,
                          timeout=timeout, check=False)


def analyze_json(env: dict[str, str], *args: str) -> dict[str, Any]:
    proc = run(env, "analyze", *args, "--json")
    assert proc.returncode == 0, proc.stderr
    data: dict[str, Any] = json.loads(proc.stdout)  # stdout holds the JSON and nothing else
    return data


def test_analyze_json_has_exact_times_shots_and_frames(env: dict[str, str], cut_clip: ClipInfo) -> None:
    record = analyze_json(env, str(cut_clip.path))
    assert record["status"] == "succeeded" and record["error"] is None
    assert record["video"]["width"] == 320 and record["video"]["duration_s"] == pytest.approx(12.0, abs=0.05)
    assert record["model"] == {"name": "efficientnet-lite0", "version": "imagenet-1", "dim": 1280}
    times = [f["pts_s"] for f in record["frames"]]
    assert times == pytest.approx([float(t) for t in range(12)], abs=1 / 25)
    starts = [s["start_s"] for s in record["shots"]]
    assert starts == pytest.approx([0.0, 3.0, 6.5, 9.0], abs=1 / 25)
    # Each sampled frame carries the shot its time falls in.
    assert [f["shot"] for f in record["frames"]] == [cut_clip.shot_of(t) for t in times]
    assert record["frames_indexed"] == 12 and record["shots_detected"] == 4
    assert set(record["timings"]) == {"fetch_s", "decode_s", "embed_s", "index_s", "total_s"}


def test_rerun_leaves_the_same_number_of_points_and_search_finds_own_shot(env: dict[str, str],
                                                                          cut_clip: ClipInfo) -> None:
    first = analyze_json(env, str(cut_clip.path), "--fps", "2")
    job_id = first["job_id"]
    query = next(f for f in first["frames"] if f["shot"] == 2)
    proc = run(env, "search", "--frame", f"{job_id}:{query['index']}", "--job-id", job_id, "--top-k", "4", "--json")
    assert proc.returncode == 0, proc.stderr
    hits = json.loads(proc.stdout)
    assert hits[0]["frame_number"] == query["frame_number"] and hits[0]["score"] == pytest.approx(1.0, abs=1e-4)
    assert all(h["shot"] == 2 for h in hits), hits  # shot 2 has 5 frames at 2 fps: the top 4 are all its own

    # Analyzing the same input again replaces the job's frames: the index holds the same number of points.
    second = analyze_json(env, str(cut_clip.path), "--fps", "2")
    assert second["job_id"] == job_id and second["frames_indexed"] == first["frames_indexed"]
    proc = run(env, "search", "--frame", f"{job_id}:{query['index']}", "--top-k", "100", "--json")
    hits = [h for h in json.loads(proc.stdout) if h["job_id"] == job_id]
    assert len(hits) == first["frames_indexed"]
    assert len({h["frame_number"] for h in hits}) == len(hits)


def test_same_shot_frames_are_closer_than_other_shots(cut_clip: ClipInfo, model_path: Path) -> None:
    from video_ai.adapters.frame_source import PyAVFrameSource
    from video_ai.adapters.onnx_embedder import OnnxEmbedder
    from video_ai.domain.models import Sampling
    from video_ai.settings import LimitsSettings, ModelSettings, SamplingSettings

    embedder = OnnxEmbedder(ModelSettings(), model_path)
    reader = PyAVFrameSource(SamplingSettings(), LimitsSettings()).open(cut_clip.path, Sampling(fps=2.0),
                                                                        image_size=(224, 224))
    frames = list(reader)
    reader.close()
    vectors = embedder.embed([f.image for f in frames])
    sims = vectors @ vectors.T
    shots = np.array([f.shot for f in frames])
    same = sims[(shots[:, None] == shots[None, :]) & ~np.eye(len(frames), dtype=bool)]
    other = sims[shots[:, None] != shots[None, :]]
    assert same.mean() > other.mean() + 0.1
    assert np.percentile(same, 10) > np.percentile(other, 90)


def test_contact_sheet_is_written(env: dict[str, str], cut_clip: ClipInfo, tmp_path: Path) -> None:
    sheet = tmp_path / "sheet.png"
    proc = run(env, "analyze", str(cut_clip.path), "--shots", "--contact-sheet", str(sheet))
    assert proc.returncode == 0, proc.stderr
    from PIL import Image

    with Image.open(sheet) as img:
        assert img.width >= 320 and img.height >= 100
    assert "shots: 4" in proc.stdout and "realtime factor" in proc.stdout


@pytest.fixture(scope="module")
def bad_inputs(tmp_path_factory: pytest.TempPathFactory, cut_clip: ClipInfo) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("bad")
    text = d / "notes.mp4"
    text.write_text("this is not a video\n" * 50)
    empty = d / "empty.mp4"
    empty.write_bytes(b"")
    return {
        "text": text,
        "empty": empty,
        "audio": make_audio_only(d / "audio.m4a"),
        "zero": make_empty_video(d / "zero.mkv"),
        "truncated": make_truncated(cut_clip.path, d / "truncated.mp4", keep=0.5),
    }


@pytest.mark.parametrize(
    ("name", "code", "exit_code"),
    [("text", "unsupported_media", 4), ("empty", "unsupported_media", 4), ("audio", "no_video_stream", 5),
     ("zero", "empty_video", 7)],
)
def test_bad_media_gets_one_line_and_a_distinct_exit(env: dict[str, str], bad_inputs: dict[str, Path], name: str,
                                                     code: str, exit_code: int) -> None:
    proc = run(env, "analyze", str(bad_inputs[name]))
    assert proc.returncode == exit_code, (proc.stdout, proc.stderr)
    errors = [line for line in proc.stderr.splitlines() if line.startswith("video-ai: error:")]
    assert len(errors) == 1 and code in errors[0] and "Traceback" not in proc.stderr
    as_json = run(env, "analyze", str(bad_inputs[name]), "--json")
    assert as_json.returncode == exit_code and json.loads(as_json.stdout)["error"]["code"] == code


def test_truncated_file_indexes_frames_up_to_the_damage(env: dict[str, str], bad_inputs: dict[str, Path]) -> None:
    proc = run(env, "analyze", str(bad_inputs["truncated"]), "--json")
    if proc.returncode == 0:
        record = json.loads(proc.stdout)
        assert 0 < record["frames_indexed"] < 12
        assert record["video"]["duration_s"] <= 12.0
    else:
        assert json.loads(proc.stdout)["error"]["code"] == "corrupt_media"


def test_missing_file_and_unreachable_url(env: dict[str, str], tmp_path: Path) -> None:
    missing = run(env, "analyze", str(tmp_path / "nope.mp4"))
    assert missing.returncode == 3 and "not_found" in missing.stderr and "Traceback" not in missing.stderr
    # A closed loopback port: connection refused, fast.
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    unreachable = run(env, "analyze", f"http://127.0.0.1:{port}/v.mp4", "--json")
    assert unreachable.returncode == 8, unreachable.stderr
    assert json.loads(unreachable.stdout)["error"]["code"] == "fetch_failed"


def test_every_failure_is_one_line_and_one_json_shape(env: dict[str, str], tmp_path: Path,
                                                      bad_inputs: dict[str, Path]) -> None:
    folder = tmp_path / "media"
    folder.mkdir()
    jobs_dir = Path(env["VIDEO_AI__DATA_DIR"]) / "jobs"
    before = sorted(jobs_dir.iterdir()) if jobs_dir.exists() else []
    directory = run(env, "analyze", str(folder))
    assert directory.returncode == 4, directory.stderr
    assert [line for line in directory.stderr.splitlines() if "error" in line] == [
        f"video-ai: error: unsupported_media: {folder}: is a directory, not a video file"]
    assert "error" not in directory.stdout and "Traceback" not in directory.stderr
    assert (sorted(jobs_dir.iterdir()) if jobs_dir.exists() else []) == before  # no failed job left behind
    # --json: the same keys for a failure before any job (directory, missing file) and for a job that failed.
    shapes = {}
    for name, source in {"directory": folder, "missing": tmp_path / "nope.mp4", "job": bad_inputs["text"]}.items():
        proc = run(env, "analyze", str(source), "--json")
        record = json.loads(proc.stdout)
        assert {"job_id", "status", "error"} <= set(record) and record["status"] == "failed", record
        assert [line for line in proc.stderr.splitlines() if line.startswith("video-ai: error:")] == [
            f"video-ai: error: {record['error']['code']}: {record['error']['message']}"]
        shapes[name] = record
    assert shapes["directory"]["job_id"] is None and shapes["directory"]["error"]["field"] == "source"
    assert shapes["missing"]["job_id"] is None and shapes["missing"]["error"]["code"] == "not_found"
    assert shapes["job"]["job_id"] and shapes["job"]["error"]["code"] == "unsupported_media"


def test_a_failed_job_prints_its_error_once(env: dict[str, str], bad_inputs: dict[str, Path]) -> None:
    proc = run({**env, "VIDEO_AI__LOGGING__LEVEL": "INFO"}, "analyze", str(bad_inputs["text"]))
    assert proc.returncode == 4
    assert sum("not a video container" in line for line in (proc.stdout + proc.stderr).splitlines()) == 1, (
        proc.stdout, proc.stderr)


def test_reanalysing_the_same_bytes_says_the_result_was_reused(env: dict[str, str], cut_clip: ClipInfo,
                                                               tmp_path: Path) -> None:
    import shutil

    first = analyze_json(env, str(cut_clip.path), "--keyframes")
    copy = tmp_path / "copy.mp4"
    shutil.copyfile(cut_clip.path, copy)
    proc = run(env, "analyze", str(copy), "--keyframes")
    assert proc.returncode == 0, proc.stderr
    assert f"reused: same content as job {first['job_id']}" in proc.stdout
    assert "realtime factor" not in proc.stdout


def test_outside_the_repo_root_the_cli_says_which_config_it_uses(env: dict[str, str], tmp_path: Path) -> None:
    outside = {k: v for k, v in env.items() if k != "VIDEO_AI_CONFIG"}
    proc = subprocess.run([sys.executable, "-m", "video_ai.cli", "analyze", "missing.mp4"], env=outside,
                          cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 3
    notes = [line for line in proc.stderr.splitlines() if line.startswith("video-ai: note:")]
    assert len(notes) == 1 and "no config file" in notes[0] and "built-in defaults" in notes[0], proc.stderr
    inside = run({**env, "VIDEO_AI__LOGGING__LEVEL": "INFO"}, "analyze", "missing.mp4")  # from the repo root
    assert "video-ai: note:" not in inside.stderr
    assert "config config/config.yml; data dir" in inside.stderr, inside.stderr


def test_search_hits_name_the_sampled_index_and_unknown_jobs_say_so(env: dict[str, str], cut_clip: ClipInfo) -> None:
    record = analyze_json(env, str(cut_clip.path))
    frame = record["frames"][3]
    proc = run(env, "search", "--frame", f"{record['job_id']}:3", "--job-id", record["job_id"], "--top-k", "1",
               "--json")
    hit = json.loads(proc.stdout)[0]
    assert (hit["index"], hit["frame_number"]) == (3, frame["frame_number"]) and frame["frame_number"] != 3
    text = run(env, "search", "--frame", f"{record['job_id']}:3", "--job-id", record["job_id"], "--top-k", "1")
    assert f"frame 3 (t=00:03.000, video frame {frame['frame_number']})" in text.stdout, text.stdout
    unknown = run(env, "search", "--frame", "no-such-job:3")
    beyond = run(env, "search", "--frame", f"{record['job_id']}:500")
    assert unknown.returncode == beyond.returncode == 3
    assert "job no-such-job not found" in unknown.stderr and "tenant dev" in unknown.stderr
    assert "has 12 sampled frames (index 0 to 11); no frame 500" in beyond.stderr
    other_tenant = run(env, "search", "--frame", f"{record['job_id']}:3", "--tenant", "dev")
    assert other_tenant.returncode == 3 and "not found" in other_tenant.stderr


@pytest.fixture()
def http_dir(cut_clip: ClipInfo) -> Iterator[str]:
    directory = str(cut_clip.path.parent)

    class Files(SimpleHTTPRequestHandler):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, directory=directory, **kwargs)

        def log_message(self, *args: Any) -> None:
            return None

    server = ThreadingHTTPServer(("127.0.0.1", 0), Files)
    Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_analyze_http_url_records_sha256(env: dict[str, str], http_dir: str, cut_clip: ClipInfo) -> None:
    import hashlib

    record = analyze_json(env, f"{http_dir}/{cut_clip.path.name}", "--keyframes")
    assert record["sha256"] == hashlib.sha256(cut_clip.path.read_bytes()).hexdigest()
    assert record["sampling"]["mode"] == "keyframes" and record["frames_indexed"] >= 1


def test_search_by_image_of_a_frame_finds_that_moment_first(env: dict[str, str], cut_clip: ClipInfo,
                                                            tmp_path: Path) -> None:
    import av
    from PIL import Image

    record = analyze_json(env, str(cut_clip.path))
    # A still taken from the clip at 7.0 s (not necessarily a sampled frame), saved as a PNG a user would send.
    with av.open(str(cut_clip.path)) as container:
        stream = container.streams.video[0]
        still = next(f for f in container.decode(stream) if f.time is not None and f.time >= 7.0)
        Image.fromarray(still.to_ndarray(format="rgb24")).save(tmp_path / "query.png")
    proc = run(env, "search", "--image", str(tmp_path / "query.png"), "--job-id", record["job_id"], "--top-k", "3",
               "--json")
    assert proc.returncode == 0, proc.stderr
    hits = json.loads(proc.stdout)
    assert hits[0]["pts_s"] == pytest.approx(7.0, abs=0.5) and hits[0]["shot"] == cut_clip.shot_of(7.0)
    # Time filters keep results inside the window.
    windowed = json.loads(run(env, "search", "--image", str(tmp_path / "query.png"), "--job-id", record["job_id"],
                              "--start-s", "0", "--end-s", "2.5", "--json").stdout)
    assert windowed and all(h["pts_s"] <= 2.5 for h in windowed)
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    refused = run(env, "search", "--image", str(bad))
    assert refused.returncode == 12 and "image" in refused.stderr and "Traceback" not in refused.stderr


def test_an_audio_only_file_with_speech_prints_its_transcript(env: dict[str, str], tmp_path: Path) -> None:
    from tests.fixtures.speech_media import JFK_TEXT, load, make_media, words

    talk = make_media(tmp_path / "talk.m4a", video_s=None, audio=load())
    record = analyze_json(env, str(talk), "--features", "speech")
    assert record["status"] == "succeeded" and record["frames_indexed"] == 0
    transcript = record["transcript"]
    assert transcript["job_id"] == record["job_id"] and transcript["language"] == "en"
    assert [w for s in transcript["segments"] for w in words(s["text"])] == words(JFK_TEXT)
    summary = run(env, "analyze", str(talk), "--features", "speech")
    said = re.search(r"speech \(tiny\.en\): (\d+) segments, language en", summary.stdout)
    assert summary.returncode == 0 and said and int(said.group(1)) == len(transcript["segments"])
    found = run(env, "search", "--text", "fellow Americans")
    assert found.returncode == 0 and "speech 00:00" in found.stdout and "Americans" in found.stdout
