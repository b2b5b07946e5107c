"""Whole-song signals read slice by slice, so evaluating a long song holds chunks, not songs.

A 10-minute stereo song is 200 MB per float32 signal; an evaluation touches the mixture, one
reference and one estimate per target, per model and per oracle. Everything downstream
(:mod:`tfmusic.evaluation.bss_v4`, the chunk driver, the silence and finiteness checks) reads a
signal only through ``.shape`` and ``x[:, a:b]``, so any object with those two serves: a numpy
array (tests, short songs), a :class:`DiskSignal` (a float32 file in the evaluation's scratch
folder, written as the chunk driver produces it) or a :class:`Difference` (the "rest" of a
target, mixture minus target, never materialized). Memory then stays at a few chunks whatever
the number of targets, models and oracles.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from typing import Any, Iterator

import numpy as np

CHUNK = 1 << 18  # samples per pass of the whole-signal checks (~6 s at 44.1 kHz)

__all__ = ["CHUNK", "DiskSignal", "DiskSink", "Difference", "all_finite", "chunks", "is_signal", "museval_silent",
           "spill_folder", "to_array"]


def is_signal(x: Any) -> bool:
    """True for a lazy ``(C, S)`` signal (not an ndarray) that the evaluation reads slice by slice."""
    return not isinstance(x, np.ndarray) and hasattr(x, "shape") and hasattr(x, "__getitem__") \
        and len(x.shape) == 2


def _time_slice(key: Any, samples: int) -> tuple[Any, int, int]:
    """``(channel index, start, stop)`` of a ``x[:, a:b]``-style key (unit step only)."""
    channels, time = key if isinstance(key, tuple) else (key, slice(None))
    if not isinstance(time, slice) or time.step not in (None, 1):
        raise IndexError(f"signals are read in contiguous time slices, got {time!r}")
    start, stop, _ = time.indices(samples)
    return channels, start, max(start, stop)


def _frames(audio: np.ndarray) -> bytes:
    """``(C, n)`` samples as interleaved float32 frames, the layout of a :class:`DiskSignal` file."""
    return np.ascontiguousarray(np.asarray(audio).T, dtype=np.float32).tobytes()


class DiskSignal:
    """A float32 ``(C, S)`` signal in a local file (frames interleaved, as in a float WAV)."""

    dtype = np.dtype(np.float32)
    ndim = 2

    def __init__(self, path: str, channels: int, samples: int) -> None:
        self.path, self.shape = path, (int(channels), int(samples))
        expected = self.shape[0] * self.shape[1] * self.dtype.itemsize
        if os.path.getsize(path) != expected:
            raise ValueError(f"{path}: holds {os.path.getsize(path)} bytes, a {self.shape} float32 signal "
                             f"needs {expected}")

    @classmethod
    def write(cls, path: str, audio: np.ndarray) -> "DiskSignal":
        """Spill an in-memory ``(C, S)`` array to ``path``."""
        with open(path, "wb") as fh:
            for piece in chunks(audio):
                fh.write(_frames(piece))
        return cls(path, *audio.shape)

    def __getitem__(self, key: Any) -> np.ndarray:
        channels, start, stop = _time_slice(key, self.shape[1])
        c = self.shape[0]
        frames = np.fromfile(self.path, dtype=self.dtype, count=(stop - start) * c,
                             offset=start * c * self.dtype.itemsize)
        return frames.reshape(-1, c).T[channels]

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        out = np.ascontiguousarray(self[:, :])
        return out if dtype is None else out.astype(dtype)

    def __repr__(self) -> str:
        return f"DiskSignal({self.path!r}, shape={self.shape})"


@contextlib.contextmanager
def spill_folder(scratch: str | None) -> Iterator[str | None]:
    """A fresh folder under ``scratch`` for one method's spilled estimates, removed (with them) on
    exit, so a song's scratch never holds more than one method's outputs; None without scratch."""
    if scratch is None:
        yield None
        return
    with tempfile.TemporaryDirectory(dir=scratch) as folder:
        yield folder


class DiskSink:
    """A chunk-driver sink (:func:`tfmusic.audio.chunking.separate_waveform`) that appends each
    waveform output to its own :class:`DiskSignal` under ``folder``; :meth:`signals` after the run."""

    def __init__(self, folder: str, samples: int) -> None:
        self.folder, self.samples = folder, int(samples)
        self._files: dict[str, Any] = {}
        self._channels: dict[str, int] = {}

    def path(self, name: str) -> str:
        return os.path.join(self.folder, f"{name}.f32")

    def __call__(self, name: str, segment: np.ndarray) -> None:
        if name not in self._files:
            self._files[name] = open(self.path(name), "wb")
            self._channels[name] = int(segment.shape[0])
        self._files[name].write(_frames(segment))

    def signals(self) -> dict[str, DiskSignal]:
        """Close the files and open each output for reading."""
        for fh in self._files.values():
            fh.close()
        return {name: DiskSignal(self.path(name), self._channels[name], self.samples) for name in self._files}


class Difference:
    """``a - b``, computed per slice (the rest of a target: mixture minus target)."""

    def __init__(self, a: Any, b: Any) -> None:
        if tuple(a.shape) != tuple(b.shape):
            raise ValueError(f"cannot subtract signals of shapes {tuple(a.shape)} and {tuple(b.shape)}")
        self.a, self.b, self.shape = a, b, tuple(a.shape)
        self.ndim = 2

    def __getitem__(self, key: Any) -> np.ndarray:
        return np.asarray(self.a[key]) - np.asarray(self.b[key])

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        out = to_array(self.a) - to_array(self.b)
        return out if dtype is None else out.astype(dtype)


def chunks(x: Any, size: int = CHUNK) -> Iterator[np.ndarray]:
    """``x[:, a:a+size]`` for consecutive ``a`` (the whole signal, one chunk in memory at a time)."""
    for start in range(0, int(x.shape[-1]), size):
        yield np.asarray(x[:, start:start + size])


def all_finite(x: Any) -> bool:
    """No NaN/Inf sample (one sum per chunk proves it; NaN and Inf propagate)."""
    return all(np.isfinite(np.sum(c, dtype=np.float64)) or np.all(np.isfinite(c)) for c in chunks(x))


def museval_silent(x: Any) -> bool:
    """museval's silence test (whole signal or one window): the channel sum is zero at every sample."""
    return not any(np.any(np.sum(c, axis=0)) for c in chunks(x))


def to_array(x: Any) -> np.ndarray:
    """The whole signal in memory (only for paths that need it: museval's v3 mode, plots)."""
    return np.asarray(x) if isinstance(x, np.ndarray) else np.asarray(x[:, :])
