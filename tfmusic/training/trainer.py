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
directory. A task sees the run only through the ``TaskContext`` the trainer binds to it.

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

The loop and the state it checkpoints (step, plateau, early stopping, history) are read together
here; the compiled train/eval steps and the evaluation pass live in :mod:`tfmusic.training.steps`,
the resumable state in :mod:`~tfmusic.training.loop_state`, telemetry and the task protocol in
their own modules.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import sys
import time
from pathlib import Path
from typing import Any, Mapping

import keras
import numpy as np
import tensorflow as tf
from tqdm.auto import tqdm

from tfmusic.training import faults
from tfmusic.training.checkpoints import CheckpointKeeper, TrainerState, save_model_atomic
from tfmusic.training.config import TrainerConfig, save_json
from tfmusic.training.loop_state import LoopMeters, LoopState
from tfmusic.training.precision import resolve_policy
from tfmusic.training.rewrites import apply_rewrites
from tfmusic.training.rundir import check_run_dir
from tfmusic.training.steps import compile_steps, evaluate_task
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
        if config.jit_compile and self.num_replicas > 1:
            # measured (TF 2.21): under Mirrored/MultiWorkerMirrored the per-replica step holds the
            # gradient all-reduce, a merge_call that a nested (XLA) tf.function cannot contain
            raise ValueError(f"trainer.jit_compile works with one replica; this strategy has {self.num_replicas} "
                             "(tf.distribute cannot all-reduce gradients inside an XLA-compiled replica step)")
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
        keras.mixed_precision.set_global_policy(resolve_policy(self.config.mixed_precision))
        self._writers: SummaryWriters | None = None
        self._keeper: CheckpointKeeper | None = None
        self._final: dict[str, float] = {}
        self._undo_rewrites = lambda: None
        ok = False
        try:
            result = self._fit()
            ok = True
            return result
        finally:
            keras.mixed_precision.set_global_policy(previous_policy)
            self._undo_rewrites()  # the caller gets the task's models with their plain calls
            if self._writers is not None:
                if self.chief:
                    telemetry.write_session_end(self._writers.session, self._final,
                                                int(self._final.get("steps", 0)), ok=ok)
                self._writers.close()
            if self._keeper is not None:
                self._keeper.close()

    def _fit(self) -> TrainResult:
        """The run as named steps; each method below is one of them, in order."""
        self._build_task()
        run = self._restore_or_start()
        self._open_run_dir()
        iterator = self._train_iterator(run.start)
        self._compile_steps()
        self._train_until_done(run, iterator)
        return self._finish(run)

    def _build_task(self) -> None:
        """Seed, hand the task its context and build its models inside the strategy's scope."""
        if self.chief:
            self.run_dir.mkdir(parents=True, exist_ok=True)
        keras.utils.set_random_seed(self.config.seed)
        if self.config.deterministic:
            tf.config.experimental.enable_op_determinism()
        self.task.bind(self.context)
        with self.strategy.scope():
            self.task.build()
        self._set_rewrites(True)
        log.info("task %s built (%d replica(s), %d worker(s))", self.task.name, self.num_replicas, self.num_workers)

    def _set_rewrites(self, on: bool) -> None:
        """The training-time rewrites the config asks for (``tfmusic.training.rewrites``: fused BatchNorm,
        LSTM and Adam, the task's ``recompute_layers()`` recomputed), or none."""
        self._undo_rewrites()
        self._undo_rewrites = (apply_rewrites(self.config, self.task.checkpoint_items().values(),
                                              self.task.recompute_layers()) if on else lambda: None)

    def _restore_or_start(self) -> LoopState:
        """Restore the latest checkpoint (``resume``) or prepare a fresh run; never overwrite a run."""
        self._state = TrainerState()
        self._keeper = keeper = CheckpointKeeper(
            self.task.checkpoint_items(), self.task.export_model(), self.run_dir / "checkpoints",
            state=self._state, chief=self.chief, worker=self.worker, keep=self.config.keep_checkpoints,
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
            self.task.prepare()
            log.info("task prepared")
        return LoopState.restore(self._state, self.config, resumed)

    def _open_run_dir(self) -> None:
        """``config.json`` and the TensorBoard writers with the HParams session start (chief only)."""
        if self.chief and self.run_config is not None:
            save_json(self.run_config, self.run_dir / "config.json")
        self._writers = writers = SummaryWriters(self.run_dir, enabled=self.chief)
        if self.chief:
            hparams = {"task": self.task.name, **telemetry.flatten_hparams(
                self.run_config if self.run_config is not None else {"trainer": dataclasses.asdict(self.config)})}
            telemetry.write_session_start(writers.session, hparams, trial_id=self.run_dir.name)

    def _train_iterator(self, start: int) -> Any:
        """The distributed training batches, positioned after the ``start`` steps already taken."""
        train_ds = self.task.train_dataset().repeat()
        if start:
            train_ds = train_ds.skip(start)
        return iter(self.context.distribute(train_ds))

    def _compile_steps(self) -> None:
        """The distributed train and eval steps (``tfmusic.training.steps``)."""
        self._train_fn, self._eval_fn = compile_steps(self.task, self.strategy, self.config)
        self._summary_batch = None

    def _train_until_done(self, run: LoopState, iterator: Any) -> None:
        """Steps until ``config.steps`` or early stopping; Ctrl-C saves a checkpoint before leaving."""
        cfg = self.config
        meters = LoopMeters(
            bar=tqdm(total=cfg.steps, initial=min(run.start, cfg.steps), desc=f"train {self.task.name}",
                     unit="step", disable=self._bar_disabled(), dynamic_ncols=True),
            throughput=telemetry.Throughput(cfg.batch_size),
            graph=telemetry.GraphTrace(self._writers.train, enabled=self.chief),
            profiler=telemetry.StepProfiler(self._writers.train_dir, cfg.profile_steps, enabled=self.chief),
        )
        try:
            while run.step < cfg.steps and not run.stopped_early:
                self._train_step(run, iterator, meters)
                if run.step % cfg.log_every == 0 or run.step == cfg.steps:
                    self._log_train(run.step, meters)
                self._evaluate_and_checkpoint(run, meters.bar)
        except KeyboardInterrupt:
            if self.num_workers == 1 and run.last_saved != run.step:
                path = self._save(run)
                log.warning("interrupted at step %d; saved %s (continue with --resume)", run.step, path)
            raise
        finally:
            self._final = {"steps": run.step, **meters.close(run.step)}
        if run.last_saved != run.step:
            self._save(run)

    def _steps_this_call(self, run: LoopState) -> int:
        """How many steps the next call takes: ``steps_per_execution``, cut at the next step where
        the loop must look (log, evaluation, checkpoint, the end, a profiled step); 1 for the first."""
        cfg, step = self.config, run.step
        if cfg.steps_per_execution == 1 or step == run.start:
            return 1
        if cfg.profile_steps and cfg.profile_steps[0] - 1 <= step <= cfg.profile_steps[1]:
            return 1
        count = min(cfg.steps_per_execution, cfg.steps - step)
        for every in (cfg.log_every, cfg.eval_every, cfg.checkpoint_every):
            if every:
                count = min(count, every - step % every)
        return max(count, 1)

    def _train_step(self, run: LoopState, iterator: Any, meters: LoopMeters) -> None:
        """One call of the train function (``count`` optimizer steps, 1 by default); its metrics (the
        mean over those steps, once per step) go into the logging and evaluation windows."""
        count = self._steps_this_call(run)
        step = run.step + count
        meters.profiler.before_step(step)
        if run.step == run.start:
            meters.graph.start()
        began = time.perf_counter()
        try:  # the Trace is the profiler's step marker (step time in the Profile tab)
            with tf.profiler.experimental.Trace("train", step_num=step, _r=1):
                if self.config.steps_per_execution == 1:
                    metrics = self._train_fn(iterator)
                else:
                    metrics = self._train_fn(iterator, tf.constant(count, tf.int32))
        except (StopIteration, tf.errors.OutOfRangeError):
            raise ValueError(f"task {self.task.name!r}: the training dataset yielded no batches") from None
        values = {k: float(v) for k, v in metrics.items()}  # waits for the step to finish
        faults.point("train-step")
        run.step = step
        self._state.step.assign(step)
        if step == run.start + 1:
            meters.graph.export(step)
            log.info("first training step done (graph traced)")
        else:  # the first step includes tracing: not a throughput sample
            elapsed = time.perf_counter() - began
            for _ in range(count):
                meters.throughput.add(elapsed / count)
        meters.profiler.after_step(step)
        for key, value in values.items():
            meters.log_window[key].extend([value] * count)
            run.eval_window[key].extend([value] * count)
        meters.bar.update(count)

    def _log_train(self, step: int, meters: LoopMeters) -> None:
        """Training means since the last log line, learning rates and throughput to TensorBoard."""
        means = {k: float(np.mean(v)) for k, v in meters.log_window.items()}
        meters.log_window.clear()
        scalars = dict(means)
        scalars.update({f"lr/{n}": lr for n, lr in self._learning_rates().items()})
        scalars.update(meters.throughput.pop())
        self._writers.scalars(self._writers.train, scalars, step)
        meters.bar.set_postfix({k: f"{v:.4g}" for k, v in list(means.items())[:3]})

    def _evaluate_and_checkpoint(self, run: LoopState, bar: Any) -> None:
        """At evaluation steps: histograms, evaluation and its decisions, ``history.json``; then the
        periodic, early-stopping or final checkpoint."""
        cfg, step = self.config, run.step
        if step % cfg.eval_every == 0:
            if cfg.histograms and self.chief:
                self._write_histograms(step)
            record = self._evaluate_and_decide(step, run)
            run.eval_window.clear()
            if record is not None:
                run.history.append(record)
                run.stopped_early = record.pop("_stop")
                if self.chief:
                    save_json({"history": run.history}, self.run_dir / "history.json")
                bar.set_postfix({f"eval_{cfg.monitor}": f"{record['eval'].get(cfg.monitor, float('nan')):.4g}"})
        if step % (cfg.checkpoint_every or cfg.eval_every) == 0 or run.stopped_early or step == cfg.steps:
            self._save(run)

    def _save(self, run: LoopState) -> str:
        """A full checkpoint of the task and the loop state at ``run.step``."""
        run.store(self._state)
        path = self._keeper.save(run.step, best_step=run.early.best_step)
        run.last_saved = run.step
        return path

    def _finish(self, run: LoopState) -> TrainResult:
        """``model.keras`` with the best (or, ``keep_model: final``, the final) weights and the result; the task
        is left in its final state."""
        cfg, keeper, early, history = self.config, self._keeper, run.early, run.history
        if run.stopped_early and self.chief:
            log.info("early stopping at step %d (best %s at step %s)", run.step, early.best, early.best_step)
        model_path = None
        if self.chief:
            model_path = str(self.run_dir / "model.keras")
            if cfg.keep_model == "best" and keeper.restore_best(early.best_step):
                save_model_atomic(self.task.export_model(), model_path)
                keeper.restore_latest()  # leave the task in its final state for the caller
            else:
                save_model_atomic(self.task.export_model(), model_path)
            save_json({"history": history}, self.run_dir / "history.json")
        self._final = {**self._final, **{f"eval_{k}": v for k, v in (history[-1]["eval"] if history else {}).items()}}
        if early.best is not None:
            self._final[f"best_{cfg.monitor}"] = early.best
        return TrainResult(run_dir=str(self.run_dir), step=run.step, start_step=run.start,
                           stopped_early=run.stopped_early, best_step=early.best_step,
                           best_metric=early.best, history=history, model_path=model_path)

    # ----------------------------------------------------------------- evaluation
    def _learning_rates(self) -> dict[str, float]:
        return {name: float(keras.ops.convert_to_numpy(opt.learning_rate))
                for name, opt in self.task.optimizers().items()}

    def evaluate(self) -> dict[str, float]:
        """Average ``eval_step`` over the evaluation set (all replicas and workers)."""
        return evaluate_task(self.task, self._eval_fn, self.context, self.config, progress=not self._bar_disabled())

    def _evaluate_and_decide(self, step: int, run: LoopState) -> dict[str, Any] | None:
        """Evaluate; apply reduce-on-plateau, early stopping and the best checkpoint; the history record."""
        cfg, plateau, early = self.config, run.plateau, run.early
        metrics = self.evaluate()
        log.info("step %d: evaluation %s", step, {k: round(v, 5) for k, v in metrics.items()})
        train_means = {k: float(np.mean(v)) for k, v in run.eval_window.items()}
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
            self._keeper.save_best(step)
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
        self._set_rewrites(False)  # the histograms wrap each sublayer's plain call (eager forward only)
        try:
            with self._writers.train.as_default(step=step):
                telemetry.write_weight_histograms(model)
                if batch is not None:
                    telemetry.write_activation_histograms(model, self.task.activation_inputs(batch))
        finally:
            self._set_rewrites(True)
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

