"""Training speed of the one trainer (tfmusic.training).

Rows:
  * trainer overhead: seconds per step of ``Trainer.fit`` (strategy.run, metric reduction,
    progress, TensorBoard logging every step) against a bare ``tf.function`` loop calling the
    same task's ``train_step`` on the same batches; both measured here, ratio = bare / trainer
    (1.0 = no overhead). Small Open-Unmix (hidden 64, one BiLSTM, stereo, batch 4 x 1 s) so
    per-step costs are short and overhead would show.
  * IASS training time per example (6 s mono, MSE + 2 x BCE, AdamW) through the trainer, at batch
    4, ours only: the row used to divide a PyTorch figure cited from notes (42.4 s per batch-16
    step) by ours at batch 4; that is not a measurement, so the reference and target are gone. The
    PyTorch side is measured, same batch, same run, in bench_separation_speed.py ("IASS training
    step"), and batch-16 memory in bench_memory.py.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np
from timing import load_average

def _synthetic_task(model: str, channels: int, seconds: float, batch: int, model_kwargs: dict):
    import tensorflow as tf

    from tfmusic.training.config import TrainerConfig
    from tfmusic.training.separation import SeparationConfig, SeparationTask

    samples = int(seconds * 44100)
    frames = 1 + (samples - 4096) // 1024
    rng = np.random.default_rng(0)
    mix = rng.normal(scale=0.1, size=(batch, channels, samples)).astype(np.float32)
    tgt = 0.5 * mix
    act = (rng.random((batch, frames)) > 0.5).astype(np.float32)

    class SyntheticTask(SeparationTask):
        def train_dataset(self):
            return tf.data.Dataset.from_tensors((mix, tgt, act)).repeat()

        def eval_dataset(self):
            return None

        def prepare(self):
            self.model.set_input_statistics(np.zeros(2049), np.ones(2049))

    config = SeparationConfig(model=model, nb_channels=channels, segment_seconds=seconds,
                              model_kwargs=model_kwargs, eval_split=None,
                              trainer=TrainerConfig(batch_size=batch, log_every=1, eval_every=10**6))
    return SyntheticTask(config), (mix, tgt, act)


def _fit_seconds(model, channels, seconds, batch, kwargs, steps) -> float:
    from tfmusic.training.trainer import Trainer

    task, _ = _synthetic_task(model, channels, seconds, batch, kwargs)
    task.config.trainer.steps = steps
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        Trainer(task, task.config.trainer, Path(tmp) / "run", progress=False).fit()
        return time.perf_counter() - start


def _bare_seconds(model, channels, seconds, batch, kwargs, steps) -> float:
    import tensorflow as tf

    from tfmusic.training.strategies import make_strategy
    from tfmusic.training.trainer import Trainer

    task, batch_data = _synthetic_task(model, channels, seconds, batch, kwargs)
    task.bind(Trainer(task, task.config.trainer, "/nonexistent", strategy=make_strategy("default")).context)
    task.build()
    step = tf.function(task.train_step)
    tensors = tuple(tf.constant(x) for x in batch_data)
    step(tensors)
    start = time.perf_counter()
    for _ in range(steps):
        out = step(tensors)
    float(out["loss"])
    return (time.perf_counter() - start) / steps


def run(out_dir: Path) -> list[dict]:
    rows = []
    small = dict(hidden_size=64, nb_layers=1)
    k = 20
    short = _fit_seconds("umx", 2, 1.0, 4, small, k)
    long = _fit_seconds("umx", 2, 1.0, 4, small, 2 * k)
    trainer_step = (long - short) / k
    bare_step = _bare_seconds("umx", 2, 1.0, 4, small, k)
    rows.append({
        "what": "trainer step vs bare tf.function step (small UMX, batch 4 x 1 s stereo)",
        "ours": trainer_step, "reference": bare_step, "unit": "s/step",
        "ratio": bare_step / trainer_step, "target": ">= 0.8", "met": bare_step / trainer_step >= 0.8,
        "notes": f"trainer: (fit {2 * k} steps - fit {k} steps) / {k}; bare: {k} steps after warm-up",
    })
    import psutil

    batch, steps = 4, 3
    free_gb = psutil.virtual_memory().available / 2**30
    if free_gb < 6.0:
        rows.append({"what": "IASS training time per example, 6 s mono", "notes":
                     f"skipped: {free_gb:.1f} GB available, needs about 4 GB at batch {batch}"})
        return rows
    one = _fit_seconds("iass", 1, 6.0, batch, {}, 1)
    more = _fit_seconds("iass", 1, 6.0, batch, {}, 1 + steps)
    per_example = (more - one) / steps / batch
    rows.append({
        "what": f"IASS training time per example, batch {batch} x 6 s mono, MSE + 2 BCE, AdamW (trainer)",
        "ours": per_example, "reference": None, "unit": "s/example", "ratio": None, "target": "", "met": None,
        "notes": "ours only (no cited reference): PyTorch is measured in the 'IASS training step' row of "
                 f"bench_separation_speed; load {load_average()}",
    })
    return rows


if __name__ == "__main__":  # pragma: no cover
    for row in run(Path(".")):
        print(row)
