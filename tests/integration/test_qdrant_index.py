"""Both VectorIndex adapters against real engines: qdrant-edge on disk, qdrant-client local mode for the server one."""

from __future__ import annotations

import http.server
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from video_ai.adapters.qdrant_edge_index import HnswSettings, QdrantEdgeIndex
from video_ai.adapters.qdrant_server_index import QdrantServerIndex
from video_ai.domain.errors import IndexUnavailable
from video_ai.domain.models import FramePoint, ModelInfo, SearchFilter, point_id
from video_ai.domain.ports import VectorIndex

# Local mode ignores payload indexes and says so; the calls are still the ones a server gets.
pytestmark = [
    pytest.mark.filterwarnings("ignore:Payload indexes have no effect:UserWarning"),
    pytest.mark.filterwarnings("ignore:Api key is used with an insecure connection:UserWarning"),
]

DIM = 32
MODEL = ModelInfo(name="test-model", version="1", dim=DIM)
NO_FILTER = SearchFilter()


def unit_vectors(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    v = rng.standard_normal((n, DIM)).astype(np.float32)
    out: np.ndarray = v / np.linalg.norm(v, axis=1, keepdims=True)
    return out


def frames(job_id: str, n: int, tenant: str = "t1", seed: int = 0, fps: float = 2.0) -> list[FramePoint]:
    vectors = unit_vectors(n, seed)
    return [
        FramePoint(
            id=point_id(job_id, i),
            vector=vectors[i],
            payload={"job_id": job_id, "tenant": tenant, "pts_s": i / fps, "frame_number": i, "shot": i // 10,
                     "source": f"s3://bucket/{job_id}.mp4"},
        )
        for i in range(n)
    ]


@pytest.fixture(params=["edge", "server"])
def index(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[VectorIndex]:
    built: VectorIndex
    if request.param == "edge":
        built = QdrantEdgeIndex(tmp_path)
    else:
        from qdrant_client import QdrantClient

        built = QdrantServerIndex("http://unused", None, 1.0, client=QdrantClient(":memory:"))
    yield built
    built.close()


def test_upsert_then_search_finds_the_point_itself(index: VectorIndex) -> None:
    points = frames("job-a", 40)
    index.upsert(MODEL, points)

    hits = index.search(MODEL, points[7].vector, 5, NO_FILTER)

    assert len(hits) == 5
    assert hits[0].id == points[7].id
    assert hits[0].score == pytest.approx(1.0, abs=1e-4)
    assert hits[0].payload == points[7].payload
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)


def test_reupserting_the_same_ids_does_not_duplicate(index: VectorIndex) -> None:
    index.upsert(MODEL, frames("job-a", 300))  # > one chunk of 256
    index.upsert(MODEL, frames("job-a", 300, seed=1))

    assert index.count(MODEL, NO_FILTER) == 300
    changed = frames("job-a", 300, seed=1)[5]
    stored = index.get_vector(MODEL, changed.id)
    assert stored is not None
    np.testing.assert_allclose(stored, changed.vector, atol=1e-5)


def test_filters_by_tenant_job_and_time(index: VectorIndex) -> None:
    index.upsert(MODEL, frames("job-a", 20, tenant="t1", seed=1))
    index.upsert(MODEL, frames("job-b", 20, tenant="t1", seed=2))
    index.upsert(MODEL, frames("job-c", 20, tenant="t2", seed=3))
    query = frames("job-c", 20, seed=3)[0].vector  # job-c's own vector: best match overall lives in tenant t2

    t1_hits = index.search(MODEL, query, 100, SearchFilter(tenant="t1"))
    assert len(t1_hits) == 40
    assert {h.payload["tenant"] for h in t1_hits} == {"t1"}
    assert index.search(MODEL, query, 1, SearchFilter(tenant="t2"))[0].payload["job_id"] == "job-c"

    job_hits = index.search(MODEL, query, 100, SearchFilter(tenant="t1", job_id="job-b"))
    assert {h.payload["job_id"] for h in job_hits} == {"job-b"}
    assert len(job_hits) == 20

    window = index.search(MODEL, query, 100, SearchFilter(job_id="job-a", start_s=2.0, end_s=4.0))
    assert sorted(h.payload["pts_s"] for h in window) == [2.0, 2.5, 3.0, 3.5, 4.0]  # both ends inclusive
    assert len(index.search(MODEL, query, 100, SearchFilter(job_id="job-a", start_s=9.0))) == 2
    assert len(index.search(MODEL, query, 100, SearchFilter(job_id="job-a", end_s=0.4))) == 1

    assert index.count(MODEL, NO_FILTER) == 60
    assert index.count(MODEL, SearchFilter(tenant="t2")) == 20
    assert index.count(MODEL, SearchFilter(tenant="t2", job_id="job-a")) == 0
    assert index.count(MODEL, SearchFilter(job_id="job-a", start_s=2.0, end_s=4.0)) == 5


def test_delete_by_job_and_by_tenant(index: VectorIndex) -> None:
    index.upsert(MODEL, frames("job-a", 10, tenant="t1"))
    index.upsert(MODEL, frames("job-b", 10, tenant="t1", seed=1))
    index.upsert(MODEL, frames("job-c", 10, tenant="t2", seed=2))

    index.delete(MODEL, SearchFilter(job_id="job-a"))
    assert index.count(MODEL, SearchFilter(job_id="job-a")) == 0
    assert index.count(MODEL, NO_FILTER) == 20
    assert index.get_vector(MODEL, point_id("job-a", 3)) is None

    index.delete(MODEL, SearchFilter(tenant="t2", job_id="job-b"))  # job-b is not t2's: nothing goes
    assert index.count(MODEL, NO_FILTER) == 20
    index.delete(MODEL, SearchFilter(tenant="t2"))
    assert index.count(MODEL, NO_FILTER) == 10

    with pytest.raises(ValueError):
        index.delete(MODEL, NO_FILTER)
    assert index.count(MODEL, NO_FILTER) == 10


def test_job_ids_names_every_indexed_job_once(index: VectorIndex) -> None:
    assert index.job_ids(MODEL) == set()  # no collection yet
    index.upsert(MODEL, frames("job-a", 10, tenant="t1"))
    index.upsert(MODEL, frames("job-b", 3, tenant="t2", seed=1))
    assert index.job_ids(MODEL) == {"job-a", "job-b"}
    index.delete(MODEL, SearchFilter(job_id="job-a"))
    assert index.job_ids(MODEL) == {"job-b"}


def test_list_frames_pages_in_frame_order_exactly_once(index: VectorIndex) -> None:
    points = frames("job-a", 53)
    # Insert out of order, across several calls, with another job and tenant interleaved.
    order = np.random.default_rng(5).permutation(len(points))
    for part in np.array_split(order, 4):
        index.upsert(MODEL, [points[i] for i in part])
    index.upsert(MODEL, frames("job-b", 30, seed=9))
    index.upsert(MODEL, frames("job-a-other-tenant", 5, tenant="t2"))

    seen: list[int] = []
    after: int | None = None
    for _ in range(20):  # bounded: 53 frames / 10 per page = 6 pages
        page = index.list_frames(MODEL, "job-a", "t1", after, 10)
        if not page:
            break
        assert len(page) <= 10
        assert all(p.score == 0.0 and p.payload["job_id"] == "job-a" for p in page)
        seen.extend(p.payload["frame_number"] for p in page)
        after = page[-1].payload["frame_number"]
    assert seen == list(range(53))
    assert index.list_frames(MODEL, "job-a", "t2", None, 10) == []  # another tenant sees nothing
    first = index.list_frames(MODEL, "job-a", None, None, 3)
    assert [p.id for p in first] == [points[0].id, points[1].id, points[2].id]


def test_missing_collection_reads_as_empty(index: VectorIndex) -> None:
    other = ModelInfo(name="never-written", version="1", dim=DIM)
    assert index.search(other, unit_vectors(1, 0)[0], 10, NO_FILTER) == []
    assert index.count(other, NO_FILTER) == 0
    assert index.get_vector(other, point_id("x", 1)) is None
    assert index.list_frames(other, "x", None, None, 10) == []
    index.delete(other, SearchFilter(job_id="x"))  # no error

    index.ensure_collection(other)
    index.ensure_collection(other)  # idempotent
    assert index.count(other, NO_FILTER) == 0


def test_get_vector_of_unknown_or_malformed_id_is_none(index: VectorIndex) -> None:
    index.upsert(MODEL, frames("job-a", 3))
    assert index.get_vector(MODEL, point_id("job-a", 99)) is None
    assert index.get_vector(MODEL, "not-a-uuid") is None


def test_wrong_dimension_is_refused(index: VectorIndex) -> None:
    bad = FramePoint(id=point_id("j", 0), vector=np.ones(DIM + 1, dtype=np.float32), payload={"job_id": "j"})
    with pytest.raises(ValueError):
        index.upsert(MODEL, [bad])


def test_concurrent_writers_and_readers(index: VectorIndex) -> None:
    index.ensure_collection(MODEL)
    errors: list[BaseException] = []
    query = unit_vectors(1, 42)[0]

    def writer(worker: int) -> None:
        try:
            for batch in range(5):
                job = f"job-{worker}-{batch}"
                index.upsert(MODEL, frames(job, 12, seed=worker * 10 + batch))
                index.search(MODEL, query, 5, SearchFilter(job_id=job))
                index.count(MODEL, NO_FILTER)
                index.list_frames(MODEL, job, None, None, 5)
        except BaseException as err:  # surfaced by the assertion below
            errors.append(err)

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not any(t.is_alive() for t in threads)
    assert errors == []
    assert index.count(MODEL, NO_FILTER) == 4 * 5 * 12


def test_edge_index_persists_across_close_and_reopen(tmp_path: Path) -> None:
    first = QdrantEdgeIndex(tmp_path)
    points = frames("job-a", 30)
    first.upsert(MODEL, points)
    first.close()
    with pytest.raises(IndexUnavailable):
        first.count(MODEL, NO_FILTER)

    reopened = QdrantEdgeIndex(tmp_path)
    try:
        assert (tmp_path / "qdrant" / "frames__test-model__32").is_dir()
        assert reopened.count(MODEL, NO_FILTER) == 30
        hits = reopened.search(MODEL, points[4].vector, 1, SearchFilter(job_id="job-a"))
        assert hits[0].id == points[4].id
        assert hits[0].payload == points[4].payload
        assert [p.payload["frame_number"] for p in reopened.list_frames(MODEL, "job-a", "t1", 27, 10)] == [28, 29]
    finally:
        reopened.close()


def _closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def test_unreachable_server_is_index_unavailable_quickly() -> None:
    index = QdrantServerIndex(f"http://127.0.0.1:{_closed_port()}", None, 1.0)
    started = time.monotonic()
    with pytest.raises(IndexUnavailable) as caught:
        index.search(MODEL, unit_vectors(1, 0)[0], 5, NO_FILTER)
    assert caught.value.permanent is False
    with pytest.raises(IndexUnavailable):
        index.upsert(MODEL, frames("job-a", 2))
    with pytest.raises(IndexUnavailable):
        index.count(MODEL, NO_FILTER)
    assert time.monotonic() - started < 10
    index.close()


class _Always503(http.server.BaseHTTPRequestHandler):
    def _answer(self) -> None:
        body = b'{"status": {"error": "overloaded"}}'
        self.send_response(503)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_PUT = do_POST = do_DELETE = _answer

    def log_message(self, format: str, *args: object) -> None:
        pass


def test_server_5xx_is_index_unavailable() -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Always503)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        index = QdrantServerIndex(f"http://127.0.0.1:{server.server_address[1]}", "secret", 2.0)
        with pytest.raises(IndexUnavailable, match="503"):
            index.count(MODEL, NO_FILTER)
        with pytest.raises(IndexUnavailable):
            index.upsert(MODEL, frames("job-a", 2))
        index.close()
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_edge_points_survive_a_crash_between_flushes(tmp_path: Path) -> None:
    # The writer never flushes (flush_every_s huge) and dies without close(): the write-ahead log must hold them.
    code = f"""
import os, numpy as np
from pathlib import Path
from video_ai.adapters.qdrant_edge_index import HnswSettings, QdrantEdgeIndex
from video_ai.domain.models import FramePoint, ModelInfo, point_id
index = QdrantEdgeIndex(Path({str(tmp_path)!r}), flush_every_s=3600)
model = ModelInfo(name="test-model", version="1", dim={DIM})
index.ensure_collection(model)
vectors = np.random.default_rng(0).standard_normal((300, {DIM})).astype(np.float32)
index.upsert(model, [FramePoint(point_id("job-a", i), vectors[i], {{"job_id": "job-a", "frame_number": i}})
                     for i in range(300)])
os._exit(0)
"""
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)

    reopened = QdrantEdgeIndex(tmp_path)
    try:
        assert reopened.count(MODEL, SearchFilter(job_id="job-a")) == 300
        assert [p.payload["frame_number"] for p in reopened.list_frames(MODEL, "job-a", None, 297, 10)] == [298, 299]
    finally:
        reopened.close()


