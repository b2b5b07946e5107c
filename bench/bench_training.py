"""Training speed of the one trainer (tfmusic.training).

Rows:
  * trainer overhead: seconds per step of ``Trainer.fit`` (its throughput meter: the distributed
    step call, ``strategy.run`` and the metric reduction; ``timing.trainer_step_seconds``) against
    a bare ``tf.function`` loop calling the same task's ``train_step`` on the same batch, with the
    same training rewrites (``tfmusic.training.rewrites``) on both sides; ratio = bare / trainer
    (1.0 = no overhead). Small Open-Unmix (hidden 64, one BiLSTM, stereo, batch 4 x 1 s) so
    per-step costs are short and overhead would show.
  * IASS training time per example (6 s mono, MSE + 2 x BCE, AdamW) through the trainer, at batch
    4, ours only: the row used to divide a PyTorch figure cited from notes (42.4 s per batch-16
    step) by ours at batch 4; that is not a measurement, so the reference and target are gone. The
    PyTorch side is measured, same batch, same run, in bench_separation_speed.py ("IASS training
    step"), and batch-16 memory in bench_memory.py.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from timing import load_average, trainer_step_seconds


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


def _trainer_seconds(model, channels, seconds, batch, kwargs, steps) -> float:
    """Seconds per step through ``Trainer.fit`` (``timing.trainer_step_seconds``: its throughput meter)."""
    task, _ = _synthetic_task(model, channels, seconds, batch, kwargs)
    return trainer_step_seconds(task, steps)


def _bare_seconds(model, channels, seconds, batch, kwargs, steps) -> float:
    """Seconds per step of the same task's ``train_step`` in a bare ``tf.function`` loop, with the same
    rewrites the trainer applies (``apply_rewrites``: fused BatchNorm, LSTM, Adam, recomputation) and
    timed as the trainer's meter times it: each call after a first, untimed one, up to its metrics' values."""
    import tensorflow as tf

    from tfmusic.training.rewrites import apply_rewrites
    from tfmusic.training.strategies import make_strategy
    from tfmusic.training.trainer import Trainer

    task, batch_data = _synthetic_task(model, channels, seconds, batch, kwargs)
    task.bind(Trainer(task, task.config.trainer, "/nonexistent", strategy=make_strategy("default")).context)
    task.build()
    task.prepare()
    apply_rewrites(task.config.trainer, task.checkpoint_items().values(), task.recompute_layers())
    step = tf.function(task.train_step)
    tensors = tuple(tf.constant(x) for x in batch_data)
    float(step(tensors)["loss"])
    total = 0.0
    for _ in range(steps):
        start = time.perf_counter()
        out = step(tensors)
        _ = [float(v) for v in out.values()]  # as the trainer reads its metrics
        total += time.perf_counter() - start
    return total / steps


def run(out_dir: Path) -> list[dict]:
    rows = []
    small = dict(hidden_size=64, nb_layers=1)
    k = 20
    trainer_step = _trainer_seconds("umx", 2, 1.0, 4, small, k + 1)
    bare_step = _bare_seconds("umx", 2, 1.0, 4, small, k)
    rows.append({
        "what": "trainer step vs bare tf.function step (small UMX, batch 4 x 1 s stereo)",
        "ours": trainer_step, "reference": bare_step, "unit": "s/step",
        "ratio": bare_step / trainer_step, "target": ">= 0.8", "met": bare_step / trainer_step >= 0.8,
        "notes": f"both sides with the trainer's default rewrites (fused LSTM, BatchNorm, Adam); trainer: its "
                 f"throughput meter over {k} steps after the first (the distributed step call with its default "
                 f"gradient-norm metric, and the metric reduction; logging between steps is outside it); bare: "
                 f"{k} tf.function calls after a warm-up; "
                 f"load {load_average()}",
    })
    import psutil

    batch, steps = 4, 3
    free_gb = psutil.virtual_memory().available / 2**30
    if free_gb < 6.0:
        rows.append({"what": "IASS training time per example, 6 s mono", "notes":
                     f"skipped: {free_gb:.1f} GB available, needs about 4 GB at batch {batch}"})
        return rows
    per_example = _trainer_seconds("iass", 1, 6.0, batch, {}, 1 + steps) / batch
    rows.append({
        "what": f"IASS training time per example, batch {batch} x 6 s mono, MSE + 2 BCE, AdamW (trainer)",
        "ours": per_example, "reference": None, "unit": "s/example", "ratio": None, "target": "", "met": None,
        "notes": f"ours only (no cited reference): the trainer's throughput meter over {steps} steps after the "
                 "first, with its defaults (blocks recomputed); PyTorch is measured in the 'IASS training step' "
                 f"row of bench_separation_speed; load {load_average()}",
    })
    return rows


if __name__ == "__main__":  # pragma: no cover
    for row in run(Path(".")):
        print(row)
