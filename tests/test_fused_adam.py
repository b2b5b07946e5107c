"""Fused Adam/AdamW (trainer.fused_adam): Keras' update formula in TF's one-pass kernel, undone after."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from tests._graphs import traced_ops
from tests._mirrored import run_mirrored
from tfmusic.training.fused_adam import fuse_adam


def _train(optimizer: keras.optimizers.Optimizer, fused: bool, steps: int = 3):
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((5,)), keras.layers.Dense(7, activation="tanh"), keras.layers.Dense(2)])
    optimizer.build(model.trainable_variables)
    undo = fuse_adam([model, optimizer]) if fused else (lambda: None)
    x = tf.constant(np.random.default_rng(0).normal(size=(16, 5)).astype(np.float32))

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(tf.square(model(x) - 1.0))
        optimizer.apply_gradients(zip(tape.gradient(loss, model.trainable_variables), model.trainable_variables))

    for _ in range(steps):
        step()
    kernels = traced_ops(step)["ResourceApplyAdam"]
    undo()
    return model.get_weights(), [v.numpy() for v in optimizer.variables], kernels


@pytest.mark.parametrize("make", [
    lambda: keras.optimizers.Adam(0.01),
    lambda: keras.optimizers.AdamW(0.01, weight_decay=0.1),
    lambda: keras.optimizers.Adam(keras.optimizers.schedules.ExponentialDecay(0.01, 1, 0.5), epsilon=1e-3),
    lambda: keras.optimizers.LossScaleOptimizer(keras.optimizers.Adam(0.01)),
])
def test_fused_update_equals_keras(make):
    """TF's ResourceApplyAdam updates each of the 4 variables in the traced step (Keras' step has none)
    and the weights and slots end where Keras' own update puts them."""
    want, want_slots, plain_kernels = _train(make(), fused=False)
    got, got_slots, kernels = _train(make(), fused=True)
    assert (kernels, plain_kernels) == (4, 0)
    for a, b in zip(want + want_slots, got + got_slots):  # weights, then iterations, m, v (and the loss scale)
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-6)  # float32 round-off (an ulp of 0.5 is 6e-8)


def test_other_optimizers_and_amsgrad_keep_keras_update():
    for optimizer in (keras.optimizers.SGD(0.1), keras.optimizers.Adam(amsgrad=True), keras.optimizers.Nadam()):
        undo = fuse_adam([optimizer])
        assert "update_step" not in vars(optimizer)
        undo()


MIRRORED = '''
from tfmusic.training.fused_adam import fuse_adam
x = np.random.default_rng(0).normal(size=(8, 3)).astype(np.float32)
out = {}
for fused in (False, True):
    with strategy.scope():
        keras.utils.set_random_seed(0)
        model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(4, activation="tanh"), keras.layers.Dense(1)])
        optimizer = keras.optimizers.AdamW(0.05, weight_decay=0.01)
        optimizer.build(model.trainable_variables)
    if fused:
        fuse_adam([optimizer])
    losses = train(model, optimizer, x, lambda y: tf.reduce_sum(tf.square(y - 1.0)), steps=3)
    out[str(fused)] = {"losses": losses, "weights": [w.tolist() for w in model.get_weights()],
                       "replicas_equal": all(np.array_equal(v.values[0].numpy(), v.values[1].numpy())
                                             for v in (w.value for w in model.trainable_variables))}
print(json.dumps(out))
'''


def test_fused_under_mirrored_strategy_matches_keras():
    out = run_mirrored(MIRRORED)
    assert out["True"]["replicas_equal"]
    np.testing.assert_allclose(out["True"]["losses"], out["False"]["losses"], rtol=1e-5)
    for a, b in zip(out["False"]["weights"], out["True"]["weights"]):
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-6)
