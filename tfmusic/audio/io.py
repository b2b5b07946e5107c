"""Read, write and resample audio files (soundfile + librosa).

Every waveform in tfmusic is float32 shaped ``(channels, samples)``; this module is the one place
that converts between files and that convention. Errors name the file and the problem, so a bad
file deep inside a dataset is easy to find.

Paths may be local or on any Beam filesystem (``gs://...``, see :mod:`tfmusic.storage`): soundfile
decodes file objects, so a remote file is read through :func:`tfmusic.storage.local_or_buffer`
(one download into memory; the header alone for :func:`audio_info`) and written from memory.
Problems are worded the same for a local and a remote file (libsndfile's own message without the
file object's ``repr``), so reports do not depend on where the data lives.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tfmusic.audio.settings import SAMPLE_RATE

from tfmusic import storage

DEFAULT_SAMPLE_RATE = SAMPLE_RATE  # tfmusic.audio.settings: the one definition
AUDIO_EXTENSIONS = (".wav", ".flac", ".aif", ".aiff", ".ogg")


class AudioFileError(ValueError):
    """An audio file could not be read or written; the message names the file."""

    def __init__(self, path: str | Path, problem: str):
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{path}: {problem}")


@dataclass(frozen=True)
class AudioInfo:
    """Header facts of an audio file, read without decoding the samples."""

    path: str
    sample_rate: int
    channels: int
    frames: int

    @property
    def seconds(self) -> float:
        return self.frames / float(self.sample_rate)


def _why(err: Exception) -> str:
    """libsndfile's reason without the file name or object repr it prefixes (``Error opening ...:``)."""
    reason = getattr(err, "error_string", None)
    return str(reason).strip() if reason else str(err)


def _check_exists(path: str) -> None:
    found = os.path.isfile(path) if storage.is_local(path) else storage.exists(path)
    if not found:
        raise AudioFileError(path, "file does not exist")


def audio_info(path: str | os.PathLike) -> AudioInfo:
    """Sample rate, channels and length of ``path`` (raises AudioFileError if unreadable).

    A remote file is opened as a seekable stream, so only the bytes the header parser asks for
    are fetched.
    """
    import soundfile as sf

    text = os.fspath(path)
    _check_exists(text)
    try:
        if storage.is_local(text):
            info = sf.info(text)
        else:
            with storage.open_read(text) as fh:
                info = sf.info(fh)
    except Exception as err:  # soundfile raises LibsndfileError / RuntimeError subclasses
        raise AudioFileError(text, f"unreadable audio ({_why(err)})") from err
    if info.frames <= 0:
        raise AudioFileError(text, "audio file holds no samples")
    return AudioInfo(text, int(info.samplerate), int(info.channels), int(info.frames))


def resample(audio: np.ndarray, orig_sr: int, target_sr: int) -> np.ndarray:
    """Resample a ``(channels, samples)`` waveform with librosa's soxr_hq; identity if rates match."""
    audio = np.asarray(audio, dtype=np.float32)
    if int(orig_sr) == int(target_sr):
        return audio
    import librosa

    out = librosa.resample(audio, orig_sr=int(orig_sr), target_sr=int(target_sr), res_type="soxr_hq", axis=-1)
    return np.ascontiguousarray(out, dtype=np.float32)


def read_audio(
    path: str | os.PathLike,
    sample_rate: int | None = None,
    *,
    mono: bool = False,
    check_finite: bool = True,
) -> tuple[np.ndarray, int]:
    """Read ``path`` as float32 ``(channels, samples)``; resample when ``sample_rate`` is given.

    Returns ``(audio, rate)`` where ``rate`` is ``sample_rate`` if given, else the file's rate.
    Non-finite samples raise AudioFileError (they poison every later sum and loss).
    """
    import soundfile as sf

    path = os.fspath(path)
    _check_exists(path)
    try:
        source = storage.local_or_buffer(path)
        with sf.SoundFile(source) as fh:
            sr = fh.samplerate
            # PCM_16 is read as int16 (half the bytes) and scaled while transposing: one pass, and
            # the same floats as libsndfile's (x * 2**-15 is exact); integers are always finite.
            pcm16 = fh.subtype == "PCM_16"
            data = fh.read(dtype="int16" if pcm16 else "float32", always_2d=True)
    except Exception as err:
        raise AudioFileError(path, f"unreadable audio ({_why(err)})") from err
    if data.shape[0] == 0:
        raise AudioFileError(path, "audio file holds no samples")
    if pcm16:
        audio = np.empty(data.shape[::-1], dtype=np.float32)
        np.multiply(data.T, np.float32(1.0 / 32768.0), out=audio)
        check_finite = False
    else:
        audio = np.ascontiguousarray(data.T)
    # One sum is enough to prove finiteness (NaN/Inf propagate); count only when it is not finite.
    if check_finite and not np.isfinite(audio.sum()) and not np.all(np.isfinite(audio)):
        bad = int(np.size(audio) - np.count_nonzero(np.isfinite(audio)))
        raise AudioFileError(path, f"{bad} NaN/Inf samples")
    if mono and audio.shape[0] > 1:
        audio = audio.mean(axis=0, keepdims=True)
    if sample_rate is not None and int(sample_rate) != int(sr):
        audio = resample(audio, int(sr), int(sample_rate))
        sr = int(sample_rate)
    return audio, int(sr)


