"""VAE encoders: token RNN / CNN (dMelodies, measures) and image conv nets (dSprites, MNIST-style).

Each maps an input batch to ``(mean, log_std)`` of shape ``(B, z_dim)`` and exposes ``z_dim``.
Architectures follow reference-spec B.3, B.5 and C.7 (channels-last images, 'same' padding for
stride-2 kernel-4 convolutions = PyTorch padding 1).
"""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from tfmusic.models.vae.core import PACKAGE, GaussianHead, TracedBuild


@keras.saving.register_keras_serializable(package=PACKAGE)
class RNNEncoder(TracedBuild, keras.layers.Layer):
    """Embedding -> stacked bidirectional GRU -> final states of every layer/direction -> Gaussian heads.

    dMelodies-RNN: hidden 64, dropout 0.2, head 128 (C.7). Measure VAE: hidden 128, dropout 0.5, head 256 (B.3).
    """

    build_input_dtype = "int32"

    def __init__(self, vocab_size: int, z_dim: int = 32, embedding_dim: int = 10, hidden: int = 64,
                 num_layers: int = 2, dropout: float = 0.2, head_hidden: int = 128, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.vocab_size, self.z_dim, self.embedding_dim = int(vocab_size), int(z_dim), int(embedding_dim)
        self.hidden, self.num_layers, self.dropout, self.head_hidden = int(hidden), int(num_layers), float(dropout), int(head_hidden)
        self.embedding = keras.layers.Embedding(self.vocab_size, self.embedding_dim, name="embedding")
        self.rnns = [
            keras.layers.Bidirectional(
                keras.layers.GRU(self.hidden, return_sequences=True, return_state=True), name=f"bigru_{i}")
            for i in range(self.num_layers)
        ]
        self.drops = [keras.layers.Dropout(self.dropout) for _ in range(self.num_layers - 1)]
        self.head = GaussianHead(self.z_dim, self.head_hidden, "selu", name="head")

    def call(self, tokens, training=False):
        x = self.embedding(tokens)
        finals = []
        for i, rnn in enumerate(self.rnns):
            x, h_fwd, h_bwd = rnn(x, training=training)
            finals += [h_fwd, h_bwd]
            if i < self.num_layers - 1:
                x = self.drops[i](x, training=training)
        return self.head(ops.concatenate(finals, axis=-1))

    def get_config(self) -> dict:
        return {**super().get_config(), "vocab_size": self.vocab_size, "z_dim": self.z_dim,
                "embedding_dim": self.embedding_dim, "hidden": self.hidden, "num_layers": self.num_layers,
                "dropout": self.dropout, "head_hidden": self.head_hidden}


@keras.saving.register_keras_serializable(package=PACKAGE)
class CNNEncoder(TracedBuild, keras.layers.Layer):
    """dMelodies-CNN encoder (C.7): Embedding 10 -> Conv1D k4 s2 x4 (16, 32, 64, 128) + SELU + Dropout
    -> mean over time -> MLP heads (128 -> 64 -> z)."""

    build_input_dtype = "int32"

    def __init__(self, vocab_size: int, z_dim: int = 32, embedding_dim: int = 10,
                 channels: tuple[int, ...] = (16, 32, 64, 128), dropout: float = 0.1, head_hidden: int = 64,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.vocab_size, self.z_dim, self.embedding_dim = int(vocab_size), int(z_dim), int(embedding_dim)
        self.channels, self.dropout, self.head_hidden = tuple(int(c) for c in channels), float(dropout), int(head_hidden)
        self.embedding = keras.layers.Embedding(self.vocab_size, self.embedding_dim, name="embedding")
        self.convs = [keras.layers.Conv1D(c, 4, strides=2, padding="same", activation="selu", name=f"conv_{i}")
                      for i, c in enumerate(self.channels)]
        self.drops = [keras.layers.Dropout(self.dropout) for _ in self.channels]
        self.head = GaussianHead(self.z_dim, self.head_hidden, "selu", name="head")

    def call(self, tokens, training=False):
        x = self.embedding(tokens)
        for conv, drop in zip(self.convs, self.drops):
            x = drop(conv(x), training=training)
        return self.head(ops.mean(x, axis=1))

    def get_config(self) -> dict:
        return {**super().get_config(), "vocab_size": self.vocab_size, "z_dim": self.z_dim,
                "embedding_dim": self.embedding_dim, "channels": list(self.channels), "dropout": self.dropout,
                "head_hidden": self.head_hidden}


IMAGE_VARIANTS = ("sprites", "mnist")
IMAGE_Z_DIMS = {"sprites": 10, "mnist": 16}  # B.5 latent sizes, the default when z_dim is not given


def image_z_dim(variant: str, z_dim: int | None) -> int:
    """Validate an image VAE ``variant`` and resolve its latent size, shared by encoder and decoder."""
    if variant not in IMAGE_VARIANTS:
        raise ValueError(f"unknown image VAE variant {variant!r}; expected one of {IMAGE_VARIANTS}")
    return int(z_dim if z_dim is not None else IMAGE_Z_DIMS[variant])


@keras.saving.register_keras_serializable(package=PACKAGE)
class ImageEncoder(TracedBuild, keras.layers.Layer):
    """Conv image encoder (B.5), channels-last ``(B, H, W, 1)`` in [0, 1].

    ``sprites``: 64x64, 4 x [Conv k4 s2 32 ch, ReLU] -> 512 -> 256 -> 256 (ReLU) -> linear heads (z 10).
    ``mnist``: 28x28, Conv k4 s1 (64, 64, 8) + SELU + Dropout 0.5 -> 2888 -> 256 SELU -> linear heads (z 16).
    """

    def __init__(self, variant: str = "sprites", z_dim: int | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.z_dim = image_z_dim(variant, z_dim)
        self.variant = variant
        if variant == "sprites":
            self.body = [keras.layers.Conv2D(32, 4, strides=2, padding="same", activation="relu", name=f"conv_{i}")
                         for i in range(4)]
            self.body += [keras.layers.Flatten(), keras.layers.Dense(256, activation="relu", name="fc_0"),
                          keras.layers.Dense(256, activation="relu", name="fc_1")]
        else:
            self.body = []
            for i, ch in enumerate((64, 64, 8)):
                self.body += [keras.layers.Conv2D(ch, 4, strides=1, padding="valid", activation="selu", name=f"conv_{i}"),
                              keras.layers.Dropout(0.5)]
            self.body += [keras.layers.Flatten(), keras.layers.Dense(256, activation="selu", name="fc_0")]
        self.head = GaussianHead(self.z_dim, 0, name="head")

    def call(self, images, training=False):
        x = images
        for layer in self.body:
            x = layer(x, training=training) if isinstance(layer, keras.layers.Dropout) else layer(x)
        return self.head(x)

    def get_config(self) -> dict:
        return {**super().get_config(), "variant": self.variant, "z_dim": self.z_dim}
