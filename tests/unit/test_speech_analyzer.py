"""The speech run with a scripted Whisper: what audio it is handed (speech only, batched, on the video's clock),
what it holds in memory on a long track, and that audio problems become warnings, not failures."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from video_ai.adapters.silero_vad import SileroVad
from video_ai.adapters.whisper_transcriber import Transcribed
from video_ai.analyzers import AnalyzerContext
from video_ai.analyzers.speech import SpeechAnalyzer
from video_ai.domain.errors import UnsupportedMedia
from video_ai.domain.models import Job, Source
from video_ai.domain.ports import AudioChunk, AudioInfo, AudioPass
from video_ai.domain.transcript import TranscriptSegment, TranscriptWord
from video_ai.settings import SpeechSettings

RATE = 16_000


class ScriptedWhisper:
    """Hears a "word" wherever the audio it is given is loud, one per loud stretch, timed in the batch."""

    name = "scripted"
    language = "en"

    class weights:  # stands in for WhisperWeights
        english_only = True

    def __init__(self) -> None:
        self.calls: list[float] = []

    def load(self) -> None:
        return None

    def transcribe(self, audio: np.ndarray, language: str | None = None) -> Transcribed:
        self.calls.append(len(audio) / RATE)
        loud = np.abs(audio) > 0.05
        edges = np.flatnonzero(np.diff(np.concatenate([[0], loud.astype(np.int8), [0]])))
        words = [TranscriptWord(start_s=a / RATE, end_s=b / RATE, text=f"w{i}", confidence=0.9)
                 for i, (a, b) in enumerate(zip(edges[::2], edges[1::2], strict=True))]
        segments = [TranscriptSegment(start_s=w.start_s, end_s=w.end_s, text=w.text, confidence=0.8, words=[w])
                    for w in words]
        return Transcribed(segments=segments, language="en", language_probability=1.0)


class LoudVad:
    """A VAD that calls loud stretches speech (Silero needs a voice; this needs a number)."""

    def session(self) -> None:
        return None

    def stream(self, options: object) -> LoudStream:
        return LoudStream()


class LoudStream:
    def __init__(self) -> None:
        self.open_since: float | None = None
        self.speech_s = 0.0

    def feed(self, start_s: float, samples: np.ndarray) -> Iterator[tuple[float, float, bool]]:
        for i in range(0, len(samples), 512):
            t = start_s + i / RATE
            loud = float(np.abs(samples[i : i + 512]).max(initial=0.0)) > 0.05
            if loud and self.open_since is None:
                self.open_since = t
            elif not loud and self.open_since is not None:
                start, self.open_since = self.open_since, None
                self.speech_s += t - start
                yield (start, t, False)

    def finish(self) -> Iterator[tuple[float, float, bool]]:
        return iter(())


class Reader:
    def __init__(self, chunks: list[AudioChunk], fail_after: int | None = None, info: bool = True) -> None:
        self.info = AudioInfo("mp4", "aac", RATE, 1, 0.0, None) if info else None
        self._chunks = chunks
        self._fail_after = fail_after
        self.warnings: list[str] = []
        self.closed = False

    def chunks(self) -> Iterator[AudioChunk]:
        for i, chunk in enumerate(self._chunks):
            if self._fail_after is not None and i >= self._fail_after:
                raise OSError("the connection dropped")
            yield chunk

    def close(self) -> None:
        self.closed = True


def _tone(seconds: float) -> np.ndarray:
    return np.where(np.sin(np.arange(int(seconds * RATE)) * 0.3) >= 0, 0.3, -0.3).astype(np.float32)  # loud throughout


def _analyzer(whisper: ScriptedWhisper, vad: object, batch_s: float = 120.0) -> SpeechAnalyzer:
    context = AnalyzerContext(embedder=None, index=None,  # type: ignore[arg-type]
                              speech=SpeechSettings(batch_s=batch_s))
    return SpeechAnalyzer(context, transcriber=whisper, vad=vad)  # type: ignore[arg-type]


def _listen(analyzer: SpeechAnalyzer, reader: Reader) -> tuple[object, list[TranscriptSegment]]:
    run = analyzer.start(Job(job_id="job", source=Source(url="https://example.com/a.mp4")))
    run.listen(AudioPass(open=lambda start, end: reader, start_s=0.0, end_s=None, stop=threading.Event()))
    output = run.finish([])
    return output, run.transcript().segments


def test_only_speech_reaches_whisper_in_batches_and_times_come_back_on_the_video_clock() -> None:
    silence = np.zeros(10 * RATE, np.float32)
    # A loud second at 12 s and one at 47 s of a track whose second chunk starts after a 5 s gap (at 35 s).
    first = np.concatenate([silence, silence[: 2 * RATE], _tone(1.0), silence[: 17 * RATE]])  # 0-30 s
    second = np.concatenate([silence, silence[: 2 * RATE], _tone(1.0), silence])  # 35-58 s
    whisper = ScriptedWhisper()
    output, segments = _listen(_analyzer(whisper, LoudVad(), batch_s=10), Reader([AudioChunk(0.0, first),
                                                                                   AudioChunk(35.0, second)]))
    assert len(whisper.calls) == 1 and whisper.calls[0] < 4.0  # 2 s of speech and their padding, of 58 s
    assert [(round(s.start_s, 2), round(s.end_s, 2)) for s in segments] == [(12.0, 13.0), (47.0, 48.0)]
    assert output.count == 2  # type: ignore[attr-defined]


def test_speech_is_batched_by_batch_s() -> None:
    quiet = np.zeros(4 * RATE, np.float32)
    track = np.concatenate([quiet, _tone(6.0), quiet, _tone(6.0), quiet, _tone(6.0), quiet])  # 34 s
    whisper = ScriptedWhisper()
    _, segments = _listen(_analyzer(whisper, LoudVad(), batch_s=10), Reader([AudioChunk(100.0, track)]))
    assert [round(c, 1) for c in whisper.calls] == [13.6, 6.8]  # two regions of 6 s + 2 x 0.4 s, then the third
    assert [(round(s.start_s, 2), round(s.end_s, 2)) for s in segments] == [(104.0, 110.0), (114.0, 120.0),
                                                                           (124.0, 130.0)]


def test_a_long_silent_track_holds_little_audio_and_never_calls_whisper() -> None:
    whisper = ScriptedWhisper()
    analyzer = _analyzer(whisper, SileroVad())  # the real VAD: digital silence skips its model too
    chunks = [AudioChunk(30.0 * i, np.zeros(30 * RATE, np.float32)) for i in range(240)]  # 2 hours
    run = analyzer.start(Job(job_id="job", source=Source(url="https://example.com/a.mp4")))
    run.listen(AudioPass(open=lambda start, end: Reader(chunks), start_s=0.0, end_s=None, stop=threading.Event()))
    assert whisper.calls == [] and run.held_s <= 62 and run.audio_s == 7200
    assert run.transcript().reason == "no speech was found"


@pytest.mark.parametrize(("reader", "warning", "reason"), [
    (Reader([], info=False), "speech: the file has no audio track; no transcript was made",
     "the file has no audio track"),
    (Reader([AudioChunk(0.0, np.concatenate([_tone(1.0), np.zeros(RATE, np.float32)]))] * 2, fail_after=1),
     "speech: the audio could not be decoded: OSError: the connection dropped (the transcript stops there)",
     "the audio could not be decoded: OSError: the connection dropped"),
])
def test_audio_problems_are_warnings_and_reasons(reader: Reader, warning: str, reason: str) -> None:
    run = _analyzer(ScriptedWhisper(), LoudVad()).start(Job(job_id="job", source=Source(url="https://x.org/a.mp4")))
    run.listen(AudioPass(open=lambda start, end: reader, start_s=0.0, end_s=None))
    assert run.finish([]).warnings == [warning] and reader.closed
    heard = run.transcript()
    # What was heard before the track broke off is kept (the first chunk's second of speech).
    assert heard.reason == (None if heard.segments else reason) and len(heard.segments) == (1 if "stops" in warning
                                                                                            else 0)


def test_whisper_failing_is_a_warning_not_a_failed_job() -> None:
    class Broken(ScriptedWhisper):
        def transcribe(self, audio: np.ndarray, language: str | None = None) -> Transcribed:
            raise RuntimeError("CTranslate2: out of memory")

    run = _analyzer(Broken(), LoudVad()).start(Job(job_id="job", source=Source(url="https://x.org/a.mp4")))
    track = np.concatenate([_tone(1.0), np.zeros(RATE, np.float32)])
    run.listen(AudioPass(open=lambda start, end: Reader([AudioChunk(0.0, track)]), start_s=0.0, end_s=None))
    assert run.finish([]).warnings == ["speech: the speech could not be transcribed: RuntimeError: CTranslate2: out "
                                       "of memory"]


def test_an_unreadable_file_is_a_warning(tmp_path: Path) -> None:
    analyzer = _analyzer(ScriptedWhisper(), LoudVad())
    run = analyzer.start(Job(job_id="job", source=Source(url="https://example.com/a.mp4")))

    def unreadable(start: float | None, end: float | None) -> Reader:
        raise UnsupportedMedia("a.mp4: not a media container we can read")

    run.listen(AudioPass(open=unreadable, start_s=0.0, end_s=None))
    assert run.finish([]).warnings == ["speech: the audio could not be read: a.mp4: not a media container we can read"]
    assert run.transcript().reason == "the audio could not be read: a.mp4: not a media container we can read"


def test_the_model_and_its_settings_are_part_of_the_reuse_key() -> None:
    from video_ai.domain.models import ModelInfo
    from video_ai.services.analyze_video import content_key

    def key(settings: SpeechSettings, language: str | None = None) -> str:
        context = AnalyzerContext(embedder=None, index=None, speech=settings)  # type: ignore[arg-type]
        analyzer = SpeechAnalyzer(context, transcriber=ScriptedWhisper(), vad=LoudVad())  # type: ignore[arg-type]
        job = Job(job_id="j", source=Source(url="https://x.org/a.mp4"), features=["speech"], language=language)
        return content_key(job, "0" * 64, ModelInfo(name="m", version="1", dim=4), [analyzer.variant])

    base = key(SpeechSettings())
    assert key(SpeechSettings(threads=4)) == base  # threads change the speed, not the words
    assert len({base, key(SpeechSettings(model="base")), key(SpeechSettings(beam_size=2)),
                key(SpeechSettings(), language="fr")}) == 4
