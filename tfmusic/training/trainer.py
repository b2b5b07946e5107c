"""The one trainer of tfmusic: a ``tf.distribute`` custom training loop around a :class:`Task`.

Why a custom loop: ``model.fit`` does not work with ``MultiWorkerMirroredStrategy`` under Keras 3
(tf #72388), and several models here need more than one optimizer (Factor-VAE). The loop uses
``strategy.experimental_distribute_dataset`` + ``strategy.run`` with Keras layers and optimizers,
so the same code runs on one device, on several local devices (``MirroredStrategy``) and on
several machines (``MultiWorkerMirroredStrategy``).

Tasks (subclasses of :class:`~tfmusic.training.task.Task`; that module documents the
protocol) own their models, optimizers, datasets and losses; the trainer owns the loop,
distribution, metric reduction, evaluation, checkpoints, resume, early stopping,
reduce-on-plateau, TensorBoard (``tfmusic.training.telemetry``), the progress bar and the run
directory.

Run directory
-------------
``config.json`` (the resolved run config given by the caller), ``checkpoints/`` (latest N +
``best/``), ``tensorboard/`` (HParams session; ``train/``, ``eval/``), ``history.json`` (one record per evaluation:
step, train means since the previous evaluation, eval metrics, learning rates) and
``model.keras``. Only the chief (worker 0) writes them.

Resume
------
Every checkpoint holds the task's items plus the trainer's step and its plateau / early-stopping
/ history state. On resume the training dataset is rebuilt and ``skip(step)`` positions it where
the interrupted run stopped, so with a deterministic pipeline (``trainer.deterministic: true``)
a resumed run ends with the same weights as an uninterrupted one. Ctrl-C saves a checkpoint
before exiting (single-worker strategies).

Why one module: the loop and the state it checkpoints (step, plateau, early stopping, history)
are read together; telemetry and the task protocol already live in their own modules.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any, Callable, Mapping

import keras
import numpy as np
import tensorflow as tf
from tqdm.auto import tqdm

from tfmusic.training.checkpoints import CheckpointKeeper, TrainerState
from tfmusic.training.config import TrainerConfig, save_json
from tfmusic.training.rundir import check_run_dir
from tfmusic.training.plateau import EarlyStopping, ReduceOnPlateau
from tfmusic.training.strategies import is_chief, make_strategy, num_workers, worker_index
from tfmusic.training import telemetry
from tfmusic.training.summaries import SummaryWriters
from tfmusic.training.task import Task, TaskContext, loss_scale_optimizer, minimize, scale_loss

log = logging.getLogger(__name__)


@dataclasses.dataclass
class TrainResult:
    """What :meth:`Trainer.fit` did."""

    run_dir: str
    step: int
    start_step: int
    stopped_early: bool
    best_step: int | None
    best_metric: float | None
    history: list[dict[str, Any]]
    model_path: str | None


def _mean_scalar(value: Any) -> tf.Tensor:
    return tf.reduce_mean(tf.cast(value, tf.float32))


class Trainer:
    """Runs a :class:`Task` under a ``tf.distribute`` strategy (see the module docstring)."""

    def __init__(self, task: Task, config: TrainerConfig, run_dir: str | Path, *,
                 strategy: tf.distribute.Strategy | None = None, resume: bool = False,
                 run_config: Mapping[str, Any] | None = None, progress: bool = True) -> None:
        config.validate("trainer config")
        check_run_dir(run_dir)  # before Path() turns gs://b/r into a local gs:/b/r
        self.task = task
        self.config = config
        self.run_dir = Path(run_dir)
        self.strategy = strategy or make_strategy(config.strategy, config.devices)
        self.resume = resume
        self.run_config = dict(run_config) if run_config is not None else None
        self.progress = progress
        self.chief = is_chief(self.strategy)
        self.worker = worker_index(self.strategy)
        if config.batch_size % self.num_replicas:
            raise ValueError(
                f"batch_size {config.batch_size} is not divisible by the {self.num_replicas} replicas"
            )
        # all a task learns about the run (Task.bind): the task never holds the trainer
        self.context = TaskContext(strategy=self.strategy, batch_size=config.batch_size, seed=config.seed,
                                   deterministic=config.deterministic, progress=not self._bar_disabled())

    @property
    def num_replicas(self) -> int:
        return int(self.strategy.num_replicas_in_sync)

    @property
    def num_workers(self) -> int:
        return num_workers(self.strategy)

    def _bar_disabled(self) -> bool:
        return not (self.progress and self.chief and sys.stderr.isatty())

    # ----------------------------------------------------------------- the loop
    def fit(self) -> TrainResult:
        """Train until ``config.steps`` or early stopping; write the run directory."""
        previous_policy = keras.mixed_precision.global_policy()
        keras.mixed_precision.set_global_policy(self.config.mixed_precision)
        self._writers: SummaryWriters | None = None
        self._keeper: CheckpointKeeper | None = None
        self._final: dict[str, float] = {}
        ok = False
        try:
            result = self._fit()
            ok = True
            return result
        finally:
            keras.mixed_precision.set_global_policy(previous_policy)
            if self._writers is not None:
                if self.chief:
                    telemetry.write_session_end(self._writers.session, self._final,
                                                int(self._final.get("steps", 0)), ok=ok)
                self._writers.close()
            if self._keeper is not None:
                self._keeper.close()

    def _fit(self) -> TrainResult:
        cfg = self.config
        task = self.task
        strategy = self.strategy
        if self.chief:
            self.run_dir.mkdir(parents=True, exist_ok=True)
        keras.utils.set_random_seed(cfg.seed)
        if cfg.deterministic:
            tf.config.experimental.enable_op_determinism()

        task.bind(self.context)
        with strategy.scope():
            task.build()
        log.info("task %s built (%d replica(s), %d worker(s))", task.name, self.num_replicas, self.num_workers)
        state = TrainerState()
        self._keeper = keeper = CheckpointKeeper(
            task.checkpoint_items(), task.export_model(), self.run_dir / "checkpoints",
            state=state, chief=self.chief, worker=self.worker, keep=cfg.keep_checkpoints,
        )
        resumed = False
        if self.resume:
            resumed = keeper.restore_latest()
            if not resumed:
                log.warning("resume: no checkpoint in %s, starting from step 0", keeper.directory)
        elif keeper.latest is not None:
            raise FileExistsError(
                f"{self.run_dir}: the run directory already holds checkpoints; resume it "
                "(--resume) or choose another run directory"
            )
        if resumed:
            log.info("resumed from %s", keeper.latest)
        else:
            task.prepare()
            log.info("task prepared")

        blob = state.get()
        plateau = ReduceOnPlateau(**dataclasses.asdict(cfg.plateau))
        plateau.load_state_dict(blob.get("plateau", {}))
        early = EarlyStopping(**dataclasses.asdict(cfg.early_stopping))
        early.load_state_dict(blob.get("early_stopping", {}))
        history: list[dict[str, Any]] = list(blob.get("history", []))
        stopped_early = bool(blob.get("stopped_early", False))
        # training metrics since the last evaluation (so a resumed run reports the same means)
        eval_window: dict[str, list[float]] = defaultdict(list, blob.get("train_window", {}))

        def sync_state() -> None:
            state.set({"plateau": plateau.state_dict(), "early_stopping": early.state_dict(),
                       "history": history, "stopped_early": stopped_early,
                       "train_window": dict(eval_window)})

        if self.chief and self.run_config is not None:
            save_json(self.run_config, self.run_dir / "config.json")
        self._writers = writers = SummaryWriters(self.run_dir, enabled=self.chief)
        if self.chief:
            hparams = {"task": task.name, **telemetry.flatten_hparams(
                self.run_config if self.run_config is not None else {"trainer": dataclasses.asdict(cfg)})}
            telemetry.write_session_start(writers.session, hparams, trial_id=self.run_dir.name)

        start = int(state.step.numpy())
        train_ds = task.train_dataset().repeat()
        if start:
            train_ds = train_ds.skip(start)
        iterator = iter(self.context.distribute(train_ds))

        def replica_train_step(batch):
            with telemetry.collect_gradient_norms(cfg.grad_norm) as norms:
                out = {k: _mean_scalar(v) for k, v in task.train_step(batch).items()}
            return {**out, **telemetry.name_gradient_norms(norms, task.optimizers())}

        @tf.function
        def train_fn(iterator):
            outputs = strategy.run(replica_train_step, args=(next(iterator),))
            return {k: strategy.reduce(tf.distribute.ReduceOp.MEAN, v, axis=None) for k, v in outputs.items()}

        def replica_eval_step(batch):
            return {k: _mean_scalar(v) for k, v in task.eval_step(batch).items()}

        @tf.function
        def eval_fn(batch):
            outputs = strategy.run(replica_eval_step, args=(batch,))
            return {k: strategy.reduce(tf.distribute.ReduceOp.MEAN, v, axis=None) for k, v in outputs.items()}

        self._eval_fn = eval_fn
        self._summary_batch = None
        checkpoint_every = cfg.checkpoint_every or cfg.eval_every
        bar = tqdm(total=cfg.steps, initial=min(start, cfg.steps), desc=f"train {task.name}",
                   unit="step", disable=self._bar_disabled(), dynamic_ncols=True)
        log_window: dict[str, list[float]] = defaultdict(list)
        step = start
        last_saved = start if resumed else -1
        throughput = telemetry.Throughput(cfg.batch_size)
        graph = telemetry.GraphTrace(writers.train, enabled=self.chief)
        profiler = telemetry.StepProfiler(writers.train_dir, cfg.profile_steps, enabled=self.chief)
        try:
            while step < cfg.steps and not stopped_early:
                profiler.before_step(step + 1)
                if step == start:
                    graph.start()
                began = time.perf_counter()
                try:  # the Trace is the profiler's step marker (step time in the Profile tab)
                    with tf.profiler.experimental.Trace("train", step_num=step + 1, _r=1):
                        metrics = train_fn(iterator)
                except (StopIteration, tf.errors.OutOfRangeError):
                    raise ValueError(f"task {task.name!r}: the training dataset yielded no batches") from None
                values = {k: float(v) for k, v in metrics.items()}  # waits for the step to finish
                step += 1
                state.step.assign(step)
                if step == start + 1:
                    graph.export(step)
                    log.info("first training step done (graph traced)")
                else:  # the first step includes tracing: not a throughput sample
                    throughput.add(time.perf_counter() - began)
                profiler.after_step(step)
                for key, value in values.items():
                    log_window[key].append(value)
                    eval_window[key].append(value)
                bar.update(1)
                if step % cfg.log_every == 0 or step == cfg.steps:
                    means = {k: float(np.mean(v)) for k, v in log_window.items()}
                    log_window.clear()
                    scalars = dict(means)
                    scalars.update({f"lr/{n}": lr for n, lr in self._learning_rates().items()})
                    scalars.update(throughput.pop())
                    writers.scalars(writers.train, scalars, step)
                    bar.set_postfix({k: f"{v:.4g}" for k, v in list(means.items())[:3]})
                if step % cfg.eval_every == 0 and cfg.histograms and self.chief:
                    self._write_histograms(step)
                if step % cfg.eval_every == 0:
                    record = self._evaluate_and_decide(step, eval_window, plateau, early, keeper)
                    eval_window.clear()
                    if record is not None:
                        history.append(record)
                        stopped_early = record.pop("_stop")
                        if self.chief:
                            save_json({"history": history}, self.run_dir / "history.json")
                        bar.set_postfix({f"eval_{cfg.monitor}": f"{record['eval'].get(cfg.monitor, float('nan')):.4g}"})
                if step % checkpoint_every == 0 or stopped_early or step == cfg.steps:
                    sync_state()
                    keeper.save(step)
                    last_saved = step
        except KeyboardInterrupt:
            if self.num_workers == 1 and last_saved != step:
                sync_state()
                path = keeper.save(step)
                log.warning("interrupted at step %d; saved %s (continue with --resume)", step, path)
            raise
        finally:
            bar.close()
            profiler.stop()
            graph.export(step)  # only if the first step failed after tracing started
            self._final = {"steps": step, **{k.split("/")[-1]: v for k, v in throughput.overall().items()}}
        if last_saved != step:
            sync_state()
            keeper.save(step)

        if stopped_early and self.chief:
            log.info("early stopping at step %d (best %s at step %s)", step, early.best, early.best_step)
        model_path = None
        if self.chief:
            model_path = str(self.run_dir / "model.keras")
            if early.best_step is not None and keeper.restore_best():
                task.export_model().save(model_path)
                keeper.restore_latest()  # leave the task in its final state for the caller
            else:
                task.export_model().save(model_path)
            save_json({"history": history}, self.run_dir / "history.json")
        self._final = {**self._final, **{f"eval_{k}": v for k, v in (history[-1]["eval"] if history else {}).items()}}
        if early.best is not None:
            self._final[f"best_{cfg.monitor}"] = early.best
        return TrainResult(run_dir=str(self.run_dir), step=step, start_step=start,
                           stopped_early=stopped_early, best_step=early.best_step,
                           best_metric=early.best, history=history, model_path=model_path)

    # ----------------------------------------------------------------- evaluation
    def _learning_rates(self) -> dict[str, float]:
        return {name: float(keras.ops.convert_to_numpy(opt.learning_rate))
                for name, opt in self.task.optimizers().items()}

    def evaluate(self) -> dict[str, float]:
        """Average ``eval_step`` over the evaluation set (all replicas and workers)."""
        dataset = self.task.eval_dataset()
        if dataset is None:
            return {}
        dataset = dataset.rebatch(self.config.batch_size, drop_remainder=True)
        if self.config.eval_steps:
            dataset = dataset.take(self.config.eval_steps)
        totals: dict[str, float] = defaultdict(float)
        count = 0
        bar = tqdm(desc="eval", total=self.config.eval_steps, unit="batch", leave=False,
                   disable=self._bar_disabled())
        for batch in self.context.distribute(dataset):
            for key, value in self._eval_fn(batch).items():
                totals[key] += float(value)
            count += 1
            bar.update(1)
        bar.close()
        if count == 0:
            raise ValueError(
                f"task {self.task.name!r}: the evaluation dataset yielded no full batch of "
                f"{self.config.batch_size} examples"
            )
        return self.task.finalize_metrics({k: v / count for k, v in totals.items()})

    def _evaluate_and_decide(self, step: int, train_window: Mapping[str, list[float]],
                             plateau: ReduceOnPlateau, early: EarlyStopping,
                             keeper: CheckpointKeeper) -> dict[str, Any] | None:
        cfg = self.config
        metrics = self.evaluate()
        log.info("step %d: evaluation %s", step, {k: round(v, 5) for k, v in metrics.items()})
        train_means = {k: float(np.mean(v)) for k, v in train_window.items()}
        if not metrics:
            return None
        if cfg.monitor not in metrics:
            raise KeyError(
                f"monitored metric {cfg.monitor!r} is not among the evaluation metrics {sorted(metrics)}"
            )
        value = float(metrics[cfg.monitor])
        lrs = self._learning_rates()
        if lrs:
            first = next(iter(lrs.values()))
            if plateau.update(value, first) is not None:
                for name, opt in self.task.optimizers().items():
                    new_lr = max(lrs[name] * plateau.factor, plateau.min_lr)
                    opt.learning_rate = new_lr
                    log.info("step %d: %s learning rate %.3g -> %.3g", step, name, lrs[name], new_lr)
        stop = early.update(value, step)
        improved = early.improved and early.best_step == step
        if improved:
            keeper.save_best(step)
        self._writers.scalars(self._writers.eval, metrics, step)
        if cfg.summaries and self.chief:
            self._write_task_summaries(step)
            log.info("step %d: summaries written", step)
        record = {"step": step, "train": train_means, "eval": {k: float(v) for k, v in metrics.items()},
                  "lr": self._learning_rates(), "best": improved, "_stop": bool(stop)}
        if not all(math.isfinite(v) for v in record["eval"].values()):
            log.warning("step %d: non-finite evaluation metrics %s", step, record["eval"])
        return record

    def _first_batch(self) -> Any:
        """One undistributed batch (evaluation set, else training set) for summaries."""
        if self._summary_batch is None:
            for dataset in (self.task.eval_dataset(), self.task.train_dataset()):
                if dataset is not None:
                    for batch in dataset.take(1):
                        self._summary_batch = batch
                if self._summary_batch is not None:
                    break
        return self._summary_batch

    def _write_histograms(self, step: int) -> None:
        model = self.task.export_model()
        batch = self._first_batch()
        with self._writers.train.as_default(step=step):
            telemetry.write_weight_histograms(model)
            if batch is not None:
                telemetry.write_activation_histograms(model, self.task.activation_inputs(batch))
        self._writers.train.flush()

    def _write_task_summaries(self, step: int) -> None:
        if type(self.task).write_summaries is Task.write_summaries:
            return
        if self._summary_batch is None:
            dataset = self.task.eval_dataset()
            if dataset is None:
                return
            for batch in dataset.take(1):
                self._summary_batch = batch
            if self._summary_batch is None:
                return
        with self._writers.eval.as_default(step=step):
            self.task.write_summaries(self._summary_batch, step)
        self._writers.eval.flush()


def run_task(task: Task, config: TrainerConfig, run_dir: str | Path, **kwargs: Any) -> TrainResult:
    """Shorthand: ``Trainer(task, config, run_dir, **kwargs).fit()``."""
    return Trainer(task, config, run_dir, **kwargs).fit()


__all__ = [
    "Task", "TaskContext", "Trainer", "TrainResult", "minimize", "scale_loss", "loss_scale_optimizer", "run_task",
]

