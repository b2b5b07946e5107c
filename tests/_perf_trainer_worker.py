"""Subprocess entry point for tests/test_perf_trainer_options.py: ToyTask runs with XLA and
several steps per execution under a strategy that must be created before TensorFlow initialises.

Usage: ``_perf_trainer_worker.py STRATEGY DEVICES OUT_DIR RUNS_JSON``; RUNS_JSON maps a run name to
trainer overrides; each run's final weights go to ``OUT_DIR/<name>.npz`` and a JSON summary to stdout.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")


def _task(seed: int):
    """ToyTask without dropout: XLA draws different dropout masks than the TF kernels, by design."""
    import keras

    from tests._multiworker_worker import ToyTask

    class NoDropoutToy(ToyTask):
        def build(self) -> None:
            super().build()
            for layer in self.model.layers:
                if isinstance(layer, keras.layers.Dropout):
                    layer.rate = 0.0

    return NoDropoutToy(batch_size=8, seed=seed)


def main(strategy_name: str, devices: str, out_dir: str, runs_json: str) -> int:
    from tfmusic.training.strategies import make_strategy, parse_devices

    strategy = make_strategy(strategy_name, parse_devices(devices) if devices != "-" else None)
    print(json.dumps(run_all(strategy, strategy_name, out_dir, json.loads(runs_json))))
    return 0


def run_all(strategy, strategy_name: str, out_dir: str, runs: dict) -> dict:
    """Each run of ``runs`` (name -> trainer overrides) under ``strategy``; the summary by run name."""
    import numpy as np

    from tfmusic.training.config import TrainerConfig
    from tfmusic.training.trainer import Trainer

    summary = {}
    for name, overrides in runs.items():
        config = TrainerConfig(**{**dict(steps=5, batch_size=8, eval_every=5, eval_steps=1, log_every=2, seed=3,
                                         strategy=strategy_name, deterministic=True), **overrides})
        task = _task(3)
        try:
            result = Trainer(task, config, Path(out_dir) / name, strategy=strategy, progress=False).fit()
        except ValueError as err:  # a refused combination: report it
            summary[name] = {"error": str(err)}
            continue
        np.savez(Path(out_dir) / f"{name}.npz", *task.model.get_weights(),
                 iterations=np.asarray(int(task.optimizer.iterations.numpy())))
        summary[name] = {"replicas": strategy.num_replicas_in_sync, "step": result.step,
                         "history": [h["step"] for h in result.history]}
    return summary


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:5]))
