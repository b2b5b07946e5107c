"""Two identical Keras models for A/B tests of training-time rewrites, and how close a bf16 one must be."""

from __future__ import annotations

from typing import Any, Callable, Iterable

import keras
import numpy as np


def twins(build: Callable[[], Any], policy: str = "float32") -> list:
    """``build()`` twice from seed 0 under the mixed-precision ``policy`` (the global one is restored)."""
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(policy)
    try:
        models = []
        for _ in range(2):
            keras.utils.set_random_seed(0)
            models.append(build())
        return models
    finally:
        keras.mixed_precision.set_global_policy(previous)




BF16_ULP = 2.0 ** -8  # bfloat16 keeps 8 significant bits


def assert_bf16_close(got: Iterable[Any], keras_bf16: Iterable[Any], exact: Iterable[Any], ulps: float = 4.0,
                      factor: float = 2.0) -> None:
    """Each tensor of ``got`` (a rewrite under mixed_bfloat16) is finite and, element by element, within
    ``ulps`` bfloat16 ulps of the largest float32 ``exact`` value, or no further from ``exact`` than
    ``factor`` times Keras' own bf16 result (``keras_bf16``: gradients that are sums which cancel).

    Why: one loss value at 2e-2 cannot see a wrong gate or channel, and NaN must never pass; Keras' bf16
    step is the yardstick for what bf16 round-off may cost.
    """
    for i, (g, k, e) in enumerate(zip(got, keras_bf16, exact, strict=True)):
        g, k, e = (np.asarray(keras.ops.convert_to_numpy(v), np.float64) for v in (g, k, e))
        assert g.shape == e.shape and np.isfinite(g).all(), f"tensor {i}: shape {g.shape} vs {e.shape}, or not finite"
        bound = max(ulps * BF16_ULP * np.abs(e).max(), factor * np.abs(k - e).max())
        assert np.abs(g - e).max() <= bound, f"tensor {i}: error {np.abs(g - e).max():.3g} > {bound:.3g}"
