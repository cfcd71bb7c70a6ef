"""`video-ai serve` SIGKILLed at random moments during a burst of jobs, restarted on the same data dir each time.

A client submits a burst of 30 jobs (each a distinct small clip, so every job decodes and embeds rather than reusing
another's vectors), retrying each request with its Idempotency-Key until it is answered, as a client meeting a dead
server does. Meanwhile `serve` is killed three times at random moments spread over the burst, and started again.
Then: every accepted job ends `succeeded` once; its vectors are complete and not duplicated; every `webhook-id`
reached the loopback receiver, never with two different bodies; no search hit names a job the API does not know.
The kill moments come from a seeded RNG whose seed is printed (`VIDEO_AI_CRASH_SEED` replays them).
"""

from __future__ import annotations

import functools
import json
import os
import random
import re
import sqlite3
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.serve_helpers import FileServer, Receiver, ServeProcess, wait_for, write_config
from video_ai.adapters.webhook_sender import generate_secret
from video_ai.samples import ShotSpec, make_clip
from video_ai.services.deliver_callback import webhook_id

BURST = 30
KILLS = 3
FPS = 2.0
CLIP_S = 3.0
FRAMES = int(CLIP_S * FPS)  # samples at 0, 0.5, ... 2.5 s
SUBMIT_GAP_S = (0.0, 0.1)  # between the client's requests: the burst takes ~2-4 s here
KILL_DELAY_S = (0.0, 1.5)
DONE_TIMEOUT_S = 150.0


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("serve-crash")


@pytest.fixture(scope="module")
def files(workdir: Path) -> Iterator[FileServer]:
    media = workdir / "media"
    media.mkdir()
    for i in range(BURST):
        # A colour of its own makes distinct bytes: no job reuses another's results by content.
        make_clip(media / f"clip-{i:02d}.mp4", fps=12.0, size=(96, 64),
                  shots=[ShotSpec(CLIP_S / 2, color=(40 + 6 * i, 60, 220 - 6 * i)), ShotSpec(CLIP_S / 2, "stripes")])
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


def _all_job_ids(client: httpx.Client) -> list[str]:
    ids: list[str] = []
    token: str | None = None
    while True:
        page = client.get("/jobs", params={"limit": 100, **({"next_token": token} if token else {})}).json()
        ids.extend(job["job_id"] for job in page["items"])
        token = page["next_token"]
        if not token:
            return ids


@dataclass
class BurstClient:
    """Submits the burst from a thread; a request that gets no answer (the server died) is sent again, with the same
    Idempotency-Key, to whichever `serve` is up next."""

    files: FileServer
    callback_url: str
    rng: random.Random
    api: tuple[str, str] | None = None  # (base URL, API key) of the live `serve`; None while it is down
    accepted: dict[int, str] = field(default_factory=dict)
    retried: int = 0
    errors: list[str] = field(default_factory=list)
    up: threading.Condition = field(default_factory=threading.Condition)

    def serving(self, proc: ServeProcess | None) -> None:
        with self.up:
            self.api = (proc.info["api"], proc.info["api_key"]) if proc is not None else None
            self.up.notify_all()

    def run(self) -> None:
        for i in range(BURST):
            time.sleep(self.rng.uniform(*SUBMIT_GAP_S))
            body = {"video_url": self.files.url(f"clip-{i:02d}.mp4"), "callback_url": self.callback_url}
            while i not in self.accepted and not self.errors:
                with self.up:
                    if not self.up.wait_for(lambda: self.api is not None, timeout=60):
                        self.errors.append(f"no serve to submit job {i} to")
                        return
                    assert self.api is not None
                    base, key = self.api
                try:
                    response = httpx.post(f"{base}/analyze", json=body, timeout=10,
                                          headers={"x-api-key": key, "Idempotency-Key": f"burst-{i}"})
                except httpx.TransportError:
                    self.retried += 1
                    time.sleep(0.05)
                    continue
                if response.status_code != 202:
                    self.errors.append(f"job {i}: {response.status_code} {response.text}")
                    return
                self.accepted[i] = response.json()["job_id"]


