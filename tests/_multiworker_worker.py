"""A tiny regression task for the trainer tests, and a worker entry point for subprocess tests.

Run as a script it trains :class:`ToyTask` under the strategy given on the command line (the
strategy is created first thing, before TensorFlow initialises, which logical CPU devices and
``MultiWorkerMirroredStrategy`` require) and writes the final weights to ``--weights-out``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

if __name__ == "__main__":  # make `tfmusic` importable when run as a script
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")

from tfmusic.training.trainer import Task, loss_scale_optimizer, minimize, scale_loss  # noqa: E402


class ToyTask(Task):
    """y = x·w + noise with a Dense-Dropout-Dense model; deterministic data for a given seed."""

    name = "toy"

    def __init__(self, batch_size: int = 8, seed: int = 0, with_eval: bool = True,
                 learning_rate: float = 1e-2, n_examples: int = 64, features: int = 4) -> None:
        self.batch_size = batch_size
        self.seed = seed
        self.with_eval = with_eval
        self.learning_rate = learning_rate
        self.n_examples = n_examples
        self.features = features

    def build(self) -> None:
        import keras
        import numpy as np

        self.model = keras.Sequential([
            keras.Input((self.features,)),
            keras.layers.Dense(8, activation="relu"),
            keras.layers.Dropout(0.25),
            keras.layers.Dense(1),
        ], name="toy")
        self.optimizer = loss_scale_optimizer(keras.optimizers.AdamW(self.learning_rate, weight_decay=1e-5))
        self.optimizer.build(self.model.trainable_variables)
        # set by prepare() from the data: exercises TaskContext.reduce_over_dataset on every strategy
        self.input_mean = keras.Variable(np.zeros((self.features,), "float32"), trainable=False,
                                         name="input_mean")

    def checkpoint_items(self):
        return {"model": self.model, "optimizer": self.optimizer, "input_mean": self.input_mean}

    def prepare(self):
        import tensorflow as tf

        x, _ = self._data(self.n_examples, self.seed)
        ds = tf.data.Dataset.from_tensor_slices(x).batch(self.batch_size, drop_remainder=True)
        options = tf.data.Options()
        options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
        totals = self.context.reduce_over_dataset(
            ds.with_options(options),
            lambda b: {"s": tf.reduce_sum(b, axis=0), "n": tf.cast(tf.shape(b)[0], tf.float32)})
        self.input_mean.assign(totals["s"] / totals["n"])

    def optimizers(self):
        return {"adam": self.optimizer}

    def _data(self, n: int, seed: int):
        import numpy as np

        rng = np.random.default_rng(seed)
        x = rng.normal(size=(n, self.features)).astype("float32")
        w = np.arange(1, self.features + 1, dtype="float32")[:, None] / self.features
        y = x @ w + 0.05 * rng.normal(size=(n, 1)).astype("float32")
        return x, y

    def train_dataset(self):
        import tensorflow as tf

        x, y = self._data(self.n_examples, self.seed)
        ds = tf.data.Dataset.from_tensor_slices((x, y))
        ds = ds.shuffle(self.n_examples, seed=self.seed, reshuffle_each_iteration=True).repeat()
        ds = ds.batch(self.batch_size, drop_remainder=True)
        options = tf.data.Options()
        options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
        return ds.with_options(options)

    def eval_dataset(self):
        import tensorflow as tf

        if not self.with_eval:
            return None
        x, y = self._data(2 * self.batch_size, self.seed + 1)
        ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(self.batch_size)
        options = tf.data.Options()
        options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
        return ds.with_options(options)

    def train_step(self, batch):
        import tensorflow as tf

        x, y = batch

        def loss_fn():
            pred = tf.cast(self.model(x - self.input_mean, training=True), tf.float32)
            per_example = tf.reduce_mean(tf.square(pred - y), axis=-1)
            return scale_loss(per_example), per_example

        _, per_example = minimize(self.optimizer, loss_fn, self.model.trainable_variables)
        return {"loss": tf.reduce_mean(per_example)}

    def eval_step(self, batch):
        import tensorflow as tf

        x, y = batch
        pred = tf.cast(self.model(x - self.input_mean, training=False), tf.float32)
        err = tf.square(pred - y)
        return {"loss": tf.reduce_mean(err), "big_err": tf.reduce_mean(tf.cast(err > 1.0, tf.float32))}

    def finalize_metrics(self, metrics):
        metrics = dict(metrics)
        metrics["rmse"] = metrics["loss"] ** 0.5
        return metrics

    def export_model(self):
        return self.model


def run(strategy, strategy_name: str, run_dir: str, weights_out: str, steps: int = 3, batch_size: int = 8,
        no_eval: bool = False) -> dict:
    """Train :class:`ToyTask` under ``strategy``; final weights to ``weights_out``; the summary dict."""
    import numpy as np

    from tfmusic.training.config import TrainerConfig
    from tfmusic.training.trainer import Trainer

    config = TrainerConfig(steps=steps, batch_size=batch_size, eval_every=2, eval_steps=2,
                           log_every=1, strategy=strategy_name, seed=3)
    task = ToyTask(batch_size=batch_size, seed=3, with_eval=not no_eval)
    result = Trainer(task, config, run_dir, strategy=strategy, progress=False,
                     run_config={"model": "toy"}).fit()
    weights = {f"w{i}": w for i, w in enumerate(task.model.get_weights())}
    weights["iterations"] = np.asarray(int(task.optimizer.iterations.numpy()))
    weights["input_mean"] = np.asarray(task.input_mean)
    weights["expected_mean"] = task._data(task.n_examples, task.seed)[0].mean(axis=0)
    np.savez(weights_out, **weights)
    return {"replicas": strategy.num_replicas_in_sync, "step": result.step, "history": len(result.history)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--strategy", default="default")
    parser.add_argument("--devices", default=None)
    parser.add_argument("--run-dir", required=True)
    parser.add_argument("--weights-out", required=True)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--no-eval", action="store_true")
    parser.add_argument("--then-perf", nargs=2, metavar=("OUT_DIR", "RUNS_JSON"),
                        help="then, under the same strategy, the runs of tests/_perf_trainer_worker.py "
                             "(one multi-worker cluster for both test files)")
    args = parser.parse_args(argv)

    from tfmusic.training.strategies import make_strategy, parse_devices

    strategy = make_strategy(args.strategy, parse_devices(args.devices))
    summary = run(strategy, args.strategy, args.run_dir, args.weights_out, args.steps, args.batch_size, args.no_eval)
    if args.then_perf:
        from tests._perf_trainer_worker import run_all

        summary["perf"] = run_all(strategy, args.strategy, args.then_perf[0], json.loads(args.then_perf[1]))
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
