"""What an evaluation worker reads: held-out songs and models, local or on object storage.

Songs are :class:`~tfmusic.data.stems.track.Track` records whose ``load`` reads through
:mod:`tfmusic.storage`; models are ``.keras`` files or training run directories, copied into the
worker's own temp folder when they live on object storage (Keras loads local files only).
"""

from __future__ import annotations

import os
from typing import Any, Sequence

import numpy as np

from tfmusic import storage
from tfmusic.evaluation.metrics import SAMPLE_RATE
from tfmusic.evaluation.scoring import TrackAudio
from tfmusic.evaluation.signals import DiskSignal

__all__ = ["load_separator", "track_audio"]


def track_audio(track: Any, targets: Sequence[str], sample_rate: int = SAMPLE_RATE,
                max_seconds: float | None = None, scratch: str | None = None) -> TrackAudio:
    """Load a dataset Track into a TrackAudio (references of ``targets`` and their activity labels).

    ``track.load`` reads every file through storage; ``max_seconds`` crops the song (quick runs).
    With ``scratch`` (a local folder) the mixture and references are spilled there as
    :class:`~tfmusic.evaluation.signals.DiskSignal` s, read one target at a time when the song has a
    mixture file, so at most the mixture and one reference are in memory at once.
    """
    n = int(max_seconds * sample_rate) if max_seconds else None
    if scratch is not None and getattr(track, "mixture", None) and len(targets) > 1:
        audio = _read(track, [[t] for t in targets], sample_rate, n, scratch)
        if audio is not None:
            return audio
    return _read(track, [list(targets)], sample_rate, n, scratch)


def _read(track: Any, reads: list[list[str]], sample_rate: int, n: int | None,
          scratch: str | None) -> TrackAudio | None:
    """One ``track.load`` per group of targets; None when the groups' mixtures differ in shape (a
    stem longer or wider than the mixture re-aligns the whole song: read it in one group then)."""
    from tfmusic.audio.frames import num_frames
    from tfmusic.data.stems.activity import song_confidence

    mixture, refs, labels = None, {}, {}
    for wanted in reads:
        mix, stems = track.load(sample_rate, instruments=wanted)
        mix = mix[:, :n]
        if mixture is None:
            mixture = DiskSignal.write(os.path.join(scratch, "mixture.f32"), mix) if scratch else mix
        elif tuple(mix.shape) != tuple(mixture.shape):
            return None
        for t in wanted:
            ref = stems.pop(t)[:, :n] if t in stems else None
            labels[t] = song_confidence(ref) if ref is not None else np.zeros(num_frames(mix.shape[-1]), np.float32)
            if ref is not None:
                refs[t] = DiskSignal.write(os.path.join(scratch, f"reference.{t}.f32"), ref) if scratch else ref
            del ref  # spilled: the next read must not find the last one still in memory
        del mix, stems
    return TrackAudio(name=track.name, mixture=mixture, references=refs, activity_labels=labels, scratch=scratch)


def load_separator(paths: Sequence[str]):
    """``load_separator`` on local copies of remote models (Keras reads local files only).

    A remote ``.keras`` file is copied as is; a remote run directory as its ``model.keras`` and
    ``config.json``. The copies live in this process's own temp folder only while loading.
    """
    import tempfile

    from tfmusic.models.separator import load_separator as load

    if all(storage.is_local(p) for p in paths):
        return load(list(paths), stft_method="fft")
    with tempfile.TemporaryDirectory(prefix="tfmusic-model-") as tmp:
        local = []
        for i, p in enumerate(paths):
            if storage.is_local(p):
                local.append(p)
                continue
            folder = os.path.join(tmp, str(i))
            os.makedirs(folder)
            if p.endswith(".keras"):
                dst = os.path.join(folder, storage.basename(p))
                with open(dst, "wb") as fh:
                    fh.write(storage.read_bytes(p))
                local.append(dst)
                continue
            run = os.path.join(folder, storage.basename(p))
            os.makedirs(run)
            for name in ("model.keras", "config.json"):
                src = storage.join(p, name)
                if storage.exists(src):
                    with open(os.path.join(run, name), "wb") as fh:
                        fh.write(storage.read_bytes(src))
            local.append(run)
        return load(local, stft_method="fft")  # in process: FFT STFT, same spectra, ~20x faster
