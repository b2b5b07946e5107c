"""Embedded TF Serving-compatible server: the same gRPC API over the same model repository.

Production serving is real TF Serving (``tensorflow_model_server`` or the ``tensorflow/serving``
container, see ``serving/README.md``). This server exists so that development, tests and the demo
can run the very same client against the very same ``<repo>/<model>/<version>/`` layout without
that binary. It implements:

* ``PredictionService.Predict`` / ``GetModelMetadata`` and ``ModelService.GetModelStatus`` with the
  ``tensorflow-serving-api`` protos, and TF Serving's status codes: unknown model, version, label or
  signature -> NOT_FOUND; wrong inputs, dtypes or shapes -> INVALID_ARGUMENT; messages over the size
  limit -> RESOURCE_EXHAUSTED.
* Version policies from a ``models.config`` text proto (``latest``/``specific``/``all`` and
  ``version_labels``), or every model folder of ``--models`` at its latest version; new versions are
  picked up (and dropped ones unloaded) by polling, and a changed config file is re-read.
* Warmup: ``assets.extra/tf_serving_warmup_requests`` is replayed when a version loads.
* Batching: concurrent requests with the same signature and per-example shapes are concatenated
  along the batch axis (``max_batch_size``, ``batch_timeout_micros``, ``num_batch_threads`` from a
  ``batching.config``), run once and split back.
* Optional REST: ``/v1/models/<m>[/versions/<n>|/labels/<l>]:predict``, status and ``/metadata``
  GETs, and Prometheus text at ``/monitoring/prometheus/metrics``.

It binds 127.0.0.1 unless told otherwise.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict, deque
from concurrent import futures
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

import numpy as np

from tfmusic.serving.client import DEFAULT_MAX_MESSAGE_BYTES, from_tensor_proto, to_tensor_proto

log = logging.getLogger(__name__)

DEFAULT_SIGNATURE = "serving_default"


class ServingStatus(Exception):
    """A request failure carrying a gRPC status code name (``NOT_FOUND``, ``INVALID_ARGUMENT``, ...)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


HTTP_CODES = {"OK": 200, "NOT_FOUND": 404, "INVALID_ARGUMENT": 400, "RESOURCE_EXHAUSTED": 413,
              "FAILED_PRECONDITION": 400, "UNAVAILABLE": 503, "INTERNAL": 500}


# ---------------------------------------------------------------------------------------------
# Configuration
# ---------------------------------------------------------------------------------------------

@dataclass
class VersionPolicy:
    """Which versions to serve: ``latest`` (the ``num_versions`` highest), ``specific`` or ``all``."""

    kind: str = "latest"
    num_versions: int = 1
    versions: tuple[int, ...] = ()

    def select(self, available: list[int]) -> list[int]:
        if self.kind == "all":
            return list(available)
        if self.kind == "specific":
            return [v for v in available if v in self.versions]
        return sorted(available)[-self.num_versions:] if available else []


@dataclass
class ModelConfig:
    name: str
    base_path: Path
    policy: VersionPolicy = field(default_factory=VersionPolicy)
    labels: dict[str, int] = field(default_factory=dict)


def resolve_base_path(base_path: str, repo: Path | None, config_path: Path | None, name: str) -> Path:
    """Where a config's ``base_path`` lives on this machine.

    With ``--models REPO`` the repository wins: ``/models/separator`` (the container path) maps to
    ``REPO/separator``. Without it, relative paths are taken from the config file's folder.
    """
    if repo is not None:
        return repo / Path(base_path).name
    path = Path(base_path)
    if not path.is_absolute() and config_path is not None:
        path = config_path.parent / path
    return path


def parse_models_config(path: str | os.PathLike, repo: str | os.PathLike | None = None) -> list[ModelConfig]:
    """Read a TF Serving ``ModelServerConfig`` text proto (``model_config_list``)."""
    from google.protobuf import text_format
    from tensorflow_serving.config import model_server_config_pb2

    path = Path(path)
    proto = model_server_config_pb2.ModelServerConfig()
    try:
        text_format.Parse(path.read_text(), proto)
    except text_format.ParseError as err:
        raise ValueError(f"{path}: not a ModelServerConfig text proto: {err}") from err
    if not proto.HasField("model_config_list"):
        raise ValueError(f"{path}: needs a model_config_list {{ config {{ ... }} }} block")
    out = []
    for cfg in proto.model_config_list.config:
        if not cfg.name or not cfg.base_path:
            raise ValueError(f"{path}: every config needs name and base_path (got name={cfg.name!r})")
        if cfg.model_platform and cfg.model_platform != "tensorflow":
            raise ValueError(f"{path}: model {cfg.name!r} platform {cfg.model_platform!r}; only 'tensorflow'")
        which = cfg.model_version_policy.WhichOneof("policy_choice")
        if which == "specific":
            policy = VersionPolicy("specific", versions=tuple(int(v) for v in cfg.model_version_policy.specific.versions))
            if not policy.versions:
                raise ValueError(f"{path}: model {cfg.name!r} has an empty specific {{ }} policy")
        elif which == "all":
            policy = VersionPolicy("all")
        else:
            n = int(cfg.model_version_policy.latest.num_versions) if which == "latest" else 0
            policy = VersionPolicy("latest", num_versions=n or 1)
        base = resolve_base_path(cfg.base_path, Path(repo) if repo else None, path, cfg.name)
        out.append(ModelConfig(cfg.name, base, policy, {k: int(v) for k, v in cfg.version_labels.items()}))
    names = [c.name for c in out]
    if len(set(names)) != len(names):
        raise ValueError(f"{path}: duplicate model names in {names}")
    return out


