"""The transcript's pure parts: subtitles players can read, split jobs stitched without losing or doubling a word,
batch times mapped back to the video's clock."""

from __future__ import annotations

import numpy as np
import pytest

from video_ai.domain.transcript import Transcript, TranscriptSegment, TranscriptWord, stitch, to_srt, to_webvtt


def _segment(*words: tuple[str, float, float]) -> TranscriptSegment:
    items = [TranscriptWord(start_s=s, end_s=e, text=t, confidence=0.9) for t, s, e in words]
    return TranscriptSegment(start_s=items[0].start_s, end_s=items[-1].end_s, text=" ".join(t for t, _, _ in words),
                             confidence=0.8, words=items)


def _transcript(*segments: TranscriptSegment) -> Transcript:
    return Transcript(job_id="job", language="en", language_probability=1.0, model="tiny.en",
                      segments=list(segments))


def test_webvtt_and_srt_parse_as_players_parse_them() -> None:
    srt = pytest.importorskip("srt")
    webvtt = pytest.importorskip("webvtt")
    import html
    import io

    transcript = _transcript(_segment(("Ask", 0.5, 0.9), ("not", 0.9, 1.2)),
                             _segment(("Fish", 3601.25, 3601.5), ("&", 3601.5, 3601.6), ("<chips>", 3601.6, 3602.0)),
                             TranscriptSegment(start_s=4000.0, end_s=4000.0, text="  ", confidence=0.5, words=[]),
                             TranscriptSegment(start_s=4001.0, end_s=4001.0, text="Hm", confidence=0.5, words=[]))
    vtt = to_webvtt(transcript)
    cues = webvtt.from_buffer(io.StringIO(vtt))
    assert [(c.start, c.end) for c in cues] == [("00:00:00.500", "00:00:01.200"), ("01:00:01.250", "01:00:02.000"),
                                               ("01:06:41.000", "01:06:41.001")]
    # Escaped as cue text must be (a browser shows "Fish & <chips>"; webvtt-py keeps the entities).
    assert cues[1].text == "Fish &amp; &lt;chips&gt;" and html.unescape(cues[1].text) == "Fish & <chips>"
    subs = list(srt.parse(to_srt(transcript)))
    assert [(s.index, s.start.total_seconds(), s.end.total_seconds(), s.content) for s in subs] == [
        (1, 0.5, 1.2, "Ask not"), (2, 3601.25, 3602.0, "Fish & <chips>"), (3, 4001.0, 4001.001, "Hm")]
    empty = _transcript()
    assert to_webvtt(empty).startswith("WEBVTT") and list(webvtt.from_buffer(io.StringIO(to_webvtt(empty)))) == []
    assert list(srt.parse(to_srt(empty))) == []


def test_a_word_across_a_boundary_is_kept_once_and_none_is_lost() -> None:
    # The boundary is at 10.0 s; both segments heard 5 s past it and both transcribed "country" across it, with
    # slightly different timings. The pause at 10.9-11.4 s (no word in either) is where the cut moves.
    left = [_segment(("ask", 8.0, 8.4), ("not", 8.4, 8.7), ("what", 8.7, 9.0), ("your", 9.0, 9.7),
                     ("country", 9.7, 10.9), ("can", 11.4, 11.7)),
            _segment(("do", 11.7, 12.0), ("for", 12.0, 12.2))]
    right = [_segment(("what", 8.75, 9.05), ("your", 9.05, 9.8), ("country", 9.8, 10.85)),
             _segment(("can", 11.45, 11.7), ("do", 11.7, 12.05), ("for", 12.05, 12.2), ("you", 12.2, 12.6))]
    merged = stitch([(0.0, left), (10.0, right)], margin_s=5.0)
    words = [w.text for s in merged for w in s.words]
    assert words == ["ask", "not", "what", "your", "country", "can", "do", "for", "you"]
    assert merged[0].text == "ask not what your country" and merged[0].end_s == 10.9  # the left one's words
    assert [s.text for s in merged[1:]] == ["can do for you"]


def test_without_any_pause_the_cut_is_the_boundary_and_each_word_goes_by_its_midpoint() -> None:
    left = [_segment(("a", 9.0, 9.9), ("b", 9.9, 10.2), ("c", 10.2, 11.0))]
    right = [_segment(("a", 9.0, 9.85), ("b", 9.85, 10.25), ("c", 10.25, 11.0))]
    merged = stitch([(0.0, left), (10.0, right)], margin_s=2.0)
    assert [w.text for s in merged for w in s.words] == ["a", "b", "c"]


def test_three_parts_in_order_and_segments_without_words_go_by_their_midpoint() -> None:
    one = [TranscriptSegment(start_s=1.0, end_s=2.0, text="one", confidence=0.9, words=[])]
    two = [TranscriptSegment(start_s=5.0, end_s=6.0, text="two", confidence=0.9, words=[])]
    three = [TranscriptSegment(start_s=5.0, end_s=6.0, text="two", confidence=0.9, words=[]),
             TranscriptSegment(start_s=11.0, end_s=12.0, text="three", confidence=0.9, words=[])]
    merged = stitch([(0.0, one), (4.0, two), (8.0, three)], margin_s=5.0)
    assert [s.text for s in merged] == ["one", "two", "three"]


def test_batch_times_map_back_to_the_video_clock() -> None:
    from video_ai.analyzers.speech import _Batch

    batch = _Batch()
    batch.add(2.0, np.zeros(16_000, np.float32))  # 2.0-3.0 s of the video
    batch.add(10.0, np.zeros(8_000, np.float32))  # 10.0-10.5 s
    assert batch.clock(0.25) == 2.25
    assert batch.clock(1.0) == 10.0 and batch.clock(1.0, end=True) == 3.0  # a join: starts after, ends before
    assert batch.clock(1.4) == 10.4 and batch.clock(9.0) == 10.5  # past the end: the region's end
