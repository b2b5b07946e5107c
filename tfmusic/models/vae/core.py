"""The one VAE core shared by every latent-space model in tfmusic.

An encoder maps inputs to a diagonal Gaussian posterior ``(mean, log_std)`` (log standard deviation,
as in the AR-VAE and dMelodies references), the core draws a reparameterized sample, and a decoder
maps latent codes back to logits. Objectives (``objectives.py``) only see the dict returned by
``VAE.call`` so every encoder/decoder pair works with every loss. Keras layers/ops only.
"""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

PACKAGE = "tfmusic.vae"


class TracedBuild:
    """Mixin: ``build`` traces ``call`` on a symbolic input so every sublayer gets its weights.

    Needed so a layer restored from ``.keras`` (which calls ``build(input_shape)``) has all weights
    before they are loaded. ``build_input_dtype`` is the dtype of the layer's input.
    """

    build_input_dtype = "float32"

    def build(self, input_shape):
        if not self.built:
            self.call(keras.KerasTensor(tuple(input_shape), dtype=self.build_input_dtype))
        self.built = True


@keras.saving.register_keras_serializable(package=PACKAGE)
class GaussianHead(TracedBuild, keras.layers.Layer):
    """Two small MLP heads (hidden -> act -> z) producing ``mean`` and ``log_std``.

    ``hidden=0`` gives plain linear heads (the image models put their MLP in the encoder trunk).
    """

    def __init__(self, z_dim: int, hidden: int = 0, activation: str = "selu", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.z_dim = int(z_dim)
        self.hidden = int(hidden)
        self.activation = activation
        self.mean_layers = self._mlp("mean")
        self.log_std_layers = self._mlp("log_std")

    def _mlp(self, name: str) -> list[keras.layers.Layer]:
        layers: list[keras.layers.Layer] = []
        if self.hidden:
            layers.append(keras.layers.Dense(self.hidden, activation=self.activation, name=f"{name}_hidden"))
        layers.append(keras.layers.Dense(self.z_dim, name=f"{name}_out"))
        return layers

    def call(self, h):
        mean, log_std = h, h
        for layer in self.mean_layers:
            mean = layer(mean)
        for layer in self.log_std_layers:
            log_std = layer(log_std)
        return mean, log_std

    def get_config(self) -> dict:
        return {**super().get_config(), "z_dim": self.z_dim, "hidden": self.hidden, "activation": self.activation}


@keras.saving.register_keras_serializable(package=PACKAGE)
class StackedGRUCell(keras.layers.Layer):
    """``num_layers`` GRU cells stepped together, with dropout between layers (PyTorch ``nn.GRU`` semantics).

    Used for the hierarchical decoders, whose inputs depend on the previous output and so must be
    stepped by hand. States are a list with one ``(B, units)`` tensor per layer.
    """

    def __init__(self, units: int, num_layers: int = 2, dropout: float = 0.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.units = int(units)
        self.num_layers = int(num_layers)
        self.dropout = float(dropout)
        self.cells = [keras.layers.GRUCell(self.units, name=f"cell_{i}") for i in range(self.num_layers)]
        self.drops = [keras.layers.Dropout(self.dropout) for _ in range(self.num_layers - 1)]

    def build(self, input_shape):
        dim = input_shape[-1]
        for cell in self.cells:
            cell.build((None, dim))
            dim = self.units
        super().build(input_shape)

    def call(self, x, states, training=False):
        new_states = []
        for i, cell in enumerate(self.cells):
            x, _ = cell(x, states[i], training=training)
            new_states.append(x)
            if i < self.num_layers - 1:
                x = self.drops[i](x, training=training)
        return x, new_states

    def get_config(self) -> dict:
        return {**super().get_config(), "units": self.units, "num_layers": self.num_layers, "dropout": self.dropout}


@keras.saving.register_keras_serializable(package=PACKAGE)
class VAE(keras.Model):
    """Encoder + reparameterized sample + decoder.

    ``encode(x) -> (mean, log_std)`` and ``decode(z) -> logits`` are the export surface; ``call``
    returns a dict with ``mean``, ``log_std``, ``z`` and ``logits`` for the objectives. Decoders that
    accept ``targets``/``teacher_forcing`` (the hierarchical RNNs) receive them from ``call``.
    """

    def __init__(self, encoder: keras.layers.Layer, decoder: keras.layers.Layer, seed: int | None = None,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.encoder = encoder
        self.decoder = decoder
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    @property
    def z_dim(self) -> int:
        return int(self.encoder.z_dim)

    def encode(self, x, training: bool = False):
        """Posterior parameters ``(mean, log_std)``, each ``(B, z_dim)``."""
        return self.encoder(x, training=training)

    def sample(self, mean, log_std):
        """Reparameterized draw ``mean + exp(log_std) * eps``."""
        eps = keras.random.normal(ops.shape(mean), dtype=mean.dtype, seed=self.seed_generator)
        return mean + ops.exp(log_std) * eps

    def decode(self, z, targets=None, teacher_forcing=None, training: bool = False):
        """Logits for a batch of codes; autoregressive decoders feed back their argmax unless forced."""
        if getattr(self.decoder, "autoregressive", False):
            return self.decoder(z, targets=targets, teacher_forcing=teacher_forcing, training=training)
        return self.decoder(z, training=training)

    def call(self, x, targets=None, teacher_forcing=None, training: bool = False):
        mean, log_std = self.encode(x, training=training)
        z = self.sample(mean, log_std)
        logits = self.decode(z, targets=targets, teacher_forcing=teacher_forcing, training=training)
        return {"mean": mean, "log_std": log_std, "z": z, "logits": logits}

    def get_config(self) -> dict:
        return {
            **super().get_config(),
            "encoder": keras.saving.serialize_keras_object(self.encoder),
            "decoder": keras.saving.serialize_keras_object(self.decoder),
            "seed": self.seed,
        }

    @classmethod
    def from_config(cls, config: dict) -> "VAE":
        config = dict(config)
        config["encoder"] = keras.saving.deserialize_keras_object(config["encoder"])
        config["decoder"] = keras.saving.deserialize_keras_object(config["decoder"])
        return cls(**config)
