"""Reduce-on-plateau and early stopping as small pure-Python state machines.

They see one monitored value per evaluation round (lower is better) and carry their whole state in
a JSON-able dict, which the trainer stores inside every checkpoint so a resumed run makes exactly
the decisions an uninterrupted run would have made.

Rules (those of the reference training code, spec A.6):

- ``ReduceOnPlateau``: a round improves when ``value < best - min_delta``. Rounds without
  improvement are counted; once the count exceeds ``patience`` the learning rate is multiplied
  by ``factor`` (floored at ``min_lr``), the count resets and ``cooldown`` rounds follow during
  which the count is held at zero (PyTorch ``ReduceLROnPlateau`` semantics).
- ``EarlyStopping``: stop once ``patience`` rounds in a row brought no improvement.

A NaN value never counts as an improvement.
"""

from __future__ import annotations

import math
from typing import Any


def _improves(value: float, best: float | None, min_delta: float) -> bool:
    if value is None or math.isnan(value):
        return False
    return best is None or value < best - min_delta


class ReduceOnPlateau:
    """Decides when to shrink the learning rate; :meth:`update` returns the new rate or None."""

    def __init__(self, factor: float = 0.3, patience: int | None = 80, cooldown: int = 10,
                 min_lr: float = 0.0, min_delta: float = 0.0):
        if not 0.0 < factor < 1.0:
            raise ValueError(f"factor must be in (0, 1), got {factor}")
        self.factor = factor
        self.patience = patience
        self.cooldown = cooldown
        self.min_lr = min_lr
        self.min_delta = min_delta
        self.best: float | None = None
        self.num_bad = 0
        self.cooldown_counter = 0
        self.reductions = 0

    def update(self, value: float, lr: float) -> float | None:
        """Record one evaluation round; return the reduced learning rate if it is time to reduce."""
        if _improves(value, self.best, self.min_delta):
            self.best = float(value)
            self.num_bad = 0
        else:
            self.num_bad += 1
        if self.cooldown_counter > 0:
            self.cooldown_counter -= 1
            self.num_bad = 0
        if self.patience is None or self.num_bad <= self.patience:
            return None
        self.num_bad = 0
        self.cooldown_counter = self.cooldown
        new_lr = max(lr * self.factor, self.min_lr)
        if new_lr >= lr:
            return None
        self.reductions += 1
        return new_lr

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "num_bad": self.num_bad,
                "cooldown_counter": self.cooldown_counter, "reductions": self.reductions}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best = state.get("best")
        self.num_bad = int(state.get("num_bad", 0))
        self.cooldown_counter = int(state.get("cooldown_counter", 0))
        self.reductions = int(state.get("reductions", 0))


class EarlyStopping:
    """Tracks the best value; :meth:`update` returns True when training should stop."""

    def __init__(self, patience: int | None = 140, min_delta: float = 0.0):
        self.patience = patience
        self.min_delta = min_delta
        self.best: float | None = None
        self.best_step: int | None = None
        self.num_bad = 0

    def update(self, value: float, step: int | None = None) -> bool:
        """Record one evaluation round (``improved`` tells whether it set a new best)."""
        if _improves(value, self.best, self.min_delta):
            self.best = float(value)
            self.best_step = step
            self.num_bad = 0
        else:
            self.num_bad += 1
        return self.patience is not None and self.num_bad >= self.patience

    @property
    def improved(self) -> bool:
        """Whether the last :meth:`update` set a new best."""
        return self.best is not None and self.num_bad == 0

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "best_step": self.best_step, "num_bad": self.num_bad}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best = state.get("best")
        self.best_step = state.get("best_step")
        self.num_bad = int(state.get("num_bad", 0))
