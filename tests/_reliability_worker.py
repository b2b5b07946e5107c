"""Trains the toy task of the trainer tests as a separate process, so a test can SIGKILL it.

Run with ``TFMUSIC_FAULT_POINT=NAME[:N]`` (``tfmusic.training.faults``) the process kills itself
at that point; without it, it trains to the end. Every run uses :func:`config`, so a test can
run the uninterrupted reference (or the last resume) in-process with the same settings.
Also the fault log every reliability test writes (:func:`fault_log`), from what the test observed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from pathlib import Path
from typing import Any, Mapping

import numpy as np

if __name__ == "__main__":  # make `tfmusic` and `tests` importable when run as a script
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")

STEPS = 8


def config():
    """Deterministic, an evaluation (and best-model candidate) and a checkpoint every 2 steps."""
    from tfmusic.training.config import TrainerConfig

    return TrainerConfig(steps=STEPS, batch_size=8, eval_every=2, eval_steps=2, log_every=1,
                         checkpoint_every=2, seed=3, deterministic=True, summaries=False)


def train(run_dir: str, resume: bool):
    """One (possibly resumed) run of the toy task; the :class:`TrainResult`."""
    from tests._multiworker_worker import ToyTask
    from tfmusic.training.trainer import Trainer

    return Trainer(ToyTask(seed=3), config(), run_dir, progress=False, resume=resume,
                   run_config={"model": "toy"}).fit()


class FaultRecord:
    """What a fault test observed: which injected faults the system got past, and ``lost``: the
    outputs that are missing or wrong against an undisturbed run (None until the test measured it).
    Filled in by the test from what it saw, before its asserts."""

    def __init__(self, faults: list[str]) -> None:
        self.faults, self.got_past = list(faults), set()
        self.lost: int | None = None

    def survived(self, *faults: str) -> None:
        unknown = set(faults) - set(self.faults)
        assert not unknown, f"not an injected fault: {sorted(unknown)}"
        self.got_past.update(faults)


@contextlib.contextmanager
def fault_log(scenario: str, faults: list[str]):
    """Yield a :class:`FaultRecord`; on the way out, also when the test fails, append one line per fault
    to ``$TFMUSIC_RELIABILITY_LOG`` (``make reliability`` tabulates them): a fault the test did not
    see the system get past is ``survived: false``."""
    record = FaultRecord(faults)
    try:
        yield record
    finally:
        path = os.environ.get("TFMUSIC_RELIABILITY_LOG")
        if path:
            with open(path, "a") as handle:
                for fault in record.faults:
                    handle.write(json.dumps({"scenario": scenario, "fault": fault,
                                             "survived": fault in record.got_past, "data_lost": record.lost}) + "\n")


def differing(a: Mapping[Any, Any] | list, b: Mapping[Any, Any] | list) -> int:
    """How many entries of two maps (or lists: by position) are missing on one side or not equal
    (arrays: bit for bit)."""
    a, b = (dict(enumerate(x)) if isinstance(x, list) else x for x in (a, b))

    def same(x, y) -> bool:
        if isinstance(x, np.ndarray) or isinstance(y, np.ndarray):
            return np.array_equal(np.asarray(x), np.asarray(y))
        return x == y

    return sum(1 for key in set(a) | set(b) if key not in a or key not in b or not same(a[key], b[key]))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--run-dir", required=True)
    parser.add_argument("--resume", action="store_true")
    args = parser.parse_args()
    train(args.run_dir, args.resume)
