"""Trains the toy task of the trainer tests as a separate process, so a test can SIGKILL it.

Run with ``TFMUSIC_FAULT_POINT=NAME[:N]`` (``tfmusic.training.faults``) the process kills itself
at that point; without it, it trains to the end. Every run uses :func:`config`, so a test can
run the uninterrupted reference (or the last resume) in-process with the same settings.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

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


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--run-dir", required=True)
    parser.add_argument("--resume", action="store_true")
    args = parser.parse_args()
    train(args.run_dir, args.resume)


def log_faults(scenario: str, faults: list[str], lost: int = 0) -> None:
    """Append survived faults to ``$TFMUSIC_RELIABILITY_LOG`` (``make reliability`` tabulates them)."""
    import json

    path = os.environ.get("TFMUSIC_RELIABILITY_LOG")
    if not path:
        return
    with open(path, "a") as handle:
        for fault in faults:
            handle.write(json.dumps({"scenario": scenario, "fault": fault, "survived": True, "data_lost": lost}) + "\n")
