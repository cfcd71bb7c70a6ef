"""S3RangeFile: a seekable file over ranged GETs, block-aligned and cached, pinned to the object the job started on."""

from __future__ import annotations

import io
import os
import random

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
    f = S3RangeFile(s3, HERE, etag, block_size=BLOCK, cache_blocks=5, max_run=4)
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
    f = S3RangeFile(s3, HERE, etag, block_size=BLOCK, cache_blocks=5, max_run=4)
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