def repo_models(repo: str | os.PathLike) -> list[ModelConfig]:
    """One ``latest`` config per model folder of a repository (folders holding numeric versions)."""
    repo = Path(repo)
    if not repo.is_dir():
        raise ValueError(f"{repo}: model repository folder does not exist")
    return [ModelConfig(p.name, p) for p in sorted(repo.iterdir())
            if p.is_dir() and not p.name.startswith(".") and any(c.name.isdigit() for c in p.iterdir())]


@dataclass
class BatchingConfig:
    """The subset of TF Serving's ``BatchingParameters`` the embedded server uses."""

    max_batch_size: int = 8
    batch_timeout_micros: int = 2000
    max_enqueued_batches: int = 100
    num_batch_threads: int = 2
    allowed_batch_sizes: tuple[int, ...] = ()


_BATCH_KEYS = {"max_batch_size", "batch_timeout_micros", "max_enqueued_batches", "num_batch_threads",
               "allowed_batch_sizes", "pad_variable_length_inputs"}


def parse_batching_config(path: str | os.PathLike) -> BatchingConfig:
    """Read ``--batching_parameters_file`` text (``max_batch_size { value: 8 }`` ...)."""
    path = Path(path)
    text = re.sub(r"#.*", "", path.read_text())
    cfg = BatchingConfig()
    allowed = []
    for key, value in re.findall(r"(\w+)\s*\{\s*value\s*:\s*([^\s}]+)\s*\}", text):
        if key not in _BATCH_KEYS:
            raise ValueError(f"{path}: unknown batching parameter {key!r}")
        if key == "pad_variable_length_inputs":
            continue
        setattr(cfg, key, int(value))
    for value in re.findall(r"allowed_batch_sizes\s*:\s*(\d+)", text):
        allowed.append(int(value))
    leftovers = re.sub(r"(\w+)\s*\{\s*value\s*:\s*[^\s}]+\s*\}|allowed_batch_sizes\s*:\s*\d+", "", text).strip()
    if leftovers:
        raise ValueError(f"{path}: cannot read {leftovers[:60]!r}")
    cfg.allowed_batch_sizes = tuple(allowed)
    if cfg.max_batch_size < 1 or cfg.num_batch_threads < 1:
        raise ValueError(f"{path}: max_batch_size and num_batch_threads must be >= 1")
    return cfg


# ---------------------------------------------------------------------------------------------
# Loaded versions and the manager that keeps them in line with the policy
# ---------------------------------------------------------------------------------------------

@dataclass
class Signature:
    fn: Callable
    inputs: dict[str, Any]  # name -> tf.TensorSpec
    outputs: list[str]
    batchable: bool


@dataclass
class LoadedVersion:
    version: int
    path: Path
    handle: Any
    signatures: dict[str, Signature]
    signature_defs: dict[str, Any]


def _load_version(path: Path) -> LoadedVersion:
    import tensorflow as tf

    from tfmusic.export.saved_model import read_signature_defs

    handle = tf.saved_model.load(str(path))
    sigs = {}
    for key, fn in handle.signatures.items():
        inputs = dict(fn.structured_input_signature[1])
        outputs = dict(fn.structured_outputs)
        batchable = all(s.shape.rank and s.shape[0] is None for s in inputs.values()) and all(
            s.shape.rank and s.shape[0] is None for s in outputs.values())
        sigs[key] = Signature(fn, inputs, sorted(outputs), batchable)
    return LoadedVersion(int(path.name), path, handle, sigs, read_signature_defs(path))


