"""The serving logic both APIs share: resolve the servable, check the request, run it (batched when on).

Every status code here is TF Serving's for the same request, read from its source:
``servables/tensorflow/predict_impl.cc`` and ``predict_util.cc`` (Predict),
``get_model_metadata_impl.cc``, ``model_servers/get_model_status_impl.cc`` and ``server_core.cc``
(ModelSpec resolution). The gRPC and REST modules only translate protos/JSON to these calls.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Mapping

import numpy as np

from tfmusic.serving.batching import Batcher
from tfmusic.serving.config import BatchingConfig
from tfmusic.serving.errors import CODE_NAMES, ServingError
from tfmusic.serving.manager import LoadedVersion, ModelManager, Signature, VersionState
from tfmusic.serving.metrics import ServingMetrics
from tfmusic.serving.tensors import from_tensor_proto

DEFAULT_SIGNATURE = "serving_default"


@dataclass
class Spec:
    """The fields of a ``ModelSpec`` (``version`` and ``label`` are mutually exclusive in the proto)."""

    name: str
    version: int | None = None
    label: str | None = None
    signature: str = ""


def spec_from_proto(spec) -> Spec:
    version = int(spec.version.value) if spec.HasField("version") else None
    return Spec(spec.name, version, spec.version_label or None, spec.signature_name)


def _shape_text(shape) -> str:
    if shape.rank is None:
        return "<unknown rank>"
    return "[" + ", ".join("?" if d is None else str(d) for d in shape.as_list()) + "]"


class ServingCore:
    """Predict / metadata / status over a `ModelManager`, with optional batching and TF Serving metrics."""

    def __init__(self, manager: ModelManager, batching: BatchingConfig | None = None) -> None:
        self.manager = manager
        self.metrics = ServingMetrics()
        self.batcher = Batcher(batching, self.metrics) if batching is not None else None

    def close(self) -> None:
        if self.batcher is not None:
            self.batcher.close()

    # -- Predict --------------------------------------------------------------------------------
    def predict(self, spec: Spec, inputs: Mapping[str, np.ndarray], output_filter: list[str] | None = None,
                entrypoint: str = "GRPC") -> tuple[LoadedVersion, str, dict[str, np.ndarray]]:
        """Run one request; returns (version served, signature name, outputs). Records TF Serving's metrics."""
        start = time.perf_counter()
        code = "OK"
        try:
            loaded = self.manager.resolve(spec.name, spec.version, spec.label)
            signature = spec.signature or DEFAULT_SIGNATURE
            return loaded, signature, self.run_signature(loaded, signature, inputs, output_filter)
        except ServingError as err:
            code = err.code
            raise
        finally:
            api = "Predict" if entrypoint == "GRPC" else "predict"
            self.metrics.record_request(spec.name, api, entrypoint, code, (time.perf_counter() - start) * 1e6)

    def run_warmup(self, loaded: LoadedVersion, request) -> None:
        """Replay one warmup PredictRequest exactly as a client request would run (batching included)."""
        inputs = {k: from_tensor_proto(v) for k, v in request.inputs.items()}
        self.run_signature(loaded, request.model_spec.signature_name or DEFAULT_SIGNATURE, inputs,
                           list(request.output_filter))

    def run_signature(self, loaded: LoadedVersion, signature: str, inputs: Mapping[str, np.ndarray],
                      output_filter: list[str] | None = None) -> dict[str, np.ndarray]:
        sig = loaded.signatures.get(signature)
        if sig is None:
            raise ServingError("FAILED_PRECONDITION", f'Serving signature key "{signature}" not found.')
        arrays = self._check_inputs(signature, sig, inputs)
        wanted = list(output_filter or [])
        for alias in wanted:
            if alias not in sig.outputs:
                raise ServingError("INVALID_ARGUMENT", f"output tensor alias not found in signature: {alias} "
                                   f"Outputs expected to be in the set {{{','.join(sig.outputs)}}}.")
        if len(set(wanted)) != len(wanted):
            raise ServingError("INVALID_ARGUMENT", f"duplicate output tensor alias in output_filter {wanted}")
        names = wanted or sig.outputs
        run = self._runner(sig, names)
        try:
            if self.batcher is not None:
                key = (loaded.name, loaded.version, signature, tuple(sorted(arrays)), tuple(names))
                return self.batcher.run(key, run, arrays)
            return run(arrays)
        except ServingError:
            raise
        except Exception as err:  # noqa: BLE001 - TF errors carry their own code
            raise _as_serving_error(err, loaded.name, signature) from err

    @staticmethod
    def _runner(sig: Signature, names: list[str]):
        import tensorflow as tf

        def run(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
            out = sig.fn(**{k: tf.constant(v) for k, v in arrays.items()})
            return {k: out[k].numpy() for k in names}

        return run

    @staticmethod
    def _check_inputs(signature: str, sig: Signature, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        missing = sorted(set(sig.inputs) - set(inputs))
        extra = sorted(set(inputs) - set(sig.inputs))
        if missing or extra:
            raise ServingError("INVALID_ARGUMENT", f"input size does not match signature: {len(inputs)}!="
                               f"{len(sig.inputs)} len({{{','.join(sorted(sig.inputs))}}}). Sent extra: "
                               f"{{{','.join(extra)}}}. Missing but required: {{{','.join(missing)}}}.")
        arrays = {}
        for key, spec in sig.inputs.items():
            arr = np.asarray(inputs[key])
            if arr.dtype != np.dtype(spec.dtype.as_numpy_dtype):
                raise ServingError("INVALID_ARGUMENT", f"input {key!r} of signature {signature!r} expects "
                                   f"{spec.dtype.name}, got {arr.dtype}")
            if not spec.shape.is_compatible_with(arr.shape):
                raise ServingError("INVALID_ARGUMENT", f"input {key!r} of signature {signature!r} expects shape "
                                   f"{_shape_text(spec.shape)}, got {list(arr.shape)}")
            arrays[key] = arr
        return arrays

    # -- GetModelMetadata / GetModelStatus ------------------------------------------------------
    def metadata(self, spec: Spec, fields: list[str]) -> LoadedVersion:
        """The version whose ``signature_def`` map GetModelMetadata returns (``get_model_metadata_impl.cc``)."""
        if not fields:
            raise ServingError("INVALID_ARGUMENT", "GetModelMetadataRequest must specify at least one "
                               "metadata_field")
        for name in fields:
            if name != "signature_def":
                raise ServingError("INVALID_ARGUMENT", f"Metadata field {name} is not supported")
        return self.manager.resolve(spec.name, spec.version, spec.label)

    def status(self, spec: Spec) -> list[tuple[int, VersionState]]:
        """GetModelStatus: a label is not looked at (only ``has_version`` is), so it lists every version."""
        return self.manager.statuses(spec.name, spec.version)


def _as_serving_error(err: Exception, model: str, signature: str) -> ServingError:
    import tensorflow as tf

    if isinstance(err, tf.errors.OpError):
        code = CODE_NAMES[err.error_code] if 0 <= err.error_code < len(CODE_NAMES) else "UNKNOWN"
        message = err.message
    elif isinstance(err, (ValueError, TypeError)):
        code, message = "INVALID_ARGUMENT", str(err)
    else:
        code, message = "INTERNAL", f"{type(err).__name__}: {err}"
    return ServingError(code, f"model {model!r} signature {signature!r}: {message}")
