"""IASS+pitch: the IASS U-Net with a multi-pitch head (multitask separation and transcription).

Why: the IASS paper names richer instrument information than activity as future work; synthesized
stems come with exact 88-key multi-pitch labels (:mod:`tfmusic.data.stems.pitch`), so a second
head learns which keys the target instrument plays in each frame, and the separation can be read
out as a transcription too.

Everything of :class:`~tfmusic.models.iass.IASS` is unchanged (mask, estimate, activity logits,
inference gating); the output dict gains ``pitch_logits`` ``(B, T, 88)`` (one logit per frame and
key, A0..C8). Two heads:

- ``pitch_head="spectral"`` (default, issue 26): the latent's 55 frequency rows are ~290 Hz apart,
  far coarser than a semitone in the bass (2.4 Hz at E1), and a head on them learned nothing (all
  keys off). This head reads the separated estimate (mask x mixture, before activity gating) and
  the mixture magnitude through a fixed log-frequency filterbank (``pitch_bins_per_semitone`` rows
  per semitone, triangular over the STFT bins, never narrower than one bin), log-compressed, then
  stacks the rows of each key's harmonics ``pitch_harmonics`` as channels (as basic-pitch's
  harmonic CQT: a bass fundamental the STFT cannot resolve is resolved by its 3rd-5th partials),
  and runs two 3x3 convs over (time, log-frequency) and a stride-``bins_per_semitone`` conv to one
  logit per key. The pitch loss reaches the U-Net through the estimate (``pitch_detach`` stops it).
- ``pitch_head="latent"``: the issue-17 head (conv3x3 over the ``(B, T, 55, 48)`` latent, dense to
  88 keys); kept so models saved before issue 26 (whose config has no ``pitch_head``) still load.

``pitch_threshold`` is the decision threshold chosen on the validation split after training
(:func:`tfmusic.training.separation_pitch.calibrate_threshold`). Inference logits are centred on
it (``logit - logit(pitch_threshold)``), so ``sigmoid(pitch_logits) >= 0.5`` is the model's own
decision in every backend (in process, SavedModel, ONNX, gRPC) without extra metadata; training
logits are raw. Only keras.layers / keras.ops.
"""

from __future__ import annotations

import math
from typing import Sequence

import keras
import numpy as np
from keras import ops

from tfmusic.data.stems.pitch import LOW_PITCH, NUM_KEYS
from tfmusic.models.iass import IASS, _SLOPE, _bn, iass_frequency_sizes

__all__ = ["IASSPitch", "PitchHead", "SpectralPitchHead", "NUM_KEYS", "LOW_PITCH", "PITCH_HEADS",
           "log_frequency_filterbank"]

PITCH_HEADS = ("spectral", "latent")
DEFAULT_HARMONICS = (0.5, 1.0, 2.0, 3.0, 4.0, 5.0)


def log_frequency_filterbank(sample_rate: int, n_fft: int, n_bins: int, bins_per_semitone: int, low_midi: float,
                             count: int) -> np.ndarray:
    """``(n_bins, count)`` weights from STFT bins to log-frequency rows ``low_midi + j / bins_per_semitone``.

    Each row is a triangle around its centre frequency, half as wide as the row spacing or one STFT
    bin, whichever is wider (below ~200 Hz rows are narrower than a bin, so they interpolate the two
    nearest bins instead of catching none), normalized to sum 1; rows above ``n_bins`` are zero.
    """
    bin_hz = sample_rate / float(n_fft)
    freqs = np.arange(n_bins) * bin_hz
    midi = low_midi + np.arange(count) / float(bins_per_semitone)
    centres = 440.0 * 2.0 ** ((midi - 69.0) / 12.0)
    widths = np.maximum(centres * (2.0 ** (1.0 / (12 * bins_per_semitone)) - 1.0), bin_hz)
    weights = np.maximum(0.0, 1.0 - np.abs(freqs[:, None] - centres[None, :]) / widths[None, :])
    weights[:, centres > freqs[-1]] = 0.0
    total = weights.sum(axis=0, keepdims=True)
    return (weights / np.where(total > 0, total, 1.0)).astype(np.float32)


