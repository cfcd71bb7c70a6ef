"""The audio source's clock, measured on real encoded files: a sample comes out at its presentation time (the clock of
frame `pts_s`), with the encoder's priming samples off the timeline, whole or from a seek as a segment reads it.

The speech is JFK (tests/fixtures/speech) placed at SPEECH_AT_S on the file's clock; the reader's output is
cross-correlated with those samples. At 16 kHz an AAC encoder's priming is 1024 samples (64 ms) and LAME's MP3 delay
1105 (69 ms); the tolerance, TOLERANCE samples (1 ms), is what the containers' own timestamps allow (WebM's are
whole milliseconds: 8 samples off after a seek), so a priming offset fails by 60+ ms. The control reads the M4A
with FFmpeg told to ignore its edit list and finds the 1024 samples: the measurement sees priming when it is there.
"""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest

from tests.fixtures.speech_media import RATE, load, make_media
from video_ai.adapters.audio_source import PyAVAudioReader

SPEECH_AT_S = 2.0
TOLERANCE = 16  # samples at 16 kHz: 1 ms
# (suffix, codec, video seconds or None)
FILES = {
    "m4a-aac": (".m4a", "aac", None),  # edit list
    "mp4-aac-with-video": (".mp4", "aac", 14),
    "mkv-aac": (".mka", "aac", None),
    "webm-opus": (".webm", "libopus", None),  # pre-skip (Matroska CodecDelay)
    "ogg-opus": (".opus", "libopus", None),  # pre-skip (OpusHead)
    "mp3": (".mp3", "libmp3lame", None),  # LAME header delay: FFmpeg times it, the reader takes it off
    "flac": (".flac", "flac", None),  # no priming: the reference
}


@pytest.fixture(scope="module")
def jfk() -> np.ndarray:
    return load()


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory, jfk: np.ndarray) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("audio-clock")
    audio = np.concatenate([np.zeros(round(SPEECH_AT_S * RATE), np.float32), jfk])
    out = {name: make_media(d / f"{name}{suffix}", video_s=video, audio=audio, audio_codec=codec)
           for name, (suffix, codec, video) in FILES.items()}
    out["adts-aac"] = make_media(d / "adts.aac", video_s=None, audio=audio, audio_codec="aac")
    return out


def _read(path: Path, start_s: float | None) -> tuple[float, np.ndarray]:
    """The reader's samples from `start_s` on, as one array from the first chunk's time (gaps filled with zeros)."""
    reader = PyAVAudioReader(path, start_s, None)
    try:
        chunks = list(reader.chunks())
    finally:
        reader.close()
    first = chunks[0].start_s
    out = np.zeros(round((chunks[-1].start_s - first) * RATE) + len(chunks[-1].samples), np.float32)
    for chunk in chunks:
        at = round((chunk.start_s - first) * RATE)
        out[at : at + len(chunk.samples)] = chunk.samples
    return first, out


def _lag(first_s: float, samples: np.ndarray, jfk: np.ndarray) -> int:
    """How many samples later than its place (JFK from SPEECH_AT_S) the speech is in `samples` (which start at
    first_s): the peak of the cross-correlation with 6 s of the original that lie wholly after first_s."""
    skip = max(0, round((first_s - SPEECH_AT_S) * RATE) + RATE // 2)  # into the recording, past the reader's start
    reference = jfk[skip : skip + 6 * RATE]
    expected = round((SPEECH_AT_S - first_s) * RATE) + skip
    lo = max(0, expected - 4000)
    window = samples[lo : expected + len(reference) + 4000]
    n = 1 << int(np.ceil(np.log2(len(window) + len(reference))))
    corr = np.fft.irfft(np.fft.rfft(window, n) * np.conj(np.fft.rfft(reference, n)), n)[: len(window)]
    return int(np.argmax(corr)) + lo - expected


@pytest.mark.parametrize("name", list(FILES))
@pytest.mark.parametrize("start_s", [None, 0.3, 1.5, 5.0], ids=["whole", "seek-0.3", "seek-1.5", "seek-5.0"])
def test_speech_comes_out_at_its_presentation_time(files: dict[str, Path], jfk: np.ndarray, name: str,
                                                   start_s: float | None) -> None:
    first, samples = _read(files[name], start_s)
    # From the range's start: nothing before it, and nothing lost after a seek (FFmpeg's Matroska demuxer drops the
    # first AAC packet after some seeks: 5.0 s here came out from 5.056 s before the reader's pre-roll).
    assert first == pytest.approx(start_s or 0.0, abs=1e-3)
    assert abs(_lag(first, samples, jfk)) <= TOLERANCE


def test_the_measurement_sees_priming_when_it_is_on_the_timeline(files: dict[str, Path], jfk: np.ndarray) -> None:
    """Control: the same M4A read with its edit list ignored has the 1024 priming samples before the audio, so the
    speech is 64 ms late; so is ADTS, which has no way to say a sample is priming (documented: the file's own times,
    as any player decodes them)."""
    with av.open(str(files["m4a-aac"]), options={"ignore_editlist": "1"}) as container:
        resampler = av.AudioResampler(format="flt", layout="mono", rate=RATE)
        raw = np.concatenate([f.to_ndarray().reshape(-1) for frame in container.decode(audio=0)
                              for f in resampler.resample(frame)])
    assert abs(_lag(0.0, raw, jfk) - 1024) <= TOLERANCE
    first, samples = _read(files["adts-aac"], None)
    assert abs(_lag(first, samples, jfk) - 1024) <= TOLERANCE


def test_an_mp3s_encoder_delay_is_off_its_duration_too(files: dict[str, Path]) -> None:
    reader = PyAVAudioReader(files["mp3"], None, None)
    try:
        assert reader.info is not None and reader.info.start_s == 0.0
        assert reader.info.end_s is not None and abs(reader.info.end_s - (SPEECH_AT_S + 11.0)) < 0.1
    finally:
        reader.close()
