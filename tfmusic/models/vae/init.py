"""Weight initialization schemes for the VAEs: Keras defaults or the references' Xavier-normal.

The AR-VAE and dMelodies references re-initialize every parameter after construction: Xavier
(Glorot) normal on every weight matrix, including GRU recurrent weights, embeddings and conv
kernels, and zeros on every bias. Keras defaults differ (Glorot-uniform kernels, orthogonal
recurrent kernels, uniform(-0.05, 0.05) embeddings), which changes how fast the hierarchical
decoders leave the "always hold" solution. ``initialize(model, "xavier", seed)`` applies the
reference scheme in place to an already-built model; ``"keras"`` leaves it untouched.

Fan computation matches PyTorch's: Keras stores kernels transposed (``(in, out)``, conv
``(k, in, out)``) but Glorot's std depends only on ``fan_in + fan_out``, which is the same.
"""

from __future__ import annotations

import math

import keras

INIT_SCHEMES = ("keras", "xavier")


def _is_bias(variable) -> bool:
    name = variable.path if hasattr(variable, "path") else variable.name
    return name.rsplit("/", 1)[-1].startswith("bias")


def xavier_std(shape: tuple[int, ...]) -> float:
    """sqrt(2 / (fan_in + fan_out)) with PyTorch's fans (receptive field times channels)."""
    receptive = math.prod(shape[:-2]) if len(shape) > 2 else 1
    return math.sqrt(2.0 / (receptive * (shape[-2] + shape[-1])))


def initialize(model: keras.layers.Layer, scheme: str = "keras", seed: int = 0) -> int:
    """Re-initialize ``model``'s trainable weights with ``scheme``; returns how many were set.

    ``xavier``: Glorot-normal on every weight of rank >= 2, zeros on biases (Keras GRU biases are
    rank 2 with ``reset_after``, so biases are recognized by name). Rank-0/1 non-bias weights keep
    their values. Each variable gets its own seed (``seed + i``) so equal shapes draw differently.
    """
    if scheme not in INIT_SCHEMES:
        raise ValueError(f"unknown initialization {scheme!r}; expected one of {INIT_SCHEMES}")
    if scheme == "keras":
        return 0
    if not model.built:
        raise ValueError("initialize() needs a built model (call it on a batch first)")
    count = 0
    for i, variable in enumerate(model.trainable_weights):
        shape = tuple(variable.shape)
        if _is_bias(variable):
            variable.assign(keras.ops.zeros(shape, dtype=variable.dtype))
        elif len(shape) >= 2:
            # an untruncated normal like torch.nn.init.xavier_normal_ (Keras' GlorotNormal truncates at 2 std)
            variable.assign(keras.random.normal(shape, stddev=xavier_std(shape), dtype=variable.dtype,
                                                seed=int(seed) + i))
        else:
            continue
        count += 1
    return count


__all__ = ["INIT_SCHEMES", "initialize", "xavier_std"]