@keras.saving.register_keras_serializable(package="tfmusic")
class SpectralPitchHead(keras.layers.Layer):
    """Mixture and estimate ``(B, C, T, F)`` -> ``(B, T, keys)`` logits (module docstring, "spectral")."""

    def __init__(self, filters: int = 32, keys: int = NUM_KEYS, bins_per_semitone: int = 3,
                 harmonics: Sequence[float] = DEFAULT_HARMONICS, sample_rate: int = 44100, n_fft: int = 4096,
                 n_bins: int = 1487, detach: bool = False, **kwargs) -> None:
        super().__init__(**kwargs)
        if bins_per_semitone < 1 or not harmonics or min(harmonics) <= 0:
            raise ValueError(f"need bins_per_semitone >= 1 and positive harmonics, got {bins_per_semitone}, "
                             f"{list(harmonics)}")
        self.filters, self.keys, self.bins_per_semitone = int(filters), int(keys), int(bins_per_semitone)
        self.harmonics = [float(h) for h in harmonics]
        self.sample_rate, self.n_fft, self.n_bins, self.detach = int(sample_rate), int(n_fft), int(n_bins), bool(detach)
        per_octave = 12 * self.bins_per_semitone
        self.shifts = [int(round(per_octave * math.log2(h))) for h in self.harmonics]
        self.offset = max(0, -min(self.shifts))  # rows below A0 that subharmonics read
        rows = self.offset + self.keys * self.bins_per_semitone + max(0, max(self.shifts))
        self.filterbank = log_frequency_filterbank(self.sample_rate, self.n_fft, self.n_bins, self.bins_per_semitone,
                                                   LOW_PITCH - self.offset / self.bins_per_semitone, rows)
        self.in_bn = _bn("in_bn")
        self.conv1 = keras.layers.Conv2D(self.filters, 3, padding="same", name="conv1")
        self.bn1 = _bn("bn1")
        self.conv2 = keras.layers.Conv2D(self.filters, 3, padding="same", name="conv2")
        self.bn2 = _bn("bn2")
        self.out = keras.layers.Conv2D(1, (1, self.bins_per_semitone), strides=(1, self.bins_per_semitone),
                                       name="out")

    def harmonic_view(self, mixture, estimate):
        """``(B, T, keys * bins_per_semitone, 2 * len(harmonics))``: log-compressed log-frequency rows of
        the estimate and the mixture, each key's harmonic rows stacked as channels."""
        if self.detach:
            estimate = ops.stop_gradient(estimate)
        spec = ops.stack([ops.mean(estimate, axis=1), ops.mean(mixture, axis=1)], axis=2)  # (B, T, 2, F)
        bank = ops.cast(ops.convert_to_tensor(self.filterbank), spec.dtype)
        # log(1 + x), not log1p: tf2onnx has no Log1p (x >= 0 here, so nothing is lost)
        logf = ops.log(1.0 + ops.matmul(spec[..., : self.n_bins], bank))  # (B, T, 2, rows)
        width = self.keys * self.bins_per_semitone
        stacked = [logf[..., self.offset + s: self.offset + s + width] for s in self.shifts]
        x = ops.concatenate(stacked, axis=2)  # (B, T, 2 * H, width)
        return ops.transpose(x, (0, 1, 3, 2))

    def call(self, mixture, estimate, training=False):
        x = self.in_bn(self.harmonic_view(mixture, estimate), training=training)
        y = ops.leaky_relu(self.bn1(self.conv1(x), training=training), _SLOPE)
        y = ops.leaky_relu(self.bn2(self.conv2(y), training=training), _SLOPE)
        logits = self.out(y)  # (B, T, keys, 1)
        return ops.reshape(logits, (ops.shape(logits)[0], ops.shape(logits)[1], self.keys))

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(filters=self.filters, keys=self.keys, bins_per_semitone=self.bins_per_semitone,
                      harmonics=self.harmonics, sample_rate=self.sample_rate, n_fft=self.n_fft, n_bins=self.n_bins,
                      detach=self.detach)
        return config


