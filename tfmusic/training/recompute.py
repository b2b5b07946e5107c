"""Activation recomputation (gradient checkpointing) for chosen layers of a task's models.

Why: a training step keeps every intermediate activation of the forward pass for the backward
pass. For IASS at 6 s that is ~0.65 GB per example in float32, most of it the full-resolution
(1487-bin) encoder/decoder convolutions, BatchNorm and LeakyReLU outputs; batch 16 would need
~11 GB. With a layer recomputed, the forward keeps only the layer's inputs and outputs, and its
internals are computed again inside the backward pass (one more forward of that layer per step).

Why here and not in the models: models are plain ``keras.layers``/``keras.ops`` so they export
and run anywhere; recomputation is a training-time choice, applied to built layers by the trainer
(``trainer.recompute``) and undone after training.

Why not ``tf.recompute_grad``/``keras.RematScope`` alone: both run the layer's ``call`` a second
time inside the gradient, and that call reads and updates the layer's state (BatchNorm moving
statistics, a dropout seed generator) after the forward has already updated it, so what the
recomputation sees depends on how TF orders state ops in the gradient graph. Here the recomputation
starts from the state as the forward saw it and the state is put back after, so the gradients and
the state after a step are those of the plain layer (tested bit for bit: IASS gradients and
BatchNorm statistics; a Dense-Dropout model trained through the trainer).

Keras 3 and ``tf.recompute_grad`` also need the layer's tensor arguments passed positionally to
differentiate them (a custom gradient takes no keyword tensors): IASS passes ``skip=`` as a keyword.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable

import tensorflow as tf

from tfmusic.training.layer_calls import patch_calls

__all__ = ["recompute_layers"]


def _recomputed_call(layer: Any, original: Callable) -> Callable:
    """``layer.call`` with its activations recomputed in the backward pass (see module docstring)."""
    state = list(layer.non_trainable_variables)  # BatchNorm moving statistics, seed generators

    def call(*args: Any, **kwargs: Any) -> Any:
        flat = tf.nest.flatten((args, kwargs))
        where = [i for i, x in enumerate(flat) if tf.is_tensor(x)]  # tensors go through the gradient
        before = [tf.identity(v.value) for v in state]  # the state the forward sees
        calls = []

        def run(*tensors: tf.Tensor) -> Any:
            items = list(flat)
            for i, t in zip(where, tensors):
                items[i] = t
            a, k = tf.nest.pack_sequence_as((args, kwargs), items)
            if not calls:  # the forward pass
                calls.append(1)
                return original(*a, **k)
            after = [tf.identity(v.value) for v in state]  # the recomputation: from the forward's state
            for v, b in zip(state, before):
                v.assign(b)
            out = original(*a, **k)
            with tf.control_dependencies(tf.nest.flatten(out)):
                for v, s in zip(state, after):  # ... and leave the state as the forward left it
                    v.assign(s)
            return out

        return tf.recompute_grad(run)(*[flat[i] for i in where])

    return call


def recompute_layers(layers: Iterable[Any]) -> Callable[[], None]:
    """Recompute each layer's activations in the backward pass; returns a function that undoes it.

    The layers must be built. Each call's tensor arguments (positional or keyword) are what the
    backward pass differentiates; other arguments (``training=``) are passed through unchanged.
    """
    return patch_calls(layers, _recomputed_call)
