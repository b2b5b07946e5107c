"""The trainer's default config applies every training-time rewrite (``tfmusic.training.rewrites``).

Why: each rewrite computes what Keras computes, so a default silently switched off (or a rewrite that
falls back) leaves every numeric test green; the traced training step shows which ones ran.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from tests._graphs import traced_ops, xla_functions
from tfmusic.models.layers import TorchLSTM
from tfmusic.training.config import TrainerConfig
from tfmusic.training.rewrites import apply_rewrites


def test_default_config_fuses_batchnorm_lstm_adam_and_recomputes():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((6, 4)), keras.layers.Dense(8), keras.layers.BatchNormalization(),
                              keras.layers.Bidirectional(TorchLSTM(3, return_sequences=True)), keras.layers.Dense(1)])
    optimizer = keras.optimizers.Adam(0.01)
    optimizer.build(model.trainable_variables)
    x = tf.constant(np.random.default_rng(0).normal(size=(2, 6, 4)).astype(np.float32))

    def step():
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(tf.square(model(x, training=True)))
        optimizer.apply_gradients(zip(tape.gradient(loss, model.trainable_variables), model.trainable_variables))

    def observed() -> dict:
        ops = traced_ops(step)
        return {"FusedBatchNormV3": ops["FusedBatchNormV3"], "ResourceApplyAdam": ops["ResourceApplyAdam"],
                "xla": len(xla_functions(step)), "BiasAdd": ops["BiasAdd"]}

    plain = observed()
    seen = {}
    for recompute in (False, True):
        undo = apply_rewrites(TrainerConfig(recompute=recompute), [model, optimizer], recompute=[model.layers[0]])
        seen[recompute] = observed()
        undo()
    assert observed() == plain  # undone
    assert plain == {"FusedBatchNormV3": 0, "ResourceApplyAdam": 0, "xla": 0, "BiasAdd": 1}
    # the default: TF's fused BatchNorm and Adam kernels (one per variable), the BiLSTM's XLA loop and its
    # backward, and the recomputed Dense's forward (its BiasAdd) once more in the backward pass
    assert seen[True] == {"FusedBatchNormV3": 1, "ResourceApplyAdam": len(model.trainable_variables), "xla": 2,
                          "BiasAdd": 2}
    assert seen[False] == {**seen[True], "BiasAdd": 1}