def _checked(path, audio: np.ndarray, subtype: str) -> tuple[np.ndarray, str]:
    if np.asarray(audio).dtype == np.int16:
        audio = np.asarray(audio)
        subtype = "PCM_16"
    else:
        audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim == 1:
        audio = audio[None, :]
    if audio.ndim != 2:
        raise AudioFileError(path, f"expected (channels, samples) audio, got shape {audio.shape}")
    if audio.dtype != np.int16 and not np.all(np.isfinite(audio)):
        raise AudioFileError(path, "refusing to write NaN/Inf samples")
    return audio, subtype


def wav_bytes(audio: np.ndarray, sample_rate: int = DEFAULT_SAMPLE_RATE, *, subtype: str = "PCM_16",
              name: str = "<memory>") -> bytes:
    """The WAV file :func:`write_audio` would write, as bytes (for staging on object storage)."""
    import soundfile as sf

    audio, subtype = _checked(name, audio, subtype)
    buf = io.BytesIO()
    try:
        sf.write(buf, audio.T, int(sample_rate), subtype=subtype, format="WAV")
    except Exception as err:
        raise AudioFileError(name, f"cannot write audio ({_why(err)})") from err
    return buf.getvalue()


def write_audio(
    path: str | os.PathLike, audio: np.ndarray, sample_rate: int = DEFAULT_SAMPLE_RATE, *, subtype: str = "PCM_16"
) -> Path | str:
    """Write a ``(channels, samples)`` (or 1-D mono) waveform; parent folders are created.

    ``subtype`` is a soundfile subtype (``PCM_16``, ``PCM_24``, ``FLOAT``). Integer subtypes clip at ±1.
    An int16 array is written bit-exactly as PCM_16 (so sums of stems stay exact). A remote path
    (``gs://``) is written as WAV from memory; the local path is returned as a ``Path``.
    """
    import soundfile as sf

    text = os.fspath(path)
    if not storage.is_local(text):
        storage.write_bytes(text, wav_bytes(audio, sample_rate, subtype=subtype, name=text))
        return text
    path = Path(text)
    audio, subtype = _checked(path, audio, subtype)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        sf.write(str(path), audio.T, int(sample_rate), subtype=subtype)
    except Exception as err:
        raise AudioFileError(path, f"cannot write audio ({_why(err)})") from err
    return path


def to_int16(audio: np.ndarray) -> np.ndarray:
    """Float [-1, 1) -> int16 with rounding and clipping (scale 32768, as soundfile reads PCM_16).

    float32 input stays float32: scaling by 2**15 is exact, so rounding there gives the same ints as
    float64 at half the memory traffic (this runs on every sample the stems preprocessing writes).
    """
    audio = np.asarray(audio)
    x = audio * np.float32(32768.0) if audio.dtype == np.float32 else audio.astype(np.float64) * 32768.0
    np.rint(x, out=x)
    np.clip(x, -32768, 32767, out=x)
    return x.astype(np.int16)


def from_int16(pcm: np.ndarray) -> np.ndarray:
    """int16 -> float32 in [-1, 1) (inverse of :func:`to_int16`; equals soundfile's PCM_16 read)."""
    return np.asarray(pcm, dtype=np.float32) / np.float32(32768.0)


def is_audio_file(path: str | os.PathLike) -> bool:
    return os.path.splitext(os.fspath(path))[1].lower() in AUDIO_EXTENSIONS
