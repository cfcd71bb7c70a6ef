"""Ranged reads of an S3 object as a seekable file, so a segment of a split job reads only the bytes it decodes.

`S3RangeFile` is an `io.RawIOBase` that PyAV (or anything else) can `read`/`seek` like a local file. Reads are served
from aligned blocks (`block_size`, default 512 KiB) fetched with `GetObject(Range="bytes=a-b")` and kept in an LRU
cache (`cache_blocks`, default 48: 24 MiB), so PyAV's 32 KiB reads cost a memcpy and memory stays bounded. A read
after a jump fetches one block (FFmpeg's look at the header, the MP4 index at the end of the file, the seek to a
segment's keyframe); reading on in order doubles the blocks per GET up to `max_run` (16: 8 MiB), so a segment's run
of media data takes few requests and the last GET overshoots its end by at most `max_run` blocks. (Fixed 8 MiB
blocks read 2.4x a 119 MB object over its ten 60 s segments: header and index each cost a whole block.) A reader
that knows where it will stop sets `readahead_end` (the frame source does for a segment's end), so the last run does
not overshoot it.
Every GET is pinned to the object the job was split on: `VersionId` when the source names a version, else
`IfMatch=<etag>`. A 412 means the object was overwritten since: SourceChanged (permanent; a
retry would read the same new bytes). Other errors map like the whole-object fetcher's (s3_store.fetch_error).
"""

from __future__ import annotations

import io
import threading
import time
from collections import OrderedDict
from pathlib import PurePosixPath
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from video_ai.adapters.aws import AwsClients, error_code
from video_ai.adapters.s3_store import describe_location, fetch_error, head_source, source_location
from video_ai.domain.errors import FetchFailed, SourceChanged
from video_ai.domain.models import S3Location, Source

DEFAULT_BLOCK_BYTES = 512 * 1024
DEFAULT_CACHE_BLOCKS = 48
DEFAULT_MAX_RUN = 16
_CHANGED_CODES = frozenset({"412", "PreconditionFailed"})
_UNSATISFIABLE_CODES = frozenset({"416", "InvalidRange"})


