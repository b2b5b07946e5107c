"""The :class:`Task` protocol of the one trainer and the helpers tasks use in their steps.

Split from ``trainer.py`` so the loop stays readable; ``tfmusic.training.trainer`` re-exports
everything here.

Task protocol (subclass :class:`Task`)
--------------------------------------
The trainer owns the loop, distribution, metric reduction, evaluation, checkpoints, resume,
early stopping, reduce-on-plateau, TensorBoard, the progress bar and the run directory. A task
owns its models, optimizers, datasets and losses. The link is one way: the trainer hands the
task a :class:`TaskContext` (global batch size, seed, determinism, strategy) and the task never
sees the trainer, so a task can be built and stepped without one (tests, benchmarks).

``bind(context)``
    Called by the trainer first; stores the :class:`TaskContext` as ``self.context``.
``build()``
    Create models and optimizers. Called inside ``strategy.scope()`` after the mixed-precision
    policy is set. Build everything eagerly here (call each model once on a dummy input and
    ``optimizer.build(variables)``) so a checkpoint restores immediately. Wrap optimizers with
    :func:`loss_scale_optimizer` so ``mixed_float16`` gets dynamic loss scaling.
``checkpoint_items() -> dict[str, trackable]``
    Everything whose state must survive a resume: models, optimizers (slots, iteration counts,
    loss scale), extra variables. The key ``"trainer"`` is reserved.
``optimizers() -> dict[str, Optimizer]``
    Named optimizers; reduce-on-plateau scales all of their learning rates and TensorBoard logs
    them as ``lr/<name>``. Factor-VAE returns ``{"vae": ..., "discriminator": ...}``.
``train_dataset() -> tf.data.Dataset``
    Batches of the GLOBAL batch size (``context.batch_size``), deterministic for
    ``context.seed`` (resume replays it with ``Dataset.skip(step)``). The trainer repeats it forever.
``eval_dataset() -> tf.data.Dataset | None``
    Optional finite evaluation batches (partial batches are dropped; ``eval_steps`` caps it).
``prepare()``
    Optional, fresh runs only (not on resume): e.g. input statistics. Use
    :meth:`TaskContext.reduce_over_dataset` to compute them identically on every worker.
``train_step(batch) -> dict[str, Tensor]``
    Runs per replica inside ``strategy.run`` (graph mode): forward pass, loss scaled for the
    GLOBAL batch (:func:`scale_loss`), gradients, ``optimizer.apply`` - with one or several
    optimizers (see :func:`minimize`). Returns scalar metrics as per-replica means; the trainer
    averages them over replicas (``ReduceOp.MEAN``) and over logging windows.
``eval_step(batch) -> dict[str, Tensor]``
    Like ``train_step`` without updates. Returned values are averaged over replicas and batches.
    Ratios such as F1 are computed in ``finalize_metrics`` from averaged counts (scale-invariant).
``finalize_metrics(metrics: dict[str, float]) -> dict[str, float]``
    Optional: derive metrics from the averaged evaluation values.
``write_summaries(batch, step)``
    Optional: audio / images for TensorBoard, run eagerly on the chief with one undistributed
    evaluation batch inside the eval writer (see ``tfmusic.training.summaries``).
``activation_inputs(batch)``
    Optional: what ``export_model()`` is called with for activation histograms
    (``trainer.histograms``); default ``batch[0][:8]``.
``recompute_layers() -> list[keras.layers.Layer]``
    Optional: built layers whose activations ``trainer.recompute`` recomputes in the backward
    pass instead of keeping them (``tfmusic.training.recompute``); default none.
``export_model() -> keras.Model``
    The model saved as ``<run_dir>/model.keras`` with the best weights (lowest monitored
    evaluation metric; the final weights when nothing was evaluated).

"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import keras
import numpy as np
import tensorflow as tf
from tqdm.auto import tqdm

from tfmusic.training import telemetry


@dataclasses.dataclass(frozen=True)
class TaskContext:
    """What a task may know about the run it is trained in, passed by the trainer (never the trainer
    itself, so the dependency points one way and a task can be driven without a trainer)."""

    strategy: tf.distribute.Strategy
    batch_size: int  # GLOBAL batch size (all replicas and workers)
    seed: int = 0
    deterministic: bool = False
    progress: bool = False  # show progress bars (chief, on a terminal, not --quiet)

    @property
    def num_replicas(self) -> int:
        return int(self.strategy.num_replicas_in_sync)

    @property
    def per_replica_batch_size(self) -> int:
        return self.batch_size // self.num_replicas

    def distribute(self, dataset: tf.data.Dataset) -> Any:
        """The distributed form of a dataset of global batches."""
        return self.strategy.experimental_distribute_dataset(dataset)

    def reduce_over_dataset(self, dataset: tf.data.Dataset, fn: Callable[[Any], dict[str, tf.Tensor]],
                            max_batches: int | None = None, desc: str = "statistics") -> dict[str, np.ndarray]:
        """Sum ``fn(batch)`` (a dict of tensors, per replica) over replicas, workers and batches.

        Every worker gets identical totals, which is what input statistics need.
        """
        if max_batches is not None:
            dataset = dataset.take(max_batches)
        dataset = dataset.rebatch(self.batch_size, drop_remainder=True)
        strategy = self.strategy

        @tf.function
        def step(batch):
            out = strategy.run(fn, args=(batch,))
            return {k: strategy.reduce(tf.distribute.ReduceOp.SUM, v, axis=None) for k, v in out.items()}

        totals: dict[str, np.ndarray] = {}
        bar = tqdm(desc=desc, total=max_batches, unit="batch", disable=not self.progress, leave=False)
        for batch in self.distribute(dataset):
            for key, value in step(batch).items():
                value = value.numpy()
                totals[key] = totals[key] + value if key in totals else value
            bar.update(1)
        bar.close()
        if not totals:
            raise ValueError(f"{desc}: the dataset yielded no full batch of {self.batch_size}")
        return totals


class Task:
    """Base class of everything the trainer can train (see the module docstring)."""

    name: str = "task"
    context: TaskContext

    def bind(self, context: TaskContext) -> None:
        """Receive the run's context before ``build()`` (the task's only view of the run)."""
        self.context = context

    def build(self) -> None:
        raise NotImplementedError

    def checkpoint_items(self) -> dict[str, Any]:
        raise NotImplementedError

    def optimizers(self) -> dict[str, keras.optimizers.Optimizer]:
        return {}

    def train_dataset(self) -> tf.data.Dataset:
        raise NotImplementedError

    def eval_dataset(self) -> tf.data.Dataset | None:
        return None

    def prepare(self) -> None:
        """Fresh runs only: one-off initialisation that depends on data."""

    def train_step(self, batch: Any) -> dict[str, tf.Tensor]:
        raise NotImplementedError

    def eval_step(self, batch: Any) -> dict[str, tf.Tensor]:
        raise NotImplementedError

    def finalize_metrics(self, metrics: dict[str, float]) -> dict[str, float]:
        return metrics

    def write_summaries(self, batch: Any, step: int) -> None:
        """Optional audio / image summaries (eager, chief only)."""

    def activation_inputs(self, batch: Any) -> Any:
        """What ``export_model()`` takes for one batch (activation histograms); default: ``batch[0]``."""
        return (batch[0] if isinstance(batch, (tuple, list)) else batch)[:8]

    def recompute_layers(self) -> list[keras.layers.Layer]:
        """Layers whose activations ``trainer.recompute`` recomputes in the backward pass (memory)."""
        return []

    def export_model(self) -> keras.Model:
        raise NotImplementedError


def scale_loss(per_example_loss: tf.Tensor) -> tf.Tensor:
    """Average a per-example loss over the GLOBAL batch, so summed replica gradients are right."""
    return tf.nn.compute_average_loss(tf.cast(per_example_loss, tf.float32))


def loss_scale_optimizer(optimizer: keras.optimizers.Optimizer) -> keras.optimizers.Optimizer:
    """Wrap ``optimizer`` in dynamic loss scaling when the global policy is ``mixed_float16``."""
    if keras.mixed_precision.global_policy().name == "mixed_float16" and not isinstance(
        optimizer, keras.optimizers.LossScaleOptimizer
    ):
        return keras.optimizers.LossScaleOptimizer(optimizer)
    return optimizer


def minimize(optimizer: keras.optimizers.Optimizer, loss_fn: Callable[[], Any],
             variables: list) -> Any:
    """One optimizer update: ``loss_fn()`` returns ``loss`` or ``(loss, aux)``; the loss must
    already be scaled for the global batch (:func:`scale_loss`). Handles mixed-precision loss
    scaling. Returns what ``loss_fn`` returned."""
    with tf.GradientTape() as tape:
        result = loss_fn()
        loss = result[0] if isinstance(result, tuple) else result
        scaled = optimizer.scale_loss(loss)
    grads = tape.gradient(scaled, variables)
    telemetry.record_gradients(optimizer, grads)  # TensorBoard grad_norm/<optimizer>
    optimizer.apply(grads, variables)
    return result



__all__ = ["Task", "TaskContext", "scale_loss", "loss_scale_optimizer", "minimize"]
