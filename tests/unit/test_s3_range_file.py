"""S3RangeFile: a seekable file over ranged GETs, block-aligned and cached, pinned to the object the job started on."""

from __future__ import annotations

import io
import os
import random
import threading
import time
from typing import Any

import pytest

from tests.fakes import FakeS3Objects
from video_ai.adapters.s3_range_file import S3RangedOpener, S3RangeFile
from video_ai.domain.errors import FetchFailed, SourceChanged, VideoAIError, VideoNotFound
from video_ai.domain.models import S3Location, Source

BLOCK = 1000
DATA = os.urandom(10 * BLOCK + 337)  # ten whole blocks and a short last one
HERE = S3Location(bucket="uploads", key="tenants/t1/v.mp4")


def _file(s3: FakeS3Objects | None = None, data: bytes = DATA, cache_blocks: int = 3) -> tuple[S3RangeFile,
                                                                                                  FakeS3Objects]:
    s3 = s3 or FakeS3Objects()
    etag = s3.put(HERE.bucket, HERE.key, data)
    return S3RangeFile(s3, HERE, etag, block_size=BLOCK, cache_blocks=cache_blocks), s3


def test_reads_and_seeks_behave_like_a_local_file_at_every_block_edge() -> None:
    f, _ = _file()
    model = io.BytesIO(DATA)
    rng = random.Random(7)
    edges = [k * BLOCK + d for k in range(12) for d in (-1, 0, 1) if k * BLOCK + d >= 0]
    for step in range(400):
        whence = rng.choice((io.SEEK_SET, io.SEEK_CUR, io.SEEK_END))
        if whence == io.SEEK_SET:
            offset = rng.choice(edges) if step % 2 else rng.randrange(0, len(DATA) + 50)
        elif whence == io.SEEK_CUR:
            offset = rng.randrange(-min(model.tell(), 2500), 2500)
        else:
            offset = rng.randrange(-len(DATA), 40)
        assert f.seek(offset, whence) == model.seek(offset, whence)
        size = rng.choice((0, 1, 7, BLOCK - 1, BLOCK, BLOCK + 1, 3 * BLOCK + 5))
        assert f.read(size) == model.read(size)
        assert f.tell() == model.tell()


def test_size_end_relative_seeks_and_reads_past_the_end() -> None:
    f, _ = _file()
    assert f.seekable() and f.readable() and f.name == "v.mp4"
    assert f.seek(0, io.SEEK_END) == len(DATA) == f.size
    assert f.read(10) == b""
    assert f.seek(-5, io.SEEK_END) == len(DATA) - 5 and f.read(100) == DATA[-5:]
    assert f.seek(len(DATA) + 1000) == len(DATA) + 1000 and f.read(1) == b"" and f.tell() == len(DATA) + 1000
    f.seek(3 * BLOCK - 2)
    assert f.read() == DATA[3 * BLOCK - 2 :]  # read(-1): to the end, across blocks
    with pytest.raises(OSError):
        f.seek(-1)
    with pytest.raises(ValueError):
        f.seek(0, 3)
    buffer = bytearray(BLOCK + 10)
    f.seek(BLOCK - 5)
    assert f.readinto(buffer) == BLOCK + 10 and bytes(buffer) == DATA[BLOCK - 5 : 2 * BLOCK + 5]


def test_reading_in_order_doubles_the_blocks_per_get_and_a_jump_starts_over_with_one() -> None:
    s3 = FakeS3Objects()
    etag = s3.put(HERE.bucket, HERE.key, DATA)
    # Without read-ahead: these exact GET sequences include reads after a jump, where a read-ahead would add its own.
    f = S3RangeFile(s3, HERE, etag, block_size=BLOCK, cache_blocks=5, max_run=4, read_ahead=False)
    while f.read(64):  # PyAV-like small reads, in order through the object
        assert f.cached_blocks <= 5
    # 1, 2, 4, then max_run blocks per GET; the last one is cut at the end of the object. Each byte is fetched once.
    assert s3.ranges == ["bytes=0-999", "bytes=1000-2999", "bytes=3000-6999", "bytes=7000-10999"]
    assert f.requests == 4 and f.bytes_fetched == len(DATA)
    # The most recent blocks are cached: going back within them costs nothing; a jump further back costs one block.
    f.seek(9 * BLOCK + 10)
    assert f.read(BLOCK) == DATA[9 * BLOCK + 10 : 10 * BLOCK + 10] and f.requests == 4
    f.seek(BLOCK + 10)
    assert f.read(BLOCK) == DATA[BLOCK + 10 : 2 * BLOCK + 10]
    assert s3.ranges[4:] == ["bytes=1000-1999", "bytes=2000-3999"] and f.cached_blocks == 5


