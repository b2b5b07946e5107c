"""The trainer's compiled steps: one distributed train call and one eval call, and the evaluation pass.

Kept apart from the loop (:mod:`tfmusic.training.trainer`): this is what runs inside
``tf.function`` under the strategy (per-replica task steps, metrics averaged over replicas,
``steps_per_execution`` as a graph loop, XLA on the per-replica step), while the loop decides when
to call it and what to do with the numbers.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any, Callable

import tensorflow as tf
from tqdm.auto import tqdm

from tfmusic.training import telemetry
from tfmusic.training.config import TrainerConfig
from tfmusic.training.task import Task, TaskContext

__all__ = ["compile_steps", "evaluate_task"]


def _mean_scalar(value: Any) -> tf.Tensor:
    return tf.reduce_mean(tf.cast(value, tf.float32))


def compile_steps(task: Task, strategy: tf.distribute.Strategy, cfg: TrainerConfig) -> tuple[Callable, Callable]:
    """``(train_fn, eval_fn)``: ``train_fn(iterator)`` (or ``(iterator, count)`` with
    ``steps_per_execution`` > 1) and ``eval_fn(batch)``, each returning metrics averaged over replicas."""

    def replica_train_step(batch):
        with telemetry.collect_gradient_norms(cfg.grad_norm) as norms:
            out = {k: _mean_scalar(v) for k, v in task.train_step(batch).items()}
        return {**out, **telemetry.name_gradient_norms(norms, task.optimizers())}

    # XLA compiles the per-replica step (model, loss, gradients, optimizer update), not the
    # distributed iterator around it; one replica only (see Trainer.__init__)
    replica_step = tf.function(replica_train_step, jit_compile=True) if cfg.jit_compile else replica_train_step

    def one_step(iterator):
        outputs = strategy.run(replica_step, args=(next(iterator),))
        return {k: strategy.reduce(tf.distribute.ReduceOp.MEAN, v, axis=None) for k, v in outputs.items()}

    if cfg.steps_per_execution == 1:
        train_fn = tf.function(one_step)
    else:
        @tf.function
        def train_fn(iterator, count):
            """``count`` steps in one call (a graph loop); the metrics' means over them."""
            totals = one_step(iterator)
            for _ in tf.range(count - 1):
                more = one_step(iterator)
                totals = {k: totals[k] + more[k] for k in totals}
            return {k: v / tf.cast(count, v.dtype) for k, v in totals.items()}

    def replica_eval_step(batch):
        return {k: _mean_scalar(v) for k, v in task.eval_step(batch).items()}

    @tf.function
    def eval_fn(batch):
        outputs = strategy.run(replica_eval_step, args=(batch,))
        return {k: strategy.reduce(tf.distribute.ReduceOp.MEAN, v, axis=None) for k, v in outputs.items()}

    return train_fn, eval_fn


def evaluate_task(task: Task, eval_fn: Callable, context: TaskContext, cfg: TrainerConfig, *,
                  progress: bool) -> dict[str, float]:
    """Average ``eval_fn`` over the task's evaluation set (``cfg.eval_steps`` batches, all replicas and
    workers), then the task's ``finalize_metrics``; ``{}`` when the task has no evaluation set."""
    dataset = task.eval_dataset()
    if dataset is None:
        return {}
    dataset = dataset.rebatch(cfg.batch_size, drop_remainder=True)
    if cfg.eval_steps:
        dataset = dataset.take(cfg.eval_steps)
    totals: dict[str, float] = defaultdict(float)
    count = 0
    bar = tqdm(desc="eval", total=cfg.eval_steps, unit="batch", leave=False, disable=not progress)
    for batch in context.distribute(dataset):
        for key, value in eval_fn(batch).items():
            totals[key] += float(value)
        count += 1
        bar.update(1)
    bar.close()
    if count == 0:
        raise ValueError(
            f"task {task.name!r}: the evaluation dataset yielded no full batch of {cfg.batch_size} examples"
        )
    return task.finalize_metrics({k: v / count for k, v in totals.items()})
