"""Training-time rewrites of built layers' ``call`` (recomputation, fused BatchNorm), undoable.

The new call is set on the layer *instance*, so Keras' ``__call__`` uses it while the class (and every
saved or exported copy of the model) keeps its plain call; undoing removes the instance attribute.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable

__all__ = ["patch_calls"]


def patch_calls(layers: Iterable[Any], wrap: Callable[[Any, Callable], Callable]) -> Callable[[], None]:
    """Give each layer the call ``wrap(layer, layer.call)``; returns a function that undoes all of them."""
    patched = []
    for layer in layers:
        if "call" in vars(layer):
            raise ValueError(f"layer {layer.name!r} already has a patched call")
        layer.call = wrap(layer, layer.call)
        patched.append(layer)

    def undo() -> None:
        for layer in patched:
            vars(layer).pop("call", None)

    return undo
