"""PyAV frame source: one linear decode pass, exact PTS sampling, shot detection in the same pass (DESIGN §5).

Rules this reader keeps (the lead's analyze service and the tests rely on them):

* Time (DESIGN §3, "the clock"). `pts_s = frame.pts * time_base`: the frame's presentation time on the file's own
  timeline (edit lists applied as FFmpeg applies them), which is what a browser's `<video>.currentTime` reads while
  the frame is on screen, also when the first frame is not at zero (measured in Chromium on MP4 and WebM whose
  first frame is at 2 s: currentTime 2.0 shows frame 0, 2.5 frame 12 of 25 fps). Only a negative start is moved to
  zero (the timeline starts at 0). Exact on variable-frame-rate video; never derived from the container's fps or a
  frame count. Sample times t_k = k / fps are on the same clock, and `info.duration_s` is where the video ends on
  it (like `<video>.duration`: a clip whose frames run from 2 s to 5.2 s lasts 5.2 s).
* AVI. The container has no presentation times: a chunk's position (its dts) is all there is, and the times FFmpeg
  puts on decoded frames are out of order with B-frames (and a frame late without). So in AVI every non-empty chunk
  is a slot, and the frames the decoder puts out (in presentation order) take the slots in order: frame k is shown
  at slot k. This is right for B-frames, packed B-frames (the N-VOP chunk keeps the packed frame's slot), a "doubled"
  header (an empty filler chunk after each frame: the slots are 2 ticks of 1/50 s apart, i.e. 25 fps) and files
  without an index. NONREF skipping is off (it needs presentation times before decoding) and keyframes mode decodes
  every frame and keeps the keyframes (an open-GOP keyframe is shown after the B-frames decoded after it). The
  header's frame count (chunks, fillers included) is not compared with the frames seen. A stream with no times at
  all (raw H.264/HEVC/MPEG-4 elementary streams) is timed by output order at the stream's declared (or FFmpeg's
  guessed) rate.
* Measured, not declared. After a complete pass `frame_count` is the frames counted, `vfr` the measured answer and
  `fps` (frames - 1) / (last time - first time) when the header's rate is more than 1% off (an AVI that says 50).
* Sampling (`fps` mode). Sample times are t_k = k / fps (k = 0, 1, ...) on that clock. The frame
  chosen for t_k is the first frame of the stream (in presentation order, counting every frame, decoded or not)
  whose pts >= t_k. A frame is emitted once even when it is the pick for several t_k (gaps longer than 1/fps in
  VFR video). `max_frames` keeps the first N samples and ends the pass there.
* NONREF skipping. In `fps` mode on H.264/HEVC non-reference frames are skipped (`skip_frame="NONREF"`) except
  where one may be the pick: before each packet goes to the decoder we know the largest already-demuxed pts L below
  the packet's pts p; the true predecessor of p is >= L, so if no t_k lies in (L, p] the frame cannot be a pick
  and may be skipped. The picks are therefore the same frames a full decode gives.
* frame_number. The 0-based ordinal of the frame in presentation order among all frames of the stream, skipped ones
  included: every demuxed packet's pts is counted, so it is the true ordinal and the same on every run. Files whose
  packets carry no pts fall back to counting decoded frames (and are decoded without skipping).
* Shots. PySceneDetect's ContentDetector score and SUPPRESS rule (so a cut is reported on the frame where it happens;
  `min_shot_s` from settings), checked coarse to fine by `shot_cuts.CutDetector`: every `shot_stride`-th decoded frame
  is scored against the previous checkpoint and the frames between are scored only when that could hide a cut; frames
  wait in that window until it is judged, so a sampled frame's shot is known. The detector sees a 160 px wide
  box-averaged copy (built from the YUV planes with OpenCV: swscale to 160 px cost more than the decode; point
  sampling aliased fine textures into false cuts). In `fps` mode that is every reference frame (NONREF-skipped frames
  are not seen; encoders put a keyframe at a cut, so a cut lands at most a few frames late); in `shots` mode every
  frame is decoded; in `keyframes` mode only keyframes are seen (each one scored), so shots are coarse. Shot `end_s`
  is exclusive (the next shot's start or the end of the video), `end_frame` is inclusive.
* The frame that stands for a shot (`shots` mode). Not the first (a fade-in from black gave an all-black frame): the
  most informative of every CANDIDATE_EVERY-th frame (counted from the cut) in the shot's first REPRESENTATIVE_S
  seconds, by the edge energy of a ~160 px luma damped for dark and flat pictures (`_informative`, ~0.25 ms at
  720p), so black, fading, blurred and mid-dissolve frames lose to a sharp, lit one. The best so far is held (one
  decoded frame) and emitted when the next shot starts or the pass ends. A segment reads up to REPRESENTATIVE_S past
  its end (stopping at a cut) so its last shot gets the frame the full pass chooses.
* Geometry. `info.width/height` are the coded size; `info.rotation` is the clockwise angle (0/90/180/270) a player
  turns the picture (like the mp4 `rotate` tag), read from the display matrix. Sampled images are upright:
  `image_size=(w, h)` is the upright size; swscale scales and converts to RGB in one call, numpy rotates.
  `detail_short_side` adds `detail`, an upright copy that keeps the coded aspect with that short side (for crops);
  `image` is then resized from it (when it is no larger) instead of a second swscale pass over the frame.
  `luma_short_side` adds `luma`, an upright grey copy at the DISPLAY aspect (the coded size widened or heightened by
  the sample aspect ratio of anamorphic video), its short side that or the source's if smaller (never upscaled): OCR
  reads it, and its boxes, as fractions of it, are those of the picture a player shows. Grey, because swscale gives
  it for the price of a plane copy (~0.3 ms at 720p, vs ~2 ms for RGB) and it is kept for every sampled frame.
* `info.vfr`: at `open()` a guess from metadata (average rate vs. the stream's base rate); after a full pass, the
  measured answer (largest/smallest PTS gap > 1.1). `frame_count` and (if unknown) `duration_s` are filled then too.
* Damage. An error before any frame -> CorruptMedia. An error after frames were produced stops the pass there:
  `reader.truncated` becomes True and a warning is logged and listed in `reader.warnings`. A file that simply ends
  before its declared frame count / duration (a cut-off download) is reported the same way.
* Watchdog. A pass (open included) longer than `limits.decode_timeout_s` on the injected clock -> DecodeTimeout.
* Segments (`start_s`/`end_s`, for long videos split across workers): seek to the last keyframe strictly before
  `start_s - min_shot_s`, decode from there, own the frames with start_s <= pts < end_s. The sampling rule and
  ordinals are the same as in a full pass (the seek keyframe's ordinal comes from the MP4/MOV sample index; other
  containers raise NotImplementedError), so segments compose to exactly the full pass's frames. `shots` of a
  segment lists only
  the shots that start inside it at a detected cut (the detector also sees the pre-roll from the keyframe, so a cut
  right at start_s is found); the last one ends where the next segment's first decoded frame is. Frames before
  the segment's first cut continue a shot from an earlier segment: their `shot` is -1 until the merge renumbers.
  The pre-roll is at least `min_shot_s` long because the detector's suppression clock starts at its first frame:
  starting at a keyframe just before a cut would suppress that cut where the full pass keeps it. From `min_shot_s`
  back, the clock agrees with the full pass's by start_s unless cuts closer than `min_shot_s` chain across that
  whole stretch (tests/integration/test_frames.py::test_a_cut_just_after_a_keyframe_before_a_segment_is_found).
* Empty (0-byte) file -> UnsupportedMedia (nothing identifies it as a video); a video stream without a decodable
  frame -> EmptyVideo.
* Input. A local path, or an open MediaFile (a seekable binary file object, e.g. S3RangeFile's ranged S3 reads) that
  the reader closes; every rule above holds for both (tests/integration/test_frames_file_object.py). Errors the file
  raises come out as they are (a failed read is that error, not a truncated pass). A segment tells a file that has a
  `readahead_end` where its bytes end (MP4 index: the first packet 2 s past `end_s`) so it does not prefetch beyond.
"""

