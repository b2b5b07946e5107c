"""Training augmentations that help separators trained on synthesized songs meet real ones.

Each is a pure tf function of audio and a stateless seed, used by :func:`tfmusic.data.stems.dataset.make_dataset`
and switched by :class:`Augmentation` (the ``augmentation`` key of a separation training config):

- **remix** (Open-Unmix's random mixing): every stem of a mixture comes from another song.
- **eq**: a random smooth EQ curve per stem (tilt plus a few peaking bands on a log-frequency axis),
  so a model does not learn one SoundFont's or one kit's spectrum.
- **limiter** (LimitAug, Hwang et al., arXiv 2208.14355): the re-summed mixture is driven into a
  look-ahead peak limiter, as loud masters are; the limiter's gain curve is applied to every stem,
  so the target stays exactly the limited mixture's share. Models trained only on unlimited mixes
  lose SDR on commercially mastered songs.
"""

from __future__ import annotations

import dataclasses

LIMITER_BLOCK = 128  # samples (2.9 ms at 44.1 kHz) per gain step; the look-ahead is one block each side
LIMITER_RELEASE = 2048  # samples (46 ms) over which the gain recovers
LIMITER_CEILING = 0.98
EQ_BANDS = 3


@dataclasses.dataclass
class Augmentation:
    """Which augmentations a training pipeline applies (all on by default; ``augment: false`` turns
    every one off). Probabilities are per example (limiter) or per stem (eq)."""

    remix: bool = True  # stems drawn from other songs of the shuffled group (Open-Unmix)
    eq: float = 0.5  # chance that a stem gets a random EQ curve
    eq_db: float = 9.0  # largest boost/cut of a band or of the tilt, dB
    limiter: float = 0.5  # chance that the mixture is driven into the limiter (LimitAug)
    limiter_drive_db: list[float] = dataclasses.field(default_factory=lambda: [0.0, 12.0])  # gain into it, dB

    def problem(self) -> str | None:
        """What is wrong with these settings (named by key), or None."""
        for name in ("eq", "limiter"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                return f"augmentation.{name} must be a probability in [0, 1], got {value}"
        if self.eq_db < 0:
            return f"augmentation.eq_db must be >= 0, got {self.eq_db}"
        drive = list(self.limiter_drive_db)
        if len(drive) != 2 or not 0.0 <= drive[0] <= drive[1]:
            return f"augmentation.limiter_drive_db must be [low, high] with 0 <= low <= high, got {drive}"
        return None


def random_eq(audio, seed, probability: float, max_db: float, sample_rate: int):
    """``audio`` (C, S) through a random smooth EQ curve (applied by FFT) with ``probability``."""
    import math

    import tensorflow as tf

    if probability <= 0.0 or max_db <= 0.0:
        return audio
    samples = audio.shape[-1]
    bins = samples // 2 + 1
    u = tf.random.stateless_uniform([2 + 3 * EQ_BANDS], seed=seed)
    nyquist = sample_rate / 2.0
    freqs = tf.linspace(0.0, nyquist, bins)  # log-frequency position of each bin: 0 at 20 Hz, 1 at Nyquist
    logf = tf.math.log(tf.maximum(freqs, 20.0) / 20.0) / math.log(nyquist / 20.0)
    curve = (u[1] * 2.0 - 1.0) * max_db * (logf - 0.5)  # tilt
    for k in range(EQ_BANDS):
        centre, gain, width = u[2 + 3 * k], (u[3 + 3 * k] * 2.0 - 1.0) * max_db, 0.03 + 0.12 * u[4 + 3 * k]
        curve += gain * tf.exp(-0.5 * tf.square((logf - centre) / width))
    gains = tf.cast(tf.pow(10.0, curve / 20.0), tf.complex64)
    filtered = tf.signal.irfft(tf.signal.rfft(audio) * gains, fft_length=[samples])
    return tf.cond(u[0] < probability, lambda: tf.ensure_shape(filtered, audio.shape), lambda: audio)


def limiter_gain(mixture, drive_db):
    """The gain curve ``(S,)`` of a look-ahead peak limiter fed ``mixture`` (C, S) times ``drive_db``.

    Worked on blocks of ``LIMITER_BLOCK`` samples (a stride-1 pool over 2048 samples took 0.4 s per
    6 s mixture): each block's gain is ``min(1, ceiling / peak)`` of the block and its neighbours (the
    look-ahead), held at the deepest reduction over the release time, then spread back to samples by
    a moving average one block wide. Every sample's gain is an average of gains that each already
    satisfy its block, so the output never exceeds the ceiling."""
    import tensorflow as tf

    samples = mixture.shape[-1]
    blocks = -(-samples // LIMITER_BLOCK)
    drive = tf.pow(10.0, drive_db / 20.0)
    peak = tf.pad(tf.reduce_max(tf.abs(mixture), axis=0) * drive, [[0, blocks * LIMITER_BLOCK - samples]])
    block_peak = tf.reduce_max(tf.reshape(peak, [blocks, LIMITER_BLOCK]), axis=1)[None, :, None]
    gain = tf.minimum(1.0, LIMITER_CEILING / tf.maximum(tf.nn.max_pool1d(block_peak, 3, 1, "SAME"), 1e-9))
    gain = -tf.nn.max_pool1d(-gain, LIMITER_RELEASE // LIMITER_BLOCK, 1, "SAME")  # hold over the release
    per_sample = tf.repeat(gain[0, :, 0], LIMITER_BLOCK)[None, :, None]
    smooth = tf.nn.avg_pool1d(per_sample, LIMITER_BLOCK + 1, 1, "SAME")  # no steps (clicks) between blocks
    return smooth[0, :samples, 0] * drive


def random_limiter(mixture, stems, seed, probability: float, drive_db):
    """LimitAug with ``probability``: ``(mixture, stems)`` times one limiter gain curve (S,)."""
    import tensorflow as tf

    if probability <= 0.0:
        return mixture, stems
    u = tf.random.stateless_uniform([2], seed=seed)
    gain = limiter_gain(mixture, drive_db[0] + u[1] * (drive_db[1] - drive_db[0]))
    gain = tf.where(u[0] < probability, gain, tf.ones_like(gain))
    return mixture * gain, [s * gain for s in stems]
