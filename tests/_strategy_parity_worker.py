"""The toy task without dropout under a given strategy, weights to an .npz: the parity test runs it
once on one device and once mirrored over 2 logical CPUs on the same global batch, both in the
session's mirrored host (tests/_mirrored.py: logical devices must be configured before TensorFlow
initialises). Also a script: ``--strategy S --devices N --run-dir D --weights-out W``."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--strategy", default="default")
    parser.add_argument("--devices", default=None)
    parser.add_argument("--run-dir", required=True)
    parser.add_argument("--weights-out", required=True)
    args = parser.parse_args()
    run(args.strategy, args.devices, args.run_dir, args.weights_out)
    return 0


def run(strategy_name: str, devices: str | None, run_dir: str, weights_out: str) -> None:
    from tfmusic.training.strategies import make_strategy, parse_devices

    strategy = make_strategy(strategy_name, parse_devices(devices))
    import keras
    import numpy as np

    from tests._multiworker_worker import ToyTask
    from tfmusic.training.config import TrainerConfig
    from tfmusic.training.trainer import Trainer, loss_scale_optimizer

    class NoDropoutToy(ToyTask):
        """Dropout draws per replica, so only a dropout-free model can match across strategies."""

        def build(self) -> None:
            super().build()
            self.model = keras.Sequential([keras.Input((self.features,)), keras.layers.Dense(8, activation="relu"),
                                           keras.layers.Dense(1)], name="toy")
            self.optimizer = loss_scale_optimizer(keras.optimizers.AdamW(self.learning_rate, weight_decay=1e-5))
            self.optimizer.build(self.model.trainable_variables)

    config = TrainerConfig(steps=5, batch_size=8, eval_every=5, eval_steps=1, log_every=1, seed=3,
                           strategy=strategy_name, deterministic=True, summaries=False)
    task = NoDropoutToy(batch_size=8, seed=3)
    Trainer(task, config, run_dir, strategy=strategy, progress=False).fit()
    np.savez(weights_out, *task.model.get_weights(), mean=np.asarray(task.input_mean),
             replicas=strategy.num_replicas_in_sync)


if __name__ == "__main__":
    sys.exit(main())
