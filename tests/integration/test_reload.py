"""Config hot reload in `video-ai serve`: a valid edit applies without a restart, an invalid one is refused."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.integration.serve_helpers import ServeProcess, wait_for, write_config

RELOAD_TIMEOUT_S = 20.0


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServeProcess, Path, Path]]:
    workdir = tmp_path_factory.mktemp("reload")
    config, data_dir = workdir / "config.yml", workdir / "data"
    write_config(config, data_dir, fps=1.0)
    proc = ServeProcess(config).start()
    try:
        proc.wait_ready()
        yield proc, config, data_dir
        assert proc.terminate(timeout=30) == 0, proc.stderr_tail()
    finally:
        proc.kill()


def _default_fps(client: httpx.Client) -> float:
    """The sampling fps a new job gets when the request does not say (the config's default)."""
    # Nothing listens on port 9: the worker fails the job quickly, which is all this test needs.
    response = client.post("/analyze", json={"video_url": "http://127.0.0.1:9/none.mp4"})
    assert response.status_code == 202, response.text
    job = client.get(f"/jobs/{response.json()['job_id']}").json()
    return float(job["sampling"]["fps"])


def _reloads(client: httpx.Client, result: str) -> float:
    text = client.get("/metrics").text
    match = re.search(rf'^video_ai_config_reloads_total\{{result="{result}"\}} ([0-9.e+]+)$', text, re.M)
    return float(match.group(1)) if match else 0.0


def test_valid_edit_applies_without_restart(served: tuple[ServeProcess, Path, Path]) -> None:
    proc, config, data_dir = served
    with proc.client() as client:
        assert _default_fps(client) == 1.0
        write_config(config, data_dir, fps=2.5)
        wait_for(lambda: proc.stderr_matching("config reloaded"), RELOAD_TIMEOUT_S, what="the reload log line")
        assert "sampling.fps" in proc.stderr_matching("config reloaded")[-1]
        assert _default_fps(client) == 2.5
        assert _reloads(client, "ok") == 1.0


def test_invalid_edit_keeps_running_config_and_logs_one_line(served: tuple[ServeProcess, Path, Path]) -> None:
    proc, config, data_dir = served
    with proc.client() as client:
        before = _default_fps(client)
        write_config(config, data_dir, fps=-3)
        wait_for(lambda: proc.stderr_matching("config reload rejected"), RELOAD_TIMEOUT_S, what="the rejection")
        rejected = proc.stderr_matching("config reload rejected")
        assert len(rejected) == 1 and "sampling.fps" in rejected[0], rejected
        assert " ERROR " in rejected[0] or '"ERROR"' in rejected[0]
        assert _default_fps(client) == before
        assert _reloads(client, "rejected") == 1.0
        # Fixing the file applies again.
        write_config(config, data_dir, fps=3.0)
        wait_for(lambda: len(proc.stderr_matching("config reloaded")) >= 2, RELOAD_TIMEOUT_S, what="the re-apply")
        assert _default_fps(client) == 3.0


def test_log_level_change_takes_effect(served: tuple[ServeProcess, Path, Path]) -> None:
    proc, config, data_dir = served
    with proc.client() as client:
        applied = _reloads(client, "ok")
        write_config(config, data_dir, fps=3.0, level="WARNING")
        wait_for(lambda: _reloads(client, "ok") > applied, RELOAD_TIMEOUT_S, what="the reload")
        assert "logging.level" in proc.stderr_matching("config reloaded")[-1]
        seen = len(proc.stderr_lines)
        _default_fps(client)  # logs INFO lines (access log, job queued, worker) when the level is INFO
        time.sleep(1.5)  # let the worker fail the job and the log lines reach us
        quiet = [line for line in proc.stderr_lines[seen:] if " INFO " in line]
        assert not quiet, quiet
        write_config(config, data_dir, fps=3.0, level="INFO")
        wait_for(lambda: _reloads(client, "ok") > applied + 1, RELOAD_TIMEOUT_S, what="the second reload")
        seen = len(proc.stderr_lines)
        _default_fps(client)
        wait_for(lambda: [line for line in proc.stderr_lines[seen:] if " INFO " in line], RELOAD_TIMEOUT_S,
                 what="INFO lines again")
