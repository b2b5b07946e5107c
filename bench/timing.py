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