def test_runs_stop_at_readahead_end_and_reads_past_it_still_work() -> None:
    s3 = FakeS3Objects()
    etag = s3.put(HERE.bucket, HERE.key, DATA)
    f = S3RangeFile(s3, HERE, etag, block_size=BLOCK, cache_blocks=5, max_run=4, read_ahead=False)
    f.readahead_end = 4 * BLOCK + 500  # inside block 4
    assert f.read() == DATA  # the whole object, in order
    # 1, 2, then cut at block 4 (not 4 blocks up to 6,999); past it one block per GET.
    assert s3.ranges[:3] == ["bytes=0-999", "bytes=1000-2999", "bytes=3000-4999"]
    assert s3.ranges[3:] == [f"bytes={b * BLOCK}-{b * BLOCK + 999}" for b in range(5, 11)]
    assert f.bytes_fetched == len(DATA)


def test_the_cache_stays_bounded_whatever_the_access_pattern() -> None:
    f, s3 = _file(cache_blocks=2)
    rng = random.Random(1)
    for _ in range(200):
        f.seek(rng.randrange(len(DATA)))
        f.read(rng.randrange(1, 3 * BLOCK))
        assert f.cached_blocks <= 2
    assert all(int(r.split("-")[1]) - int(r.split("=")[1].split("-")[0]) < 2 * BLOCK for r in s3.ranges)


def test_an_object_overwritten_since_the_pin_is_a_permanent_source_changed() -> None:
    f, s3 = _file()
    assert f.read(BLOCK) == DATA[:BLOCK]
    s3.put(HERE.bucket, HERE.key, DATA[::-1])
    f.seek(5 * BLOCK)
    with pytest.raises(SourceChanged) as info:
        f.read(10)
    assert info.value.permanent and info.value.code == "source_changed"
    assert "s3://uploads/tenants/t1/v.mp4 changed" in info.value.message


@pytest.mark.parametrize(
    ("code", "status", "error", "permanent"),
    [("NoSuchKey", 404, VideoNotFound, True), ("AccessDenied", 403, VideoNotFound, True),
     ("SlowDown", 503, FetchFailed, False), ("InternalError", 500, FetchFailed, False)],
)
def test_other_s3_errors_map_like_the_whole_object_fetcher(code: str, status: int, error: type[VideoAIError],
                                                           permanent: bool) -> None:
    f, s3 = _file()
    s3.fail_next = (code, status)
    with pytest.raises(error) as info:
        f.read(1)
    assert info.value.permanent is permanent
    assert f.read(1) == DATA[:1]  # a transient failure caches nothing: the next read asks again


class _Clients:
    """The one attribute of AwsClients the opener uses."""

    def __init__(self, s3: FakeS3Objects) -> None:
        self.s3 = s3


def test_the_opener_pins_the_current_etag_and_a_versioned_source_reads_its_version() -> None:
    s3 = FakeS3Objects()
    s3.put("uploads", "v.mp4", DATA, version="v1")
    s3.put("uploads", "v.mp4", b"newer bytes", version="v2")
    opener = S3RangedOpener(_Clients(s3), block_size=BLOCK)  # type: ignore[arg-type]
    assert not S3RangedOpener(_Clients(s3), read_ahead=False).open(  # type: ignore[arg-type]
        Source(s3=S3Location(bucket="uploads", key="v.mp4")), '"x"').read_ahead
    assert opener.pin(Source(s3=S3Location(bucket="uploads", key="v.mp4"))) == FakeS3Objects.etag(b"newer bytes")
    old = opener.open(Source(s3=S3Location(bucket="uploads", key="v.mp4", version="v1")), None)
    assert old.read(BLOCK + 3) == DATA[: BLOCK + 3] and old.size == len(DATA)
    with pytest.raises(VideoNotFound):
        opener.pin(Source(s3=S3Location(bucket="uploads", key="gone.mp4")))


def test_an_empty_object_reads_as_an_empty_file() -> None:
    f, _ = _file(data=b"")
    assert f.seek(0, io.SEEK_END) == 0 and f.read(10) == b""


def test_a_closed_file_refuses_io_and_drops_its_cache() -> None:
    f, _ = _file()
    f.read(10)
    f.close()
    assert f.cached_blocks == 0
    with pytest.raises(ValueError):
        f.read(1)
    f.close()  # idempotent


def test_a_pin_is_needed() -> None:
    with pytest.raises(ValueError, match="ETag or a version"):
        S3RangeFile(FakeS3Objects(), HERE, None)


# -- read-ahead ------------------------------------------------------------------------------------------------------
LONG = os.urandom(30 * BLOCK + 337)  # 31 blocks: runs of 1, 2, then 4 (max_run) at a time
RUNS = ["bytes=0-999", "bytes=1000-2999", *(f"bytes={b * BLOCK}-{b * BLOCK + 4 * BLOCK - 1}" for b in range(3, 27, 4)),
        "bytes=27000-30999"]  # the last run cut at the object's last block (S3 answers up to its last byte)
