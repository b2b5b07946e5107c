"""Recorded pitched instruments: Gravis UltraSound patch banks (Debian's ``freepats``) as a sampler.

``freepats`` holds recorded samples of pianos, guitars, five basses, strings, brass and winds as
GUS ``.pat`` files, one per GM program (``Tone_000/033_Finger_Bass.pat``) and one per GM drum note
(``Drum_000/035_Kick_1.pat``). The SoundFont renderer cannot read them, so this module does: the
patch format (a 129-byte file header, a 63-byte instrument and a 47-byte layer header, then per
sample a 96-byte header and its PCM), and a sampler that plays a note by resampling the sample whose
key range holds the note, looping its sustain loop for as long as the note is held, then releasing.

A bank folder is one "SoundFont" of a synth job: every program it lacks is played by the bank's
nearest program of the same GM family (then the nearest overall). It is identified by the sha256
of its patch files, checked on every worker like a SoundFont's.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import re
import struct

import numpy as np

from tfmusic import storage

TONES, DRUMS = "Tone_000", "Drum_000"
ATTACK_SECONDS = 0.003
RELEASE_SECONDS = 0.25
_FILE_HEADER, _INSTRUMENT_HEADER, _LAYER_HEADER, _SAMPLE_HEADER = 129, 63, 47, 96
_MODE_16BIT, _MODE_UNSIGNED, _MODE_LOOP, _MODE_PINGPONG = 1, 2, 4, 8


@dataclasses.dataclass(frozen=True)
class PatchSample:
    data: np.ndarray  # float32 mono PCM
    rate: int
    low_hz: float  # key range this sample answers
    high_hz: float
    root_hz: float  # pitch the sample was recorded at
    loop: tuple[int, int] | None  # sustain loop [start, end) in samples
    pan: float  # -1 left .. 1 right


def parse_patch(data: bytes, name: str = "patch") -> list[PatchSample]:
    """The samples of a GUS patch file (first instrument, first layer: all freepats patches have one)."""
    if len(data) < _FILE_HEADER or not data.startswith(b"GF1PATCH1"):
        raise ValueError(f"{name}: not a GUS patch (no 'GF1PATCH' header)")
    pos = _FILE_HEADER + _INSTRUMENT_HEADER
    if len(data) < pos + _LAYER_HEADER:
        raise ValueError(f"{name}: truncated patch header")
    count = data[pos + 6]
    pos += _LAYER_HEADER
    samples = []
    for k in range(count):
        if len(data) < pos + _SAMPLE_HEADER:
            raise ValueError(f"{name}: truncated at sample {k} header")
        length, loop_start, loop_end, rate, low, high, root = struct.unpack_from("<IIIHIII", data, pos + 8)
        balance = data[pos + 34]
        modes = data[pos + 55]
        pos += _SAMPLE_HEADER
        raw = data[pos:pos + length]
        if len(raw) < length:
            raise ValueError(f"{name}: truncated at sample {k} data ({len(raw)} of {length} bytes)")
        pos += length
        if modes & _MODE_16BIT:
            pcm = np.frombuffer(raw[: length // 2 * 2], dtype="<u2" if modes & _MODE_UNSIGNED else "<i2")
            audio = (pcm.astype(np.float32) - (32768.0 if modes & _MODE_UNSIGNED else 0.0)) / 32768.0
            loop_start, loop_end = loop_start // 2, loop_end // 2
        else:
            pcm = np.frombuffer(raw, dtype=np.uint8 if modes & _MODE_UNSIGNED else np.int8)
            audio = (pcm.astype(np.float32) - (128.0 if modes & _MODE_UNSIGNED else 0.0)) / 128.0
        loop = (loop_start, loop_end) if modes & _MODE_LOOP and 0 <= loop_start < loop_end <= audio.size else None
        if loop and modes & _MODE_PINGPONG:  # unfold a ping-pong loop into a forward one
            seg = audio[loop[0]:loop[1]]
            audio = np.concatenate([audio[: loop[1]], seg[::-1], audio[loop[1]:]])
            loop = (loop[0], loop[1] + seg.size)
        samples.append(PatchSample(audio, int(rate), low / 1000.0, high / 1000.0, max(root / 1000.0, 1e-3),
                                   loop, (balance - 7) / 7.5))
    if not samples:
        raise ValueError(f"{name}: the patch holds no sample")
    return samples


def is_bank(path: str) -> bool:
    """True for a folder holding a freepats-style ``Tone_000`` of GUS patches."""
    return bool(storage.glob(storage.join(path, TONES, "*.pat")))


@functools.lru_cache(maxsize=8)
def bank_files(path: str) -> dict[tuple[str, int], str]:
    """``{("tone"|"drum", GM program or note): patch path}`` of a bank."""
    files = {}
    for kind, folder in (("tone", TONES), ("drum", DRUMS)):
        for file in sorted(storage.glob(storage.join(path, folder, "*.pat"))):
            match = re.match(r"(\d{3})_", storage.basename(file))
            if match:
                files.setdefault((kind, int(match.group(1))), file)
    if not any(kind == "tone" for kind, _ in files):
        raise ValueError(f"sample bank {path}: no {TONES}/NNN_*.pat patches")
    return files


@functools.lru_cache(maxsize=256)
def load_patch(file: str) -> list[PatchSample]:
    return parse_patch(storage.read_bytes(file), file)


@functools.lru_cache(maxsize=8)
def bank_sha256(path: str) -> str:
    digest = hashlib.sha256()
    for file in sorted(bank_files(path).values()):
        digest.update(storage.basename(file).encode("utf-8"))
        digest.update(storage.read_bytes(file))
    return digest.hexdigest()


def bank_info(path: str) -> dict:
    """The driver's check of a bank: its patches parse and it has the programs to play a song."""
    files = bank_files(path)
    for file in files.values():
        load_patch(file)
    tones = sorted(p for kind, p in files if kind == "tone")
    return {"name": storage.basename(path.rstrip("/")), "kind": "GUS patch bank", "programs": len(tones),
            "drum_notes": sum(kind == "drum" for kind, _ in files), "sha256": bank_sha256(path)}


