"""Fused LSTM recurrence for training steps on CPU: both directions in one XLA loop, analytic backward.

Why: Open-Unmix trains a 3-layer BiLSTM, and TF 2.21 has no fast LSTM kernel on CPU (its fused
``BlockLSTMV2`` ran 0.08x PyTorch's oneDNN LSTM). Keras' recurrence, looped or unrolled, is many
tiny ops per time step, and autodiff through it adds several more per op (one BiLSTM layer, batch
4 x 255 frames, forward + backward: 0.19 s unrolled vs PyTorch's 0.06 s). Here:
- both directions run in one loop (the backward one on the time-reversed sequence), so each step
  is one batched ``h @ recurrent_kernel`` for both;
- the backward pass is written out (the LSTM's own derivative) instead of differentiated op by op:
  its loop carries only ``dh``/``dc`` and emits the gate gradients; the recurrent kernel's gradient
  is one matmul over all steps after the loop, as cuDNN and oneDNN do it;
- each loop is XLA-compiled (``jit_compile``), which fuses a step's element-wise ops.
Same maths, same weights, gradients equal to autodiff's to float32 round-off (tests/test_fused_lstm.py).
Measured (bench/bench_lstm.py, quiet): 0.060-0.064 s per layer, 1.08-1.14x PyTorch.

Why here and not in the models: like fused BatchNorm this is a training-time choice the trainer
applies to built layers (``trainer.fused_lstm``) and undoes after training; the models stay plain
Keras, export and run anywhere. It applies to :class:`tfmusic.models.layers.TorchLSTM`, alone or in a
``Bidirectional(merge_mode="concat")``, returning sequences from zero initial states, without masks,
dropout or recurrent dropout, and not where the layer would use cuDNN; anything else runs Keras' call.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable

import keras
import tensorflow as tf

from tfmusic.models.layers import TorchLSTM
from tfmusic.training.layer_calls import patch_calls

__all__ = ["fuse_lstms", "lstm_sequence"]


def _loop_order(x: tf.Tensor) -> tf.Tensor:
    """``(B, T, D, K)`` <-> ``(T, D, B, K)`` with the second direction's time reversed (its own inverse
    up to the transpose). Used inside the compiled functions, where XLA fuses it into one copy."""
    if x.shape[2] == 2:
        x = tf.stack([x[:, :, 0], tf.reverse(x[:, :, 1], [1])], 2)
    return tf.transpose(x, [1, 2, 0, 3])


def _batch_order(x: tf.Tensor) -> tf.Tensor:
    """The inverse of :func:`_loop_order`: ``(T, D, B, K)`` -> ``(B, T, D, K)``."""
    x = tf.transpose(x, [2, 0, 1, 3])
    if x.shape[2] == 2:
        x = tf.stack([x[:, :, 0], tf.reverse(x[:, :, 1], [1])], 2)
    return x


@tf.function(jit_compile=True)  # traced per shape: XLA needs static loop lengths
def _forward(projected: tf.Tensor, recurrent: tf.Tensor) -> tuple[tf.Tensor, ...]:
    """projected ``(B, T, D, 4H)`` (inputs @ kernel + bias), recurrent ``(D, H, 4H)`` -> hidden states
    ``(B, T, D, H)``, and for the backward pass, in loop order, hidden and cell states ``(T, D, B, H)``
    and activated gates i, f, g, o ``(T, D, B, 4H)``."""
    projected = _loop_order(projected)
    steps = tf.shape(projected)[0]
    c = tf.zeros(tf.concat([tf.shape(projected)[1:3], tf.shape(recurrent)[1:2]], 0), projected.dtype)

    def body(t, h, c, cs, gates):
        i, f, g, o = tf.split(projected[t] + tf.matmul(h, recurrent), 4, axis=-1)
        i, f, g, o = tf.sigmoid(i), tf.sigmoid(f), tf.tanh(g), tf.sigmoid(o)
        c = f * c + i * g
        return t + 1, o * tf.tanh(c), c, cs.write(t, c), gates.write(t, tf.concat([i, f, g, o], -1))

    arrays = [tf.TensorArray(projected.dtype, steps) for _ in range(2)]
    _, _, _, cs, gates = tf.while_loop(lambda t, *_: t < steps, body, (0, c, c, *arrays))
    cs, gates = cs.stack(), gates.stack()
    hs = gates[..., -c.shape[-1]:] * tf.tanh(cs)  # h = o * tanh(c), for all steps at once
    return _batch_order(hs), hs, cs, gates


@tf.function(jit_compile=True)  # traced per shape: XLA needs static loop lengths
def _backward(d_out: tf.Tensor, hs: tf.Tensor, cs: tf.Tensor, gates: tf.Tensor,
              recurrent: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """Gradients of the projected inputs ``(B, T, D, 4H)`` and of the recurrent kernel, given those of
    the hidden states ``(B, T, D, H)``.

    The step's derivative, with everything that does not depend on the carried ``dh``/``dc`` computed
    for all steps before the loop: ``dc += dh * o * (1 - tanh(c)^2)``; the pre-activation gate
    gradients are ``[dc, dc, dc, dh] * [g i (1-i), c_prev f (1-f), i (1-g^2), tanh(c) o (1-o)]``;
    ``dh = dz @ recurrent^T`` and ``dc *= f`` carry to the step before."""
    d_hs = _loop_order(d_out)
    steps = tf.shape(d_hs)[0]
    recurrent_t = tf.transpose(recurrent, [0, 2, 1])
    c_prev = tf.concat([tf.zeros_like(cs[:1]), cs[:-1]], 0)
    tanh_c = tf.tanh(cs)
    i, f, g, o = tf.split(gates, 4, axis=-1)
    to_dc = o * (1 - tanh_c * tanh_c)
    factors = tf.concat([g * i * (1 - i), c_prev * f * (1 - f), i * (1 - g * g), tanh_c * o * (1 - o)], -1)

    def body(t, dh, dc, d_gates):
        dh = d_hs[t] + dh
        dc = dc + dh * to_dc[t]
        dz = tf.concat([dc, dc, dc, dh], -1) * factors[t]
        return t - 1, tf.matmul(dz, recurrent_t), dc * f[t], d_gates.write(t, dz)

    zero = tf.zeros_like(d_hs[0])
    _, _, _, d_gates = tf.while_loop(lambda t, *_: t >= 0, body,
                                     (steps - 1, zero, zero, tf.TensorArray(d_hs.dtype, steps)))
    d_gates = d_gates.stack()
    h_prev = tf.concat([tf.zeros_like(hs[:1]), hs[:-1]], 0)
    return _batch_order(d_gates), tf.einsum("tdbh,tdbg->dhg", h_prev, d_gates)


@tf.custom_gradient
def _recurrence(projected: tf.Tensor, recurrent: tf.Tensor):
    # stop_gradient: an eager tape must not record the compiled loop (it would differentiate it itself)
    out, hs, cs, gates = _forward(tf.stop_gradient(projected), tf.stop_gradient(recurrent))
    return out, lambda d_out: _backward(d_out, hs, cs, gates, recurrent)


def lstm_sequence(inputs: tf.Tensor, kernels: list, recurrent_kernels: list, biases: list) -> tf.Tensor:
    """Hidden states of one LSTM layer per direction, concatenated on the last axis.

    ``inputs`` ``(B, T, F)``; per direction a kernel ``(F, 4H)``, recurrent kernel ``(H, 4H)`` and bias
    ``(4H,)`` (gate order i, f, g, o, as Keras and PyTorch). The second direction, if given, reads the
    sequence backwards (a bidirectional layer); zero initial states. Returns ``(B, T, D * H)``.
    """
    directions, features = len(kernels), inputs.shape[-1]
    batch, steps = tf.shape(inputs)[0], tf.shape(inputs)[1]
    # one (B*T, F) x (F, D*4H) projection for both directions; reordering for the loop happens in XLA
    projected = tf.matmul(tf.reshape(inputs, [-1, features]), tf.concat(kernels, -1)) + tf.concat(biases, 0)
    hs = _recurrence(tf.reshape(projected, [batch, steps, directions, -1]), tf.stack(recurrent_kernels))
    return tf.reshape(hs, [batch, steps, directions * recurrent_kernels[0].shape[0]])


def _fusable_lstm(layer: Any) -> bool:
    cell = getattr(layer, "cell", None)
    return (isinstance(layer, TorchLSTM) and layer.return_sequences and not layer.return_state
            and not layer.stateful and cell.use_bias and not cell.dropout and not cell.recurrent_dropout
            and getattr(cell.activation, "__name__", "") == "tanh"
            and getattr(cell.recurrent_activation, "__name__", "") == "sigmoid" and not layer.uses_cudnn())


def _directions(layer: Any) -> list | None:
    """The TorchLSTM layers a fused call runs (forward first), or None if the layer is not fusable."""
    if isinstance(layer, keras.layers.Bidirectional):
        forward, backward = layer.forward_layer, layer.backward_layer
        if (layer.merge_mode == "concat" and _fusable_lstm(forward) and _fusable_lstm(backward)
                and not forward.go_backwards and backward.go_backwards and not layer.return_state):
            return [forward, backward]
        return None
    return [layer] if _fusable_lstm(layer) and not layer.go_backwards else None


def _fused_call(layer: Any, original: Callable) -> Callable:
    cells = [direction.cell for direction in _directions(layer)]

    def call(sequences: Any, initial_state: Any = None, mask: Any = None, training: Any = None) -> Any:
        if not training or initial_state is not None or mask is not None:
            return original(sequences, initial_state=initial_state, mask=mask, training=training)
        dtype = sequences.dtype
        weights = [[tf.cast(getattr(cell, name), dtype) for cell in cells]
                   for name in ("kernel", "recurrent_kernel", "bias")]
        return lstm_sequence(sequences, *weights)

    return call


def fuse_lstms(models: Iterable[Any]) -> Callable[[], None]:
    """Fuse the training-mode recurrence of every fusable TorchLSTM (or Bidirectional of two) in
    ``models``; returns a function that undoes it."""
    layers, inner = [], set()
    for model in models:
        if not isinstance(model, keras.layers.Layer):
            continue
        for layer in model._flatten_layers(include_self=True):
            if isinstance(layer, keras.layers.Bidirectional):
                inner.update({id(layer.forward_layer), id(layer.backward_layer)})
            if "call" not in vars(layer) and _directions(layer) is not None:
                layers.append(layer)
    return patch_calls([layer for layer in layers if id(layer) not in inner], _fused_call)
