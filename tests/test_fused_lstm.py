"""Fused LSTM (trainer.fused_lstm): Keras' TorchLSTM maths, one XLA loop, analytic backward, undone after."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from tests._graphs import xla_functions
from tests._mirrored import run_mirrored
from tests._twins import assert_bf16_close, twins
from tfmusic.models.layers import TorchLSTM
from tfmusic.training.fused_lstm import fuse_lstms

FRAMES, FEATURES, UNITS = 9, 6, 5


def _pair(bidirectional: bool = True, policy: str = "float32", **lstm):
    """Two identical (Bi)LSTM models and a batch; fuse the second one yourself."""
    def build():
        layer = TorchLSTM(UNITS, return_sequences=True, **lstm)
        layer = keras.layers.Bidirectional(layer) if bidirectional else layer
        return keras.Sequential([keras.Input((FRAMES, FEATURES)), layer, keras.layers.Dense(2)])

    x = tf.constant(np.random.default_rng(0).normal(size=(3, FRAMES, FEATURES)).astype(np.float32))
    return twins(build, policy), x


def _step(model, x):
    with tf.GradientTape() as tape:
        y = tf.cast(model(x, training=True), tf.float32)
        loss = tf.reduce_sum(tf.square(y)) + tf.reduce_sum(y[:, :3])  # uneven weight over time
    return loss, tape.gradient(loss, model.trainable_variables)


def _numpy_lstm(x: np.ndarray, layer) -> np.ndarray:
    """The (Bi)LSTM written out in float64 NumPy from the layer's weights (PyTorch's formulas, zero initial
    states; the second direction reads the sequence backwards): a reference that shares no code with
    either Keras or the fused loop."""
    cells = [layer.forward_layer.cell, layer.backward_layer.cell] if hasattr(layer, "forward_layer") else [layer.cell]
    x, outputs = np.asarray(x, np.float64), []
    for direction, cell in enumerate(cells):
        kernel, recurrent, bias = (np.asarray(getattr(cell, name), np.float64)
                                   for name in ("kernel", "recurrent_kernel", "bias"))
        sequence = x[:, ::-1] if direction else x
        h = c = np.zeros((len(x), recurrent.shape[0]))
        hs = []
        for t in range(sequence.shape[1]):
            i, f, g, o = np.split(sequence[:, t] @ kernel + h @ recurrent + bias, 4, axis=-1)
            c = _sigmoid(f) * c + _sigmoid(i) * np.tanh(g)
            h = _sigmoid(o) * np.tanh(c)
            hs.append(h)
        hs = np.stack(hs, 1)
        outputs.append(hs[:, ::-1] if direction else hs)
    return np.concatenate(outputs, -1)


def _sigmoid(v: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-v))


@pytest.mark.parametrize("bidirectional", [True, False])
def test_fused_forward_and_gradients_match_keras(bidirectional):
    """The training step runs the fused loop (its two XLA functions are in the traced step; Keras' step has
    none), computes the NumPy LSTM's outputs and Keras' autodiff gradients; inference stays Keras' call."""
    (plain, fused), x = _pair(bidirectional)
    undo = fuse_lstms([fused])
    assert "call" in vars(fused.layers[0])
    compiled = xla_functions(_step, fused, x)
    assert [name.split("_")[-2] for name in compiled] == ["backward", "forward"], compiled
    assert xla_functions(_step, plain, x) == []
    want = _numpy_lstm(x, plain.layers[0])
    np.testing.assert_allclose(fused.layers[0](x, training=True).numpy(), want, rtol=1e-5, atol=1e-6)
    l0, g0 = _step(plain, x)
    l1, g1 = tf.function(_step)(fused, x)  # as the trainer runs it: in a graph
    np.testing.assert_allclose(float(l1), float(l0), rtol=1e-6)
    assert len(g1) == len(g0) and all(g is not None for g in g1)
    for a, b in zip(g0, g1):  # both bias vectors, both kernels, per direction, and the Dense after
        np.testing.assert_allclose(b.numpy(), a.numpy(), rtol=1e-5, atol=1e-6)
    assert xla_functions(lambda: fused(x, training=False)) == []  # inference: Keras' own call
    np.testing.assert_allclose(fused.layers[0](x, training=False).numpy(), want, rtol=1e-5, atol=1e-6)
    undo()
    assert "call" not in vars(fused.layers[0])