from __future__ import annotations

import bisect
import heapq
import io
import itertools
import logging
import math
import time
from collections import deque
from collections.abc import Generator, Iterator
from fractions import Fraction
from os import PathLike
from pathlib import Path, PurePath
from typing import Any

import av
import cv2
import numpy as np

from video_ai.adapters.shot_cuts import CutDetector
from video_ai.domain.errors import (
    CorruptMedia,
    DecodeTimeout,
    EmptyVideo,
    NoVideoStream,
    UnsupportedMedia,
    VideoNotFound,
)
from video_ai.domain.models import SampledFrame, Sampling, Shot, VideoInfo
from video_ai.domain.ports import Clock, MediaFile
from video_ai.settings import LimitsSettings, SamplingSettings

log = logging.getLogger(__name__)
_READAHEAD_MARGIN_S = Fraction(2)

DETECTOR_WIDTH = 160  # ContentDetector compares mean HSV deltas; 160 px keeps it cheap and finds the same cuts
# Codecs whose reference structure keeps every 2nd frame or so: skipping the rest still lets the shot detector see
# frames close together. MPEG-4 Part 2 with B-frames keeps only every 3rd, and fast motion then looks like cuts.
NONREF_CODECS = frozenset({"h264", "hevc"})
_RECENT_PTS = 64  # > H.264's 16-frame reorder limit: enough history to know each packet's predecessor
# Shots mode: a shot is represented by its most informative frame among every CANDIDATE_EVERY-th frame (counted from
# the cut) of its first REPRESENTATIVE_S seconds: past a fade-in from black, a focus pull or a dissolve, and known
# a few seconds after the cut (a segment reads that far past its end for its last shot, so splits agree).
REPRESENTATIVE_S = Fraction(3)
CANDIDATE_EVERY = 3
REORDERING_CODECS = frozenset({"h264", "hevc", "mpeg4", "mpeg2video", "mpeg1video", "vc1"})  # may have B-frames
PTS_SCAN = 64
RAW_FORMATS = frozenset({"h264", "hevc", "m4v", "mpegvideo", "h263", "cavsvideo", "vc1"})  # FFmpeg demuxer names


class _SystemClock:
    def monotonic(self) -> float:
        return time.monotonic()


class PyAVFrameSource:
    """FrameSource port over PyAV: `open()` probes the file and returns a single-pass PyAVVideoReader."""

    def __init__(
        self,
        settings: SamplingSettings | None = None,
        limits: LimitsSettings | None = None,
        clock: Clock | None = None,
        *,
        skip_nonref: bool = True,
        threads: bool = True,
    ) -> None:
        self.settings = settings or SamplingSettings()
        self.limits = limits or LimitsSettings()
        self.clock: Clock = clock or _SystemClock()
        self.skip_nonref = skip_nonref
        self.threads = threads

    def open(
        self,
        path: Path | MediaFile,
        sampling: Sampling,
        image_size: tuple[int, int] | None = None,
        thumbnail_width: int | None = None,
        start_s: float | None = None,
        end_s: float | None = None,
        detail_short_side: int | None = None,
        luma_short_side: int | None = None,
    ) -> PyAVVideoReader:
        """Probe `path` (a local file or an open MediaFile, which the reader closes) and prepare a pass. Raises
        UnsupportedMedia / NoVideoStream / CorruptMedia / EmptyVideo, and whatever the MediaFile's reads raise."""
        return PyAVVideoReader(
            Path(path) if isinstance(path, str | PathLike) else path, sampling, self.settings, self.limits, self.clock,
            image_size=image_size, thumbnail_width=thumbnail_width,
            skip_nonref=self.skip_nonref, threads=self.threads, start_s=start_s, end_s=end_s,
            detail_short_side=detail_short_side, luma_short_side=luma_short_side,
        )