SLOW_S = 0.05  # each GET's delay in the slow tests


def _long_file(s3: FakeS3Objects, *, version: str | None = None, **options: Any) -> S3RangeFile:
    etag = s3.put(HERE.bucket, HERE.key, LONG, version=version)
    location = S3Location(bucket=HERE.bucket, key=HERE.key, version=version)
    return S3RangeFile(s3, location, None if version else etag, block_size=BLOCK, cache_blocks=8, max_run=4,
                       **options)


def _reader(thread: str) -> bool:
    return thread == threading.current_thread().name


def _wait_for_get(s3: FakeS3Objects, byte_range: str, timeout_s: float = 5.0) -> None:
    """Until a GET of that range has been made (what it answers is decided by then)."""
    deadline = time.monotonic() + timeout_s
    while byte_range not in s3.ranges:
        assert time.monotonic() < deadline, f"no GET of {byte_range}"
        time.sleep(0.002)


@pytest.mark.parametrize("version", [None, "v7"], ids=["etag", "version"])
def test_reading_in_order_fetches_each_next_run_ahead_on_one_background_thread(version: str | None) -> None:
    s3 = FakeS3Objects()
    s3.delay_s = SLOW_S
    f = _long_file(s3, version=version)
    needed: dict[int, float] = {}  # block -> when the reader first asked for it
    out = bytearray()
    while True:
        needed.setdefault((f.tell() // BLOCK), time.monotonic())
        chunk = f.read(250)
        if not chunk:
            break
        out += chunk
        time.sleep(0.004)  # "decoding" each 250 bytes: 16 ms a block, 64 ms a run of 4, longer than a GET
        assert f.cached_blocks + f.read_ahead_blocks <= f.cache_blocks
    assert bytes(out) == LONG
    # The same GETs as without read-ahead; the reader makes the first two (after a jump, then the first in-order run),
    # one background thread every later one, each started before the reader reached its first block.
    assert s3.ranges == RUNS and f.requests == len(RUNS) and f.bytes_fetched == len(LONG)
    mine, ahead = s3.calls[:2], s3.calls[2:]
    assert all(_reader(c.thread) for c in mine)
    assert {c.thread for c in ahead} == {f"s3-read-ahead:{f.name}"}
    for call in ahead:
        first_block = int(call.range.removeprefix("bytes=").split("-")[0]) // BLOCK
        assert call.started < needed[first_block], call.range
    # Every GET pinned alike, the background ones too.
    assert {(c.if_match, c.version) for c in s3.calls} == {(None, version) if version else (FakeS3Objects.etag(LONG),
                                                                                              None)}
    # The reader waited for its own two GETs and little else; S3 worked for all nine.
    gets_s = len(s3.calls) * SLOW_S
    assert 2 * SLOW_S <= f.fetch_seconds < 0.5 * gets_s, (f.fetch_seconds, gets_s)
    f.close()


def test_without_read_ahead_every_get_is_the_readers_own() -> None:
    s3 = FakeS3Objects()
    f = _long_file(s3, read_ahead=False)
    assert f.read() == LONG and f.max_run == 4
    assert s3.ranges == RUNS and all(_reader(c.thread) for c in s3.calls)


@pytest.mark.parametrize(("code", "status", "error", "permanent"),
                         [("PreconditionFailed", 412, SourceChanged, True), ("SlowDown", 503, FetchFailed, False)])
def test_a_failed_read_ahead_raises_in_the_reader_when_and_only_when_its_blocks_are_read(
    code: str, status: int, error: type[VideoAIError], permanent: bool
) -> None:
    ahead = "bytes=3000-6999"  # the first run read ahead, after the reader's runs of 1 and 2 blocks
    for needed in (True, False):
        s3 = FakeS3Objects()
        s3.fail_ranges[ahead] = (code, status)
        f = _long_file(s3)
        assert f.read(3 * BLOCK) == LONG[: 3 * BLOCK]
        _wait_for_get(s3, ahead)  # the read-ahead was made (and failed) on its thread
        if needed:
            with pytest.raises(error) as info:
                f.read(10)  # the reader's own GET of those blocks fails the same way, here
            assert info.value.permanent is permanent
            assert [_reader(c.thread) for c in s3.calls if c.range == ahead] == [False, True]
            if not permanent:
                del s3.fail_ranges[ahead]
                assert f.read(10) == LONG[3 * BLOCK : 3 * BLOCK + 10]  # a transient failure is asked again
        else:
            f.seek(20 * BLOCK)  # a jump: the failed read-ahead is never needed, and says nothing
            assert f.read() == LONG[20 * BLOCK :]
            assert f.seek(BLOCK) == BLOCK and f.read(2 * BLOCK) == LONG[BLOCK : 3 * BLOCK]
            assert s3.ranges.count(ahead) == 1
        f.close()


def test_a_read_ahead_that_failed_once_is_fetched_again_by_the_reader() -> None:
    ahead = "bytes=3000-6999"
    s3 = FakeS3Objects()
    s3.fail_ranges[ahead] = ("InternalError", 500)
    f = _long_file(s3)
    assert f.read(3 * BLOCK) == LONG[: 3 * BLOCK]
    _wait_for_get(s3, ahead)
    del s3.fail_ranges[ahead]  # S3 is back by the time the reader gets there
    assert f.read() == LONG[3 * BLOCK :]
    assert [_reader(c.thread) for c in s3.calls if c.range == ahead] == [False, True]


def _first_run_read_with_read_ahead_held() -> tuple[FakeS3Objects, S3RangeFile, str]:
    """The first 3 blocks read in order; the read-ahead of the next run (its range returned) hangs until released."""
    ahead = "bytes=3000-6999"
    s3 = FakeS3Objects()
    s3.held.add(ahead)
    f = _long_file(s3)
    assert f.read(3 * BLOCK) == LONG[: 3 * BLOCK]
    return s3, f, ahead


def test_a_jump_does_not_wait_for_a_read_ahead_in_flight() -> None:
    s3, f, ahead = _first_run_read_with_read_ahead_held()
    _wait_for_get(s3, ahead)
    started = time.monotonic()
    f.seek(15 * BLOCK + 7)
    assert f.read(3 * BLOCK) == LONG[15 * BLOCK + 7 : 18 * BLOCK + 7]  # the reader's own GETs, not blocked
    assert time.monotonic() - started < 0.5
    # No second read-ahead while the abandoned one is still in flight: at most one GET in flight per file.
    assert all(_reader(c.thread) for c in s3.calls if c.range != ahead)
    s3.release.set()
    assert f.read() == LONG[18 * BLOCK + 7 :]
    f.seek(2 * BLOCK)
    assert f.read() == LONG[2 * BLOCK :]  # the abandoned run's blocks are fetched again when wanted
    f.close()


def test_close_does_not_wait_for_a_read_ahead_in_flight_and_leaves_no_live_thread_behind() -> None:
    s3, f, ahead = _first_run_read_with_read_ahead_held()
    _wait_for_get(s3, ahead)
    (worker,) = [t for t in threading.enumerate() if t.name == f"s3-read-ahead:{f.name}"]
    assert worker.daemon  # never keeps the process alive
    started = time.monotonic()
    f.close()
    assert time.monotonic() - started < 0.2 and f.closed and f.cached_blocks == 0 and f.read_ahead_blocks == 0
    with pytest.raises(ValueError):
        f.read(1)
    s3.release.set()  # the GET completes; its bytes are dropped and the thread ends
    worker.join(timeout=5.0)
    assert not worker.is_alive() and s3.ranges[-1] == ahead


def test_a_reader_waiting_on_a_read_ahead_stops_when_the_file_is_closed() -> None:
    s3, f, ahead = _first_run_read_with_read_ahead_held()
    errors: list[BaseException] = []

    def read_on() -> None:
        try:
            f.read(10)
        except ValueError as err:
            errors.append(err)

    reader = threading.Thread(target=read_on)
    reader.start()
    _wait_for_get(s3, ahead)
    time.sleep(0.05)
    f.close()
    reader.join(timeout=1.0)
    assert not reader.is_alive() and errors
    s3.release.set()


@pytest.mark.parametrize("cache_blocks", [1, 2, 3, 6])
def test_blocks_cached_and_read_ahead_never_exceed_cache_blocks(cache_blocks: int) -> None:
    s3 = FakeS3Objects()
    etag = s3.put(HERE.bucket, HERE.key, LONG)
    f = S3RangeFile(s3, HERE, etag, block_size=BLOCK, cache_blocks=cache_blocks)
    model = io.BytesIO(LONG)
    rng = random.Random(cache_blocks)
    for _ in range(60):
        target = rng.randrange(len(LONG))
        f.seek(target)
        model.seek(target)
        for _ in range(rng.choice((1, 5, 40))):  # now a jump, now a stretch in order
            size = rng.choice((64, 700, BLOCK + 1))
            assert f.read(size) == model.read(size)
            assert f.cached_blocks + f.read_ahead_blocks <= cache_blocks
    assert f.max_run == max(1, cache_blocks // 2)  # the run read and the run read ahead fit together
    if cache_blocks == 1:
        assert all(_reader(c.thread) for c in s3.calls)  # no room to read ahead
    else:
        assert any(not _reader(c.thread) for c in s3.calls)