class ModelManager:
    """Loads/unloads versions per policy; answers which version serves a ``ModelSpec``."""

    def __init__(self, configs: list[ModelConfig], config_loader: Callable[[], list[ModelConfig]] | None = None,
                 warmup: bool = True) -> None:
        self._configs = {c.name: c for c in configs}
        self._config_loader = config_loader
        self._warmup = warmup
        self._loaded: dict[str, dict[int, LoadedVersion]] = defaultdict(dict)
        self._states: dict[str, dict[int, tuple[str, str]]] = defaultdict(dict)
        self._failed: dict[tuple[str, int], float] = {}
        self._lock = threading.RLock()

    @property
    def model_names(self) -> list[str]:
        return sorted(self._configs)

    def reload_config(self) -> None:
        if self._config_loader is None:
            return
        configs = self._config_loader()
        with self._lock:
            self._configs = {c.name: c for c in configs}
            for name in list(self._loaded):
                if name not in self._configs:
                    for v in list(self._loaded[name]):
                        self._unload(name, v)

    def poll(self) -> None:
        """Bring loaded versions in line with what is on disk and the policy (one pass)."""
        from tfmusic.export.saved_model import list_versions

        for cfg in list(self._configs.values()):
            wanted = set(cfg.policy.select(list_versions(cfg.base_path)))
            if cfg.policy.kind == "specific":
                for v in cfg.policy.versions:
                    if v not in wanted and v not in self._states[cfg.name]:
                        self._states[cfg.name][v] = ("START", f"version {v} not found under {cfg.base_path}")
            for v in sorted(wanted - set(self._loaded[cfg.name])):
                if (cfg.name, v) in self._failed:
                    continue  # a broken version is not retried on every poll
                self._load(cfg, v)
            for v in sorted(set(self._loaded[cfg.name]) - wanted):
                self._unload(cfg.name, v)
            for label, v in cfg.labels.items():
                if v not in self._loaded[cfg.name]:
                    log.warning("model %s: label %r points at version %d, which is not loaded", cfg.name, label, v)

    def _load(self, cfg: ModelConfig, version: int) -> None:
        path = cfg.base_path / str(version)
        self._states[cfg.name][version] = ("LOADING", "")
        try:
            loaded = _load_version(path)
            if self._warmup:
                self._run_warmup(cfg.name, loaded)
        except Exception as err:  # noqa: BLE001 - a bad version must not take the server down
            log.error("model %s version %d at %s failed to load: %s", cfg.name, version, path, err)
            self._states[cfg.name][version] = ("END", f"{path}: failed to load: {err}")
            self._failed[(cfg.name, version)] = time.time()
            return
        with self._lock:
            self._loaded[cfg.name][version] = loaded
            self._states[cfg.name][version] = ("AVAILABLE", "")
        log.info("model %s version %d AVAILABLE (%s)", cfg.name, version, path)

    def _run_warmup(self, name: str, loaded: LoadedVersion) -> None:
        import tensorflow as tf

        from tfmusic.export.saved_model import read_warmup

        for request in read_warmup(loaded.path):
            sig = loaded.signatures.get(request.model_spec.signature_name or DEFAULT_SIGNATURE)
            if sig is None:
                raise ValueError(f"warmup request names unknown signature {request.model_spec.signature_name!r}")
            sig.fn(**{k: tf.constant(from_tensor_proto(v)) for k, v in request.inputs.items()})

    def _unload(self, name: str, version: int) -> None:
        with self._lock:
            self._loaded[name].pop(version, None)
            self._states[name][version] = ("END", "")
        log.info("model %s version %d unloaded", name, version)

    def resolve(self, name: str, version: int | None = None, label: str | None = None) -> LoadedVersion:
        with self._lock:
            if name not in self._configs:
                raise ServingStatus("NOT_FOUND", f"Servable not found for request: model {name!r} is not "
                                    f"served (models: {self.model_names})")
            loaded = self._loaded[name]
            if label:
                labels = self._configs[name].labels
                if label not in labels:
                    raise ServingStatus("NOT_FOUND", f"Servable not found for request: model {name!r} has no "
                                        f"version label {label!r} (labels: {sorted(labels)})")
                version = labels[label]
            if version is not None:
                if version not in loaded:
                    raise ServingStatus("NOT_FOUND", f"Servable not found for request: Specific({name}, {version});"
                                        f" available versions: {sorted(loaded)}")
                return loaded[version]
            if not loaded:
                raise ServingStatus("NOT_FOUND", f"Servable not found for request: Latest({name}); "
                                    "no version is loaded")
            return loaded[max(loaded)]

    def statuses(self, name: str, version: int | None = None) -> list[tuple[int, str, str]]:
        with self._lock:
            if name not in self._configs:
                raise ServingStatus("NOT_FOUND", f"Could not find any versions of model {name!r}")
            states = self._states[name]
            if version is not None:
                if version not in states:
                    raise ServingStatus("NOT_FOUND", f"Could not find version {version} of model {name!r}")
                return [(version, *states[version])]
            return [(v, *states[v]) for v in sorted(states)]


