"""The "speech" analyzer: what is said, timed on the video's clock, as a transcript and as `speech` moments.

One audio pass beside the frame pass (FrameNeeds.audio): PyAV decodes and resamples the source's first audio track to
16 kHz mono in chunks; Silero VAD marks the speech as the chunks arrive; the speech regions (padded, silence left out)
are gathered into batches of `batch_s` seconds and Whisper transcribes each batch; word times are mapped back from the
batch to the video's clock. Only the current chunk and batch are held, so a two-hour track costs no more memory than a
short one, and a silent one costs the decode and the VAD (no Whisper call at all).

Audio problems never fail the job: no audio track, a track that does not decode, damaged packets become a warning
and the transcript's `reason`; the frames are indexed as usual. The transcript is the artifact "transcript.json"
(it can pass DynamoDB's item limit); its segments become `speech` moments in the text index.

Split jobs: each segment transcribes its own range plus MARGIN_S on either side, and the merge stitches them at a
pause near each boundary (domain.transcript.stitch): a word said across a boundary is kept once.
"""

from __future__ import annotations

import bisect
import json
import logging
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from video_ai.domain.errors import VideoAIError
from video_ai.domain.models import Job, Moment, SampledFrame, Shot
from video_ai.domain.ports import AUDIO_RATE, AudioChunk, AudioPass, FeatureOutput, FrameNeeds
from video_ai.domain.transcript import Transcript, TranscriptSegment, TranscriptWord, stitch

if TYPE_CHECKING:
    from video_ai.adapters.silero_vad import SileroVad
    from video_ai.adapters.whisper_transcriber import Transcribed, WhisperTranscriber
    from video_ai.analyzers import AnalyzerContext

logger = logging.getLogger(__name__)

ARTIFACT = "transcript.json"
# A split job's segments hear this much past each end of their range: a word across a boundary is whole on both sides.
MARGIN_S = 5.0
NOT_RUN = "the job ran without the speech feature"


def staging_id(job_id: str) -> str:
    """Where a split job's segments keep their transcripts until the merge stitches them."""
    return f"{job_id}__speech"


def speech_moments(job: Job, transcript: Transcript, shots: Sequence[Shot]) -> list[Moment]:
    """A moment per transcript segment; its shot is the one it starts in, None when it runs across a cut."""
    ordered = sorted(shots, key=lambda s: s.start_s)
    starts = [s.start_s for s in ordered]
    moments = []
    for segment in transcript.segments:
        i = bisect.bisect_right(starts, segment.start_s) - 1
        shot = ordered[i].index if i >= 0 and segment.end_s <= ordered[i].end_s + 1e-6 else None
        moments.append(Moment(job_id=job.job_id, tenant=job.tenant, kind="speech", text=segment.text,
                              start_s=segment.start_s, end_s=segment.end_s, shot=shot,
                              confidence=segment.confidence, pts_s=segment.start_s))
    return moments


