"""The unrolled training recurrence of TorchLSTM (Open-Unmix) computes what the while loop does."""

import keras
import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from tfmusic.models.layers import TorchLSTM  # noqa: E402


def _grads(layer, x):
    with tf.GradientTape() as tape:
        y = layer(x, training=True)
        loss = tf.reduce_sum(tf.square(y))
    return [y, *tape.gradient(loss, layer.trainable_variables)]


def test_unrolled_training_matches_the_loop():
    x = tf.constant(np.random.default_rng(0).standard_normal((2, 9, 5)).astype(np.float32))
    keras.utils.set_random_seed(0)
    looped = keras.layers.Bidirectional(TorchLSTM(4, return_sequences=True))
    unrolled = keras.layers.Bidirectional(TorchLSTM(4, return_sequences=True, unroll_training_frames=16))
    looped(x), unrolled(x)
    unrolled.set_weights(looped.get_weights())
    graph = tf.function(lambda layer: _grads(layer, x))
    # the unrolled graph has no while loop; the looped one has
    assert "While" not in str([op.type for op in tf.function(lambda: unrolled(x, training=True))
                               .get_concrete_function().graph.get_operations()])
    for a, b in zip(_grads(looped, x), graph(unrolled)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    # longer than the limit, or inference: the loop (and exports keep any length)
    assert TorchLSTM(4, unroll_training_frames=16).get_config()["unroll_training_frames"] == 16
    longer = tf.constant(np.zeros((1, 17, 5), np.float32))
    ops = tf.function(lambda: unrolled(longer, training=True)).get_concrete_function().graph.get_operations()
    assert "While" in str([op.type for op in ops])