# ---------------------------------------------------------------------------------------------
# Batching: leader/follower over the caller threads, no extra dispatcher thread
# ---------------------------------------------------------------------------------------------

class _Item:
    __slots__ = ("inputs", "n", "enqueued", "batch", "event", "result", "error")

    def __init__(self, inputs: dict[str, np.ndarray], n: int) -> None:
        self.inputs, self.n = inputs, n
        self.enqueued = time.monotonic()
        self.batch: list | None = None
        self.event = threading.Event()
        self.result: dict[str, np.ndarray] | None = None
        self.error: BaseException | None = None


class Batcher:
    """Groups concurrent requests with the same key into one call of up to ``max_batch_size`` examples.

    A request waits at most ``batch_timeout`` seconds for company; whichever waiting thread sees the
    batch full (or the oldest request's timeout passed) takes it and runs it, the rest receive
    their slice. ``num_batch_threads`` bounds how many batches run at once.
    """

    def __init__(self, config: BatchingConfig) -> None:
        self.config = config
        self.timeout = config.batch_timeout_micros / 1e6
        self._cond = threading.Condition()
        self._pending: dict[Any, deque] = {}
        self._running = threading.BoundedSemaphore(config.num_batch_threads)
        self.batches = 0
        self.examples = 0

    def run(self, key: Any, fn: Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]],
            inputs: dict[str, np.ndarray], n: int) -> dict[str, np.ndarray]:
        item = _Item(inputs, n)
        with self._cond:
            queue = self._pending.setdefault(key, deque())
            if len(queue) >= self.config.max_enqueued_batches * self.config.max_batch_size:
                raise ServingStatus("UNAVAILABLE", "batching queue is full; retry later")
            queue.append(item)
            self._cond.notify_all()
        while True:
            with self._cond:
                if item.batch is not None:
                    break
                queue = self._pending[key]
                now = time.monotonic()
                due = queue[0].enqueued + self.timeout
                if sum(i.n for i in queue) < self.config.max_batch_size and now < due:
                    self._cond.wait(due - now)
                    continue
                batch = self._take(key, queue)
            self._execute(fn, batch)
        item.event.wait()
        if item.error is not None:
            raise item.error
        return item.result

    def _take(self, key: Any, queue: deque) -> list[_Item]:
        batch, total = [], 0
        while queue and (not batch or total + queue[0].n <= self.config.max_batch_size):
            it = queue.popleft()
            batch.append(it)
            total += it.n
        for it in batch:
            it.batch = batch
        if not queue:
            del self._pending[key]
        self._cond.notify_all()
        return batch

    def _execute(self, fn, batch: list[_Item]) -> None:
        try:
            with self._running:
                if len(batch) == 1:
                    outputs = [fn(batch[0].inputs)]
                else:
                    merged = {k: np.concatenate([it.inputs[k] for it in batch], axis=0) for k in batch[0].inputs}
                    result = fn(merged)
                    bounds = np.cumsum([0] + [it.n for it in batch])
                    outputs = [{k: v[bounds[i]:bounds[i + 1]] for k, v in result.items()} for i in range(len(batch))]
                self.batches += 1
                self.examples += sum(it.n for it in batch)
            for it, out in zip(batch, outputs):
                it.result = out
        except BaseException as err:  # noqa: BLE001 - delivered to every waiting request
            for it in batch:
                it.error = err
        finally:
            for it in batch:
                it.event.set()


# ---------------------------------------------------------------------------------------------
# The serving core shared by gRPC and REST
# ---------------------------------------------------------------------------------------------

