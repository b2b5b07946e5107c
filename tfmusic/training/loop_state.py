"""What the training loop carries from step to step: :class:`LoopState`, which travels inside every
checkpoint, and :class:`LoopMeters`, which does not.

Kept apart from the loop so the resume contract is visible in one place: everything that decides
what a run does next (step, plateau and early-stopping counters, evaluation history, the training
metrics since the last evaluation) is stored in :class:`TrainerState` beside the weights, so a
resumed run makes exactly the decisions, and reports exactly the means, of an uninterrupted one.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from typing import Any

from tfmusic.training import telemetry
from tfmusic.training.checkpoints import TrainerState
from tfmusic.training.config import TrainerConfig
from tfmusic.training.plateau import EarlyStopping, ReduceOnPlateau


@dataclasses.dataclass
class LoopState:
    """The loop's resumable state (see the module docstring); ``start``/``last_saved`` are per call."""

    plateau: ReduceOnPlateau
    early: EarlyStopping
    step: int = 0
    start: int = 0
    history: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    stopped_early: bool = False
    # training metrics since the last evaluation (so a resumed run reports the same means)
    eval_window: dict[str, list[float]] = dataclasses.field(default_factory=lambda: defaultdict(list))
    last_saved: int = -1  # the step of the last checkpoint written by this call

    @classmethod
    def restore(cls, state: TrainerState, config: TrainerConfig, resumed: bool) -> LoopState:
        """The state a (restored or fresh) :class:`TrainerState` holds, with ``config``'s rules."""
        blob = state.get()
        plateau = ReduceOnPlateau(**dataclasses.asdict(config.plateau))
        plateau.load_state_dict(blob.get("plateau", {}))
        early = EarlyStopping(**dataclasses.asdict(config.early_stopping))
        early.load_state_dict(blob.get("early_stopping", {}))
        start = int(state.step.numpy())
        return cls(plateau=plateau, early=early, step=start, start=start, history=list(blob.get("history", [])),
                   stopped_early=bool(blob.get("stopped_early", False)),
                   eval_window=defaultdict(list, blob.get("train_window", {})),
                   last_saved=start if resumed else -1)

    def store(self, state: TrainerState) -> None:
        """Write the decision state into ``state``'s blob (the step variable is kept current by the loop)."""
        state.set({"plateau": self.plateau.state_dict(), "early_stopping": self.early.state_dict(),
                   "history": self.history, "stopped_early": self.stopped_early,
                   "train_window": dict(self.eval_window)})


@dataclasses.dataclass
class LoopMeters:
    """Telemetry of one ``fit()`` call (not checkpointed): progress bar, logging window, throughput,
    graph trace, profiler."""

    bar: Any
    throughput: telemetry.Throughput
    graph: telemetry.GraphTrace
    profiler: telemetry.StepProfiler
    log_window: dict[str, list[float]] = dataclasses.field(default_factory=lambda: defaultdict(list))

    def close(self, step: int) -> dict[str, float]:
        """Stop everything; the overall throughput for the HParams session end."""
        self.bar.close()
        self.profiler.stop()
        self.graph.export(step)  # only if the first step failed after tracing started
        return {k.split("/")[-1]: v for k, v in self.throughput.overall().items()}


__all__ = ["LoopMeters", "LoopState"]
