"""Fused BatchNorm for training steps on the TensorFlow backend.

Why: Keras 3 computes BatchNormalization in training mode from separate ops (moments, then the
normalization, each of them again in the gradient, with float32 casts under mixed precision). In
an IASS training step those element-wise passes over the full-resolution activations were ~25 %
(fp32) to ~34 % (bf16) of the op time (TF profiler, batch 4 x 6 s); TF's fused kernel does the
forward and the backward in one pass each (oneDNN on CPU, cuDNN on GPU).

Why here and not in the models: models are plain ``keras.layers``/``keras.ops`` so they export and
run anywhere; like activation recomputation this is a training-time choice the trainer applies to
built layers (``trainer.fused_batchnorm``) and undoes after training. The maths is Keras': batch
mean and *biased* variance normalize the batch (TF's fused op returns the Bessel-corrected variance,
which is corrected back before it updates the moving variance), ``moving = moving * momentum +
batch * (1 - momentum)``, float32 statistics whatever the compute dtype. Channels-last inputs of rank 2
to 4 without a mask are fused (rank 2 and 3, e.g. Open-Unmix's ``(B, T, C)``, as NHWC with unit spatial
axes); everything else (inference, other ranks or axes, renorm) runs Keras' own call.

Round-off: both compute the statistics in float32 but reduce in a different order; on IASS's first block
(1.5 M values per channel) the normalized output's max |error| against a float64 reference is 1.3e-3
fused vs 4.6e-4 Keras, and the first step's loss differs by 1.3e-4 (relative): far below what bf16
training accepts (tests/test_fused_norm.py compares with Keras on small tensors, where they agree to 1e-5).
"""

from __future__ import annotations

from typing import Any, Callable, Iterable

import keras
import tensorflow as tf

from tfmusic.training.layer_calls import patch_calls

__all__ = ["fuse_batch_norms"]

# bf16 inputs are normalized in bf16 only when their channels fill whole blocks of this many: TF 2.21's
# oneDNN bf16 kernel on AVX-512 took 194 vs 24 ms (8 channels), 110 vs 32 ms (24) and 49 vs 16 ms (40)
# against float32 for IASS's decoder activations, but 40 vs 52 ms (16) and 24 vs 34 ms (32) otherwise.
# A CPU matter: with a GPU (cuDNN) bf16 stays bf16.
BF16_CHANNEL_BLOCK = 16


def _fusable(layer: keras.layers.BatchNormalization) -> bool:
    """Plain per-replica BatchNorm over the last axis (synchronized BN averages across replicas: left alone)."""
    return not layer.renorm and not getattr(layer, "synchronized", False) and layer.scale and layer.center


def _fused_call(layer: keras.layers.BatchNormalization, original: Callable) -> Callable:
    def call(inputs: Any, training: Any = None, mask: Any = None) -> Any:
        rank = len(inputs.shape)
        if (not (training and layer.trainable) or mask is not None or rank not in (2, 3, 4)
                or layer.axis % rank != rank - 1):
            return original(inputs, training=training, mask=mask)
        native = inputs.dtype in (tf.float32, tf.float16) or (inputs.dtype == tf.bfloat16 and (
            inputs.shape[-1] % BF16_CHANNEL_BLOCK == 0 or tf.config.list_logical_devices("GPU")))
        x = inputs if native else tf.cast(inputs, tf.float32)
        if rank < 4:  # (N, C) or (N, T, C) as NHWC: (N, 1, 1, C) or (N, T, 1, C)
            x = tf.reshape(x, tf.concat([tf.shape(x)[:-1], tf.ones([4 - rank], tf.int32), tf.shape(x)[-1:]], 0))
        y, mean, corrected = tf.compat.v1.nn.fused_batch_norm(
            x, tf.cast(layer.gamma, tf.float32), tf.cast(layer.beta, tf.float32), epsilon=layer.epsilon,
            is_training=True, data_format="NHWC")
        count = tf.cast(tf.reduce_prod(tf.shape(x)[:3]), tf.float32)
        variance = corrected * tf.maximum(count - 1.0, 0.0) / tf.maximum(count, 1.0)
        layer.moving_mean.assign(layer.moving_mean * layer.momentum + mean * (1.0 - layer.momentum))
        layer.moving_variance.assign(layer.moving_variance * layer.momentum + variance * (1.0 - layer.momentum))
        return tf.cast(tf.reshape(y, tf.shape(inputs)) if rank < 4 else y, layer.compute_dtype)

    return call


def fuse_batch_norms(models: Iterable[Any]) -> Callable[[], None]:
    """Fuse the training-mode BatchNormalization of every sublayer of ``models`` (built Keras layers or
    models); returns a function that undoes it."""
    layers = [layer for model in models if isinstance(model, keras.layers.Layer)
              for layer in model._flatten_layers(include_self=True)
              if isinstance(layer, keras.layers.BatchNormalization) and _fusable(layer) and "call" not in vars(layer)]
    return patch_calls(layers, _fused_call)