class SpeechAnalyzer:
    feature = "speech"

    def __init__(self, context: AnalyzerContext, transcriber: WhisperTranscriber | None = None,
                 vad: SileroVad | None = None) -> None:
        from video_ai.adapters.silero_vad import SileroVad, VadOptions
        from video_ai.adapters.whisper_transcriber import WhisperTranscriber

        self.settings = context.speech
        self.moments = context.moments
        self.artifacts = context.artifacts
        self.needs = FrameNeeds(audio=True)
        self.transcriber = transcriber or WhisperTranscriber(
            self.settings.model, threads=self.settings.threads, beam_size=self.settings.beam_size,
            language=self.settings.language)
        self.vad = vad or SileroVad()
        self.vad_options = VadOptions(threshold=self.settings.vad_threshold, min_silence_s=self.settings.min_silence_s)
        # Joins the content-hash reuse key: a transcript made with another model or settings is not this one's.
        self.variant = f"speech={self.settings.model_dump_json(exclude={'threads'})}"

    def start(self, job: Job) -> SpeechRun:
        self.transcriber.load()  # a missing or altered model fails the job here (ConfigError), before the pass
        self.vad.session()
        return SpeechRun(self, job)

    # -- results ------------------------------------------------------------------------------------------------
    def publish(self, job: Job, transcript: Transcript, shots: Sequence[Shot]) -> list[str]:
        """Store the transcript and index its moments; returns warnings (a store that fails loses the transcript
        route's data, not the job)."""
        warnings = []
        if self.artifacts is not None:
            try:
                self.artifacts.put(job.job_id, ARTIFACT, transcript.model_dump_json().encode())
            except Exception as err:  # a by-product of the job, like thumbnails
                logger.warning("transcript not stored: %s", err, extra={"job_id": job.job_id})
                warnings.append(f"speech: transcript not stored: {type(err).__name__}: {str(err)[:200]}")
        if self.moments is not None:
            self.moments.replace(job.job_id, job.tenant, "speech", speech_moments(job, transcript, shots))
        return warnings

    def reuse(self, job: Job, previous: Job) -> FeatureOutput:
        """The orchestrator copied the previous job's artifacts already: re-index the moments under this job."""
        stored = self.artifacts.get(job.job_id, ARTIFACT) if self.artifacts is not None else None
        transcript = Transcript.model_validate_json(stored) if stored else None
        if transcript is not None and self.moments is not None:
            transcript = transcript.model_copy(update={"job_id": job.job_id})
            self.moments.replace(job.job_id, job.tenant, "speech", speech_moments(job, transcript, previous.shots))
            if self.artifacts is not None:
                self.artifacts.put(job.job_id, ARTIFACT, transcript.model_dump_json().encode())
        return FeatureOutput(count=len(transcript.segments) if transcript else 0,
                             warnings=[w for w in previous.warnings if w.startswith("speech:")])

    def merge(self, job: Job, segments: Sequence[Mapping[str, Any]], shots: Sequence[Shot]) -> FeatureOutput:
        parts: list[tuple[float, list[TranscriptSegment]]] = []
        languages: dict[str, float] = {}
        probability: dict[str, float] = {}
        warnings: list[str] = []
        reasons: list[str] = []
        for raw in segments:
            body = raw.get("transcript")
            if body is None and raw.get("part") and self.artifacts is not None:
                stored = self.artifacts.get(staging_id(job.job_id), str(raw["part"]))
                body = json.loads(stored) if stored else None
            if body is None:
                warnings.append(f"speech: the transcript of the segment from {raw.get('start_s', 0)} s was lost")
                continue
            part = Transcript.model_validate(body)
            parts.append((float(raw.get("start_s", 0.0)), part.segments))
            spoken = sum(s.end_s - s.start_s for s in part.segments)
            if part.language:
                languages[part.language] = languages.get(part.language, 0.0) + spoken
                probability[part.language] = max(probability.get(part.language, 0.0), part.language_probability or 0)
            if part.reason:
                reasons.append(part.reason)
            warnings.extend(str(w) for w in raw.get("warnings", []))
        merged = stitch(parts, MARGIN_S)
        language = max(languages, key=lambda code: languages[code]) if languages else None
        reason = None if merged else (reasons[0] if reasons else "no speech was found")
        transcript = Transcript(job_id=job.job_id, language=language,
                                language_probability=probability.get(language) if language else None,
                                model=self.transcriber.name, segments=merged, reason=reason)
        warnings += self.publish(job, transcript, shots)
        if self.artifacts is not None:
            self.artifacts.delete(staging_id(job.job_id))
        return FeatureOutput(count=len(merged), warnings=list(dict.fromkeys(warnings)))

    def discard(self, job: Job) -> None:
        if self.moments is not None:
            self.moments.delete(job.job_id, job.tenant)
        if self.artifacts is not None:
            self.artifacts.delete(staging_id(job.job_id))


@dataclass(slots=True)
class _Tape:
    """The most recent audio, to cut speech regions from after the VAD has closed them."""

    chunks: list[AudioChunk] = field(default_factory=list)

    def append(self, chunk: AudioChunk) -> None:
        self.chunks.append(chunk)

    def forget_before(self, t: float) -> None:
        while self.chunks and self.chunks[0].start_s + len(self.chunks[0].samples) / AUDIO_RATE < t:
            self.chunks.pop(0)

    def start(self) -> float:
        return self.chunks[0].start_s if self.chunks else 0.0

    def seconds(self) -> float:
        return sum(len(c.samples) for c in self.chunks) / AUDIO_RATE

    def cut(self, start: float, end: float) -> np.ndarray:
        """Samples of [start, end); silence where no chunk has audio."""
        out = np.zeros(max(0, round((end - start) * AUDIO_RATE)), np.float32)
        for chunk in self.chunks:
            offset = round((chunk.start_s - start) * AUDIO_RATE)
            lo, hi = max(0, offset), min(len(out), offset + len(chunk.samples))
            if lo < hi:
                out[lo:hi] = chunk.samples[lo - offset : hi - offset]
        return out


