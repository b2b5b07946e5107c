"""The training-time rewrites of built layers a trainer config asks for, applied in one place.

The trainer applies them after building the task and undoes them around anything that must see the
plain layers (histograms, saving); benchmarks apply the same ones so they time what training runs.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable

from tfmusic.training.config import TrainerConfig
from tfmusic.training.fused_adam import fuse_adam
from tfmusic.training.fused_lstm import fuse_lstms
from tfmusic.training.fused_norm import fuse_batch_norms
from tfmusic.training.recompute import recompute_layers

__all__ = ["apply_rewrites"]


def apply_rewrites(config: TrainerConfig, models: Iterable[Any], recompute: Iterable[Any] = ()) -> Callable[[], None]:
    """Fused BatchNorm (``trainer.fused_batchnorm``), LSTM (``trainer.fused_lstm``) and Adam updates
    (``trainer.fused_adam``) in ``models`` (a task's checkpoint items: models and optimizers), then
    ``recompute`` (the task's ``recompute_layers()``) recomputed in the backward pass (``trainer.recompute``).
    Returns a function that undoes all of it."""
    models = list(models)
    undo = []
    if config.fused_batchnorm:
        undo.append(fuse_batch_norms(models))
    if config.fused_lstm:
        undo.append(fuse_lstms(models))
    if config.fused_adam:
        undo.append(fuse_adam(models))
    if config.recompute:
        undo.append(recompute_layers(recompute))

    def undo_all() -> None:
        for step in reversed(undo):
            step()

    return undo_all