def test_set_payloads_merges_keys_and_skips_missing_points(index: VectorIndex) -> None:
    points = frames("job-a", 300)
    index.upsert(MODEL, points)
    updates = [(p.id, {"shot": 7, "index": i}) for i, p in enumerate(points)]
    updates.append((point_id("job-a", 999), {"shot": 1}))  # never written: skipped, no error

    index.set_payloads(MODEL, updates)

    page = index.list_frames(MODEL, "job-a", "t1", 295, 10)
    assert [(p.payload["frame_number"], p.payload["shot"], p.payload["index"]) for p in page] == [
        (n, 7, n) for n in range(296, 300)
    ]
    assert page[0].payload["pts_s"] == points[296].payload["pts_s"]  # other keys stay
    assert index.count(MODEL, NO_FILTER) == 300
    assert index.search(MODEL, points[3].vector, 1, NO_FILTER)[0].id == points[3].id  # vectors stay


# -- HNSW in the embedded engine ---------------------------------------------------------------------------------
def clustered(n: int, seed: int, centres: int = 40) -> np.ndarray:
    """Real-embedding-like: tight clusters (frames of a shot) around a few centres, plus a shared offset."""
    rng = np.random.default_rng(seed)
    base = rng.standard_normal((centres, DIM)).astype(np.float32) + 2.0
    v = base[rng.integers(0, centres, n)] + 0.3 * rng.standard_normal((n, DIM)).astype(np.float32)
    out: np.ndarray = v / np.linalg.norm(v, axis=1, keepdims=True)
    return out