@dataclass(slots=True)
class _Batch:
    """Speech regions joined for one Whisper call, and where each came from on the video's clock."""

    parts: list[np.ndarray] = field(default_factory=list)
    offsets: list[float] = field(default_factory=list)  # each region's start inside the batch (s)
    starts: list[float] = field(default_factory=list)  # its start on the video's clock
    seconds: float = 0.0

    def add(self, start: float, samples: np.ndarray) -> None:
        self.parts.append(samples)
        self.offsets.append(self.seconds)
        self.starts.append(start)
        self.seconds += len(samples) / AUDIO_RATE

    def clock(self, t: float, end: bool = False) -> float:
        """A time in the batch -> the video's clock (an end exactly at a join belongs to the region before it)."""
        i = max(0, bisect.bisect_right(self.offsets, t - (1e-6 if end else 0.0)) - 1)
        length = len(self.parts[i]) / AUDIO_RATE
        return round(self.starts[i] + min(max(0.0, t - self.offsets[i]), length), 3)


class SpeechRun:
    """One audio pass: VAD as the audio streams, Whisper per batch of speech."""

    def __init__(self, analyzer: SpeechAnalyzer, job: Job) -> None:
        self._analyzer = analyzer
        self._job = job
        self.segments: list[TranscriptSegment] = []
        self.warnings: list[str] = []
        self.reason: str | None = None
        # The job's language, else the configured one (tiny.en: English), else detected on the first speech.
        self.language: str | None = self._asked(job) or analyzer.transcriber.language
        self.language_probability: float | None = None
        self._span: tuple[float, float | None] = (0.0, None)
        self._heard = False
        self.speech_s = 0.0
        self.audio_s = 0.0
        self.whisper_calls = 0
        self.held_s = 0.0  # the most audio held at once (seconds): bounded by a region and a chunk, not the track
        self._lock = threading.Lock()

    def _asked(self, job: Job) -> str | None:
        """The job's language when the model knows it; an English-only model hears English whatever was asked."""
        from video_ai.adapters.whisper_transcriber import supported_languages

        asked = job.language
        if asked is None:
            return None
        transcriber = self._analyzer.transcriber
        if transcriber.weights.english_only and asked != "en":
            self.warnings.append(f"speech: the job's language {asked!r} is not one the {transcriber.name} model "
                                 "speaks; transcribed as English")
            return None
        if asked not in supported_languages():
            self.warnings.append(f"speech: the job's language {asked!r} is not one Whisper knows; detected instead")
            return None
        return asked

    def add(self, frames: Sequence[SampledFrame]) -> None:
        return None

    def listen(self, audio: AudioPass) -> None:
        self._heard = True
        margin = MARGIN_S if self._job.segments_total else 0.0
        start = max(0.0, audio.start_s - margin)
        end = audio.end_s + margin if audio.end_s is not None else None
        self._span = (audio.start_s, audio.end_s)
        try:
            reader = audio.open(start, end)
        except VideoAIError as err:
            self._problem(f"the audio could not be read: {err.message}")
            return
        except Exception as err:  # a by-product: the frames still make the job
            logger.warning("audio pass failed to open", exc_info=True, extra={"job_id": self._job.job_id})
            self._problem(f"the audio could not be read: {type(err).__name__}: {str(err)[:200]}")
            return
        try:
            if reader.info is None:
                self.reason = "the file has no audio track"
                self.warnings.append("speech: the file has no audio track; no transcript was made")
                return
            self._hear(reader.chunks(), audio.stop)
            self.warnings.extend(f"speech: {w}" for w in reader.warnings)
        except Exception as err:  # the model failing on some audio: a warning, the frames still make the job
            logger.warning("speech failed", exc_info=True, extra={"job_id": self._job.job_id})
            self._problem(f"the speech could not be transcribed: {type(err).__name__}: {str(err)[:200]}")
        finally:
            reader.close()

    def _problem(self, message: str) -> None:
        self.reason = message
        self.warnings.append(f"speech: {message}" + ("" if not self.segments else " (the transcript stops there)"))

    def _hear(self, chunks: Iterable[AudioChunk], stop: threading.Event) -> None:
        """VAD as the chunks come, Whisper per batch; a track that breaks off keeps what was heard before."""
        analyzer = self._analyzer
        stream = analyzer.vad.stream(analyzer.vad_options)
        pad = analyzer.vad_options.pad_s
        tape = _Tape()
        batch = _Batch()
        last_end = 0.0  # where the previous region's audio ended (padding never overlaps it)
        broken: str | None = None
        try:
            for chunk in chunks:
                if stop.is_set():
                    return
                tape.append(chunk)
                self.audio_s += len(chunk.samples) / AUDIO_RATE
                for start, end, cut_short in stream.feed(chunk.start_s, chunk.samples):
                    batch, last_end = self._region(tape, batch, start, end, last_end, cut_short, pad)
                # Keep the audio an open region (or the next one) may still need, with its padding: no more.
                keep = stream.open_since if stream.open_since is not None else chunk.start_s
                tape.forget_before(keep - pad - 1.0)
                self.held_s = max(self.held_s, tape.seconds())
        except VideoAIError as err:
            broken = f"the audio could not be decoded: {err.message}"
        except Exception as err:  # a decoder or a ranged read failing mid-track: the frames still make the job
            logger.warning("audio pass broke off", exc_info=True, extra={"job_id": self._job.job_id})
            broken = f"the audio could not be decoded: {type(err).__name__}: {str(err)[:200]}"
        for start, end, cut_short in stream.finish():
            batch, last_end = self._region(tape, batch, start, end, last_end, cut_short, pad)
        if batch.parts and not stop.is_set():
            self._transcribe(batch)
        self.speech_s = stream.speech_s
        if broken is not None:
            self._problem(broken)
        elif not self.segments and self.reason is None:
            self.reason = "no speech was found"

    def _region(self, tape: _Tape, batch: _Batch, start: float, end: float, last_end: float,
                cut_short: bool, pad: float) -> tuple[_Batch, float]:
        lo = max(start - pad, last_end, tape.start())  # no padding before the track's first sample
        hi = end if cut_short else end + pad  # a region cut short goes on at `end`: no tail of its own
        batch.add(lo, tape.cut(lo, hi))
        if batch.seconds >= self._analyzer.settings.batch_s:
            self._transcribe(batch)
            batch = _Batch()
        return batch, hi

    def _transcribe(self, batch: _Batch) -> None:
        audio = np.concatenate(batch.parts)
        detecting = self.language is None
        result: Transcribed = self._analyzer.transcriber.transcribe(audio, self.language)
        self.whisper_calls += 1
        if detecting and result.segments and result.language:
            # Detected on the first batch with speech, then kept: one job, one language (a batch is two minutes).
            self.language = result.language
            self.language_probability = result.language_probability
        elif not detecting and self.language_probability is None:
            self.language_probability = result.language_probability
        for seg in result.segments:
            words = [TranscriptWord(start_s=batch.clock(w.start_s), end_s=batch.clock(w.end_s, end=True), text=w.text,
                                    confidence=w.confidence) for w in seg.words]
            start = words[0].start_s if words else batch.clock(seg.start_s)
            end = words[-1].end_s if words else batch.clock(seg.end_s, end=True)
            self.segments.append(TranscriptSegment(start_s=start, end_s=max(start, end), text=seg.text,
                                                   confidence=seg.confidence, words=words))

    def transcript(self) -> Transcript:
        language = self.language if self.segments else None
        return Transcript(job_id=self._job.job_id, language=language,
                          language_probability=self.language_probability if language else None,
                          model=self._analyzer.transcriber.name, segments=sorted(self.segments,
                                                                                 key=lambda s: s.start_s),
                          reason=None if self.segments else (self.reason or "no speech was found"))

    def finish(self, shots: Sequence[Shot]) -> FeatureOutput:
        if not self._heard:  # the orchestrator had no audio to give (cannot happen on a full pass)
            self.reason = self.reason or "the audio was not read"
        transcript = self.transcript()
        warnings = list(dict.fromkeys(self.warnings))
        if self._job.segments_total:
            segment: dict[str, Any] = {"start_s": self._span[0], "end_s": self._span[1], "warnings": warnings}
            store = self._analyzer.artifacts
            if store is not None:
                name = f"part-{round(self._span[0] * 1000)}.json"
                store.put(staging_id(self._job.job_id), name, transcript.model_dump_json().encode())
                segment["part"] = name
            else:
                segment["transcript"] = transcript.model_dump(mode="json")
            return FeatureOutput(count=len(transcript.segments), segment=segment, warnings=warnings)
        warnings += self._analyzer.publish(self._job, transcript, shots)
        logger.info("speech: %.1f s of audio, %.1f s of speech, %d Whisper calls, %d segments", self.audio_s,
                    self.speech_s, self.whisper_calls, len(transcript.segments), extra={"job_id": self._job.job_id})
        return FeatureOutput(count=len(transcript.segments), warnings=warnings)
