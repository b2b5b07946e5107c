"""Training-time rewrites of built layers' ``call`` (recomputation, fused BatchNorm and LSTM) and of
optimizers' ``update_step`` (fused Adam), undoable.

The new call is set on the layer *instance*, so Keras' ``__call__`` uses it while the class (and every
saved or exported copy of the model) keeps its plain call; undoing removes the instance attribute.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable

__all__ = ["patch_calls", "patch_method"]


def patch_method(objects: Iterable[Any], name: str, wrap: Callable[[Any, Callable], Callable]) -> Callable[[], None]:
    """Give each object the method ``wrap(obj, obj.<name>)`` on the instance; returns a function that
    undoes all of them."""
    patched = []
    for obj in objects:
        if name in vars(obj):
            raise ValueError(f"{getattr(obj, 'name', obj)!r} already has a patched {name}")
        setattr(obj, name, wrap(obj, getattr(obj, name)))
        patched.append(obj)

    def undo() -> None:
        for obj in patched:
            vars(obj).pop(name, None)

    return undo


def patch_calls(layers: Iterable[Any], wrap: Callable[[Any, Callable], Callable]) -> Callable[[], None]:
    """Give each layer the call ``wrap(layer, layer.call)``; returns a function that undoes all of them."""
    return patch_method(layers, "call", wrap)
