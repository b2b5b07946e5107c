"""Server-side batching with TF Serving's semantics (``batching/batching_session.cc``, ``batching_util.h``).

When batching is on, every Predict runs through the batcher, whatever the signature, as TF
Serving's ``BatchingSession`` wraps the whole session. Per request: every input needs a batch
dimension and all inputs the same 0th-dimension size (else INVALID_ARGUMENT, as
``ComputeTensorBatchSize``); a request over ``max_batch_size`` examples is INVALID_ARGUMENT
("Task size N is larger than maximum input batch size M", TF's shared batch scheduler); a full queue
is UNAVAILABLE. Requests with the same model, version, signature, input and output names queue
together; a batch runs when it holds ``execution_batch_size`` examples or its oldest request waited
``batch_timeout_micros``. Merging: with different per-example shapes the whole batch fails with
FAILED_PRECONDITION unless ``pad_variable_length_inputs`` (then each tensor is padded at the end of
every dimension with its own first value); the batch is padded up to the next
``allowed_batch_sizes`` entry by repeating a row. With ``enable_large_batch_splitting``, a request
larger than ``max_execution_batch_size`` is split across batches and its outputs concatenated.
Outputs are split back along dimension 0 (padded lengths are kept, as in TF Serving).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Any, Callable

import numpy as np

from tfmusic.serving.config import BatchingConfig
from tfmusic.serving.errors import ServingError
from tfmusic.serving.metrics import ServingMetrics

RunFn = Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]


def batch_size_of(inputs: dict[str, np.ndarray]) -> int:
    """The common 0th-dimension size of the inputs (TF Serving's ``ComputeTensorBatchSize`` rules)."""
    if not inputs:
        raise ServingError("INVALID_ARGUMENT", "Batching Run() must have at least one input tensor")
    sizes = set()
    for name, arr in inputs.items():
        if np.ndim(arr) == 0:
            raise ServingError("INVALID_ARGUMENT", f"Batching Run() input tensors must have at least one dimension "
                               f"(input {name!r} is a scalar)")
        sizes.add(int(np.shape(arr)[0]))
    if len(sizes) != 1:
        raise ServingError("INVALID_ARGUMENT", f"Batching Run() input tensors must have equal 0th-dimension size "
                           f"(got {sorted(sizes)})")
    return sizes.pop()


class _Task:
    __slots__ = ("inputs", "n", "fn", "enqueued", "event", "result", "error")

    def __init__(self, inputs: dict[str, np.ndarray], n: int, fn: RunFn) -> None:
        self.inputs, self.n, self.fn = inputs, n, fn
        self.enqueued = time.monotonic()
        self.event = threading.Event()
        self.result: dict[str, np.ndarray] | None = None
        self.error: BaseException | None = None


def _pad_to(arr: np.ndarray, dims: tuple[int, ...]) -> np.ndarray:
    widths = [(0, 0)] + [(0, want - have) for have, want in zip(arr.shape[1:], dims)]
    if all(w == (0, 0) for w in widths):
        return arr
    if arr.size == 0:
        raise ServingError("INVALID_ARGUMENT", "Got empty tensor in batch of non-empty tensors.")
    return np.pad(arr, widths, constant_values=arr.reshape(-1)[0])


class Batcher:
    """Queues per batching key and ``num_batch_threads`` threads that form and run batches."""

    def __init__(self, config: BatchingConfig, metrics: ServingMetrics | None = None) -> None:
        self.config = config.validate()
        self.metrics = metrics
        self.timeout = config.batch_timeout_micros / 1e6
        self._cond = threading.Condition()
        self._queues: dict[Any, deque[_Task]] = {}
        self._closed = False
        self._threads = [threading.Thread(target=self._worker, name=f"tfmusic-batch-{i}", daemon=True)
                         for i in range(config.num_batch_threads)]
        for t in self._threads:
            t.start()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        for t in self._threads:
            t.join(timeout=5)

    def run(self, key: Any, fn: RunFn, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run ``fn`` on ``inputs`` as part of a batch; returns this request's rows of every output."""
        n = batch_size_of(inputs)
        if n > self.config.max_batch_size:
            raise ServingError("INVALID_ARGUMENT", f"Task size {n} is larger than maximum input batch size "
                               f"{self.config.max_batch_size}")
        step = self.config.execution_batch_size
        pieces = [(lo, min(lo + step, n)) for lo in range(0, max(n, 1), step)]
        tasks = [_Task({k: v[lo:hi] for k, v in inputs.items()}, hi - lo, fn) for lo, hi in pieces]
        with self._cond:
            queue = self._queues.setdefault(key, deque())
            capacity = self.config.max_enqueued_batches * step
            if sum(t.n for t in queue) + n > capacity:
                raise ServingError("UNAVAILABLE", "The batch scheduling queue to which this task was submitted "
                                   "is full")
            queue.extend(tasks)
            self._cond.notify_all()
        for task in tasks:
            task.event.wait()
        for task in tasks:
            if task.error is not None:
                raise task.error
        if len(tasks) == 1:
            return tasks[0].result
        return {k: np.concatenate([t.result[k] for t in tasks], axis=0) for k in tasks[0].result}

    # -- the batch threads ----------------------------------------------------------------------
    def _ready_batch(self) -> tuple[list[_Task] | None, float | None]:
        """A batch to run now, or how long until the next one is due (``None``: nothing queued)."""
        now, wait = time.monotonic(), None
        step = self.config.execution_batch_size
        for key, queue in list(self._queues.items()):
            if not queue:
                del self._queues[key]
                continue
            due = queue[0].enqueued + self.timeout
            if sum(t.n for t in queue) >= step or now >= due:
                batch, total = [], 0
                while queue and total + queue[0].n <= step:
                    task = queue.popleft()
                    batch.append(task)
                    total += task.n
                return batch, None
            wait = due - now if wait is None else min(wait, due - now)
        return None, wait

    def _worker(self) -> None:
        while True:
            with self._cond:
                while True:
                    if self._closed:
                        return
                    batch, wait = self._ready_batch()
                    if batch:
                        break
                    self._cond.wait(wait)
            self._execute(batch)

    def _execute(self, batch: list[_Task]) -> None:
        try:
            merged, total, padded = self._merge(batch)
            outputs = batch[0].fn(merged)
            if self.metrics is not None:
                self.metrics.record_batch([t.n for t in batch], padded)
            bounds = np.cumsum([0] + [t.n for t in batch])
            for key, value in outputs.items():
                if np.ndim(value) == 0:
                    raise ServingError("FAILED_PRECONDITION", "Batched output tensor has 0 dimensions")
                if np.shape(value)[0] != padded:
                    raise ServingError("FAILED_PRECONDITION", "Batched output tensor's 0th dimension does not "
                                       "equal the sum of the 0th dimension sizes of the input tensors")
            for i, task in enumerate(batch):
                task.result = {k: v[bounds[i]:bounds[i + 1]] for k, v in outputs.items()}
        except BaseException as err:  # noqa: BLE001 - delivered to every request of the batch
            for task in batch:
                task.error = err
        finally:
            for task in batch:
                task.event.set()

    def _merge(self, batch: list[_Task]) -> tuple[dict[str, np.ndarray], int, int]:
        total = sum(t.n for t in batch)
        padded = next((s for s in self.config.allowed_batch_sizes if s >= total), total)
        merged = {}
        for name in batch[0].inputs:
            arrays = [t.inputs[name] for t in batch]
            shapes = {a.shape[1:] for a in arrays}
            if len(shapes) > 1:
                if not self.config.pad_variable_length_inputs:
                    raise ServingError("FAILED_PRECONDITION", f"Tensors with name '{name}' from different tasks "
                                       "have different shapes and padding is turned off. Set "
                                       "pad_variable_length_inputs to true, or ensure that all tensors with the "
                                       "same name have equal dimensions starting with the first dim.")
                if len({len(s) for s in shapes}) > 1:
                    raise ServingError("FAILED_PRECONDITION", f"Tensors with name '{name}' have different ranks")
                dims = tuple(max(d) for d in zip(*shapes))
                arrays = [_pad_to(a, dims) for a in arrays]
            if padded > total:
                arrays.append(np.repeat(arrays[-1][:1], padded - total, axis=0))
            merged[name] = arrays[0] if len(arrays) == 1 else np.concatenate(arrays, axis=0)
        return merged, total, padded
