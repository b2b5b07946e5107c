"""``tf.distribute`` strategies for the one trainer, and who is the chief.

- ``default``: the default (no-op) strategy, one device.
- ``mirrored``: ``MirroredStrategy`` over local devices. ``devices`` may be a count (the first N
  GPUs, or, on a machine without GPUs, N *logical* CPU devices carved out of the physical CPU,
  which is how the tests and CPU-only CI exercise real all-reduce) or explicit device names.
- ``multiworker``: ``MultiWorkerMirroredStrategy`` configured from ``TF_CONFIG``
  (``{"cluster": {"worker": [host:port, ...]}, "task": {"type": "worker", "index": i}}``).
  Every worker runs the same command; worker 0 is the chief and is the only one that writes
  ``config.json``, ``history.json``, TensorBoard events and ``model.keras``.

Logical CPU devices and the multi-worker strategy must be set up before TensorFlow initialises
its runtime (before the first op), so call :func:`make_strategy` first thing in a process.
"""

from __future__ import annotations

import json
import os
from typing import Sequence

from tfmusic.training.config import STRATEGY_NAMES


def configure_cpu_devices(count: int) -> None:
    """Split the physical CPU into ``count`` logical devices (before TensorFlow initialises)."""
    import tensorflow as tf

    if count < 1:
        raise ValueError(f"need at least one CPU device, got {count}")
    cpus = tf.config.list_physical_devices("CPU")
    current = tf.config.get_logical_device_configuration(cpus[0])
    if current is not None and len(current) == count:
        return
    try:
        tf.config.set_logical_device_configuration(
            cpus[0], [tf.config.LogicalDeviceConfiguration() for _ in range(count)]
        )
    except RuntimeError as err:
        have = len(tf.config.list_logical_devices("CPU"))
        if have >= count:
            return
        raise RuntimeError(
            f"cannot create {count} logical CPU devices: TensorFlow is already initialised with "
            f"{have}; create the strategy before running any TensorFlow op ({err})"
        ) from None


def _resolve_devices(devices: Sequence[str] | int | None) -> list[str] | None:
    import tensorflow as tf

    if devices is None:
        return None
    if isinstance(devices, int):
        gpus = tf.config.list_physical_devices("GPU")
        if len(gpus) >= devices:
            return [f"/gpu:{i}" for i in range(devices)]
        if gpus:
            raise ValueError(f"asked for {devices} devices but only {len(gpus)} GPU(s) are present")
        configure_cpu_devices(devices)
        return [f"/cpu:{i}" for i in range(devices)]
    names = [str(d).strip() for d in devices if str(d).strip()]
    if not names:
        raise ValueError("empty device list")
    cpu_indices = [int(n.rsplit(":", 1)[1]) for n in names if "cpu" in n.lower() and ":" in n]
    if cpu_indices and max(cpu_indices) > 0:
        configure_cpu_devices(max(cpu_indices) + 1)
    return names


def parse_devices(text: str | None) -> list[str] | int | None:
    """Parse the ``--devices`` flag: ``2`` (a count) or ``/gpu:0,/gpu:1`` (names)."""
    if text is None or text == "":
        return None
    text = text.strip()
    if text.isdigit():
        return int(text)
    return [t.strip() for t in text.split(",") if t.strip()]


def make_strategy(name: str = "default", devices: Sequence[str] | int | None = None):
    """Create the named strategy (see the module docstring for ``devices``)."""
    import tensorflow as tf

    if name not in STRATEGY_NAMES:
        raise ValueError(f"unknown strategy {name!r}; choose one of {STRATEGY_NAMES}")
    if name == "default":
        if devices not in (None, 1) and not (isinstance(devices, list) and len(devices) == 1):
            raise ValueError("the default strategy uses one device; use --strategy mirrored for several")
        if isinstance(devices, list):
            return tf.distribute.OneDeviceStrategy(devices[0])
        return tf.distribute.get_strategy()
    if name == "mirrored":
        names = _resolve_devices(devices)
        return tf.distribute.MirroredStrategy(devices=names)
    # multiworker
    tf_config = os.environ.get("TF_CONFIG")
    if not tf_config:
        raise ValueError(
            "--strategy multiworker needs the TF_CONFIG environment variable, e.g. "
            '{"cluster": {"worker": ["127.0.0.1:12345", "127.0.0.1:12346"]}, '
            '"task": {"type": "worker", "index": 0}}'
        )
    try:
        json.loads(tf_config)
    except json.JSONDecodeError as err:
        raise ValueError(f"TF_CONFIG is not valid JSON: {err}") from None
    if devices is not None:
        _resolve_devices(devices)
    return tf.distribute.MultiWorkerMirroredStrategy()


def worker_index(strategy) -> int:
    """This process's worker index (0 for single-process strategies)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not getattr(resolver, "task_type", None):
        return 0
    return int(resolver.task_id or 0)


def num_workers(strategy) -> int:
    """How many processes train together (1 for single-process strategies)."""
    extended = getattr(strategy, "extended", None)
    return int(getattr(extended, "_num_workers", 1) or 1)


def is_chief(strategy) -> bool:
    """True for the process that writes run artefacts (worker 0, or an explicit chief)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not getattr(resolver, "task_type", None):
        return True
    task_type = resolver.task_type
    if task_type == "chief":
        return True
    cluster = resolver.cluster_spec().as_dict()
    return task_type == "worker" and int(resolver.task_id or 0) == 0 and "chief" not in cluster
