"""Two identical Keras models for A/B tests of training-time rewrites."""

from __future__ import annotations

from typing import Any, Callable

import keras


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
