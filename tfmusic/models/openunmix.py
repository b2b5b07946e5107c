"""Open-Unmix (Stöter et al. 2019) in Keras, the IASS paper's baseline (spec A.8).

Per target: crop to ``max_bin`` bins, per-bin ``(x + input_mean) * input_scale`` (the Open-Unmix
storage: ``input_mean = -mean``, ``input_scale = 1 / std``), Dense(C*max_bin -> hidden, no bias) ->
BN -> tanh, a 3-layer BiLSTM (hidden/2 units per direction, dropout 0.4 between layers), skip concat,
Dense(2*hidden -> hidden) -> BN -> ReLU -> Dense(hidden -> C*n_bins) -> BN -> per-bin affine -> ReLU
= mask; ``estimate = mask x mixture magnitude``. The LSTM keeps PyTorch's two bias vectors
(:class:`tfmusic.models.layers.TorchLSTM`), so a public Open-Unmix ``state_dict`` loads one to one
(:mod:`tfmusic.models.umx_convert`) and the stereo model has exactly 8,893,348 trainable parameters.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from tfmusic.audio.settings import HOP_LENGTH, N_FFT, SAMPLE_RATE, AudioSettings
from tfmusic.models.layers import TorchLSTM, prepare_statistics

__all__ = ["OpenUnmix"]

_BN = {"momentum": 0.9, "epsilon": 1e-5}
# training segments up to ~7 s (6 s = 255 frames) unroll the LSTM recurrence: the TF while-loop
# backward made Open-Unmix training slow on CPU (see TorchLSTM); longer or dynamic lengths loop.
# The trainer's default fused recurrence (trainer.fused_lstm) supersedes both during training.
UNROLL_TRAINING_FRAMES = 300


@keras.saving.register_keras_serializable(package="tfmusic")
class OpenUnmix(keras.Model):
    """Open-Unmix for one target. ``call(magnitude (B, C, T, 2049))`` -> ``{"mask", "estimate"}``.

    Extra keyword (beyond the agreed interface): ``target`` names the source, kept in the config.
    """

    def __init__(
        self,
        nb_channels: int = 2,
        hidden_size: int = 512,
        nb_layers: int = 3,
        n_bins: int | None = None,
        max_bin: int = 1487,
        unidirectional: bool = False,
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
        if not 0 < max_bin <= n_bins:
            raise ValueError(f"need 0 < max_bin <= n_bins, got max_bin={max_bin}, n_bins={n_bins}")
        if nb_channels < 1 or nb_layers < 1 or hidden_size < 2 or (hidden_size % 2 and not unidirectional):
            raise ValueError(
                f"invalid Open-Unmix size: nb_channels={nb_channels}, nb_layers={nb_layers}, hidden_size={hidden_size}"
            )
        self.nb_channels, self.hidden_size, self.nb_layers = int(nb_channels), int(hidden_size), int(nb_layers)
        self.n_bins, self.max_bin, self.unidirectional = int(n_bins), int(max_bin), bool(unidirectional)
        self.target = target

        self.input_mean = self.add_weight(shape=(self.max_bin,), initializer="zeros", name="input_mean")
        self.input_scale = self.add_weight(shape=(self.max_bin,), initializer="ones", name="input_scale")
        self.fc1 = keras.layers.Dense(self.hidden_size, use_bias=False, name="fc1")
        self.bn1 = keras.layers.BatchNormalization(name="bn1", **_BN)
        units = self.hidden_size if self.unidirectional else self.hidden_size // 2
        self.lstms = []
        for i in range(self.nb_layers):
            layer = TorchLSTM(units, return_sequences=True, name=f"lstm{i}",
                              unroll_training_frames=UNROLL_TRAINING_FRAMES)
            if not self.unidirectional:
                layer = keras.layers.Bidirectional(layer, merge_mode="concat", name=f"bilstm{i}")
            self.lstms.append(layer)
        self.lstm_dropout = keras.layers.Dropout(0.4 if self.nb_layers > 1 else 0.0, name="lstm_dropout")
        self.fc2 = keras.layers.Dense(self.hidden_size, use_bias=False, name="fc2")
        self.bn2 = keras.layers.BatchNormalization(name="bn2", **_BN)
        self.fc3 = keras.layers.Dense(self.nb_channels * self.n_bins, use_bias=False, name="fc3")
        self.bn3 = keras.layers.BatchNormalization(name="bn3", **_BN)
        self.output_scale = self.add_weight(shape=(self.n_bins,), initializer="ones", name="output_scale")
        self.output_mean = self.add_weight(shape=(self.n_bins,), initializer="ones", name="output_mean")

    def set_input_statistics(self, mean, std) -> None:
        """Store per-bin mean/std of training mixture magnitudes (length 2049 or max_bin)."""
        mean, std = prepare_statistics(mean, std, self.n_bins, self.max_bin)
        self.input_mean.assign(-mean)
        self.input_scale.assign(1.0 / std)

    def call(self, magnitude, training=False):
        mix = ops.convert_to_tensor(magnitude, dtype=self.compute_dtype)
        shape = ops.shape(mix)
        batch, frames = shape[0], shape[2]
        x = (mix[..., : self.max_bin] + self.input_mean) * self.input_scale
        x = ops.reshape(ops.transpose(x, (0, 2, 1, 3)), (batch, frames, self.nb_channels * self.max_bin))
        x = ops.tanh(self.bn1(self.fc1(x), training=training))
        h = x
        for i, lstm in enumerate(self.lstms):
            if i > 0:
                h = self.lstm_dropout(h, training=training)
            h = lstm(h, training=training)
        y = ops.concatenate([x, h], axis=-1)
        y = ops.relu(self.bn2(self.fc2(y), training=training))
        y = self.bn3(self.fc3(y), training=training)
        y = ops.reshape(y, (batch, frames, self.nb_channels, self.n_bins))
        mask = ops.relu(ops.transpose(y, (0, 2, 1, 3)) * self.output_scale + self.output_mean)
        return {"mask": mask, "estimate": mask * mix}

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(
            nb_channels=self.nb_channels,
            hidden_size=self.hidden_size,
            nb_layers=self.nb_layers,
            n_bins=self.n_bins,
            max_bin=self.max_bin,
            unidirectional=self.unidirectional,
            target=self.target,
            **self.settings.as_dict(),
        )
        return config

    def build_for_frames(self, frames: int = 4) -> "OpenUnmix":
        """Create every weight by running a tiny zero batch (before counting or loading weights)."""
        self(np.zeros((1, self.nb_channels, frames, self.n_bins), np.float32))
        return self
