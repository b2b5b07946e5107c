"""Hostile audio files for the fuzz tests: one function writes the whole corpus into a folder.

Each entry is a file that a careless reader crashes or hangs on, or silently misreads: torn and
garbage bytes, a header claiming a huge chunk, no samples, one sample, eight channels, 384 kHz,
8-bit PCM and non-finite floats.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import soundfile as sf


def _riff(fmt_chunk: bytes, data: bytes, extra: bytes = b"") -> bytes:
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt_chunk)) + fmt_chunk + extra
    body += b"data" + struct.pack("<I", len(data)) + data
    return b"RIFF" + struct.pack("<I", len(body)) + body


def _pcm16_fmt(channels: int = 2, rate: int = 44100) -> bytes:
    return struct.pack("<HHIIHH", 1, channels, rate, rate * channels * 2, channels * 2, 16)


def write_corpus(folder: Path, seconds: float = 0.5) -> dict[str, Path]:
    """Write every hostile file into ``folder``; ``{kind: path}``."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    n = int(44100 * seconds)
    stereo = (0.1 * rng.standard_normal((n, 2))).astype(np.float32)
    files: dict[str, Path] = {}

    def raw(kind: str, data: bytes) -> None:
        files[kind] = folder / f"{kind}.wav"
        files[kind].write_bytes(data)

    def audio(kind: str, samples: np.ndarray, rate: int = 44100, subtype: str = "PCM_16") -> None:
        files[kind] = folder / f"{kind}.wav"
        sf.write(files[kind], samples, rate, subtype=subtype)

    pcm = (stereo * 32767).astype("<i2").tobytes()
    raw("truncated", _riff(_pcm16_fmt(), pcm)[: 44 + len(pcm) // 3 + 1])  # header promises 3x the bytes
    raw("garbage", rng.integers(0, 256, 4096, dtype=np.uint8).tobytes())
    raw("huge_header", _riff(_pcm16_fmt(), pcm[:4000], extra=b"LIST" + struct.pack("<I", 0xFFFFFFF0) + b"INFO"))
    raw("empty", b"")
    raw("zero_frames", _riff(_pcm16_fmt(), b""))
    audio("one_sample", stereo[:1])
    audio("eight_channels", (0.1 * rng.standard_normal((n, 8))).astype(np.float32))
    audio("rate_384k", (0.1 * rng.standard_normal((int(384000 * seconds), 2))).astype(np.float32), rate=384000)
    audio("int8", stereo, subtype="PCM_U8")
    nan = stereo.copy()
    nan[n // 2] = np.nan
    audio("nan", nan, subtype="FLOAT")
    inf = stereo.copy()
    inf[n // 3, 1] = np.inf
    audio("inf", inf, subtype="FLOAT")
    return files


def write_good(path: Path, seconds: float = 1.0, seed: int = 1, channels: int = 2) -> Path:
    """A plain, valid stereo song for the batch around the hostile files."""
    t = np.arange(int(44100 * seconds)) / 44100
    x = np.stack([0.3 * np.sin(2 * np.pi * (220 + 40 * c + seed) * t) for c in range(channels)], axis=1)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, x.astype(np.float32), 44100, subtype="FLOAT")
    return path
