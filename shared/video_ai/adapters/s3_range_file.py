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
Read-ahead (`read_ahead=True`, the default): while reading in order, as soon as a run is in, the GET of the next run
(same doubling rule, cut at `readahead_end` and the object's end) starts on one background thread per file, so it
travels while PyAV decodes the current run; the reader waits for that GET when it reaches those blocks instead of
issuing its own. At most one read-ahead GET is in flight per file. The current run and the next share the cache (a
run is then at most half of `cache_blocks`; blocks being read ahead count against `cache_blocks`). The background
thread only performs the GET and hands back bytes or an error; the reader's thread checks them and fills the cache.
A read-ahead that failed is never raised from there: when its blocks are needed the reader makes its own GET of
them, whose error (SourceChanged, VideoNotFound, FetchFailed ...) surfaces in the reader's thread; one never needed
is dropped silently, as is a read-ahead the reader jumped away from or one still in flight at `close()` (which does
not wait for it; the thread is a daemon and ends after that GET).
Every GET is pinned to the object the job was split on: `VersionId` when the source names a version, else
`IfMatch=<etag>`. A 412 means the object was overwritten since: SourceChanged (permanent; a
retry would read the same new bytes). Other errors map like the whole-object fetcher's (s3_store.fetch_error).
"""

from __future__ import annotations

import io
import queue
import threading
import time
from collections import OrderedDict
from pathlib import PurePosixPath
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from video_ai.adapters.aws import AwsClients, error_code
from video_ai.adapters.s3_store import describe_location, fetch_error, head_source, source_location
from video_ai.domain.errors import FetchFailed, SourceChanged, VideoAIError
from video_ai.domain.models import S3Location, Source

DEFAULT_BLOCK_BYTES = 512 * 1024
DEFAULT_CACHE_BLOCKS = 48
DEFAULT_MAX_RUN = 16
_CHANGED_CODES = frozenset({"412", "PreconditionFailed"})
_UNSATISFIABLE_CODES = frozenset({"416", "InvalidRange"})
_CLOSED_POLL_S = 0.05  # how soon a reader waiting on a read-ahead notices the file was closed from another thread


class _ByteCount:
    """Bytes received by a file's GETs, added from the reader's thread and the read-ahead thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()  # held only for the addition: never while waiting on anything
        self.total = 0

    def add(self, n: int) -> None:
        with self._lock:
            self.total += n


class _ReadAhead:
    """One background GET of blocks [first_block, first_block + count), and once `done`, its answer or its error."""

    __slots__ = ("abandoned", "content_range", "count", "data", "done", "error", "first", "first_block", "last",
                 "request", "run")

    def __init__(self, first_block: int, count: int, run: int, first: int, last: int, request: dict[str, str]) -> None:
        self.first_block = first_block
        self.count = count
        self.run = run  # the run length the doubling rule gave (before cuts), for the runs after this one
        self.first = first
        self.last = last
        self.request = request
        self.done = threading.Event()
        self.abandoned = False  # set by the reader: its bytes will not be used
        self.data: bytes | None = None
        self.content_range = ""
        self.error: Exception | None = None

    def covers(self, block_no: int) -> bool:
        return self.first_block <= block_no < self.first_block + self.count


def _read_ahead_worker(s3: Any, jobs: queue.SimpleQueue[_ReadAhead | None], fetched: _ByteCount) -> None:
    """A file's read-ahead thread: performs each GET it is handed and hands back the bytes or the error. It never
    takes the file's lock (the reader may hold it while waiting here) and holds no reference to the file (so a file
    dropped unclosed is still collected, and its close() ends this thread)."""
    while (job := jobs.get()) is not None:
        try:
            if job.abandoned:
                continue  # jumped away from (or closed) before its GET started
            response = s3.get_object(**job.request)
            data: bytes = response["Body"].read()
            fetched.add(len(data))
            job.content_range = str(response.get("ContentRange", ""))
            job.data = None if job.abandoned else data
        except Exception as err:  # handed to the reader, which makes its own GET if it needs these blocks
            job.error = err
        finally:
            job.done.set()


class S3RangeFile(io.RawIOBase):
    """A read-only, seekable view of one S3 object version, read by aligned byte ranges through an LRU cache, the
    next run of an in-order read fetched ahead on a background thread (unless `read_ahead=False`).

    Counters: `requests` and `bytes_fetched` count every GET made, read-ahead GETs included (a read-ahead dropped
    unused counts too; one still in flight at `close()` adds its bytes when it completes); `fetch_seconds` is the time
    the reader's thread spent waiting on S3 (its own GETs, and read-ahead GETs it had to wait for), so a read-ahead
    that arrived in time costs it nothing."""

    def __init__(
        self,
        s3: Any,
        location: S3Location,
        etag: str | None,
        *,
        block_size: int = DEFAULT_BLOCK_BYTES,
        cache_blocks: int = DEFAULT_CACHE_BLOCKS,
        max_run: int = DEFAULT_MAX_RUN,
        read_ahead: bool = True,
    ) -> None:
        super().__init__()
        # Set before any check: io's finalizer calls close(), which uses them, even when __init__ raised.
        self._blocks: OrderedDict[int, bytes] = OrderedDict()
        self._ahead: _ReadAhead | None = None  # the read-ahead of the next run, while the reader may still want it
        self._stale: _ReadAhead | None = None  # one the reader jumped away from, while its GET may be in flight
        self._jobs: queue.SimpleQueue[_ReadAhead | None] | None = None  # to the read-ahead thread, once started
        if block_size < 1 or cache_blocks < 1 or max_run < 1:
            raise ValueError("block_size, cache_blocks and max_run must be at least 1")
        if etag is None and location.version is None:
            raise ValueError("a ranged read needs an ETag or a version to pin every GET to the same bytes")
        self._s3 = s3
        self.location = location
        self._pin: dict[str, str] = {"VersionId": location.version} if location.version else {"IfMatch": str(etag)}
        self.block_size = block_size
        self.cache_blocks = cache_blocks
        self.read_ahead = read_ahead
        # A run must fit in the cache, or it would evict its own start; with read-ahead, next to the run read ahead.
        self.max_run = max(1, min(max_run, cache_blocks // 2 if read_ahead else cache_blocks))
        self._run = 1
        self._last_block = -2
        self._size: int | None = None
        self._pos = 0
        # PyAV reads from whichever thread demuxes (the service's decode thread); one lock keeps the cache coherent.
        self._lock = threading.RLock()
        self._fetched = _ByteCount()
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
        """Drops the cache and any read-ahead without waiting for its GET (the read-ahead thread ends after it)."""
        for job in (self._ahead, self._stale):
            if job is not None:
                job.abandoned = True
        self._ahead = self._stale = None
        if self._jobs is not None:
            self._jobs.put(None)
            self._jobs = None
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
    def bytes_fetched(self) -> int:
        return self._fetched.total

    @property
    def cached_blocks(self) -> int:
        return len(self._blocks)

    @property
    def read_ahead_blocks(self) -> int:
        """Blocks being read ahead for the reader; with `cached_blocks`, never more than `cache_blocks`."""
        ahead = self._ahead
        return 0 if ahead is None else ahead.count

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
        ahead = self._ahead
        if ahead is not None and ahead.covers(block_no):
            # The reader reached the run read ahead: wait for its GET (often done by now), then read on ahead of it.
            self._ahead = None
            self._insert(ahead.first_block, self._collect(ahead))
            self._run = ahead.run
            self._start_read_ahead(ahead.first_block + ahead.count, ahead.count)
            return self._blocks[block_no]
        self._abandon_read_ahead()
        self._run = min(2 * self._run, self.max_run) if in_order else 1
        count = max(1, self._cut(block_no, self._run))  # past `readahead_end`, reads still work one block at a time
        first = block_no * self.block_size
        self._insert(block_no, self._get(first, first + count * self.block_size - 1))
        if in_order:
            self._start_read_ahead(block_no + count, count)
        return self._blocks[block_no]

    def _cut(self, first_block: int, count: int) -> int:
        """`count` blocks from `first_block`, cut at the object's end (once known) and at the block holding
        `readahead_end`; below 1 when `first_block` is past either."""
        if self._size is not None:
            count = min(count, -(-self._size // self.block_size) - first_block)
        if self.readahead_end is not None:
            count = min(count, self.readahead_end // self.block_size + 1 - first_block)
        return count

    def _insert(self, block_no: int, data_bytes: bytes) -> None:
        data = memoryview(data_bytes)
        # One bytes object per block (a copy), so evicting a block frees it whatever else of its GET stays cached.
        for i in range(max(1, -(-len(data) // self.block_size))):
            self._blocks[block_no + i] = bytes(data[i * self.block_size : (i + 1) * self.block_size])
            self._blocks.move_to_end(block_no + i)
        while len(self._blocks) > self.cache_blocks:
            self._blocks.popitem(last=False)

    # -- read-ahead ------------------------------------------------------------------------------------------------
    def _start_read_ahead(self, first_block: int, current: int) -> None:
        """Start the GET of the run after the one just read (blocks from `first_block`; `current` blocks in the run
        just read), if reading ahead is on and there is something to read, room for it and no GET still in flight."""
        if not self.read_ahead or self.closed or self._size is None or self._ahead is not None:
            return
        if self._stale is not None:
            if not self._stale.done.is_set():
                return  # at most one read-ahead GET in flight per file
            self._stale = None
        run = min(2 * self._run, self.max_run)
        count = min(self._cut(first_block, run), self.cache_blocks - current)
        if count < 1:
            return
        # Room for it next to the run just read (the most recently used blocks): blocks read ahead count in the cache.
        while len(self._blocks) + count > self.cache_blocks:
            self._blocks.popitem(last=False)
        first = first_block * self.block_size
        last = first + count * self.block_size - 1  # as the reader's own GET of these blocks would ask
        job = _ReadAhead(first_block, count, run, first, last, self._request(first, last))
        if self._jobs is None:
            self._jobs = queue.SimpleQueue()
            threading.Thread(target=_read_ahead_worker, args=(self._s3, self._jobs, self._fetched),
                             name=f"s3-read-ahead:{self.name}", daemon=True).start()
        self.requests += 1
        self._ahead = job
        self._jobs.put(job)

    def _collect(self, job: _ReadAhead) -> bytes:
        """The bytes of a read-ahead the reader needs, waited for; if its GET failed (or its answer does not check
        out), the reader's own GET of the same range, so any error is raised here, in the reader's thread."""
        started = time.perf_counter()
        try:
            while not job.done.wait(_CLOSED_POLL_S):
                self._check_open()  # closed from another thread: stop waiting
        finally:
            self.fetch_seconds += time.perf_counter() - started
        data, job.data = job.data, None
        if job.error is None and data is not None:
            try:
                return self._checked(data, job.content_range, job.first, job.last)
            except VideoAIError:
                pass  # retried below: the reader's own GET says what is wrong, if it still is
        return self._get(job.first, job.last)

    def _abandon_read_ahead(self) -> None:
        """The reader went elsewhere: drop the read-ahead (its bytes if they came); do not wait for its GET."""
        job, self._ahead = self._ahead, None
        if job is None:
            return
        job.abandoned = True
        job.data = None
        if not job.done.is_set():
            self._stale = job

    # -- GETs ------------------------------------------------------------------------------------------------------
    def _request(self, first: int, last: int) -> dict[str, str]:
        return {"Bucket": self.location.bucket, "Key": self.location.key, "Range": f"bytes={first}-{last}",
                **self._pin}

    def _get(self, first: int, last: int) -> bytes:
        where = describe_location(self.location)
        started = time.perf_counter()
        self.requests += 1
        try:
            response = self._s3.get_object(**self._request(first, last))
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
        self._fetched.add(len(data))
        return self._checked(data, str(response.get("ContentRange", "")), first, last)

    def _checked(self, data: bytes, content_range: str, first: int, last: int) -> bytes:
        """A ranged GET's bytes, once its Content-Range says they are bytes first..last of the pinned object."""
        where = describe_location(self.location)
        total = _total_size(content_range)
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
        read_ahead: bool = True,
    ) -> None:
        self._clients = clients
        self.block_size = block_size
        self.cache_blocks = cache_blocks
        self.max_run = max_run
        self.read_ahead = read_ahead

    def pin(self, source: Source) -> str:
        _, head = head_source(self._clients, source)
        return str(head["ETag"])

    def open(self, source: Source, etag: str | None) -> S3RangeFile:
        return S3RangeFile(self._clients.s3, source_location(source), etag, block_size=self.block_size,
                           cache_blocks=self.cache_blocks, max_run=self.max_run, read_ahead=self.read_ahead)
