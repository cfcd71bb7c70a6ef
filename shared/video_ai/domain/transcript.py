"""A job's transcript (GET /jobs/{id}/transcript, the artifact "transcript.json"), its subtitle renderings, and how
the transcripts of a split job's segments are stitched without losing or doubling the words cut at a boundary.

Times are seconds on the video's clock (the clock of frame `pts_s`).
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator, Sequence

from pydantic import BaseModel, ConfigDict, Field


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TranscriptWord(_Strict):
    start_s: float
    end_s: float
    text: str
    confidence: float = Field(ge=0.0, le=1.0, description="the word's probability under the model")


class TranscriptSegment(_Strict):
    start_s: float
    end_s: float
    text: str
    confidence: float = Field(ge=0.0, le=1.0, description="exp of the segment's mean token log-probability")
    words: list[TranscriptWord] = Field(
        default_factory=list, description="the segment's words with their times; left out when asked words=false")


class Transcript(_Strict):
    job_id: str
    language: str | None = Field(description="ISO 639-1 code the model detected (or was set to); null: none")
    language_probability: float | None = None
    model: str | None = Field(description="the speech model that made it, e.g. tiny.en")
    segments: list[TranscriptSegment]
    reason: str | None = Field(
        default=None, description="why there are no segments: speech not among the features, no audio track, "
                                  "no speech found, the job has not finished")


# ---------------------------------------------------------------- subtitles


def _clock(seconds: float, comma: bool) -> str:
    ms = max(0, round(seconds * 1000))
    h, rest = divmod(ms, 3_600_000)
    m, rest = divmod(rest, 60_000)
    s, ms = divmod(rest, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}{',' if comma else '.'}{ms:03d}"


def _cues(transcript: Transcript) -> list[tuple[float, float, str]]:
    """One cue per segment with text, a cue never empty nor zero-length (players drop those), times increasing."""
    cues = []
    for segment in transcript.segments:
        text = " ".join(segment.text.split())
        if not text:
            continue
        start = segment.start_s
        end = max(segment.end_s, start + 0.001)
        cues.append((start, end, text))
    return cues


def webvtt_parts(transcript: Transcript) -> Iterator[str]:
    """The WebVTT document in pieces (the header, then one per cue), to be sent as they come."""
    yield "WEBVTT\n"
    for start, end, text in _cues(transcript):
        # Cue text is HTML-like: &, < and > are escaped, and "-->" cannot appear in it.
        safe = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
        yield f"\n{_clock(start, False)} --> {_clock(end, False)}\n{safe}\n"


def srt_parts(transcript: Transcript) -> Iterator[str]:
    """The SubRip document in pieces, one per numbered cue."""
    for number, (start, end, text) in enumerate(_cues(transcript), start=1):
        gap = "\n" if number > 1 else ""
        yield f"{gap}{number}\n{_clock(start, True)} --> {_clock(end, True)}\n{text}\n"


def to_webvtt(transcript: Transcript) -> str:
    return "".join(webvtt_parts(transcript))


def to_srt(transcript: Transcript) -> str:
    return "".join(srt_parts(transcript))


# ---------------------------------------------------------------- split jobs


def _gap_near(words: Sequence[tuple[float, float]], lo: float, hi: float, at: float) -> float:
    """A time in [lo, hi] that no word covers, in the widest such gap (nearest `at` among equals); `at` when every
    instant is covered."""
    spans = sorted((max(lo, s), min(hi, e)) for s, e in words if e > lo and s < hi)
    best: tuple[float, float, float] | None = None  # (width, -distance, middle)
    cursor = lo
    for start, end in [*spans, (hi, hi)]:
        if start > cursor:
            middle = (cursor + start) / 2
            key = (start - cursor, -abs(middle - at), middle)
            if best is None or key > best:
                best = key
        cursor = max(cursor, end)
    return best[2] if best is not None else at


def stitch(parts: Sequence[tuple[float, Sequence[TranscriptSegment]]], margin_s: float) -> list[TranscriptSegment]:
    """The transcript of a split job from its segments' transcripts, in time order.

    `parts`: (boundary start, segments) of each split segment, in order; each segment transcribed audio from
    `margin_s` before its start to `margin_s` past its end, so a word said across a boundary is whole in both
    neighbours' transcripts. At each boundary the cut moves to a pause that neither neighbour has a word in (within
    half the margin), and a word belongs to the side its midpoint is on: each word once, none lost. A transcript
    segment cut in two becomes two, each of its own words."""
    cuts = [start for start, _ in parts[1:]]
    for i in range(len(cuts)):
        boundary = cuts[i]
        near = [(w.start_s, w.end_s) for side in (parts[i][1], parts[i + 1][1]) for seg in side for w in seg.words]
        cuts[i] = _gap_near(near, boundary - margin_s / 2, boundary + margin_s / 2, boundary)
    out: list[TranscriptSegment] = []
    for i, (_, segments) in enumerate(parts):
        lo = cuts[i - 1] if i > 0 else float("-inf")
        hi = cuts[i] if i < len(cuts) else float("inf")
        for segment in segments:
            if not segment.words:  # no word timings: the segment's midpoint decides
                if lo <= (segment.start_s + segment.end_s) / 2 < hi:
                    out.append(segment)
                continue
            words = [w for w in segment.words if lo <= (w.start_s + w.end_s) / 2 < hi]
            if len(words) == len(segment.words):
                out.append(segment)
            elif words:
                out.append(TranscriptSegment(start_s=words[0].start_s, end_s=words[-1].end_s,
                                             text=" ".join(w.text.strip() for w in words).strip(),
                                             confidence=segment.confidence, words=words))
    out.sort(key=lambda s: s.start_s)
    return out


def shot_of(starts: Sequence[float], ends: Sequence[float], start_s: float, end_s: float) -> int | None:
    """The shot (index into starts/ends, sorted by start) containing start_s, None when the span crosses a cut."""
    i = bisect.bisect_right(starts, start_s) - 1
    if i < 0:
        return None
    return i if end_s <= ends[i] + 1e-6 else None