def clustered_frames(vectors: np.ndarray, per_job: int = 500) -> list[FramePoint]:
    return [
        FramePoint(
            id=point_id(f"job-{i // per_job}", i % per_job),
            vector=vectors[i],
            payload={"job_id": f"job-{i // per_job}", "tenant": "t1", "pts_s": float(i % per_job),
                     "frame_number": i % per_job},
        )
        for i in range(len(vectors))
    ]


def _upsert_in_calls(index: VectorIndex, points: list[FramePoint]) -> None:
    for start in range(0, len(points), 256):
        index.upsert(MODEL, points[start : start + 256])


def _graph_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and "graph" in p.name]


HNSW_SMALL = HnswSettings(index_after=1_500, ef=64)


def test_hnsw_is_built_after_index_after_points_and_keeps_recall(tmp_path: Path) -> None:
    vectors = clustered(3_000, seed=1)
    queries = clustered(30, seed=1)[:30] + 0.05  # near the same centres, not stored points
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    points = clustered_frames(vectors)
    index = QdrantEdgeIndex(tmp_path, hnsw=HNSW_SMALL)
    try:
        _upsert_in_calls(index, points[:1_400])
        assert index.build_seconds == 0.0 and _graph_files(tmp_path) == []  # below index_after: exact scans only
        _upsert_in_calls(index, points[1_400:])
        assert index.build_seconds > 0.0
        assert _graph_files(tmp_path)

        found = 0
        for q in queries:
            truth = {points[i].id for i in np.argsort(-(vectors @ q))[:10]}
            found += len(truth & {h.id for h in index.search(MODEL, q, 10, NO_FILTER)})
        assert found / (10 * len(queries)) >= 0.95

        # Filtered by job: an exact scan of that job's points, whatever the graph says.
        for k, q in enumerate(queries[:10]):
            job = k % 6
            lo = job * 500
            truth_ids = [points[lo + int(i)].id for i in np.argsort(-(vectors[lo : lo + 500] @ q))[:10]]
            hits = index.search(MODEL, q, 10, SearchFilter(job_id=f"job-{job}"))
            assert [h.id for h in hits] == truth_ids
        assert index.count(MODEL, NO_FILTER) == 3_000
    finally:
        index.close()