def test_sigkill_during_a_burst_every_accepted_job_finishes_once(workdir: Path, files: FileServer) -> None:
    seed = int(os.environ.get("VIDEO_AI_CRASH_SEED") or random.SystemRandom().randrange(2**32))
    print(f"serve crash test seed: {seed} (VIDEO_AI_CRASH_SEED={seed} replays the kill moments)")
    rng = random.Random(seed)
    config = workdir / "config.yml"
    write_config(config, workdir / "data", fps=FPS)
    secret = generate_secret()
    receiver = Receiver(secret)
    client = BurstClient(files, receiver.url, random.Random(rng.random()))
    submitter = threading.Thread(target=client.run, name="burst", daemon=True)
    restores: list[str] = []
    history: list[str] = []  # the killed processes' logs, for a failure's message
    proc = _start(config, secret)
    try:
        client.serving(proc)
        submitter.start()
        # Spread over the burst: each kill comes a random moment after a random number of jobs were accepted (a
        # restarted `serve` is slow to answer its first requests here, so a timer alone bunched the burst after the
        # last kill). The last one lands while most of the burst is queued or running.
        thresholds = sorted(rng.sample(range(2, BURST), KILLS))
        for threshold in thresholds:
            wait_for(lambda n=threshold: len(client.accepted) >= n or client.errors, 60, interval=0.02,
                     what=f"{threshold} accepted jobs")
            time.sleep(rng.uniform(*KILL_DELAY_S))
            client.serving(None)
            proc.kill()  # SIGKILL
            history.extend(proc.stderr_lines)
            proc = _start(config, secret)
            client.serving(proc)
            restores.extend(wait_for(functools.partial(proc.stderr_matching, "state restored"), 10,
                                     what="the restore"))
        submitter.join(60)
        note = f"(seed {seed})"
        assert not submitter.is_alive() and client.errors == [], (client.errors, note)
        accepted = [client.accepted[i] for i in range(BURST)]
        assert len(set(accepted)) == BURST, note
        print(f"requests resent after a kill: {client.retried}; restores: {restores}")

        # The kills found work queued or in flight: some restart put messages back (else this test shows nothing).
        pending = [int(m.group(1)) for line in restores if (m := re.search(r"(\d+) messages", line))]
        assert sum(pending) > 0, (restores, note)

        with proc.client() as api:
            def all_done() -> list[dict[str, Any]] | None:
                jobs = [api.get(f"/jobs/{job_id}") for job_id in accepted]
                assert all(r.status_code == 200 for r in jobs), [r.text for r in jobs if r.status_code != 200]
                bodies = [r.json() for r in jobs]
                return bodies if all(b["status"] in ("succeeded", "failed") for b in bodies) else None

            try:
                jobs = wait_for(all_done, DONE_TIMEOUT_S, interval=1.0, what=f"every accepted job to finish {note}")
            except AssertionError as err:
                waiting = {j: api.get(f"/jobs/{j}").json()["status"] for j in accepted}
                waiting = {j: status for j, status in waiting.items() if status not in ("succeeded", "failed")}
                logs = [line for line in history + proc.stderr_lines if any(j[:8] in line for j in waiting)]
                raise AssertionError(f"{err}: {waiting}; their log lines:\n" + "\n".join(logs)) from None
            assert [(j["job_id"], j["error"]) for j in jobs if j["status"] != "succeeded"] == [], note
            # No job twice, and none the client was never told about (a retried request found its first job).
            assert sorted(_all_job_ids(api)) == sorted(accepted), note
            # Every run let go of its lease (a killed one's was cleared by the restart), and every job was sent.
            with sqlite3.connect(workdir / "data" / "serve" / "state.sqlite") as db:
                items = [item for (item,) in db.execute("SELECT item FROM items").fetchall()]
            assert [item for item in items if '"lease_' in item or '"unsent"' in item] == [], note
            for job in jobs:
                frames = _all_frames(api, job["job_id"])
                assert [f["index"] for f in frames] == list(range(FRAMES)), (job["job_id"], frames, note)
                assert len({f["frame_number"] for f in frames}) == FRAMES == job["frames_indexed"], (job, note)

            expected_ids = {webhook_id(j["job_id"], "job.succeeded", j["created_at"]): j["job_id"] for j in jobs}
            try:
                wait_for(lambda: all(receiver.event_for(j) for j in accepted), 60, what="every callback")
            except AssertionError as err:
                missing = {j: api.get(f"/jobs/{j}").json().get("callback") for j in accepted
                           if not receiver.event_for(j)}
                raise AssertionError(f"{err} {note}: no callback for {missing}; {proc.stderr_tail(40)}") from None
            by_id: dict[str, set[str]] = {}
            deliveries = list(receiver.events)
            for payload, headers in deliveries:
                by_id.setdefault(headers["webhook-id"], set()).add(json.dumps(payload, sort_keys=True))
                assert payload["type"] == "job.succeeded", (payload, note)
                assert expected_ids.get(headers["webhook-id"]) == payload["job_id"], (headers, note)
            assert set(by_id) == set(expected_ids), note
            assert all(len(bodies) == 1 for bodies in by_id.values()), (by_id, note)
            print(f"deliveries: {len(deliveries)} for {len(by_id)} webhook-ids")

            for job_id in accepted[:: BURST // 5]:
                response = api.post("/search", json={"frame": {"job_id": job_id, "index": 0}, "top_k": 100})
                assert response.status_code == 200, response.text
                hits = {hit["job_id"] for hit in response.json()["items"]}
                assert job_id in hits and hits <= set(accepted), (hits - set(accepted), note)

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
        with proc.client() as api:
            assert api.get(f"/jobs/{lost}").status_code == 404
            response = api.post("/search", json={"frame": {"job_id": accepted[1], "index": 0}, "top_k": 100})
            assert response.status_code == 200, response.text
            hits = {hit["job_id"] for hit in response.json()["items"]}
            assert lost not in hits and hits <= set(accepted), hits
            swept = wait_for(functools.partial(proc.stderr_matching, "orphan sweep:"), 60, what="the sweep")
            assert "1 job(s) with vectors" in swept[0], swept
    finally:
        client.serving(None)
        proc.kill()
        receiver.close()


def test_at_start_a_finished_job_never_announced_is_and_a_job_that_keeps_crashing_serve_fails(
        workdir: Path, files: FileServer) -> None:
    """Two states a crash leaves that no queued message settles, written into the data dir as a crash would leave
    them: a job recorded finished whose worker message is gone without its notification having gone out (its message
    was dead-lettered, or an older `serve` finished it), and a job whose message was in flight at the last crashes in
    a row, one short of the limit. The restart announces the first and fails the second instead of running it."""
    from video_ai.adapters.dynamodb_jobs import job_to_item
    from video_ai.domain.models import Job, JobStatus, Source
    from video_ai.local.durable import INTERRUPTED_LIMIT, _dumps
    from video_ai.local.resources import kebab

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
        looping = Job(job_id="00000000-0000-4000-8000-000000000021", tenant="dev", status=JobStatus.PROCESSING,
                      source=Source(url=files.url("clip.mp4")), callback_url=receiver.url)
        with sqlite3.connect(data / "serve" / "state.sqlite") as db:
            (table,) = db.execute("SELECT DISTINCT tbl FROM items").fetchone()
            for record in (job, looping):
                db.execute("INSERT INTO items (tbl, hash, rng, item) VALUES (?, ?, '', ?)",
                           (table, json.dumps({"S": record.job_id}, separators=(",", ":")),
                            _dumps(job_to_item(record))))
            db.execute("INSERT INTO messages (message_id, queue, body, attributes, receive_count, visible_at, "
                       "interrupted) VALUES ('looping', ?, ?, '{}', 1, ?, ?)",
                       (f"video-ai-{kebab('JobsQueue')}-dev", json.dumps({"job_id": looping.job_id, "tenant": "dev"}),
                        int((time.time() + 3600) * 1000), INTERRUPTED_LIMIT - 1))
        proc = _start(config, secret)
        payload, headers = wait_for(lambda: receiver.event_for(job.job_id), 30, what="the callback")
        assert payload["type"] == "job.succeeded" and headers["webhook-id"]
        assert proc.stderr_matching("1 finished job(s) announced again"), proc.stderr_tail()
        payload, _ = wait_for(lambda: receiver.event_for(looping.job_id), 30, what="the failed job's callback")
        assert payload["type"] == "job.failed" and payload["data"]["error"]["code"] == "retries_exhausted", payload
        assert proc.stderr_matching(f"at the last {INTERRUPTED_LIMIT} crashes of serve: moved to its dead-letter"), (
            proc.stderr_tail())
        with proc.client() as client:
            assert client.get(f"/jobs/{job.job_id}").json()["callback"]["status"] == "delivered"
            failed = client.get(f"/jobs/{looping.job_id}").json()
            assert failed["status"] == "failed" and "in a row" in failed["error"]["message"], failed
        # Announced once: a further restart finds both announced and publishes nothing. The dead-lettered message was
        # taken by the jobs-dead-letter handler (before or after the restart), which found its job ended already.
        assert proc.terminate(timeout=30) == 0
        proc = _start(config, secret)
        assert not proc.stderr_matching("announced again") and not proc.stderr_matching("dead-letter queue")

        def consumed() -> bool:
            with sqlite3.connect(data / "serve" / "state.sqlite") as db:
                return db.execute("SELECT queue FROM messages WHERE message_id = 'looping'").fetchone() is None

        wait_for(consumed, 30, what="the dead-lettered message consumed")
        assert sum(1 for p, _ in receiver.events if p["job_id"] in (job.job_id, looping.job_id)) == 2
    finally:
        proc.kill()
        receiver.close()
