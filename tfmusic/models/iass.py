"""IASS: the instrument-activity-aware source separation U-Net (Hung & Lerch 2020; spec A.2-A.4).

One model per instrument. Input: mixture magnitude ``(B, C, T, 2049)``; the U-Net sees bins
``0 .. max_bin-1`` (<= 16 kHz) standardized per bin, and never reduces time resolution (all time
kernels are 3 with 'same' padding). A classifier on the latent predicts one activity logit per STFT
frame. Outputs (dict):

- ``mask`` ``(B, C, T, 2049)``: the non-negative, unbounded mask (ReLU as in the paper, or softplus
  with ``mask_activation="softplus"``: see ``MASK_ACTIVATIONS``; no sigmoid). At inference
  with ``apply_activity`` it already includes the per-frame activity weight, so ``mask x mixture``
  (magnitude or complex) is the estimate.
- ``estimate``: ``mask x mixture magnitude``. During training (``training=True``) no activity
  weighting is applied, so the trainer's MSE sees the raw mask.
- ``activity_logits`` ``(B, T)``: one logit per frame (BCE-with-logits target: activity labels).

Inference weighting (A.4): ``median_filter(sigmoid(logit) > threshold, median_frames)`` with reflect
padding, multiplied into the mask for every bin of the frame.

Internal layout is channels-last ``(B, T, F, C)``: kernels written (time, freq). Parameter count for
one mono instrument: 3,205,682 (all trainable, incl. input mean/std and output scale/mean);
BatchNorm moving statistics are non-trainable and not counted, as in PyTorch.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from tfmusic.audio.settings import HOP_LENGTH, N_FFT, SAMPLE_RATE, AudioSettings
from tfmusic.models.layers import median_filter_time, prepare_statistics

__all__ = ["IASS", "iass_frequency_sizes"]

_SLOPE = 0.01  # LeakyReLU negative slope
# The mask's non-negative activation: ReLU is the paper's; softplus never stops the gradient, so a bin that
# the first steps push below zero (a sparse target such as bass: "silence" is a cheap early optimum) can
# come back, where ReLU leaves it dead for good.
MASK_ACTIVATIONS = ("relu", "softplus")
_BN = {"momentum": 0.9, "epsilon": 1e-5}  # PyTorch BatchNorm momentum 0.1, eps 1e-5


def iass_frequency_sizes(max_bin: int) -> tuple[list[int], list[int]]:
    """(encoder sizes, classifier sizes): 1487 -> [1487, 495, 165, 55], [18, 6, 2, 1]."""
    enc = [max_bin]
    for _ in range(3):
        enc.append(enc[-1] // 3)
    cls = [enc[-1]]
    for _ in range(3):
        cls.append(cls[-1] // 3)
    if min(enc + cls[:-1]) < 1 or cls[-1] < 1:
        raise ValueError(f"max_bin={max_bin} is too small for the IASS U-Net (needs >= 729 = 3**6 bins)")
    return enc, cls + [1]


def _bn(name: str) -> keras.layers.BatchNormalization:
    return keras.layers.BatchNormalization(name=name, **_BN)


@keras.saving.register_keras_serializable(package="tfmusic")
class EncoderBlock(keras.layers.Layer):
    """Residual block (conv3x3-BN-LReLU x2 + 1x1 shortcut) then a (1,3)/(1,3) frequency downsample.

    Returns the downsampled tensor; the skip convs read the downsampled outputs of blocks 1 and 2.
    """

    def __init__(self, filters: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self.filters = int(filters)
        self.conv1 = keras.layers.Conv2D(filters, 3, padding="same", name="conv1")
        self.bn1 = _bn("bn1")
        self.conv2 = keras.layers.Conv2D(filters, 3, padding="same", name="conv2")
        self.bn2 = _bn("bn2")
        self.shortcut = keras.layers.Conv2D(filters, 1, name="shortcut")
        self.down = keras.layers.Conv2D(filters, (1, 3), strides=(1, 3), padding="valid", name="down")

    def call(self, x, training=False):
        y = ops.leaky_relu(self.bn1(self.conv1(x), training=training), _SLOPE)
        y = ops.leaky_relu(self.bn2(self.conv2(y), training=training), _SLOPE)
        y = y + self.shortcut(x)
        return self.down(y)

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(filters=self.filters)
        return config


@keras.saving.register_keras_serializable(package="tfmusic")
class DecoderBlock(keras.layers.Layer):
    """(1,3)/(1,3) transposed-conv upsample, optional skip concat, then two ConvT3x3-LReLU-BN.

    ``last=True``: the second ConvT has no activation/BN (the U-Net output). ``output_padding``
    restores the exact pre-downsampling frequency size (2 for 495 -> 1487): the extra bins hold the
    upsampling bias only (no kernel tap reaches them), exactly what ``Conv2DTranspose(...,
    output_padding=...)`` computes. They are appended explicitly instead of via ``output_padding``
    because tf2onnx folds the bias into the ONNX ConvTranspose and then zero-pads the extra bins,
    dropping the bias there; the dense ``fc`` layer spreads that error over every output bin
    (about 5e-4 relative for the trained demo drums model). Same weights either way.
    """

    def __init__(self, up_filters: int, mid_filters: int, filters: int, output_padding: int = 0,
                 last: bool = False, **kwargs) -> None:
        super().__init__(**kwargs)
        self.up_filters, self.mid_filters, self.filters = int(up_filters), int(mid_filters), int(filters)
        self.output_padding, self.last = int(output_padding), bool(last)
        self.up = keras.layers.Conv2DTranspose(up_filters, (1, 3), strides=(1, 3), padding="valid", name="up")
        self.conv1 = keras.layers.Conv2DTranspose(mid_filters, 3, padding="same", name="conv1")
        self.bn1 = _bn("bn1")
        self.conv2 = keras.layers.Conv2DTranspose(filters, 3, padding="same", name="conv2")
        self.bn2 = None if self.last else _bn("bn2")

    def _upsample(self, x):
        """``up`` then ``output_padding`` extra frequency bins holding the bias (see class docstring)."""
        y = self.up(x)
        if self.output_padding:
            extra = ops.zeros_like(y[:, :, : self.output_padding, :]) + ops.cast(self.up.bias, y.dtype)
            y = ops.concatenate([y, extra], axis=2)
        return y

    def call(self, x, skip=None, training=False):
        y = self._upsample(x)
        if skip is not None:
            y = ops.concatenate([y, skip], axis=-1)
        y = self.bn1(ops.leaky_relu(self.conv1(y), _SLOPE), training=training)
        y = self.conv2(y)
        if not self.last:
            y = self.bn2(ops.leaky_relu(y, _SLOPE), training=training)
        return y

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(up_filters=self.up_filters, mid_filters=self.mid_filters, filters=self.filters,
                      output_padding=self.output_padding, last=self.last)
        return config


@keras.saving.register_keras_serializable(package="tfmusic")
class ActivityHead(keras.layers.Layer):
    """Latent ``(B, T, 55, 48)`` -> one logit per frame ``(B, T)``; linear (no nonlinearities, A.3)."""

    def __init__(self, last_kernel: int = 2, **kwargs) -> None:
        super().__init__(**kwargs)
        self.last_kernel = int(last_kernel)
        self.convs = [
            keras.layers.Conv2D(f, (1, 3), strides=(1, 3), padding="valid", name=f"conv{i}")
            for i, f in enumerate((32, 16, 16), start=1)
        ]
        self.bns = [_bn(f"bn{i}") for i in (1, 2, 3)]
        self.out = keras.layers.Conv2D(1, (1, self.last_kernel), strides=(1, self.last_kernel), name="out")

    def call(self, z, training=False):
        for conv, bn in zip(self.convs, self.bns):
            z = bn(conv(z), training=training)
        logits = self.out(z)  # (B, T, 1, 1)
        return ops.reshape(logits, (ops.shape(logits)[0], ops.shape(logits)[1]))

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(last_kernel=self.last_kernel)
        return config


@keras.saving.register_keras_serializable(package="tfmusic")
class IASS(keras.Model):
    """The IASS U-Net for one instrument; see the module docstring for inputs and outputs.

    Extra keyword (beyond the agreed interface): ``target`` names the instrument (kept in the config
    so a saved ``.keras`` file knows what it separates).
    """

    def __init__(
        self,
        nb_channels: int = 1,
        n_bins: int | None = None,
        max_bin: int = 1487,
        apply_activity: bool = True,
        activity_threshold: float = 0.5,
        mask_activation: str = "relu",
        median_frames: int = 21,
        target: str | None = None,
        sample_rate: int = SAMPLE_RATE,
        n_fft: int = N_FFT,
        hop_length: int = HOP_LENGTH,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self.settings = AudioSettings(int(sample_rate), int(n_fft), int(hop_length))
        self.sample_rate, self.n_fft, self.hop_length = self.settings.sample_rate, self.settings.n_fft, self.settings.hop_length
        n_bins = self.settings.n_bins if n_bins is None else int(n_bins)
        if n_bins != self.settings.n_bins:
            raise ValueError(f"n_bins={n_bins} does not match n_fft={n_fft} (expected {self.settings.n_bins})")
        if nb_channels < 1:
            raise ValueError(f"nb_channels must be >= 1, got {nb_channels}")
        if not 0 < max_bin <= n_bins:
            raise ValueError(f"need 0 < max_bin <= n_bins, got max_bin={max_bin}, n_bins={n_bins}")
        if median_frames < 1 or median_frames % 2 == 0:
            raise ValueError(f"median_frames must be a positive odd number, got {median_frames}")
        self.nb_channels, self.n_bins, self.max_bin = int(nb_channels), int(n_bins), int(max_bin)
        self.apply_activity = bool(apply_activity)
        self.activity_threshold = float(activity_threshold)
        if mask_activation not in MASK_ACTIVATIONS:
            raise ValueError(f"mask_activation must be one of {MASK_ACTIVATIONS}, got {mask_activation!r}")
        self.mask_activation = mask_activation
        self.median_frames = int(median_frames)
        self.target = target
        enc_sizes, cls_sizes = iass_frequency_sizes(self.max_bin)
        pads = [enc_sizes[i] - 3 * enc_sizes[i + 1] for i in range(3)]

        self.input_mean = self.add_weight(shape=(self.max_bin,), initializer="zeros", name="input_mean")
        self.input_std = self.add_weight(shape=(self.max_bin,), initializer="ones", name="input_std")
        self.enc1 = EncoderBlock(16, name="enc1")
        self.enc2 = EncoderBlock(32, name="enc2")
        self.enc3 = EncoderBlock(48, name="enc3")
        self.skip1 = keras.layers.Conv2D(16, 3, padding="same", name="skip1")
        self.skip2 = keras.layers.Conv2D(32, 3, padding="same", name="skip2")
        self.dec2 = DecoderBlock(48, 40, 32, output_padding=pads[2], name="dec2")
        self.dec3 = DecoderBlock(32, 24, 16, output_padding=pads[1], name="dec3")
        self.dec4 = DecoderBlock(16, 8, self.nb_channels, output_padding=pads[0], last=True, name="dec4")
        self.activity = ActivityHead(last_kernel=cls_sizes[-2], name="activity")
        self.fc = keras.layers.Dense(self.n_bins, name="fc")
        self.output_scale = self.add_weight(shape=(self.n_bins,), initializer="ones", name="output_scale")
        self.output_mean = self.add_weight(shape=(self.n_bins,), initializer="ones", name="output_mean")

    def set_input_statistics(self, mean, std) -> None:
        """Store per-bin mean/std of training mixture magnitudes (length 2049 or max_bin)."""
        mean, std = prepare_statistics(mean, std, self.n_bins, self.max_bin)
        self.input_mean.assign(mean)
        self.input_std.assign(std)

    def unet_blocks(self) -> list:
        """The encoder and decoder blocks, whose full-resolution internals hold most of a training step's
        memory (what ``trainer.recompute`` recomputes in the backward pass)."""
        return [self.enc1, self.enc2, self.enc3, self.dec2, self.dec3, self.dec4]

    def activity_weight(self, activity_logits):
        """Binarized, median-filtered activity ``(B, T)`` in {0, 1} (inference weighting, A.4)."""
        active = ops.cast(ops.sigmoid(activity_logits) > self.activity_threshold, activity_logits.dtype)
        return median_filter_time(active, self.median_frames)

    def call(self, magnitude, training=False):
        mix = ops.convert_to_tensor(magnitude, dtype=self.compute_dtype)
        x = (mix[..., : self.max_bin] - self.input_mean) / self.input_std
        x = ops.transpose(x, (0, 2, 3, 1))  # (B, T, F, C)
        x1 = self.enc1(x, training=training)  # (B, T, 495, 16)
        x2 = self.enc2(x1, training=training)  # (B, T, 165, 32)
        z = self.enc3(x2, training=training)  # (B, T, 55, 48)
        logits = self.activity(z, training=training)
        y = self.dec2(z, skip=self.skip2(x2), training=training)
        y = self.dec3(y, skip=self.skip1(x1), training=training)
        y = self.dec4(y, training=training)  # (B, T, max_bin, C)
        y = self.fc(ops.transpose(y, (0, 3, 1, 2)))  # (B, C, T, n_bins)
        mask = getattr(ops, self.mask_activation)(y * self.output_scale + self.output_mean)
        # subclasses' heads (tfmusic.models.iass_pitch) see the estimate before activity gating, as in training
        extra = self.extra_heads(z, mix, mask * mix, training=training)
        if self.apply_activity and not training:
            mask = mask * self.activity_weight(logits)[:, None, :, None]
        return {"mask": mask, "estimate": mask * mix, "activity_logits": logits, **extra}

    def extra_heads(self, z, mixture, estimate, training=False) -> dict:
        """Extra outputs from the latent ``(B, T, 55, 48)``, the mixture magnitude and the ungated
        estimate (both ``(B, C, T, n_bins)``); none in plain IASS."""
        return {}

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(
            nb_channels=self.nb_channels,
            n_bins=self.n_bins,
            max_bin=self.max_bin,
            apply_activity=self.apply_activity,
            activity_threshold=self.activity_threshold,
            mask_activation=self.mask_activation,
            median_frames=self.median_frames,
            target=self.target,
            **self.settings.as_dict(),
        )
        return config

    def build_for_frames(self, frames: int = 8) -> "IASS":
        """Create every weight by running a tiny zero batch (before counting or loading weights)."""
        self(np.zeros((1, self.nb_channels, max(frames, self.median_frames // 2 + 1), self.n_bins), np.float32))
        return self
