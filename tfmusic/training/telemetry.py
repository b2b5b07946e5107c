"""TensorBoard telemetry of the one trainer beyond loss scalars.

What it adds, and why each lives here rather than in tasks (so separation and VAE tasks get all
of it without code of their own):

- ``perf/steps_per_second`` and ``perf/examples_per_second``: measured around the training step
  only (evaluation, checkpoints and the first step's graph tracing are excluded), so the numbers
  compare across runs and machines.
- ``grad_norm/<optimizer>``: the global norm of the gradient each optimizer applies, recorded by
  :func:`tfmusic.training.trainer.minimize` (un-scaled under mixed precision; with several
  replicas the replicas' gradients are summed first, one extra all-reduce per step, so it is the
  norm of the gradient actually applied; ``trainer.grad_norm: false`` turns it off).
- ``weights/*`` and ``activations/*`` histograms, behind ``trainer.histograms`` (costly).
- the training step's graph (``tf.summary.trace_on/trace_export`` around the first step).
- an HParams session in ``<run>/tensorboard`` (hyperparameters from the run config; final
  metrics as ``final/*`` scalars; session end status), so runs compare in the HParams dashboard.
- profiler capture for a step range (``trainer.profile_steps: [start, end]``, 1-based, inclusive)
  into ``<run>/tensorboard/train/plugins/profile``.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from typing import Any, Iterable, Iterator, Mapping

import keras
import numpy as np
import tensorflow as tf

log = logging.getLogger(__name__)

# ------------------------------------------------------------------------------ gradient norms
_local = threading.local()  # MirroredStrategy runs each replica in its own thread


@contextlib.contextmanager
def collect_gradient_norms(enabled: bool = True) -> Iterator[dict[int, tf.Tensor]]:
    """Within this context (one replica's train step) :func:`record_gradients` stores norms."""
    norms: dict[int, tf.Tensor] = {}
    previous = getattr(_local, "norms", None)
    _local.norms = norms if enabled else None
    try:
        yield norms
    finally:
        _local.norms = previous


def record_gradients(optimizer: keras.optimizers.Optimizer, grads: Iterable[Any]) -> None:
    """Record the global norm of ``grads`` for ``optimizer`` (no-op outside a collecting step)."""
    norms = getattr(_local, "norms", None)
    if norms is None:
        return
    grads = [tf.cast(g, tf.float32) for g in grads if g is not None]
    if not grads:
        return
    scale = getattr(optimizer, "dynamic_scale", None)  # LossScaleOptimizer, once built
    if isinstance(optimizer, keras.optimizers.LossScaleOptimizer) and scale is not None:
        grads = [g / tf.cast(scale, tf.float32) for g in grads]
    context = tf.distribute.get_replica_context()
    if context is not None and context.num_replicas_in_sync > 1:
        grads = context.all_reduce(tf.distribute.ReduceOp.SUM, grads)
    norms[id(optimizer)] = tf.linalg.global_norm(grads)


def name_gradient_norms(norms: Mapping[int, tf.Tensor],
                        optimizers: Mapping[str, keras.optimizers.Optimizer]) -> dict[str, tf.Tensor]:
    """``{"grad_norm/<name>": norm}`` using the task's optimizer names."""
    names = {}
    for name, opt in optimizers.items():
        names[id(opt)] = name
        inner = getattr(opt, "inner_optimizer", None)
        if inner is not None:
            names[id(inner)] = name
    return {f"grad_norm/{names.get(key, f'optimizer{i}')}": value
            for i, (key, value) in enumerate(norms.items())}


# ------------------------------------------------------------------------------ throughput
class Throughput:
    """Steps/s and examples/s over a logging window, timing only the training steps."""

    def __init__(self, global_batch_size: int) -> None:
        self.batch = int(global_batch_size)
        self.seconds = 0.0
        self.steps = 0
        self.total_seconds = 0.0
        self.total_steps = 0

    def add(self, seconds: float) -> None:
        self.seconds += seconds
        self.steps += 1
        self.total_seconds += seconds
        self.total_steps += 1

    def pop(self) -> dict[str, float]:
        """The window's rates (empty when nothing was timed), then start a new window."""
        out = self._rates(self.steps, self.seconds)
        self.seconds, self.steps = 0.0, 0
        return out

    def overall(self) -> dict[str, float]:
        return self._rates(self.total_steps, self.total_seconds)

    def _rates(self, steps: int, seconds: float) -> dict[str, float]:
        if steps == 0 or seconds <= 0:
            return {}
        return {"perf/steps_per_second": steps / seconds, "perf/examples_per_second": steps * self.batch / seconds}


# ------------------------------------------------------------------------------ histograms
def write_weight_histograms(model: keras.Model) -> None:
    """One histogram per trainable variable (inside a writer's default context)."""
    for variable in model.trainable_variables:
        name = getattr(variable, "path", None) or variable.name
        tf.summary.histogram(f"weights/{name}", keras.ops.convert_to_numpy(variable))


def write_activation_histograms(model: keras.Model, inputs: Any) -> None:
    """Histograms of every direct sublayer's output for ``inputs`` (eager forward pass).

    Keras 3 has no forward hooks, so each direct sublayer's ``call`` is wrapped for this one
    pass and restored afterwards; this works for subclassed, functional and Sequential models.
    """
    captured: list[tuple[str, Any]] = []
    layers = [layer for layer in model.layers if "call" not in vars(layer)]

    def wrap(layer):
        original = layer.call

        def call(*args, **kwargs):
            out = original(*args, **kwargs)
            captured.append((layer.name, out))
            return out

        return call

    for layer in layers:
        object.__setattr__(layer, "call", wrap(layer))
    try:
        model(inputs, training=False)
    finally:
        for layer in layers:
            vars(layer).pop("call", None)
    seen: dict[str, int] = {}
    for name, out in captured:
        count = seen.get(name, 0)
        seen[name] = count + 1
        label = name if count == 0 else f"{name}_{count}"
        leaves = keras.tree.flatten(out)
        for i, leaf in enumerate(leaves):
            value = np.asarray(keras.ops.convert_to_numpy(leaf))
            if value.dtype.kind != "f":
                continue
            suffix = f"/{i}" if len(leaves) > 1 else ""
            tf.summary.histogram(f"activations/{label}{suffix}", value.astype(np.float32))


# ------------------------------------------------------------------------------ hparams
def flatten_hparams(config: Mapping[str, Any], prefix: str = "") -> dict[str, bool | int | float | str]:
    """Nested run config -> ``{"a.b": scalar}``: lists become strings, ``None`` values are left out."""
    out: dict[str, bool | int | float | str] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten_hparams(value, f"{name}."))
        elif value is None:
            continue
        elif isinstance(value, (bool, int, float, str)):
            out[name] = value
        else:
            out[name] = str(value)
    return out


