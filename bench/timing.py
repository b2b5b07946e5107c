"""Timing helper shared by the benchmarks (imported as `timing`: bench/ is on sys.path when
`bench/run_all.py` or a bench script runs)."""

from __future__ import annotations

import time
from typing import Callable


def best_of(fn: Callable[[], object], repeats: int, *, warmup: bool = False) -> float:
    """Best wall time in seconds over ``repeats`` calls; ``warmup`` makes one untimed call first
    (the first call of a tf.function traces and compiles)."""
    if warmup:
        fn()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def load_average() -> float:
    """1-minute load average (the machine is shared: every figure is reported with it)."""
    import os

    return round(os.getloadavg()[0], 2)


def interleaved(sides: dict[str, Callable[[], object]], repeats: int, *, warmup: bool = True
                ) -> tuple[dict[str, float], dict[str, list[float]]]:
    """Best time per side, with the sides' repetitions interleaved (A B A B ...) so a load change hits
    all of them alike; also the 1-minute load average seen around each side's timed calls."""
    if warmup:
        for fn in sides.values():
            fn()
    best = {name: float("inf") for name in sides}
    loads: dict[str, list[float]] = {name: [] for name in sides}
    for _ in range(repeats):
        for name, fn in sides.items():
            loads[name].append(load_average())
            start = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - start)
    return best, loads


def load_note(loads: dict[str, list[float]], tolerance: float = 1.0) -> str:
    """``load a/b`` per side (mean 1-min load average), flagged when the sides differ by more than
    ``tolerance`` (one core's worth): then the ratio is not trustworthy."""
    means = {k: sum(v) / len(v) for k, v in loads.items() if v}
    text = "load " + "/".join(f"{m:.1f}" for m in means.values())
    if means and max(means.values()) - min(means.values()) > tolerance:
        text += " (UNEVEN LOAD: sides ran under different load)"
    if overloaded(loads):
        text += " (OVERLOADED: load > 2 x cores, ratios unreliable)"
    return text


def overloaded(loads: dict[str, list[float]]) -> bool:
    """More than two runnable tasks per core on average: spinning thread pools (OpenMP, oneDNN)
    then lose most of their time and a side's figure says more about the machine than the code."""
    import os

    values = [x for v in loads.values() for x in v]
    return bool(values) and sum(values) / len(values) > 2 * (os.cpu_count() or 1)


def trainer_step_seconds(task, steps: int) -> float:
    """Seconds per step of ``Trainer.fit`` on ``task`` (``steps`` >= 2) from the trainer's own throughput
    meter: the mean over every call after the first (tracing and XLA compilation left out) of the
    distributed step and its metric reduction; logging and checkpoints between steps are outside it.
    Why not ``(fit(2k) - fit(k)) / k``: each fit traces anew, and that varied by more than k steps cost."""
    import tempfile
    from pathlib import Path

    from tfmusic.training.trainer import Trainer

    if steps < 2:
        raise ValueError(f"the meter skips the first step: need steps >= 2, got {steps}")
    task.config.trainer.steps = steps
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(task, task.config.trainer, Path(tmp) / "run", progress=False)
        trainer.fit()
        return 1.0 / trainer._final["steps_per_second"]
