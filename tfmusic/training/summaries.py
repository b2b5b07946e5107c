"""TensorBoard output of the trainer: scalar writers and audio / spectrogram-image helpers.

Events go to ``<run_dir>/tensorboard/train`` and ``<run_dir>/tensorboard/eval`` (the HParams
session and ``final/*`` scalars to ``<run_dir>/tensorboard``); only the chief
writes (other workers get no-op writers). Tasks call :func:`audio` and :func:`spectrogram_image`
from their ``write_summaries`` hook, which the trainer runs eagerly inside the eval writer's
default context with the step already set.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

import numpy as np
import tensorflow as tf


class SummaryWriters:
    """The ``tf.summary`` writers of one run (no-ops on non-chief workers).

    ``train`` and ``eval`` hold the curves; ``session`` writes into ``tensorboard/`` itself, the
    HParams session of the run (its metrics are read from ``train``/``eval`` below it).
    """

    def __init__(self, run_dir: str | Path | None, enabled: bool = True) -> None:
        self.train_dir = self.eval_dir = ""
        if enabled and run_dir is not None:
            base = str(Path(run_dir) / "tensorboard")
            self.train_dir, self.eval_dir = f"{base}/train", f"{base}/eval"
            self.train = tf.summary.create_file_writer(self.train_dir)
            self.eval = tf.summary.create_file_writer(self.eval_dir)
            self.session = tf.summary.create_file_writer(base)
        else:
            self.train = tf.summary.create_noop_writer()
            self.eval = tf.summary.create_noop_writer()
            self.session = tf.summary.create_noop_writer()

    def scalars(self, writer, values: Mapping[str, float], step: int) -> None:
        with writer.as_default(step=step):
            for name, value in values.items():
                tf.summary.scalar(name, float(value))
        writer.flush()

    def close(self) -> None:
        for writer in (self.train, self.eval, self.session):
            writer.flush()
            writer.close()


def audio(name: str, waveform, sample_rate: int = 44100, max_outputs: int = 1) -> None:
    """Log waveforms shaped ``(batch, channels, samples)`` (project convention) as audio clips.

    Each clip is peak-normalised jointly over the batch so relative levels stay comparable.
    """
    wave = np.asarray(waveform, dtype=np.float32)[:max_outputs]
    if wave.ndim != 3:
        raise ValueError(f"audio summary {name!r}: expected (batch, channels, samples), got {wave.shape}")
    peak = float(np.max(np.abs(wave))) if wave.size else 0.0
    if peak > 1.0:
        wave = wave / peak
    tf.summary.audio(name, np.transpose(wave, (0, 2, 1)), sample_rate=sample_rate,
                     max_outputs=max_outputs, encoding="wav")


def spectrogram_image(name: str, magnitude, max_outputs: int = 1, top_db: float = 80.0,
                      max_rows: int = 256) -> None:
    """Log magnitudes shaped ``(batch, channels, frames, bins)`` as dB images (low bins at the bottom).

    Channels are averaged; groups of adjacent bins are averaged so the image has at most
    ``max_rows`` rows (2049 bins -> 256); values map from ``[max - top_db, max]`` dB to ``[0, 1]``.
    """
    mag = np.asarray(magnitude, dtype=np.float32)[:max_outputs]
    if mag.ndim != 4:
        raise ValueError(
            f"spectrogram summary {name!r}: expected (batch, channels, frames, bins), got {mag.shape}"
        )
    mag = mag.mean(axis=1)  # (B, T, F)
    group = max(1, -(-mag.shape[-1] // max_rows))
    usable = (mag.shape[-1] // group) * group
    if group > 1:
        mag = mag[..., :usable].reshape(*mag.shape[:-1], usable // group, group).mean(axis=-1)
    db = 20.0 * np.log10(np.maximum(mag, 1e-8))
    top = db.max(axis=(1, 2), keepdims=True)
    img = np.clip((db - (top - top_db)) / top_db, 0.0, 1.0)
    img = np.transpose(img, (0, 2, 1))[:, ::-1, :, None]  # (B, F, T, 1), low frequencies at the bottom
    tf.summary.image(name, img, max_outputs=max_outputs)