@keras.saving.register_keras_serializable(package="tfmusic")
class PitchHead(keras.layers.Layer):
    """The issue-17 head: latent ``(B, T, F, C)`` -> ``(B, T, keys)`` logits (conv3x3-BN-LReLU, per-frame dense)."""

    def __init__(self, filters: int = 32, keys: int = NUM_KEYS, **kwargs) -> None:
        super().__init__(**kwargs)
        self.filters, self.keys = int(filters), int(keys)
        self.conv = keras.layers.Conv2D(self.filters, 3, padding="same", name="conv")
        self.bn = _bn("bn")
        self.out = keras.layers.Dense(self.keys, name="out")

    def call(self, z, training=False):
        y = ops.leaky_relu(self.bn(self.conv(z), training=training), _SLOPE)  # (B, T, F, filters)
        freq = y.shape[2]
        y = ops.reshape(y, (ops.shape(y)[0], ops.shape(y)[1], freq * self.filters))
        return self.out(y)

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(filters=self.filters, keys=self.keys)
        return config


@keras.saving.register_keras_serializable(package="tfmusic")
class IASSPitch(IASS):
    """IASS plus ``pitch_logits`` ``(B, T, pitch_keys)`` (module docstring); same constructor plus the
    ``pitch_*`` arguments: ``pitch_head`` (spectral | latent), ``pitch_filters`` (conv width),
    ``pitch_keys`` (88), ``pitch_bins_per_semitone`` and ``pitch_harmonics`` (spectral head),
    ``pitch_detach`` (no pitch gradient into the mask) and ``pitch_threshold`` (decision threshold)."""

    def __init__(self, pitch_filters: int = 32, pitch_keys: int = NUM_KEYS, pitch_head: str = "spectral",
                 pitch_bins_per_semitone: int = 3, pitch_harmonics: Sequence[float] = DEFAULT_HARMONICS,
                 pitch_detach: bool = False, pitch_threshold: float = 0.5, **kwargs) -> None:
        super().__init__(**kwargs)
        if pitch_filters < 1 or pitch_keys < 1:
            raise ValueError(f"need pitch_filters >= 1 and pitch_keys >= 1, got {pitch_filters}, {pitch_keys}")
        if pitch_head not in PITCH_HEADS:
            raise ValueError(f"pitch_head must be one of {PITCH_HEADS}, got {pitch_head!r}")
        if not 0.0 < pitch_threshold < 1.0:
            raise ValueError(f"pitch_threshold must be in (0, 1), got {pitch_threshold}")
        iass_frequency_sizes(self.max_bin)  # same validity check as the U-Net
        self.pitch_filters, self.pitch_keys, self.pitch_head = int(pitch_filters), int(pitch_keys), pitch_head
        self.pitch_bins_per_semitone = int(pitch_bins_per_semitone)
        self.pitch_harmonics = [float(h) for h in pitch_harmonics]
        self.pitch_detach, self.pitch_threshold = bool(pitch_detach), float(pitch_threshold)
        if pitch_head == "latent":
            self.pitch = PitchHead(self.pitch_filters, self.pitch_keys, name="pitch")
        else:
            self.pitch = SpectralPitchHead(self.pitch_filters, self.pitch_keys, self.pitch_bins_per_semitone,
                                           self.pitch_harmonics, self.sample_rate, self.n_fft, self.max_bin,
                                           self.pitch_detach, name="pitch")

    @property
    def pitch_offset(self) -> float:
        """``logit(pitch_threshold)``: what inference subtracts so that logit 0 is the decision."""
        return math.log(self.pitch_threshold / (1.0 - self.pitch_threshold))

    def extra_heads(self, z, mixture, estimate, training=False) -> dict:
        if self.pitch_head == "latent":
            logits = self.pitch(z, training=training)
        else:
            logits = self.pitch(mixture, estimate, training=training)
        if not training and self.pitch_offset:
            logits = logits - self.pitch_offset
        return {"pitch_logits": logits}

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(pitch_filters=self.pitch_filters, pitch_keys=self.pitch_keys, pitch_head=self.pitch_head,
                      pitch_bins_per_semitone=self.pitch_bins_per_semitone, pitch_harmonics=self.pitch_harmonics,
                      pitch_detach=self.pitch_detach, pitch_threshold=self.pitch_threshold)
        return config

    @classmethod
    def from_config(cls, config: dict) -> "IASSPitch":
        config = dict(config)
        config.setdefault("pitch_head", "latent")  # saved before issue 26: the latent head
        return cls(**config)
