"""What an evaluation worker reads: held-out songs and models, local or on object storage.

Songs are :class:`~tfmusic.data.stems.layouts.Track` records whose ``load`` reads through
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

__all__ = ["load_separator", "track_audio"]


def track_audio(track: Any, targets: Sequence[str], sample_rate: int = SAMPLE_RATE,
                max_seconds: float | None = None) -> TrackAudio:
    """Load a dataset Track into a TrackAudio (references of ``targets`` and their activity labels).

    ``track.load`` reads every file through storage; ``max_seconds`` crops the song (quick runs).
    """
    from tfmusic.data.stems.activity import song_confidence

    mixture, stems = track.load(sample_rate, instruments=list(targets))
    if max_seconds:
        n = int(max_seconds * sample_rate)
        mixture = mixture[:, :n]
        stems = {k: v[:, :n] for k, v in stems.items()}
    refs = {t: stems[t] for t in targets if t in stems}
    labels = {t: song_confidence(refs.get(t, np.zeros_like(mixture))) for t in targets}
    return TrackAudio(name=track.name, mixture=mixture, references=refs, activity_labels=labels)


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