def test_hnsw_index_persists_across_reopen(tmp_path: Path) -> None:
    vectors = clustered(2_000, seed=2)
    points = clustered_frames(vectors)
    first = QdrantEdgeIndex(tmp_path, hnsw=HNSW_SMALL)
    _upsert_in_calls(first, points)
    assert first.build_seconds > 0.0
    before = [[h.id for h in first.search(MODEL, vectors[i], 10, NO_FILTER)] for i in range(0, 2_000, 200)]
    first.close()
    graphs = _graph_files(tmp_path)
    assert graphs

    reopened = QdrantEdgeIndex(tmp_path, hnsw=HNSW_SMALL)
    try:
        assert reopened.count(MODEL, NO_FILTER) == 2_000
        after = [[h.id for h in reopened.search(MODEL, vectors[i], 10, NO_FILTER)] for i in range(0, 2_000, 200)]
        assert after == before
        assert all(hits[0] == points[i].id for hits, i in zip(after, range(0, 2_000, 200), strict=True))
        reopened.upsert(MODEL, points[:10])  # re-upserting a few points does not trigger a rebuild
        assert reopened.build_seconds == 0.0
        assert sorted(_graph_files(tmp_path)) == sorted(graphs)
    finally:
        reopened.close()


def test_exact_mode_never_builds_a_graph(tmp_path: Path) -> None:
    index = QdrantEdgeIndex(tmp_path, exact=True, hnsw=HNSW_SMALL)
    try:
        _upsert_in_calls(index, clustered_frames(clustered(1_800, seed=3)))
        assert index.build_seconds == 0.0
        assert _graph_files(tmp_path) == []
    finally:
        index.close()