def patch_for(path: str, program: int, is_drum: bool = False, note: int = 0) -> str | None:
    """The patch that plays ``program`` (or drum ``note``): the bank's own, else its nearest program
    of the same GM family of eight, else its nearest program."""
    files = bank_files(path)
    if is_drum:
        return files.get(("drum", note))
    if ("tone", program) in files:
        return files[("tone", program)]
    tones = [p for kind, p in files if kind == "tone"]
    family = [p for p in tones if p // 8 == program // 8]
    best = min(family or tones, key=lambda p: (abs(p - program), p))
    return files[("tone", best)]


def _voice(sample: PatchSample, ratio: float, out_len: int) -> np.ndarray:
    """``out_len`` samples of ``sample`` played ``ratio`` times faster; a looping sample keeps
    cycling its sustain loop (also through the release, which the envelope fades)."""
    pos = np.arange(out_len, dtype=np.float64) * ratio
    if sample.loop is not None:
        start, end = sample.loop
        over = pos >= end
        pos[over] = start + np.mod(pos[over] - start, end - start)
    valid = pos < sample.data.size - 1
    out = np.zeros(out_len, dtype=np.float32)
    out[valid] = np.interp(pos[valid], np.arange(sample.data.size), sample.data).astype(np.float32)
    return out


def render_bank(path: str, program: int, is_drum: bool, notes, seconds: float, sample_rate: int) -> np.ndarray:
    """A part ``[(start s, end s, pitch, velocity)]`` as float32 stereo ``(2, samples)``."""
    total = int(round(seconds * sample_rate))
    out = np.zeros((2, total), dtype=np.float32)
    attack = max(1, int(ATTACK_SECONDS * sample_rate))
    release = int(RELEASE_SECONDS * sample_rate)
    for start, end, pitch, velocity in notes:
        file = patch_for(path, program, is_drum, int(pitch))
        begin = int(round(start * sample_rate))
        if file is None or begin >= total:
            continue
        samples = load_patch(file)
        freq = 440.0 * 2.0 ** ((pitch - 69) / 12.0)
        sample = min(samples, key=lambda s: 0 if s.low_hz <= freq <= s.high_hz else min(
            abs(np.log(freq / max(s.low_hz, 1e-3))), abs(np.log(freq / max(s.high_hz, 1e-3)))))
        ratio = (sample.rate / sample_rate) * (1.0 if is_drum else freq / sample.root_hz)
        hold = min(total - begin, max(1, int(round((end - start) * sample_rate))))
        n = min(total - begin, hold + release)
        voice = _voice(sample, ratio, n)
        envelope = np.ones(n, dtype=np.float32)
        envelope[: min(attack, n)] = np.linspace(0.0, 1.0, min(attack, n), dtype=np.float32)
        if n > hold:
            envelope[hold:] = np.exp(-np.arange(n - hold, dtype=np.float32) / (release / 6.0))
        level = (velocity / 127.0) ** 1.5
        angle = (np.clip(sample.pan, -1.0, 1.0) + 1.0) * np.pi / 4.0
        gains = np.array([np.cos(angle), np.sin(angle)], dtype=np.float32) * np.float32(np.sqrt(2.0) * level)
        out[:, begin:begin + n] += voice * envelope * gains[:, None]
    return out