def test_bidirectional_patches_the_wrapper_not_its_directions():
    (_, fused), _ = _pair()
    fuse_lstms([fused])
    wrapper = fused.layers[0]
    assert "call" in vars(wrapper)
    assert "call" not in vars(wrapper.forward_layer) and "call" not in vars(wrapper.backward_layer)


@pytest.mark.parametrize("lstm", [{"dropout": 0.2}, {"recurrent_dropout": 0.2}, {"use_cudnn": True}])
def test_what_the_recurrence_does_not_cover_is_left_to_keras(lstm):
    (_, model), _ = _pair(**lstm)
    fuse_lstms([model])
    assert "call" not in vars(model.layers[0])
    keras.utils.set_random_seed(0)
    summed = keras.layers.Bidirectional(TorchLSTM(UNITS, return_sequences=True), merge_mode="sum")
    last = TorchLSTM(UNITS)  # return_sequences=False
    outer = keras.Sequential([keras.Input((FRAMES, FEATURES)), summed, last])
    fuse_lstms([outer])
    assert not any("call" in vars(layer) for layer in outer._flatten_layers(include_self=True))


def test_masks_and_initial_states_run_keras_call():
    (plain, fused), x = _pair(bidirectional=False)
    fuse_lstms([fused])
    mask = tf.constant(np.arange(FRAMES)[None, :] < np.array([[9], [5], [2]]))
    state = [tf.ones((3, UNITS)), tf.zeros((3, UNITS))]
    for kwargs in ({"mask": mask}, {"initial_state": state}):
        np.testing.assert_array_equal(fused.layers[0](x, training=True, **kwargs).numpy(),
                                      plain.layers[0](x, training=True, **kwargs).numpy())


def test_fused_under_mixed_bfloat16_is_as_close_to_float32_as_keras():
    """Under mixed_bfloat16 the fused loop runs in bf16; its outputs, loss and every gradient are within
    bf16 round-off of float32 (NumPy for the LSTM outputs, Keras for the gradients)."""
    (plain, fused), x = _pair(policy="mixed_bfloat16")
    (exact, _), _ = _pair()
    exact.set_weights(plain.get_weights())
    fuse_lstms([fused])
    assert len(xla_functions(_step, fused, x)) == 2
    assert fused.layers[0](x, training=True).dtype == tf.bfloat16
    got, keras_bf16, want = ([model.layers[0](x, training=True), loss, *grads]
                             for model in (fused, plain, exact) for loss, grads in [tf.function(_step)(model, x)])
    want[0] = _numpy_lstm(x, exact.layers[0])
    assert all(g.dtype == tf.float32 for g in got[2:])
    assert_bf16_close(got, keras_bf16, want)


MIRRORED = '''
from tfmusic.models.layers import TorchLSTM
from tfmusic.training.fused_lstm import fuse_lstms
x = np.random.default_rng(0).normal(size=(4, 7, 3)).astype(np.float32)
out = {}
for fused in (False, True):
    with strategy.scope():
        keras.utils.set_random_seed(0)
        model = keras.Sequential([keras.Input((7, 3)),
                                  keras.layers.Bidirectional(TorchLSTM(4, return_sequences=True)),
                                  keras.layers.Dense(1)])
        optimizer = keras.optimizers.SGD(0.1)
        optimizer.build(model.trainable_variables)
    if fused:
        fuse_lstms([model])
    out[str(fused)] = {"losses": train(model, optimizer, x, lambda y: tf.reduce_sum(tf.square(y)), steps=3),
                       "kernel": model.layers[0].forward_layer.cell.kernel.numpy().tolist()}
print(json.dumps(out))
'''


def test_fused_under_mirrored_strategy_matches_keras():
    out = run_mirrored(MIRRORED)
    np.testing.assert_allclose(out["True"]["losses"], out["False"]["losses"], rtol=1e-5)
    np.testing.assert_allclose(out["True"]["kernel"], out["False"]["kernel"], rtol=1e-5, atol=1e-6)