def write_session_start(writer, hparams: Mapping[str, Any], trial_id: str) -> None:
    """The HParams session start (hyperparameters) for this run."""
    from tensorboard.plugins.hparams import api as hp

    with writer.as_default():
        hp.hparams(dict(hparams), trial_id=trial_id)
    writer.flush()


def write_session_end(writer, final: Mapping[str, float], step: int, ok: bool = True) -> None:
    """Final metrics as ``final/*`` scalars and the session end status."""
    from tensorboard.plugins.hparams import api_pb2
    from tensorboard.plugins.hparams import summary as hp_summary

    status = api_pb2.STATUS_SUCCESS if ok else api_pb2.STATUS_FAILURE
    with writer.as_default(step=step):
        for name, value in final.items():
            if value is not None and np.isfinite(value):
                tf.summary.scalar(f"final/{name}", float(value))
        tf.summary.experimental.write_raw_pb(hp_summary.session_end_pb(status).SerializeToString(), step=step)
    writer.flush()


# ------------------------------------------------------------------------------ graph and profiler
class GraphTrace:
    """Traces the first training step's graph into the train writer."""

    def __init__(self, writer, enabled: bool) -> None:
        self.writer = writer
        self.enabled = enabled
        self.active = False

    def start(self) -> None:
        if self.enabled:
            tf.summary.trace_on(graph=True, profiler=False)
            self.active = True

    def export(self, step: int) -> None:
        if not self.active:
            return
        self.active = False
        with self.writer.as_default():
            tf.summary.trace_export(name="train_step", step=step)
        self.writer.flush()


class StepProfiler:
    """``tf.profiler`` capture of training steps ``start``..``end`` (1-based, inclusive)."""

    def __init__(self, logdir: str, steps: list[int] | None, enabled: bool = True) -> None:
        self.logdir = logdir
        self.start_step, self.end_step = (steps if steps else (0, -1))
        self.enabled = enabled and bool(steps)
        self.running = False

    def before_step(self, step: int) -> None:
        """Call with the number of the step about to run."""
        if self.enabled and not self.running and self.start_step <= step <= self.end_step:
            tf.profiler.experimental.start(self.logdir)
            self.running = True
            log.info("profiler: capturing steps %d-%d into %s", step, self.end_step, self.logdir)

    def after_step(self, step: int) -> None:
        if self.running and step >= self.end_step:
            self.stop()

    def stop(self) -> None:
        if self.running:
            self.running = False
            tf.profiler.experimental.stop()


__all__ = ["collect_gradient_norms", "record_gradients", "name_gradient_norms", "Throughput",
           "write_weight_histograms", "write_activation_histograms", "flatten_hparams",
           "write_session_start", "write_session_end", "GraphTrace", "StepProfiler"]
