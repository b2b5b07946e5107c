"""Fused BatchNorm (trainer.fused_batchnorm): Keras' maths, TF's fused kernel, undone after training."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from tests._graphs import traced_ops
from tests._mirrored import run_mirrored
from tests._twins import assert_bf16_close, twins
from tfmusic.training.fused_norm import fuse_batch_norms


def _pair(policy: str = "float32", filters: int = 8):
    """Two identical conv-BN-conv models (NHWC) and a batch; the second one fused."""
    models = twins(lambda: keras.Sequential([
        keras.Input((12, 10, 3)), keras.layers.Conv2D(filters, 3, padding="same"),
        keras.layers.BatchNormalization(momentum=0.9, epsilon=1e-5), keras.layers.Conv2D(2, 3, padding="same")]), policy)
    x = tf.constant(np.random.default_rng(0).normal(2.0, 3.0, (4, 12, 10, 3)).astype(np.float32))
    return models, x


def _step(model, x):
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(tf.square(tf.cast(model(x, training=True), tf.float32)))
    return loss, tape.gradient(loss, model.trainable_variables)


FUSED_OPS = {"FusedBatchNormV3", "FusedBatchNormGradV3"}


def _fused_ops(model, x) -> set[str]:
    """TF's fused BatchNorm kernels (forward and gradient) in the traced training step."""
    return FUSED_OPS & set(traced_ops(_step, model, x))


def test_fused_training_step_matches_keras():
    """The step runs TF's fused kernels (Keras' step has none) and computes Keras' loss, gradients and
    moving statistics."""
    (plain, fused), x = _pair()
    undo = fuse_batch_norms([fused])
    bn_plain, bn_fused = plain.layers[1], fused.layers[1]
    assert "call" in vars(bn_fused)
    assert _fused_ops(fused, x) == FUSED_OPS and _fused_ops(plain, x) == set()
    for _ in range(2):  # twice: the moving statistics compound
        l0, g0 = _step(plain, x)
        l1, g1 = _step(fused, x)
        np.testing.assert_allclose(float(l1), float(l0), rtol=1e-5)
        for a, b in zip(g0, g1):
            np.testing.assert_allclose(b.numpy(), a.numpy(), rtol=2e-4, atol=1e-5)
    np.testing.assert_allclose(bn_fused.moving_mean.numpy(), bn_plain.moving_mean.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(bn_fused.moving_variance.numpy(), bn_plain.moving_variance.numpy(), rtol=1e-5)
    # inference runs Keras' own call on the (equal to round-off) moving statistics
    np.testing.assert_allclose(fused(x, training=False).numpy(), plain(x, training=False).numpy(), atol=1e-5)
    undo()
    assert "call" not in vars(bn_fused)


@pytest.mark.parametrize("filters", [8, 16])  # normalized in float32 (8 channels) or in bf16 (a whole block)
def test_fused_under_mixed_bfloat16_keeps_float32_statistics(filters):
    """Fused under mixed_bfloat16: the kernels run, statistics stay float32, and the loss, gradients and
    moving statistics are within bf16 round-off of a float32 Keras twin."""
    (plain, fused), x = _pair("mixed_bfloat16", filters)
    (exact, _), _ = _pair(filters=filters)
    exact.set_weights(plain.get_weights())
    fuse_batch_norms([fused])
    assert _fused_ops(fused, x) == FUSED_OPS
    got, keras_bf16, want = ([loss, *grads, model.layers[1].moving_mean, model.layers[1].moving_variance]
                             for model in (fused, plain, exact) for loss, grads in [_step(model, x)])
    assert_bf16_close(got, keras_bf16, want)
    assert fused(x, training=True).dtype == tf.bfloat16
    assert fused.layers[1].moving_variance.dtype == "float32"


def test_synchronized_and_renorm_layers_are_left_alone():
    model = keras.Sequential([keras.Input((4, 4, 2)), keras.layers.BatchNormalization(synchronized=True),
                              keras.layers.BatchNormalization(renorm=True), keras.layers.BatchNormalization()])
    undo = fuse_batch_norms([model])
    assert ["call" in vars(layer) for layer in model.layers] == [False, False, True]
    undo()


def test_sequences_fuse_and_other_ranks_or_axes_fall_back_to_keras():
    rng = np.random.default_rng(1)
    keras.utils.set_random_seed(0)
    plain = keras.Sequential([keras.Input((7, 5)), keras.layers.BatchNormalization()])
    fused = keras.Sequential([keras.Input((7, 5)), keras.layers.BatchNormalization()])
    x = tf.constant(rng.normal(2.0, 3.0, (3, 7, 5)).astype(np.float32))
    fuse_batch_norms([fused])
    assert "FusedBatchNormV3" in traced_ops(lambda: fused(x, training=True))  # (N, T, C) as NHWC
    np.testing.assert_allclose(fused(x, training=True).numpy(), plain(x, training=True).numpy(), atol=1e-5)
    np.testing.assert_allclose(fused.layers[0].moving_variance.numpy(), plain.layers[0].moving_variance.numpy(),
                               rtol=1e-5)
    for shape, axis in (((2, 3, 4, 5, 6), -1), ((3, 7, 5), 1)):  # rank 5, and a non-last axis: Keras' own call
        model = keras.Sequential([keras.Input(shape[1:]), keras.layers.BatchNormalization(axis=axis)])
        x = tf.constant(rng.normal(size=shape).astype(np.float32))
        want = keras.layers.BatchNormalization.call(model.layers[0], x, training=True)
        fuse_batch_norms([model])
        np.testing.assert_array_equal(model(x, training=True).numpy(), want.numpy())


MIRRORED = '''
from tfmusic.training.fused_norm import fuse_batch_norms
x = np.random.default_rng(0).normal(2.0, 3.0, (8, 6, 5, 3)).astype(np.float32)
out = {}
for fused in (False, True):
    with strategy.scope():
        keras.utils.set_random_seed(0)
        model = keras.Sequential([keras.Input((6, 5, 3)), keras.layers.Conv2D(4, 3, padding="same"),
                                  keras.layers.BatchNormalization(), keras.layers.Conv2D(1, 1)])
        optimizer = keras.optimizers.SGD(0.1)
        optimizer.build(model.trainable_variables)
    if fused:
        fuse_batch_norms([model])
    losses = train(model, optimizer, x, lambda y: tf.reduce_sum(tf.square(y)), steps=2)
    bn = model.layers[1]
    out[str(fused)] = {"losses": losses, "mean": bn.moving_mean.numpy().tolist(),
                       "var": bn.moving_variance.numpy().tolist()}
print(json.dumps(out))
'''


def test_fused_under_mirrored_strategy_matches_keras():
    """Two replicas (logical CPUs): per-replica statistics and the moving averages as Keras' own."""
    out = run_mirrored(MIRRORED)
    for key in ("losses", "mean", "var"):
        np.testing.assert_allclose(out["True"][key], out["False"][key], rtol=1e-4, atol=1e-6)