class Metrics:
    """Prometheus text counters: requests by model/signature/code, latency sum/count."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests: dict[tuple[str, str, str], int] = defaultdict(int)
        self.latency: dict[tuple[str, str], list[float]] = defaultdict(lambda: [0.0, 0])

    def record(self, model: str, signature: str, code: str, seconds: float) -> None:
        with self._lock:
            self.requests[(model, signature, code)] += 1
            entry = self.latency[(model, signature)]
            entry[0] += seconds
            entry[1] += 1

    def prometheus(self, batcher: Batcher | None) -> str:
        lines = ["# TYPE tfmusic_serving_request_count counter"]
        with self._lock:
            for (m, s, c), n in sorted(self.requests.items()):
                lines.append(f'tfmusic_serving_request_count{{model_name="{m}",signature="{s}",code="{c}"}} {n}')
            lines.append("# TYPE tfmusic_serving_request_latency_seconds summary")
            for (m, s), (total, count) in sorted(self.latency.items()):
                lab = f'model_name="{m}",signature="{s}"'
                lines.append(f"tfmusic_serving_request_latency_seconds_sum{{{lab}}} {total:.6f}")
                lines.append(f"tfmusic_serving_request_latency_seconds_count{{{lab}}} {count}")
        if batcher is not None:
            lines += ["# TYPE tfmusic_serving_batches counter", f"tfmusic_serving_batches {batcher.batches}",
                      "# TYPE tfmusic_serving_batched_examples counter",
                      f"tfmusic_serving_batched_examples {batcher.examples}"]
        return "\n".join(lines) + "\n"


class ServingCore:
    """Resolves the servable, checks inputs against the signature and runs it (batched if enabled)."""

    def __init__(self, manager: ModelManager, batching: BatchingConfig | None = None) -> None:
        self.manager = manager
        self.batcher = Batcher(batching) if batching else None
        self.metrics = Metrics()

    def predict(self, name: str, version: int | None, label: str | None, signature: str,
                inputs: Mapping[str, np.ndarray], output_filter: list[str] | None = None
                ) -> tuple[LoadedVersion, dict[str, np.ndarray]]:
        start = time.perf_counter()
        signature = signature or DEFAULT_SIGNATURE
        code = "OK"
        try:
            loaded = self.manager.resolve(name, version, label)
            sig = loaded.signatures.get(signature)
            if sig is None:
                raise ServingStatus("NOT_FOUND", f"signature {signature!r} not found in model {name!r} version "
                                    f"{loaded.version} (signatures: {sorted(loaded.signatures)})")
            arrays = self._check_inputs(name, signature, sig, inputs)
            wanted = list(output_filter or [])
            unknown = [k for k in wanted if k not in sig.outputs]
            if unknown:
                raise ServingStatus("INVALID_ARGUMENT", f"output_filter {unknown} not in signature {signature!r} "
                                    f"outputs {sig.outputs}")
            run = self._runner(sig)
            if self.batcher is not None and sig.batchable and self.batcher.config.max_batch_size > 1:
                n = next(iter(arrays.values())).shape[0]
                sizes = {a.shape[0] for a in arrays.values()}
                if len(sizes) != 1:
                    raise ServingStatus("INVALID_ARGUMENT", f"inputs disagree on the batch size: {sorted(sizes)}")
                key = (name, loaded.version, signature,
                       tuple((k, a.shape[1:], a.dtype.str) for k, a in sorted(arrays.items())))
                outputs = self.batcher.run(key, run, arrays, n)
            else:
                outputs = run(arrays)
            if wanted:
                outputs = {k: outputs[k] for k in wanted}
            return loaded, outputs
        except ServingStatus as err:
            code = err.code
            raise
        except Exception as err:  # noqa: BLE001 - map TF errors onto status codes
            import tensorflow as tf

            code = "INVALID_ARGUMENT" if isinstance(err, (tf.errors.InvalidArgumentError, ValueError)) else "INTERNAL"
            raise ServingStatus(code, f"model {name!r} signature {signature!r}: {err}") from err
        finally:
            self.metrics.record(name, signature, code, time.perf_counter() - start)

    @staticmethod
    def _runner(sig: Signature) -> Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]:
        import tensorflow as tf

        def run(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
            out = sig.fn(**{k: tf.constant(v) for k, v in arrays.items()})
            return {k: v.numpy() for k, v in out.items()}

        return run

    @staticmethod
    def _check_inputs(name: str, signature: str, sig: Signature, inputs: Mapping[str, np.ndarray]
                      ) -> dict[str, np.ndarray]:
        missing = sorted(set(sig.inputs) - set(inputs))
        extra = sorted(set(inputs) - set(sig.inputs))
        if missing or extra:
            raise ServingStatus("INVALID_ARGUMENT", f"model {name!r} signature {signature!r} takes inputs "
                                f"{sorted(sig.inputs)}; missing {missing}, unexpected {extra}")
        arrays = {}
        for key, spec in sig.inputs.items():
            arr = inputs[key]
            want = spec.dtype.as_numpy_dtype
            if arr.dtype != np.dtype(want):
                raise ServingStatus("INVALID_ARGUMENT", f"input {key!r} of signature {signature!r} expects "
                                    f"{spec.dtype.name}, got {arr.dtype}")
            if not spec.shape.is_compatible_with(arr.shape):
                raise ServingStatus("INVALID_ARGUMENT", f"input {key!r} of signature {signature!r} expects shape "
                                    f"{_shape_text(spec.shape)}, got {list(arr.shape)}")
            arrays[key] = arr
        return arrays


def _shape_text(shape) -> str:
    return "[" + ", ".join("?" if d is None else str(d) for d in shape.as_list()) + "]" if shape.rank is not None \
        else "<unknown rank>"


# ---------------------------------------------------------------------------------------------
# gRPC
# ---------------------------------------------------------------------------------------------

def _spec_version(spec) -> tuple[int | None, str | None]:
    version = int(spec.version.value) if spec.HasField("version") else None
    label = spec.version_label or None
    return version, label


def _make_servicers(core: ServingCore, max_message_bytes: int):
    import grpc
    from google.protobuf import any_pb2
    from tensorflow_serving.apis import (get_model_metadata_pb2, get_model_status_pb2, model_service_pb2_grpc,
                                         predict_pb2, prediction_service_pb2_grpc)

    def abort(context, err: ServingStatus):
        context.abort(getattr(grpc.StatusCode, err.code), err.message)

    class PredictionServicer(prediction_service_pb2_grpc.PredictionServiceServicer):
        def Predict(self, request, context):
            spec = request.model_spec
            version, label = _spec_version(spec)
            try:
                try:
                    inputs = {k: from_tensor_proto(v) for k, v in request.inputs.items()}
                except (TypeError, ValueError, KeyError) as err:
                    raise ServingStatus("INVALID_ARGUMENT", f"cannot decode input tensor: {err}") from err
                loaded, outputs = core.predict(spec.name, version, label, spec.signature_name, inputs,
                                               list(request.output_filter))
                response = predict_pb2.PredictResponse()
                response.model_spec.name = spec.name
                response.model_spec.version.value = loaded.version
                response.model_spec.signature_name = spec.signature_name or DEFAULT_SIGNATURE
                for k, v in outputs.items():
                    response.outputs[k].CopyFrom(to_tensor_proto(v))
                size = response.ByteSize()
                if size > max_message_bytes:
                    raise ServingStatus("RESOURCE_EXHAUSTED", f"response of {size} bytes is over the "
                                        f"{max_message_bytes}-byte message limit; send smaller requests")
                return response
            except ServingStatus as err:
                abort(context, err)

        def GetModelMetadata(self, request, context):
            spec = request.model_spec
            version, label = _spec_version(spec)
            try:
                fields = list(request.metadata_field)
                if fields != ["signature_def"]:
                    raise ServingStatus("INVALID_ARGUMENT", f"metadata_field must be ['signature_def'], got {fields}")
                loaded = core.manager.resolve(spec.name, version, label)
                response = get_model_metadata_pb2.GetModelMetadataResponse()
                response.model_spec.name = spec.name
                response.model_spec.version.value = loaded.version
                sig_map = get_model_metadata_pb2.SignatureDefMap()
                for k, v in loaded.signature_defs.items():
                    sig_map.signature_def[k].CopyFrom(v)
                packed = any_pb2.Any()
                packed.Pack(sig_map)
                response.metadata["signature_def"].CopyFrom(packed)
                return response
            except ServingStatus as err:
                abort(context, err)

    class ModelServicer(model_service_pb2_grpc.ModelServiceServicer):
        def GetModelStatus(self, request, context):
            spec = request.model_spec
            version, label = _spec_version(spec)
            try:
                if label:
                    version = core.manager.resolve(spec.name, None, label).version
                response = get_model_status_pb2.GetModelStatusResponse()
                for v, state, message in core.manager.statuses(spec.name, version):
                    status = response.model_version_status.add()
                    status.version = v
                    status.state = get_model_status_pb2.ModelVersionStatus.State.Value(state)
                    status.status.error_message = message
                    if message and state == "END" and "failed" in message:
                        status.status.error_code = 13  # INTERNAL (tensorflow.error.Code)
                return response
            except ServingStatus as err:
                abort(context, err)

    return PredictionServicer(), ModelServicer(), (prediction_service_pb2_grpc, model_service_pb2_grpc)


# ---------------------------------------------------------------------------------------------
# REST
# ---------------------------------------------------------------------------------------------

_REST_PATH = re.compile(r"^/v1/models/([^/:]+)(?:/versions/(\d+)|/labels/([^/:]+))?(?::(predict)|/(metadata))?$")


def _rest_handler(core: ServingCore, max_message_bytes: int):
    from http.server import BaseHTTPRequestHandler

    from google.protobuf import json_format

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, fmt, *args):  # quiet; use --verbose logging instead
            log.info("rest: " + fmt, *args)

        def _send(self, status: int, body: str, content_type: str = "application/json") -> None:
            data = body.encode()
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _error(self, err: ServingStatus) -> None:
            self._send(HTTP_CODES.get(err.code, 500), json.dumps({"error": err.message}))

        def do_GET(self):
            if self.path == "/monitoring/prometheus/metrics":
                return self._send(200, core.metrics.prometheus(core.batcher), "text/plain; version=0.0.4")
            match = _REST_PATH.match(self.path)
            if not match or match.group(4):
                return self._error(ServingStatus("NOT_FOUND", f"no such path {self.path}"))
            name, version, label, _, metadata = match.groups()
            try:
                version = int(version) if version else None
                if metadata:
                    loaded = core.manager.resolve(name, version, label)
                    sigs = {k: json_format.MessageToDict(v) for k, v in loaded.signature_defs.items()}
                    body = {"model_spec": {"name": name, "version": str(loaded.version)},
                            "metadata": {"signature_def": {"signature_def": sigs}}}
                else:
                    if label:
                        version = core.manager.resolve(name, None, label).version
                    body = {"model_version_status": [
                        {"version": str(v), "state": s, "status": {"error_code": "OK" if not m else "UNKNOWN",
                                                                    "error_message": m}}
                        for v, s, m in core.manager.statuses(name, version)]}
                self._send(200, json.dumps(body))
            except ServingStatus as err:
                self._error(err)

        def do_POST(self):
            match = _REST_PATH.match(self.path)
            try:
                if not match or not match.group(4):
                    raise ServingStatus("NOT_FOUND", f"no such path {self.path} (only :predict is served)")
                length = int(self.headers.get("Content-Length", 0))
                if length > max_message_bytes * 4:
                    raise ServingStatus("RESOURCE_EXHAUSTED", f"request body of {length} bytes is too large")
                try:
                    body = json.loads(self.rfile.read(length) or b"{}")
                except json.JSONDecodeError as err:
                    raise ServingStatus("INVALID_ARGUMENT", f"body is not JSON: {err}") from err
                name, version, label = match.group(1), match.group(2), match.group(3)
                version = int(version) if version else None
                signature = body.get("signature_name", DEFAULT_SIGNATURE)
                loaded = core.manager.resolve(name, version, label)
                sig = loaded.signatures.get(signature)
                if sig is None:
                    raise ServingStatus("NOT_FOUND", f"signature {signature!r} not found in model {name!r}")
                row_format = "instances" in body
                inputs = _rest_inputs(body, sig)
                _, outputs = core.predict(name, loaded.version, None, signature, inputs)
                if row_format:
                    if len(outputs) == 1:
                        result = {"predictions": next(iter(outputs.values())).tolist()}
                    else:
                        n = next(iter(outputs.values())).shape[0]
                        result = {"predictions": [{k: v[i].tolist() for k, v in outputs.items()} for i in range(n)]}
                else:
                    result = {"outputs": next(iter(outputs.values())).tolist() if len(outputs) == 1
                              else {k: v.tolist() for k, v in outputs.items()}}
                self._send(200, json.dumps(result))
            except ServingStatus as err:
                self._error(err)

    return Handler


def _rest_inputs(body: dict, sig: Signature) -> dict[str, np.ndarray]:
    names = sorted(sig.inputs)

    def cast(key, value):
        try:
            return np.asarray(value, dtype=sig.inputs[key].dtype.as_numpy_dtype)
        except (TypeError, ValueError) as err:
            raise ServingStatus("INVALID_ARGUMENT", f"input {key!r}: {err}") from err

    if "instances" in body:
        rows = body["instances"]
        if not isinstance(rows, list) or not rows:
            raise ServingStatus("INVALID_ARGUMENT", "'instances' must be a non-empty list")
        if isinstance(rows[0], dict):
            return {k: cast(k, [r[k] for r in rows]) for k in rows[0]}
        if len(names) != 1:
            raise ServingStatus("INVALID_ARGUMENT", f"signature takes {names}; give instances as objects")
        return {names[0]: cast(names[0], rows)}
    if "inputs" in body:
        value = body["inputs"]
        if isinstance(value, dict):
            return {k: cast(k, v) if k in sig.inputs else np.asarray(v) for k, v in value.items()}
        if len(names) != 1:
            raise ServingStatus("INVALID_ARGUMENT", f"signature takes {names}; give inputs as an object")
        return {names[0]: cast(names[0], value)}
    raise ServingStatus("INVALID_ARGUMENT", "body needs 'instances' or 'inputs'")


# ---------------------------------------------------------------------------------------------
# The server
# ---------------------------------------------------------------------------------------------

class EmbeddedServer:
    """gRPC (+ optional REST) server over a model repository; use as a context manager or start/stop."""

    def __init__(self, repo: str | os.PathLike | None = None, *, config: str | os.PathLike | None = None,
                 host: str = "127.0.0.1", port: int = 8500, rest_port: int | None = None,
                 batching: BatchingConfig | None = None, poll_seconds: float = 2.0, warmup: bool = True,
                 max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES, max_workers: int = 16) -> None:
        if repo is None and config is None:
            raise ValueError("give a model repository (--models) or a models.config (--config)")
        self.repo = Path(repo) if repo is not None else None
        self.config = Path(config) if config is not None else None
        if self.config is not None and not self.config.is_file():
            raise FileNotFoundError(2, "models config not found", str(self.config))
        self.host = host
        self.port = port
        self.rest_port = rest_port
        self.poll_seconds = poll_seconds
        self.max_message_bytes = int(max_message_bytes)
        self.max_workers = max_workers
        self._config_mtime = None
        self.manager = ModelManager(self._read_configs(), self._read_configs if self.config else None, warmup)
        self.core = ServingCore(self.manager, batching)
        self._grpc = None
        self._http = None
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def _read_configs(self) -> list[ModelConfig]:
        if self.config is not None:
            self._config_mtime = self.config.stat().st_mtime
            return parse_models_config(self.config, self.repo)
        return repo_models(self.repo)

    @property
    def address(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    def start(self) -> "EmbeddedServer":
        import grpc

        self.manager.poll()
        options = [("grpc.max_receive_message_length", self.max_message_bytes),
                   ("grpc.max_send_message_length", self.max_message_bytes),
                   ("grpc.so_reuseport", 0)]
        self._grpc = grpc.server(futures.ThreadPoolExecutor(max_workers=self.max_workers), options=options)
        predict, models, (pred_grpc, model_grpc) = _make_servicers(self.core, self.max_message_bytes)
        pred_grpc.add_PredictionServiceServicer_to_server(predict, self._grpc)
        model_grpc.add_ModelServiceServicer_to_server(models, self._grpc)
        bound = self._grpc.add_insecure_port(f"{'[' + self.host + ']' if ':' in self.host else self.host}:{self.port}")
        if not bound:
            raise OSError(f"cannot bind gRPC to {self.host}:{self.port} (port in use?)")
        self.port = bound
        self._grpc.start()
        if self.rest_port is not None:
            from http.server import ThreadingHTTPServer

            self._http = ThreadingHTTPServer((self.host, self.rest_port), _rest_handler(self.core, self.max_message_bytes))
            self._http.daemon_threads = True
            self.rest_port = self._http.server_address[1]
            t = threading.Thread(target=self._http.serve_forever, name="tfmusic-rest", daemon=True)
            t.start()
            self._threads.append(t)
        if self.poll_seconds and self.poll_seconds > 0:
            t = threading.Thread(target=self._poll_loop, name="tfmusic-poll", daemon=True)
            t.start()
            self._threads.append(t)
        log.info("serving %s on %s", self.manager.model_names, self.address)
        return self

    def _poll_loop(self) -> None:
        while not self._stop.wait(self.poll_seconds):
            try:
                if self.config is not None and self.config.stat().st_mtime != self._config_mtime:
                    log.info("%s changed; reloading model config", self.config)
                    self.manager.reload_config()
                self.manager.poll()
            except Exception as err:  # noqa: BLE001 - keep serving what is loaded
                log.error("model poll failed: %s", err)

    def stop(self, grace: float = 1.0) -> None:
        self._stop.set()
        if self._grpc is not None:
            self._grpc.stop(grace).wait()
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
        for t in self._threads:
            t.join(timeout=5)

    def wait(self) -> None:
        """Block until stopped (Ctrl-C / SIGTERM in the CLI)."""
        self._grpc.wait_for_termination()

    def __enter__(self) -> "EmbeddedServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


@contextlib.contextmanager
def spawn_server(repo: str | os.PathLike | None = None, *, config: str | os.PathLike | None = None,
                 extra_args: list[str] | None = None, startup_timeout: float = 180.0
                 ) -> Iterator[tuple[str, subprocess.Popen]]:
    """Run ``tfmusic serve`` in a child process on a free port; yields ``(address, process)``.

    The child is terminated on exit. Used by benchmarks (to measure the server's own memory) and by
    callers that want the server out of their process.
    """
    with tempfile.TemporaryDirectory(prefix="tfmusic-serve-") as tmp:
        ready = Path(tmp) / "address"
        cmd = [sys.executable, "-m", "tfmusic", "serve", "--port", "0", "--ready-file", str(ready)]
        if repo is not None:
            cmd += ["--models", str(repo)]
        if config is not None:
            cmd += ["--config", str(config)]
        cmd += list(extra_args or [])
        proc = subprocess.Popen(cmd)
        try:
            deadline = time.monotonic() + startup_timeout
            while not (ready.is_file() and ready.read_text().strip()):
                if proc.poll() is not None:
                    raise RuntimeError(f"`{' '.join(cmd)}` exited with status {proc.returncode} before serving")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"server did not come up within {startup_timeout:.0f}s")
                time.sleep(0.1)
            yield ready.read_text().strip(), proc
        finally:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