class S3RangeFile(io.RawIOBase):
    """A read-only, seekable view of one S3 object version, read by aligned byte ranges through an LRU cache."""

    def __init__(
        self,
        s3: Any,
        location: S3Location,
        etag: str | None,
        *,
        block_size: int = DEFAULT_BLOCK_BYTES,
        cache_blocks: int = DEFAULT_CACHE_BLOCKS,
        max_run: int = DEFAULT_MAX_RUN,
    ) -> None:
        super().__init__()
        self._blocks: OrderedDict[int, bytes] = OrderedDict()
        if block_size < 1 or cache_blocks < 1 or max_run < 1:
            raise ValueError("block_size, cache_blocks and max_run must be at least 1")
        if etag is None and location.version is None:
            raise ValueError("a ranged read needs an ETag or a version to pin every GET to the same bytes")
        self._s3 = s3
        self.location = location
        self._pin: dict[str, str] = {"VersionId": location.version} if location.version else {"IfMatch": str(etag)}
        self.block_size = block_size
        self.cache_blocks = cache_blocks
        self.max_run = min(max_run, cache_blocks)  # a run must fit in the cache, or it would evict its own start
        self._run = 1
        self._last_block = -2
        self._size: int | None = None
        self._pos = 0
        # PyAV reads from whichever thread demuxes (the service's decode thread); one lock keeps the cache coherent.
        self._lock = threading.RLock()
        self.bytes_fetched = 0
        self.requests = 0
        self.fetch_seconds = 0.0
        # Where the reader expects to stop (a segment's end, from the MP4 index): runs read ahead no further.
        self.readahead_end: int | None = None

    # -- io.RawIOBase ----------------------------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return PurePosixPath(self.location.key).name or self.location.key

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        self._check_open()
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET, /) -> int:
        self._check_open()
        if whence == io.SEEK_SET:
            target = offset
        elif whence == io.SEEK_CUR:
            target = self._pos + offset
        elif whence == io.SEEK_END:
            target = self.size + offset
        else:
            raise ValueError(f"invalid whence ({whence})")
        if target < 0:
            raise OSError(f"negative seek position {target}")
        self._pos = target  # past the end is allowed, as for a file; reads there return b""
        return target

    def readinto(self, buffer: Any, /) -> int:
        self._check_open()
        with memoryview(buffer) as view, view.cast("B") as out, self._lock:
            done = 0
            while done < len(out):
                pos = self._pos + done
                if pos >= self.size:
                    break
                block_no, offset = divmod(pos, self.block_size)
                block = self._block(block_no)
                n = min(len(out) - done, len(block) - offset)
                if n <= 0:
                    break
                out[done : done + n] = memoryview(block)[offset : offset + n]
                done += n
            self._pos += done
        return done

    def close(self) -> None:
        self._blocks.clear()
        super().close()

    # -- ranges ----------------------------------------------------------------------------------------------------
    @property
    def size(self) -> int:
        """The object's length, learned from the first ranged GET's Content-Range (no HEAD)."""
        with self._lock:
            if self._size is None:
                self._block(0)
            assert self._size is not None
            return self._size

    @property
    def cached_blocks(self) -> int:
        return len(self._blocks)

    def _check_open(self) -> None:
        if self.closed:
            raise ValueError("I/O operation on closed file")

    def _block(self, block_no: int) -> bytes:
        in_order = block_no == self._last_block + 1
        self._last_block = block_no
        block = self._blocks.get(block_no)
        if block is not None:
            self._blocks.move_to_end(block_no)
            return block
        self._run = min(2 * self._run, self.max_run) if in_order else 1
        count = self._run
        if self.readahead_end is not None:
            # Runs stop at the block holding `readahead_end`; reads past it still work, one block at a time.
            count = max(1, min(count, self.readahead_end // self.block_size + 1 - block_no))
        if self._size is not None:
            count = max(1, min(count, -(-self._size // self.block_size) - block_no))
        first = block_no * self.block_size
        data = memoryview(self._get(first, first + count * self.block_size - 1))
        # One bytes object per block (a copy), so evicting a block frees it whatever else of its GET stays cached.
        for i in range(max(1, -(-len(data) // self.block_size))):
            self._blocks[block_no + i] = bytes(data[i * self.block_size : (i + 1) * self.block_size])
            self._blocks.move_to_end(block_no + i)
        while len(self._blocks) > self.cache_blocks:
            self._blocks.popitem(last=False)
        return self._blocks[block_no]

    def _get(self, first: int, last: int) -> bytes:
        where = describe_location(self.location)
        started = time.perf_counter()
        self.requests += 1
        try:
            response = self._s3.get_object(
                Bucket=self.location.bucket, Key=self.location.key, Range=f"bytes={first}-{last}", **self._pin
            )
            data: bytes = response["Body"].read()
        except (ClientError, BotoCoreError) as err:
            code = error_code(err) if isinstance(err, ClientError) else ""
            if code in _CHANGED_CODES:
                raise SourceChanged(
                    f"{where} changed after the job started (it was overwritten); submit the job again to analyse "
                    "the new content"
                ) from err
            if code in _UNSATISFIABLE_CODES and first == 0:
                self._size = 0  # an empty object: no range of it exists
                return b""
            raise fetch_error(err, self.location) from err
        finally:
            self.fetch_seconds += time.perf_counter() - started
        self.bytes_fetched += len(data)
        total = _total_size(str(response.get("ContentRange", "")))
        if total is None:
            raise FetchFailed(f"{where}: S3 answered a ranged GET without a usable Content-Range")
        if self._size is not None and total != self._size:
            raise SourceChanged(f"{where} changed after the job started (its size went from {self._size} to {total})")
        self._size = total
        if len(data) != min(last, total - 1) - first + 1:
            raise FetchFailed(f"{where}: got {len(data)} bytes for bytes {first}-{last} of {total}; retry")
        return data


def _total_size(content_range: str) -> int | None:
    """`bytes 0-99/1234` -> 1234; None when absent or the total is unknown (`*`)."""
    _, _, total = content_range.rpartition("/")
    return int(total) if total.isdigit() else None


class S3RangedOpener:
    """RangedOpener port: `pin` (HEAD -> ETag) when a job is split, `open` an S3RangeFile per segment."""

    def __init__(
        self,
        clients: AwsClients,
        *,
        block_size: int = DEFAULT_BLOCK_BYTES,
        cache_blocks: int = DEFAULT_CACHE_BLOCKS,
        max_run: int = DEFAULT_MAX_RUN,
    ) -> None:
        self._clients = clients
        self.block_size = block_size
        self.cache_blocks = cache_blocks
        self.max_run = max_run

    def pin(self, source: Source) -> str:
        _, head = head_source(self._clients, source)
        return str(head["ETag"])

    def open(self, source: Source, etag: str | None) -> S3RangeFile:
        return S3RangeFile(self._clients.s3, source_location(source), etag, block_size=self.block_size,
                           cache_blocks=self.cache_blocks, max_run=self.max_run)