def grid_point_in(lo: Fraction | None, hi: Fraction, fps: Fraction) -> bool:
    """Whether a sample time k / fps (k >= 0) lies in (lo, hi]: the frame at `hi` after one at `lo` is a pick."""
    k = math.floor(hi * fps)  # the largest k with k / fps <= hi
    if k < 0:
        return False
    return lo is None or lo < 0 or Fraction(k) / fps > lo


def _shrink(plane: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Box-average a plane down to `size`: exact 2x halvings (bilinear at 0.5 = 2x2 mean), then INTER_AREA.

    About 2.5x cheaper than one INTER_AREA resize from full size, with the same anti-aliasing.
    """
    while plane.shape[1] >= 2 * size[0] and plane.shape[0] >= 2 * size[1]:
        plane = cv2.resize(plane, (plane.shape[1] // 2, plane.shape[0] // 2), interpolation=cv2.INTER_LINEAR)
    if (plane.shape[1], plane.shape[0]) != size:
        plane = cv2.resize(plane, size, interpolation=cv2.INTER_AREA)
    return plane


def _container_name(fmt_name: str, file_name: str) -> str:
    names = fmt_name.split(",")
    ext = PurePath(file_name).suffix.lower().lstrip(".")
    return ext if ext in names else names[0]


def _open_file_container(file: MediaFile) -> Any:
    """av.open on a file object: PyAV reads and seeks it (FFmpeg is never told the size, which MP4 does not need).
    Errors the file raises (a domain error from a ranged read) come out of PyAV as they are."""
    if file.seek(0, io.SEEK_END) == 0:
        raise UnsupportedMedia(f"{file.name}: the file is empty")
    file.seek(0)
    try:
        return av.open(file, metadata_errors="ignore")
    except (av.error.FFmpegError, OSError, ValueError) as err:
        raise UnsupportedMedia(f"{file.name}: not a video container we can read ({err})") from None


def _clockwise(ccw_degrees: int | float) -> int:
    return round(-float(ccw_degrees) / 90.0) * 90 % 360


class _Decoded:
    """A decoded frame with its true ordinal and stream-relative time."""

    __slots__ = ("frame", "number", "pred_t", "t")

    def __init__(self, frame: av.VideoFrame, number: int, t: Fraction, pred_t: Fraction | None) -> None:
        self.frame = frame
        self.number = number
        self.t = t
        self.pred_t = pred_t


# 8-bit pixel formats whose first plane is the luma at full resolution.
_PLANAR_YUV8 = frozenset({"yuv420p", "yuvj420p", "yuv422p", "yuvj422p", "yuv444p", "yuvj444p", "nv12", "nv21"})
_VIDEO_TO_FULL_RANGE = np.clip((np.arange(256) - 16) * 255 / 219 + 0.5, 0, 255).astype(np.uint8)


class PyAVVideoReader:
    """One linear decode pass over a file: metadata first, then sampled frames; shots after the pass."""

    def __init__(
        self,
        path: Path | MediaFile,
        sampling: Sampling,
        settings: SamplingSettings,
        limits: LimitsSettings,
        clock: Clock,
        *,
        image_size: tuple[int, int] | None,
        thumbnail_width: int | None,
        skip_nonref: bool,
        threads: bool,
        start_s: float | None = None,
        end_s: float | None = None,
        detail_short_side: int | None = None,
        luma_short_side: int | None = None,
    ) -> None:
        if start_s is not None and end_s is not None and end_s <= start_s:
            raise ValueError("end_s must be after start_s")
        self.start_s = Fraction(str(start_s)) if start_s else None
        self.end_s = Fraction(str(end_s)) if end_s is not None else None
        self.path = path if isinstance(path, Path) else None
        self._file = None if isinstance(path, Path) else path  # PyAV does not close a file object: close() does
        self.name = path.name if isinstance(path, Path) else str(path.name)
        self.sampling = sampling
        self.settings = settings
        self.limits = limits
        self.clock = clock
        self.image_size = image_size
        self.thumbnail_width = thumbnail_width
        self.detail_short_side = detail_short_side
        self.luma_short_side = luma_short_side
        self.truncated = False
        self.warnings: list[str] = []
        self.frames_decoded = 0
        self.frames_weighed = 0  # shots mode: frames scored as a shot's representative
        self._shots: list[Shot] = []
        self._iterated = False
        self._complete = False
        self._stop: tuple[Fraction, int] | None = None  # first frame past `end_s`
        self._started = clock.monotonic()
        try:
            self._container = self._open_container(path)
        except BaseException:
            if self._file is not None:
                self._file.close()
            raise
        try:
            self._probe(skip_nonref, threads)
        except BaseException:
            self.close()
            raise

    # -- opening -------------------------------------------------------------------------------------------------
    @staticmethod
    def _open_container(path: Path | MediaFile) -> Any:
        if not isinstance(path, Path):
            return _open_file_container(path)
        if not path.exists():
            raise VideoNotFound(f"no such file: {path}")
        if path.is_file() and path.stat().st_size == 0:
            raise UnsupportedMedia(f"{path.name}: the file is empty")
        try:
            return av.open(str(path), metadata_errors="ignore")
        except FileNotFoundError:
            raise VideoNotFound(f"no such file: {path}") from None
        except (av.error.FFmpegError, OSError, ValueError) as err:
            raise UnsupportedMedia(f"{path.name}: not a video container we can read ({err})") from None

    def _probe(self, skip_nonref: bool, threads: bool) -> None:
        container = self._container
        if not container.streams.video:
            raise NoVideoStream(f"{self.name}: the file has no video stream")
        stream = container.streams.video[0]
        self._stream = stream
        ctx = stream.codec_context
        width, height = int(ctx.width or 0), int(ctx.height or 0)
        if width * height > self.limits.max_pixels:
            raise UnsupportedMedia(
                f"{self.name}: frame size {width}x{height} ({width * height} pixels) exceeds the limit of "
                f"{self.limits.max_pixels} pixels"
            )
        if threads:
            ctx.thread_type = "AUTO"
        self._time_base: Fraction = stream.time_base or Fraction(1, 90000)
        # The clock's origin: zero, so times are the file's own (a browser's currentTime); a negative start is zero.
        self._start_pts: int | None = min(0, stream.start_time or 0)
        # AVI stores no presentation time: a chunk's position is its only timestamp, so frames are timed by slots.
        self._slots = container.format.name == "avi"
        # Keyframes mode decodes every frame where a keyframe's time depends on the frames around it: AVI, and raw
        # elementary streams, which carry no time at all (frames are timed by output order).
        self._all_for_keys = self._slots or container.format.name in RAW_FORMATS
        if self._slots:
            self._start_pts = 0  # the first chunk is at zero, and so is the first frame shown
        self._mode = self.sampling.mode
        # A muxer that wrote decode order as presentation times (pts = dts, e.g. an AVI remuxed as is): B-frames would
        # come out of the decoder with times that are not theirs. The pts are still the right set: slots, by pts.
        self._slots_by_pts = not self._slots and self._pts_in_decode_order(container, stream)
        self._slots = self._slots or self._slots_by_pts
        # Skipping needs each packet's presentation time before decoding it, which AVI does not have.
        self._skip_nonref = (skip_nonref and self._mode == "fps" and ctx.name in NONREF_CODECS
                             and not self._slots)
        if self._mode == "keyframes" and not self._all_for_keys:
            # (AVI decodes every frame: a keyframe's time is its place among the frames shown, not its chunk's.)
            ctx.skip_frame = "NONKEY"
        self._fps_q = Fraction(str(self.sampling.fps)) if self.sampling.mode == "fps" else Fraction(1)
        avg = stream.average_rate or stream.guessed_rate
        self._avg_fps = float(avg) if avg else 25.0
        base = stream.base_rate
        vfr_guess = bool(avg and base and abs(float(base) / float(avg) - 1.0) > 0.01)
        duration_s = 0.0
        if stream.duration is not None and stream.duration > 0:
            # Where the stream ends on the clock (its start plus its length), as Matroska's duration already is.
            end = stream.duration + (stream.start_time or 0) - (self._start_pts or 0)
            duration_s = float(end * self._time_base)
        elif container.duration is not None and container.duration > 0:
            duration_s = container.duration / av.time_base
        self._duration_known = duration_s > 0
        detector_w = min(DETECTOR_WIDTH, width or DETECTOR_WIDTH)
        self._detector_size = (max(2, detector_w // 2 * 2), max(2, round(height * detector_w / max(width, 1)) // 2 * 2))
        self._cuts: CutDetector[av.VideoFrame] = CutDetector(
            self.settings.shot_threshold,
            Fraction(str(self.settings.min_shot_s)),
            self._small_hsv,
            stride=1 if self._mode == "keyframes" else self.settings.shot_stride,
        )
        self._first_ordinal = self._seek_to_segment() if self.start_s is not None else 0
        self._limit_readahead()
        self._decoded = self._decode_all()
        first = self._next_decoded()
        if first is None:
            raise EmptyVideo(f"{self.name}: the video stream has no decodable frame")
        self._first: _Decoded | None = first
        self._first_t: Fraction | None = first.t
        rotation = _clockwise(first.frame.rotation or 0)
        self._rotation = rotation
        sar = stream.sample_aspect_ratio or ctx.sample_aspect_ratio
        self._sar = float(sar) if sar is not None and sar.numerator > 0 and sar.denominator > 0 else 1.0
        frames = int(stream.frames or 0) or None
        self._info = VideoInfo(
            container=_container_name(container.format.name, self.name),
            codec=ctx.name,
            width=width or first.frame.width,
            height=height or first.frame.height,
            rotation=rotation,
            fps=round(self._avg_fps, 3) if avg else None,
            vfr=vfr_guess,
            duration_s=round(duration_s, 6),
            frame_count=frames,
        )
        if self._duration_known and duration_s > self.limits.max_duration_s:
            raise UnsupportedMedia(
                f"{self.name}: duration {duration_s:.0f} s exceeds the limit of {self.limits.max_duration_s:.0f} s"
            )

    def _pts_in_decode_order(self, container: Any, stream: Any) -> bool:
        """Whether the first packets' pts rise in decode order although the codec can reorder frames (B-frames).

        Where a stream really has no B-frames the slots give every frame its own pts, so the only cost is NONREF
        skipping (little use without B-frames). MP4/MOV (a sample table with composition offsets), raw streams (no
        times, no seeking), keyframes mode (kept fast: there a keyframe that opens a GOP whose leading B-frames come
        after it in decode order keeps its decode-order time and number, up to the reorder depth early) and segments
        (MP4 only) are left alone. Reads up to PTS_SCAN packets, then seeks back to the start."""
        names = set(container.format.name.split(","))
        if (self._mode == "keyframes" or self.start_s is not None or names & ({"mp4", "mov"} | RAW_FORMATS)
                or stream.codec_context.name not in REORDERING_CODECS):
            return False
        stamps: list[int] = []
        untimed = False  # a packet without pts (MPEG-PS times only some): the usual path, which handles that
        try:
            for packet in container.demux(stream):
                if packet.size:
                    if packet.pts is None:
                        untimed = True
                        break
                    stamps.append(packet.pts)
                    if len(stamps) >= PTS_SCAN:
                        break
        finally:
            try:
                container.seek(self._start_pts or 0, stream=stream, backward=True, any_frame=False)
            except av.error.FFmpegError as err:
                if stamps:  # (no video packet at all: the pass finds no frame and says so)
                    raise CorruptMedia(f"{self.name}: cannot go back to the start of the video ({err})") from None
        return not untimed and len(stamps) > 2 and all(a < b for a, b in itertools.pairwise(stamps))

    def _seek_to_segment(self) -> int:
        """Seek to the last keyframe strictly before `start_s - min_shot_s`; return that keyframe's true ordinal.

        The ordinal comes from the container's sample index (decode order; in a closed GOP the frames before a
        keyframe in decode order are exactly those before it in presentation order), so it needs a complete index:
        MP4/MOV. Other containers raise NotImplementedError.
        """
        stream = self._stream
        entries = stream.index_entries
        total = int(stream.frames or 0)
        if entries is None or total == 0 or len(entries) != total or self._slots:
            raise NotImplementedError(f"{self.name}: segments need a complete sample index (MP4/MOV)")
        self._index_dts = [int(e.timestamp) for e in entries]
        if self._start_pts is None or self.start_s is None:
            raise NotImplementedError(f"{self.name}: segments need a known stream start time")
        preroll_from = max(Fraction(0), self.start_s - Fraction(str(self.settings.min_shot_s)))
        target = self._start_pts + max(0, math.ceil(preroll_from / self._time_base) - 1)
        self._container.seek(target, stream=stream, backward=True, any_frame=False)
        return -1  # resolved from the first packet's dts in _decode_all

    def _limit_readahead(self) -> None:
        """Tell a file object that reads ahead (S3RangeFile) where a segment's bytes end: the position of the first
        packet decoded `_READAHEAD_MARGIN_S` past `end_s` (MP4 index; audio interleaved before it is included). Only
        prefetching stops there; reads past it still work, so a margin too small costs requests, never frames."""
        if self._file is None or self.end_s is None or not hasattr(self._file, "readahead_end"):
            return
        entries = self._stream.index_entries
        if not entries or self._start_pts is None:
            return
        margin = _READAHEAD_MARGIN_S + (REPRESENTATIVE_S if self._mode == "shots" else 0)
        last_dts = self._start_pts + math.ceil((self.end_s + margin) / self._time_base)
        beyond = [int(e.pos) for e in entries if int(e.timestamp) > last_dts and int(e.pos) >= 0]
        if beyond:
            self._file.readahead_end = min(beyond)

    def _next_decoded(self) -> _Decoded | None:
        try:
            return next(self._decoded)
        except StopIteration:
            return None

    # -- the port -------------------------------------------------------------------------------------------------
    @property
    def info(self) -> VideoInfo:
        return self._info

    @property
    def segmentable(self) -> bool:
        """Whether `open(start_s=..., end_s=...)` works on this file: it needs a complete sample index (MP4/MOV)."""
        entries = self._stream.index_entries
        total = int(self._stream.frames or 0)
        return (entries is not None and total > 0 and len(entries) == total and self._start_pts is not None
                and not self._slots)

    @property
    def shots(self) -> list[Shot]:
        """Complete once iteration has finished (covers the decoded part if the pass stopped early)."""
        return list(self._shots)

    @property
    def frames_scored(self) -> int:
        """How many decoded frames the shot detector made its small copy of (its cost; see `shot_stride`)."""
        return self._cuts.frames_scored

    @property
    def complete(self) -> bool:
        """True when the pass reached the end of the stream."""
        return self._complete

    def close(self) -> None:
        decoded = getattr(self, "_decoded", None)  # absent when probing failed
        if decoded is not None:
            decoded.close()
        self._container.close()
        if self._file is not None:
            self._file.close()

    def __enter__(self) -> PyAVVideoReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __iter__(self) -> Iterator[SampledFrame]:
        if self._iterated:
            raise RuntimeError("a PyAVVideoReader makes one pass; open the file again for another")
        self._iterated = True
        return self._samples()

    # -- the pass -------------------------------------------------------------------------------------------------
    def _samples(self) -> Iterator[SampledFrame]:
        max_frames = self.sampling.max_frames
        shot_starts: list[tuple[Fraction, int]] = []
        emitted = 0
        last: _Decoded | None = None
        gaps: tuple[Fraction, Fraction] | None = None
        best: tuple[float, _Decoded, int] | None = None  # shots mode: the current shot's best frame so far
        frames = self._with_cuts()
        ended = False
        try:
            for item, cut in frames:
                if self.start_s is not None and item.t < self.start_s:
                    # Decoded from the keyframe before the segment: the previous segment owns it, but the detector
                    # saw it so that a cut right at start_s is found.
                    continue
                if self._stop is not None and item.t >= self._stop[0]:
                    # Past a segment's end (shots mode): only to finish choosing the last shot's frame, as the
                    # full pass does, up to the next cut.
                    if cut:
                        break
                    best = self._better(best, item, len(shot_starts) - 1, shot_starts)
                    continue
                if last is not None and item.pred_t is not None and (self._mode != "keyframes" or self._all_for_keys):
                    gap = item.t - item.pred_t
                    if gap > 0:
                        gaps = (min(gaps[0], gap), max(gaps[1], gap)) if gaps else (gap, gap)
                # A segment's first frame continues a shot from an earlier segment unless the detector sees a cut.
                new_shot = cut or (not shot_starts and self.start_s is None)
                if new_shot:
                    if best is not None:
                        yield self._convert(best[1], emitted, best[2])
                        emitted += 1
                        best = None
                        if max_frames is not None and emitted >= max_frames:
                            ended = True
                            break
                    shot_starts.append((item.t, item.number))
                last = item
                if self._mode == "shots":
                    best = self._better(best, item, len(shot_starts) - 1, shot_starts)
                    continue
                if not self._is_sample(item):
                    continue
                yield self._convert(item, emitted, len(shot_starts) - 1)
                emitted += 1
                if max_frames is not None and emitted >= max_frames:
                    ended = True
                    break
            if not ended:
                if best is not None:
                    yield self._convert(best[1], emitted, best[2])
                    emitted += 1
                if self._stop is not None:
                    self._complete = True  # the next segment owns the frame at _stop: shots end where it starts
                else:
                    if self.start_s is None and self.end_s is None:
                        self._check_short(last)
                    self._complete = not self.truncated
        finally:
            frames.close()
            self._finish(shot_starts, last, gaps)

    def _better(self, best: tuple[float, _Decoded, int] | None, item: _Decoded, shot: int,
                shot_starts: list[tuple[Fraction, int]]) -> tuple[float, _Decoded, int] | None:
        """Shots mode: the shot's representative so far, `item` weighed in if it is a candidate (DESIGN: the
        shot's most informative frame among every CANDIDATE_EVERY-th frame of its first REPRESENTATIVE_S)."""
        if not shot_starts:
            return best  # a segment's frames before its first cut belong to an earlier segment's shot
        start_t, start_number = shot_starts[-1]
        if item.t >= start_t + REPRESENTATIVE_S or (item.number - start_number) % CANDIDATE_EVERY:
            return best
        score = self._informative(item.frame)
        if best is None or score > best[0]:
            return (score, item, shot)
        return best

    def _informative(self, frame: av.VideoFrame) -> float:
        """How much a person would recognise: edge energy (the Laplacian's variance) of a ~160 px luma, damped for
        dark and flat frames. Black and fading frames score ~0; blur and the blend of a dissolve lower the edges."""
        if frame.format.name in ("yuv420p", "yuvj420p", "yuv422p", "yuv444p", "nv12"):
            plane = frame.planes[0]
            luma = np.frombuffer(memoryview(plane), np.uint8).reshape(-1, plane.line_size)
            small = _shrink(luma[: frame.height, : frame.width], self._detector_size)
        else:
            small = frame.to_ndarray(width=self._detector_size[0], height=self._detector_size[1], format="gray",
                                     interpolation="AREA")
        mean, std = cv2.meanStdDev(small)
        edges = float(cv2.Laplacian(small, cv2.CV_32F).var())
        self.frames_weighed += 1
        return edges * min(1.0, float(mean[0][0]) / 48.0) * min(1.0, float(std[0][0]) / 16.0)

    def _with_cuts(self) -> Generator[tuple[_Decoded, bool], None, None]:
        """The decoded frames up to the end (or `end_s`), each with whether the detector finds a cut on it.

        Frames are held in windows of the detector's stride and released once the window is judged, so a frame's
        shot is known when it is sampled.
        """
        window: list[_Decoded] = []
        stride = self._cuts.stride
        while True:
            item = self._first if self._first is not None else self._next_decoded()
            self._first = None
            end = item is None
            if item is not None and self.end_s is not None and item.t >= self.end_s:
                if self._stop is None:
                    self._stop = (item.t, item.number)
                if self._mode == "shots" and item.t < self.end_s + REPRESENTATIVE_S:
                    window.append(item)  # the last shot's frame is chosen from frames past the end too
                else:
                    end = True
            elif item is not None:
                window.append(item)
            if window and (end or len(window) >= stride):
                flags = self._cuts.cuts([(w.t, w.frame) for w in window])
                yield from zip(window, flags, strict=True)
                window = []
            if end:
                return

    def _is_sample(self, item: _Decoded) -> bool:
        """fps and keyframes modes (shots mode chooses each shot's frame in `_better`)."""
        if self._mode == "keyframes":
            return not self._all_for_keys or bool(item.frame.key_frame)
        return item.t >= 0 and grid_point_in(item.pred_t, item.t, self._fps_q)

    def _small_hsv(self, frame: av.VideoFrame) -> np.ndarray:
        """A ~160 px HSV copy for the detector: area-averaged YUV planes (several times cheaper than swscale)."""
        size = self._detector_size
        if frame.format.name in ("yuv420p", "yuvj420p"):
            h, w = frame.height, frame.width
            dims = ((h, w), ((h + 1) // 2, (w + 1) // 2), ((h + 1) // 2, (w + 1) // 2))
            y, u, v = (
                _shrink(np.frombuffer(memoryview(plane), np.uint8).reshape(-1, plane.line_size)[:ph, :pw], size)
                for plane, (ph, pw) in zip(frame.planes[:3], dims, strict=True)
            )
            # Area averaging matters: point sampling aliases fine textures into false cuts. Full-range YCrCb is
            # not the video's exact matrix; the detector only compares frames with each other.
            bgr = cv2.cvtColor(cv2.merge((y, v, u)), cv2.COLOR_YCrCb2BGR)
        else:
            bgr = frame.to_ndarray(width=size[0], height=size[1], format="bgr24", interpolation="AREA")
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2HSV)

    def _convert(self, item: _Decoded, index: int, shot: int) -> SampledFrame:
        frame = item.frame
        thumb = detail = None
        up_w, up_h = (frame.height, frame.width) if self._rotation in (90, 270) else (frame.width, frame.height)
        if self.detail_short_side:
            side = self.detail_short_side
            scale = side / min(up_w, up_h)
            detail = self._rgb(frame, (max(side, round(up_w * scale)), max(side, round(up_h * scale))))
        if detail is not None and self.image_size is not None and max(self.image_size) <= min(detail.shape[:2]):
            # From the detail copy, not the frame: a second swscale pass over a 720p frame costs ~2 ms, this ~0.2 ms
            # (area averaging either way; measured on cuts_720p_60s.mp4).
            image = cv2.resize(detail, self.image_size, interpolation=cv2.INTER_AREA)
        else:
            image = self._rgb(frame, self.image_size)
        if self.thumbnail_width:
            tw = max(2, self.thumbnail_width)
            thumb = self._rgb(frame, (tw, max(2, round(up_h * tw / up_w))))
        return SampledFrame(
            index=index, pts_s=float(item.t), frame_number=item.number, shot=shot, image=image,
            thumbnail=thumb, detail=detail, luma=self._luma(frame) if self.luma_short_side else None,
        )

    def _luma(self, frame: av.VideoFrame) -> np.ndarray:
        """Upright grey at the display aspect, short side at most `luma_short_side` (see the module docstring)."""
        aspect = self._sar
        # Widen or heighten, never drop pixels: a 720x576 PAL 16:9 frame becomes 1024x576.
        w, h = (frame.width * aspect, float(frame.height)) if aspect >= 1 else (float(frame.width),
                                                                               frame.height / aspect)
        short = min(w, h)
        scale = min(1.0, (self.luma_short_side or short) / short)
        size = (max(2, round(w * scale)), max(2, round(h * scale)))
        arr: np.ndarray
        if size == (frame.width, frame.height) and frame.format.name in _PLANAR_YUV8:
            # The Y plane is the grey picture: a copy (~0.05 ms at 720p) instead of swscale's conversion (~1.3 ms),
            # stretched from video range (16-235) to full range as swscale would.
            plane = frame.planes[0]
            y = np.frombuffer(memoryview(plane), np.uint8).reshape(plane.height, plane.line_size)[:, : plane.width]
            full = frame.format.name.startswith("yuvj") or frame.color_range == 2
            arr = np.ascontiguousarray(y) if full else cv2.LUT(y, _VIDEO_TO_FULL_RANGE)
        elif size == (frame.width, frame.height):
            arr = frame.to_ndarray(format="gray")
        else:
            arr = frame.to_ndarray(width=size[0], height=size[1], format="gray", interpolation="AREA")
        if self._rotation:
            arr = np.ascontiguousarray(np.rot90(arr, k=-self._rotation // 90))
        return arr

    def _rgb(self, frame: av.VideoFrame, size: tuple[int, int] | None) -> np.ndarray:
        """Upright RGB at `size` (upright width, height); swscale scales and converts in one go."""
        turned = self._rotation in (90, 270)
        arr: np.ndarray
        if size is None:
            arr = frame.to_ndarray(format="rgb24")
        else:
            w, h = (size[1], size[0]) if turned else size
            arr = frame.to_ndarray(width=w, height=h, format="rgb24", interpolation="AREA")
        if self._rotation:
            # np.rot90 turns counter-clockwise; the player turns clockwise by `rotation`.
            arr = np.ascontiguousarray(np.rot90(arr, k=-self._rotation // 90))
        return arr

    def _finish(
        self, shot_starts: list[tuple[Fraction, int]], last: _Decoded | None, gaps: tuple[Fraction, Fraction] | None
    ) -> None:
        if last is None:
            return
        frame_dur = Fraction(1) / Fraction(self._avg_fps).limit_denominator(1001)
        if self._slots:
            frame_dur = self._slot_step * self._time_base
        elif last.frame.duration:
            frame_dur = last.frame.duration * self._time_base
        end_t = last.t + frame_dur
        end_frame = self._ordinals_seen - 1 if self._complete or self.truncated else last.number
        if self._stop is not None:
            end_t, end_frame = self._stop[0], self._stop[1] - 1
        elif self.start_s is not None or self.end_s is not None:
            end_frame = last.number
        elif self._complete:
            end_t = max(end_t, Fraction(self._max_t) + frame_dur) if self._max_t is not None else end_t
            if not self._duration_known:
                self._info = self._info.model_copy(update={"duration_s": round(float(end_t), 6)})
            else:
                end_t = max(end_t, Fraction(self._info.duration_s))
            update: dict[str, Any] = {"frame_count": self._ordinals_seen}
            if gaps is not None and (self._mode != "keyframes" or self._all_for_keys):
                update["vfr"] = bool(gaps[1] > gaps[0] * Fraction(11, 10))
            measured = self._measured_fps(last)
            if measured is not None and (self._info.fps is None or abs(measured / self._info.fps - 1) > 0.01):
                # The header's rate is a claim (an AVI "doubled" file says 50 for 25): the frames decide.
                update["fps"] = round(measured, 3)
            self._info = self._info.model_copy(update=update)
        shots: list[Shot] = []
        for i, (start_t, start_frame) in enumerate(shot_starts):
            nxt = shot_starts[i + 1] if i + 1 < len(shot_starts) else None
            shots.append(
                Shot(
                    index=i,
                    start_s=round(float(start_t), 6),
                    end_s=round(float(nxt[0] if nxt else end_t), 6),
                    start_frame=start_frame,
                    end_frame=(nxt[1] - 1) if nxt else max(end_frame, start_frame),
                )
            )
        self._shots = shots

    def _measured_fps(self, last: _Decoded) -> float | None:
        """Frames per second over the whole pass: (frames - 1) / (time of the last frame - time of the first)."""
        span = max(last.t, self._max_t) if self._max_t is not None else last.t
        first = self._first_t
        if first is None or self._ordinals_seen < 2 or span <= first:
            return None
        return float((self._ordinals_seen - 1) / (span - first))

    def _check_short(self, last: _Decoded | None) -> None:
        """A file that ends well before its declared length was cut off (an interrupted download)."""
        if last is None or self.truncated:
            return
        # An AVI header counts chunks, fillers included (twice the frames of a "doubled" file): only time tells.
        declared = None if self._slots else self._info.frame_count
        short_frames = declared is not None and self._ordinals_seen < declared
        slack = max(1.0, 0.02 * self._info.duration_s)
        reached = last.t
        if self._max_pts is not None and self._start_pts is not None:
            reached = max(reached, (self._max_pts - self._start_pts) * self._time_base)
        short_time = self._duration_known and float(reached) < self._info.duration_s - slack
        if short_frames or short_time:
            self.truncated = True
            msg = (
                f"{self.name}: the file ends early: {self._ordinals_seen} frames up to {float(reached):.3f} s of "
                f"{declared if declared is not None else '?'} frames / {self._info.duration_s:.3f} s declared"
            )
            self.warnings.append(msg)
            log.warning(msg)

    def _check_watchdog(self) -> None:
        elapsed = self.clock.monotonic() - self._started
        if elapsed > self.limits.decode_timeout_s:
            raise DecodeTimeout(
                f"{self.name}: decoding took longer than {self.limits.decode_timeout_s:.0f} s; stopped"
            )

    def _decode_all(self) -> Generator[_Decoded, None, None]:
        """Demux and decode linearly; yield decoded frames with their true ordinal and predecessor time."""
        stream = self._stream
        ctx = stream.codec_context
        tb = self._time_base
        pending: list[int] = []  # demuxed pts not yet accounted for (min-heap)
        recent: deque[int] = deque(maxlen=_RECENT_PTS)
        recent_sorted: list[int] = []
        ordinal = self._first_ordinal
        prev_pts: int | None = None  # largest pts accounted for so far (decoded or skipped)
        packets_have_pts = True
        self._ordinals_seen = 0
        self._max_t: Fraction | None = None
        self._max_pts: int | None = None  # the latest pts demuxed, decoded or not
        produced = 0
        slots = self._slots
        slots_by_pts = self._slots_by_pts
        keyframes_only = self._mode == "keyframes" and not self._all_for_keys
        last_slot: int | None = None
        self._slot_step = 1
        demux = self._container.demux(stream)
        while True:
            self._check_watchdog()
            try:
                packet = next(demux)
            except StopIteration:
                break
            except av.error.FFmpegError as err:
                self._damaged(err, produced)
                break
            if ordinal < 0 and packet.size:
                ordinal = self._ordinal_of_packet(packet)
            stamp = packet.dts if slots and not slots_by_pts else packet.pts
            if stamp is not None and packet.size:
                heapq.heappush(pending, stamp)
                if self._max_pts is None or stamp > self._max_pts:
                    self._max_pts = stamp
                if slots:
                    # A chunk's slot is its dts; the frames the decoder puts out, in presentation order, take the
                    # slots in order (an empty chunk, a writer's filler for a doubled rate, takes none).
                    if last_slot is not None and stamp > last_slot:
                        self._slot_step = stamp - last_slot
                    last_slot = stamp
                if len(recent) == recent.maxlen:
                    old = recent[0]
                    del recent_sorted[bisect.bisect_left(recent_sorted, old)]
                lower = recent_sorted[bisect.bisect_left(recent_sorted, stamp) - 1] if recent_sorted else None
                if lower is not None and lower >= stamp:
                    lower = None
                recent.append(stamp)
                bisect.insort(recent_sorted, stamp)
                if self._skip_nonref:
                    ctx.skip_frame = "NONREF" if self._skippable(lower, stamp) else "DEFAULT"
            elif packet.size:
                packets_have_pts = False
                if self._skip_nonref:
                    ctx.skip_frame = "DEFAULT"
            if keyframes_only and packet.size and not packet.is_keyframe:
                continue  # never reaches the decoder: this is what makes keyframe mode fast
            try:
                frames = packet.decode()
            except av.error.FFmpegError as err:
                self._damaged(err, produced)
                break
            for frame in frames:
                pts = frame.pts
                if slots:
                    pts = pending[0] if pending else self._next_slot(prev_pts)
                elif pts is None:
                    # No time at all (a raw H.264/HEVC/MPEG-4 stream): frames come out in presentation order, one
                    # frame duration (the stream's declared or guessed rate) apart.
                    pts = self._untimed_pts(prev_pts)
                self.frames_decoded += 1
                if packets_have_pts and pending:
                    while pending and pending[0] < pts:
                        prev_pts = heapq.heappop(pending)
                        ordinal += 1
                    if pending and pending[0] == pts:
                        heapq.heappop(pending)
                if self._start_pts is None:
                    self._start_pts = pts
                pred = prev_pts
                number = ordinal
                ordinal += 1
                prev_pts = pts
                start = self._start_pts
                t = (pts - start) * tb
                pred_t = (pred - start) * tb if pred is not None else None
                self._ordinals_seen = max(self._ordinals_seen, ordinal)
                produced += 1
                yield _Decoded(frame, number, t, pred_t)
        if pending:
            # Frames demuxed but never output (skipped at the tail or lost): they still count.
            self._max_t = (max(pending) - (self._start_pts or 0)) * tb
            self._ordinals_seen = ordinal + len(pending)

    def _untimed_pts(self, prev: int | None) -> int:
        step = max(1, round(1 / (Fraction(self._avg_fps).limit_denominator(1001) * self._time_base)))
        return prev + step if prev is not None else 0

    def _next_slot(self, prev: int | None) -> int:
        """AVI, a frame beyond the chunks' slots (packed frames without their filler chunk): the slot after."""
        return prev + self._slot_step if prev is not None else 0

    def _ordinal_of_packet(self, packet: Any) -> int:
        """Position of the seek keyframe in the sample index (decode order)."""
        i = bisect.bisect_left(self._index_dts, packet.dts if packet.dts is not None else packet.pts)
        if i >= len(self._index_dts) or self._index_dts[i] != (packet.dts if packet.dts is not None else packet.pts):
            raise NotImplementedError(f"{self.name}: the seek landed on a packet missing from the index")
        return i

    def _skippable(self, lower: int | None, pts: int) -> bool:
        """Whether the frame at `pts` can be dropped if non-reference: no sample time falls in (lower, pts]."""
        if lower is None or self._start_pts is None:
            return False
        tb = self._time_base
        return not grid_point_in((lower - self._start_pts) * tb, (pts - self._start_pts) * tb, self._fps_q)

    def _damaged(self, err: Exception, produced: int) -> None:
        if produced == 0:
            raise CorruptMedia(f"{self.name}: the video data is damaged ({err})") from None
        self.truncated = True
        msg = f"{self.name}: decoding stopped early, the rest of the file is damaged ({err})"
        self.warnings.append(msg)
        log.warning(msg)

