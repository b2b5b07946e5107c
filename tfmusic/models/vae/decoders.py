"""VAE decoders: hierarchical beat/tick GRU (measures, dMelodies-RNN), transposed-conv CNN (dMelodies),
and image decoders mirroring ``encoders.ImageEncoder``.

Token decoders return logits ``(B, T, num_classes)``; image decoders return Bernoulli logits
``(B, H, W, 1)``. Architectures follow reference-spec B.3, B.5 and C.7.
"""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from tfmusic.models.vae.core import PACKAGE, StackedGRUCell, TracedBuild
from tfmusic.models.vae.encoders import image_z_dim


@keras.saving.register_keras_serializable(package=PACKAGE)
class HierarchicalDecoder(keras.layers.Layer):
    """z -> "beat" GRU over ``n_beats`` steps -> per beat a "tick" GRU over ``ticks_per_beat`` steps.

    The beat GRU's initial states come from ``Dense(num_layers*hidden)+SELU(z)`` and it is fed a learned
    scalar. Each beat output gives the tick GRU's initial states (``Dense(num_layers*hidden)+SELU``) and a
    ``Dense(hidden)+SELU`` vector that is concatenated with the previous token's embedding as tick input.
    Logits = ReLU(Dense(num_classes)). The previous token is the target (teacher forcing) or the argmax of
    the last logits; ``teacher_forcing`` is one boolean per batch (the spec's p = 0.5 coin flip is drawn by
    the training task). Measure VAE: 4 beats x 6 ticks, hidden 128, dropout 0.5. dMelodies: 2 x 8, 64, 0.2.
    """

    autoregressive = True

    def __init__(self, num_classes: int, z_dim: int = 32, embedding_dim: int = 10, hidden: int = 64,
                 num_layers: int = 2, dropout: float = 0.2, n_beats: int = 2, ticks_per_beat: int = 8,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.num_classes, self.z_dim, self.embedding_dim = int(num_classes), int(z_dim), int(embedding_dim)
        self.hidden, self.num_layers, self.dropout = int(hidden), int(num_layers), float(dropout)
        self.n_beats, self.ticks_per_beat = int(n_beats), int(ticks_per_beat)
        self.z_to_beat = keras.layers.Dense(self.num_layers * self.hidden, activation="selu", name="z_to_beat")
        self.beat_rnn = StackedGRUCell(self.hidden, self.num_layers, self.dropout, name="beat_rnn")
        self.beat_to_tick_state = keras.layers.Dense(self.num_layers * self.hidden, activation="selu",
                                                     name="beat_to_tick_state")
        self.beat_to_tick_input = keras.layers.Dense(self.hidden, activation="selu", name="beat_to_tick_input")
        self.tick_rnn = StackedGRUCell(self.hidden, self.num_layers, self.dropout, name="tick_rnn")
        self.embedding = keras.layers.Embedding(self.num_classes, self.embedding_dim, name="embedding")
        self.out = keras.layers.Dense(self.num_classes, activation="relu", name="out")

    @property
    def seq_len(self) -> int:
        return self.n_beats * self.ticks_per_beat

    def build(self, input_shape):
        self.beat_input = self.add_weight(name="beat_input", shape=(1, 1), initializer="random_normal")
        self.start_embedding = self.add_weight(name="start_embedding", shape=(1, self.embedding_dim),
                                               initializer="random_normal")
        self.z_to_beat.build(input_shape)
        self.beat_rnn.build((None, 1))
        self.beat_to_tick_state.build((None, self.hidden))
        self.beat_to_tick_input.build((None, self.hidden))
        self.tick_rnn.build((None, self.hidden + self.embedding_dim))
        self.embedding.build((None,))
        self.out.build((None, self.hidden))
        super().build(input_shape)

    def _split(self, h):
        return [h[:, i * self.hidden:(i + 1) * self.hidden] for i in range(self.num_layers)]

    def call(self, z, targets=None, teacher_forcing=None, training=False):
        batch = ops.shape(z)[0]
        force = None
        if targets is not None and teacher_forcing is not None:
            force = ops.cast(teacher_forcing, "bool")
            targets = ops.cast(targets, "int32")
        beat_states = self._split(self.z_to_beat(z))
        beat_in = ops.broadcast_to(self.beat_input, (batch, 1))
        prev = ops.broadcast_to(self.start_embedding, (batch, self.embedding_dim))
        logits = []
        for beat in range(self.n_beats):
            beat_out, beat_states = self.beat_rnn(beat_in, beat_states, training=training)
            tick_states = self._split(self.beat_to_tick_state(beat_out))
            tick_ctx = self.beat_to_tick_input(beat_out)
            for tick in range(self.ticks_per_beat):
                h, tick_states = self.tick_rnn(ops.concatenate([tick_ctx, prev], axis=-1), tick_states,
                                               training=training)
                step_logits = self.out(h)
                logits.append(step_logits)
                token = ops.cast(ops.argmax(step_logits, axis=-1), "int32")
                if force is not None:
                    token = ops.where(force, targets[:, beat * self.ticks_per_beat + tick], token)
                prev = self.embedding(token)
        return ops.stack(logits, axis=1)

    def get_config(self) -> dict:
        return {**super().get_config(), "num_classes": self.num_classes, "z_dim": self.z_dim,
                "embedding_dim": self.embedding_dim, "hidden": self.hidden, "num_layers": self.num_layers,
                "dropout": self.dropout, "n_beats": self.n_beats, "ticks_per_beat": self.ticks_per_beat}


@keras.saving.register_keras_serializable(package=PACKAGE)
class CNNDecoder(TracedBuild, keras.layers.Layer):
    """dMelodies-CNN decoder (C.7): z as length-1 sequence -> Conv1DTranspose k4 s2 (128, 64, 32, 16) + SELU
    (1 -> 16 steps) -> Dense(num_classes) per step. Returns logits (the reference's argmax-over-time bug
    is not reproduced: predictions are taken over classes)."""

    def __init__(self, num_classes: int, z_dim: int = 32, channels: tuple[int, ...] = (128, 64, 32, 16),
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.num_classes, self.z_dim, self.channels = int(num_classes), int(z_dim), tuple(int(c) for c in channels)
        self.deconvs = [keras.layers.Conv1DTranspose(c, 4, strides=2, padding="same", activation="selu",
                                                     name=f"deconv_{i}") for i, c in enumerate(self.channels)]
        self.out = keras.layers.Dense(self.num_classes, name="out")

    @property
    def seq_len(self) -> int:
        return 2 ** len(self.channels)

    def call(self, z, training=False):
        x = ops.expand_dims(z, 1)
        for deconv in self.deconvs:
            x = deconv(x)
        return self.out(x)

    def get_config(self) -> dict:
        return {**super().get_config(), "num_classes": self.num_classes, "z_dim": self.z_dim,
                "channels": list(self.channels)}


@keras.saving.register_keras_serializable(package=PACKAGE)
class ImageDecoder(TracedBuild, keras.layers.Layer):
    """Mirror of ``ImageEncoder``: returns Bernoulli logits ``(B, H, W, 1)``."""

    def __init__(self, variant: str = "sprites", z_dim: int | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.z_dim = image_z_dim(variant, z_dim)
        self.variant = variant
        if variant == "sprites":
            self.body = [keras.layers.Dense(256, activation="relu", name="fc_0"),
                         keras.layers.Dense(256, activation="relu", name="fc_1"),
                         keras.layers.Dense(512, activation="relu", name="fc_2"),
                         keras.layers.Reshape((4, 4, 32))]
            self.body += [keras.layers.Conv2DTranspose(32, 4, strides=2, padding="same", activation="relu",
                                                       name=f"deconv_{i}") for i in range(3)]
            self.body.append(keras.layers.Conv2DTranspose(1, 4, strides=2, padding="same", name="deconv_3"))
        else:
            self.body = [keras.layers.Dense(256, activation="selu", name="fc_0"),
                         keras.layers.Dense(19 * 19 * 8, activation="selu", name="fc_1"),
                         keras.layers.Reshape((19, 19, 8))]
            for i, ch in enumerate((64, 64)):
                self.body += [keras.layers.Conv2DTranspose(ch, 4, padding="valid", activation="selu",
                                                           name=f"deconv_{i}"),
                              keras.layers.Dropout(0.5)]
            self.body.append(keras.layers.Conv2DTranspose(1, 4, padding="valid", name="deconv_2"))

    def call(self, z, training=False):
        x = z
        for layer in self.body:
            x = layer(x, training=training) if isinstance(layer, keras.layers.Dropout) else layer(x)
        return x

    def get_config(self) -> dict:
        return {**super().get_config(), "variant": self.variant, "z_dim": self.z_dim}
