"""IASS+pitch: the IASS U-Net with a multi-pitch head on its latent (multitask separation).

Why: the IASS paper names richer instrument information than activity as future work; synthesized
stems come with exact 88-key multi-pitch labels (:mod:`tfmusic.data.stems.pitch`), so a second
head on the same latent learns which keys the target instrument plays in each frame, and the
separation can be read out as a transcription too.

Everything of :class:`~tfmusic.models.iass.IASS` is unchanged (mask, estimate, activity logits,
inference gating); the output dict gains ``pitch_logits`` ``(B, T, 88)`` (one logit per frame and
key, A0..C8, sigmoid / BCE-with-logits). The head: a 3x3 conv (time x frequency, 'same') with
BatchNorm and LeakyReLU over the ``(B, T, 55, 48)`` latent, then one dense layer from the flattened
``55 x pitch_filters`` features of each frame to the 88 keys. Only keras.layers / keras.ops.
"""

from __future__ import annotations

import keras
from keras import ops

from tfmusic.models.iass import IASS, _SLOPE, _bn, iass_frequency_sizes

__all__ = ["IASSPitch", "PitchHead", "NUM_KEYS"]

NUM_KEYS = 88


@keras.saving.register_keras_serializable(package="tfmusic")
class PitchHead(keras.layers.Layer):
    """Latent ``(B, T, F, C)`` -> ``(B, T, keys)`` logits (conv3x3-BN-LReLU, per-frame dense)."""

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
    """IASS plus ``pitch_logits`` ``(B, T, pitch_keys)`` (module docstring); same constructor plus
    ``pitch_filters`` (width of the head's conv) and ``pitch_keys`` (88)."""

    def __init__(self, pitch_filters: int = 32, pitch_keys: int = NUM_KEYS, **kwargs) -> None:
        super().__init__(**kwargs)
        if pitch_filters < 1 or pitch_keys < 1:
            raise ValueError(f"need pitch_filters >= 1 and pitch_keys >= 1, got {pitch_filters}, {pitch_keys}")
        iass_frequency_sizes(self.max_bin)  # same validity check as the U-Net
        self.pitch_filters, self.pitch_keys = int(pitch_filters), int(pitch_keys)
        self.pitch = PitchHead(self.pitch_filters, self.pitch_keys, name="pitch")

    def latent_heads(self, z, training=False) -> dict:
        return {"pitch_logits": self.pitch(z, training=training)}

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(pitch_filters=self.pitch_filters, pitch_keys=self.pitch_keys)
        return config
