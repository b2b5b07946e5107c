"""gRPC client for TF Serving's PredictionService / ModelService (and tfmusic's embedded server).

The same client talks to a real ``tensorflow_model_server`` and to ``tfmusic serve`` because both
speak the ``tensorflow-serving-api`` protos. Long audio is cut into chunks whose request *and*
response fit under the gRPC message-size limit, sent one by one, and stitched back with the
project's one overlap-add (`tfmusic.audio.chunking`). Transient failures (UNAVAILABLE,
DEADLINE_EXCEEDED) are retried with a per-attempt deadline; everything else raises
`ServingError` naming the model, signature, gRPC code and the server's message.

The numpy <-> ``TensorProto`` conversion here is the one used by the exporter (warmup records)
and the embedded server.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

import numpy as np

log = logging.getLogger(__name__)

DEFAULT_MAX_MESSAGE_BYTES = 4 * 1024 * 1024  # gRPC's default receive limit
RETRYABLE = ("UNAVAILABLE", "DEADLINE_EXCEEDED")


# ---------------------------------------------------------------------------------------------
# TensorProto <-> numpy
# ---------------------------------------------------------------------------------------------

def _dtype_maps():
    from tensorflow.core.framework import types_pb2 as t

    to_enum = {
        np.dtype(np.float32): t.DT_FLOAT, np.dtype(np.float64): t.DT_DOUBLE,
        np.dtype(np.float16): t.DT_HALF, np.dtype(np.int8): t.DT_INT8,
        np.dtype(np.int16): t.DT_INT16, np.dtype(np.int32): t.DT_INT32,
        np.dtype(np.int64): t.DT_INT64, np.dtype(np.uint8): t.DT_UINT8,
        np.dtype(np.uint16): t.DT_UINT16, np.dtype(np.uint32): t.DT_UINT32,
        np.dtype(np.uint64): t.DT_UINT64, np.dtype(np.bool_): t.DT_BOOL,
    }
    return to_enum, {v: k for k, v in to_enum.items()}


def dtype_name(enum_value: int) -> str:
    """``DT_FLOAT`` style name of a TensorFlow DataType enum value (for error messages)."""
    from tensorflow.core.framework import types_pb2

    return types_pb2.DataType.Name(enum_value)


def numpy_dtype(enum_value: int) -> np.dtype | None:
    """numpy dtype for a DataType enum (``None`` for strings and unsupported types)."""
    return _dtype_maps()[1].get(enum_value)


def to_tensor_proto(array: Any):
    """A ``TensorProto`` holding ``array`` (numeric arrays as raw ``tensor_content``; bytes/str as strings)."""
    from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2

    arr = np.asarray(array)
    proto = tensor_pb2.TensorProto()
    proto.tensor_shape.CopyFrom(tensor_shape_pb2.TensorShapeProto(
        dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=int(d)) for d in arr.shape]))
    if arr.dtype.kind in "OSU":
        proto.dtype = types_pb2.DT_STRING
        proto.string_val.extend(v.encode() if isinstance(v, str) else bytes(v) for v in arr.reshape(-1))
        return proto
    to_enum, _ = _dtype_maps()
    if arr.dtype not in to_enum:
        raise TypeError(f"cannot send numpy dtype {arr.dtype} as a TensorProto")
    proto.dtype = to_enum[arr.dtype]
    proto.tensor_content = np.ascontiguousarray(arr).astype(arr.dtype.newbyteorder("<"), copy=False).tobytes()
    return proto


_VALUE_FIELDS = {
    "DT_FLOAT": "float_val", "DT_DOUBLE": "double_val", "DT_INT32": "int_val", "DT_INT16": "int_val",
    "DT_INT8": "int_val", "DT_UINT8": "int_val", "DT_UINT16": "int_val", "DT_INT64": "int64_val",
    "DT_UINT32": "uint32_val", "DT_UINT64": "uint64_val", "DT_BOOL": "bool_val", "DT_HALF": "half_val",
}


def from_tensor_proto(proto) -> np.ndarray:
    """numpy array from a ``TensorProto`` (``tensor_content`` or the typed ``*_val`` fields)."""
    shape = tuple(int(d.size) for d in proto.tensor_shape.dim)
    name = dtype_name(proto.dtype)
    if name == "DT_STRING":
        values = np.array(list(proto.string_val), dtype=object)
        return values.reshape(shape) if values.size == int(np.prod(shape)) else np.resize(values, shape)
    dtype = numpy_dtype(proto.dtype)
    if dtype is None:
        raise TypeError(f"unsupported tensor dtype {name}")
    count = int(np.prod(shape)) if shape else 1
    if proto.tensor_content:
        arr = np.frombuffer(proto.tensor_content, dtype=dtype.newbyteorder("<")).astype(dtype)
        if arr.size != count:
            raise ValueError(f"tensor_content holds {arr.size} values but the shape {shape} needs {count}")
        return arr.reshape(shape)
    values = getattr(proto, _VALUE_FIELDS[name])
    if name == "DT_HALF":
        arr = np.array(values, dtype=np.uint16).view(np.float16)
    else:
        arr = np.array(values, dtype=dtype)
    if arr.size == count:
        return arr.reshape(shape)
    if arr.size == 0:
        return np.zeros(shape, dtype)
    if arr.size > count:
        raise ValueError(f"tensor holds {arr.size} values but the shape {shape} needs {count}")
    # TensorFlow's convention: missing trailing values repeat the last one.
    return np.concatenate([arr, np.full(count - arr.size, arr[-1], dtype)]).reshape(shape)


# ---------------------------------------------------------------------------------------------
# Client
# ---------------------------------------------------------------------------------------------

class ServingError(RuntimeError):
    """A failed RPC, with the gRPC status code name (e.g. ``NOT_FOUND``) kept in ``code``."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code


@dataclass
class SignatureInfo:
    """Inputs/outputs of one signature: name -> (dtype name, shape with -1 for unknown)."""

    inputs: dict[str, tuple[str, tuple[int, ...] | None]] = field(default_factory=dict)
    outputs: dict[str, tuple[str, tuple[int, ...] | None]] = field(default_factory=dict)


def signature_info(signature_def) -> SignatureInfo:
    """Readable form of a ``SignatureDef`` proto."""

    def parse(infos) -> dict:
        out = {}
        for key, info in infos.items():
            shape = None if info.tensor_shape.unknown_rank else tuple(int(d.size) for d in info.tensor_shape.dim)
            out[key] = (dtype_name(info.dtype), shape)
        return out

    return SignatureInfo(parse(signature_def.inputs), parse(signature_def.outputs))


class ServingClient:
    """Predict / GetModelMetadata / GetModelStatus against one model on a TF Serving endpoint.

    ``version`` or ``version_label`` pick a version (default: the server's policy, normally latest).
    ``timeout`` is the deadline of each attempt in seconds; ``retries`` extra attempts are made for
    UNAVAILABLE / DEADLINE_EXCEEDED with exponential backoff.
    """

    def __init__(self, address: str, model: str, *, version: int | None = None,
                 version_label: str | None = None, timeout: float = 60.0, retries: int = 3,
                 backoff: float = 0.25, max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES) -> None:
        import grpc
        from tensorflow_serving.apis import model_service_pb2_grpc, prediction_service_pb2_grpc

        if version is not None and version_label is not None:
            raise ValueError("give either version or version_label, not both")
        if ":" not in address:
            raise ValueError(f"server address {address!r} must be host:port")
        self.address = address
        self.model = model
        self.version = version
        self.version_label = version_label
        self.timeout = float(timeout)
        self.retries = int(retries)
        self.backoff = float(backoff)
        self.max_message_bytes = int(max_message_bytes)
        options = [("grpc.max_send_message_length", self.max_message_bytes),
                   ("grpc.max_receive_message_length", self.max_message_bytes)]
        self._channel = grpc.insecure_channel(address, options=options)
        self._predict = prediction_service_pb2_grpc.PredictionServiceStub(self._channel)
        self._models = model_service_pb2_grpc.ModelServiceStub(self._channel)
        self._metadata_cache: dict[str, SignatureInfo] | None = None

    # -- plumbing ---------------------------------------------------------------------------
    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> "ServingClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _model_spec(self, spec, signature: str | None = None) -> None:
        spec.name = self.model
        if self.version is not None:
            spec.version.value = int(self.version)
        if self.version_label is not None:
            spec.version_label = self.version_label
        if signature is not None:
            spec.signature_name = signature

    def _where(self, signature: str | None = None) -> str:
        where = f"model {self.model!r}"
        if self.version is not None:
            where += f" version {self.version}"
        if self.version_label is not None:
            where += f" label {self.version_label!r}"
        if signature:
            where += f" signature {signature!r}"
        return f"{where} at {self.address}"

    def _call(self, method, request, what: str):
        import grpc

        attempt = 0
        while True:
            try:
                return method(request, timeout=self.timeout)
            except grpc.RpcError as err:
                code = err.code().name if err.code() is not None else "UNKNOWN"
                if code in RETRYABLE and attempt < self.retries:
                    delay = self.backoff * (2 ** attempt)
                    log.warning("%s failed with %s (%s); retry %d/%d in %.2fs", what, code, err.details(),
                                attempt + 1, self.retries, delay)
                    time.sleep(delay)
                    attempt += 1
                    continue
                hint = ""
                if code == "UNAVAILABLE":
                    hint = " (is the server running? start one with `tfmusic serve --models REPO`)"
                elif code == "RESOURCE_EXHAUSTED":
                    hint = f" (message over the {self.max_message_bytes}-byte limit: send smaller chunks)"
                raise ServingError(code, f"{what} on {self._where()}: {err.details()}{hint}") from None

    # -- RPCs -------------------------------------------------------------------------------
    def predict(self, inputs: Mapping[str, Any], signature: str = "serving_default",
                output_filter: Iterable[str] | None = None) -> dict[str, np.ndarray]:
        """One Predict call; returns every output (or those in ``output_filter``) as numpy."""
        from tensorflow_serving.apis import predict_pb2

        request = predict_pb2.PredictRequest()
        self._model_spec(request.model_spec, signature)
        for key, value in inputs.items():
            request.inputs[key].CopyFrom(to_tensor_proto(value))
        if output_filter:
            request.output_filter.extend(output_filter)
        size = request.ByteSize()
        if size > self.max_message_bytes:
            raise ServingError("RESOURCE_EXHAUSTED", f"request of {size} bytes for {self._where(signature)} is "
                               f"over the {self.max_message_bytes}-byte message limit; send smaller chunks")
        response = self._call(self._predict.Predict, request, f"Predict {signature!r}")
        return {key: from_tensor_proto(value) for key, value in response.outputs.items()}

    def metadata(self, refresh: bool = False) -> dict[str, SignatureInfo]:
        """Signatures of the model as GetModelMetadata reports them (cached)."""
        from tensorflow_serving.apis import get_model_metadata_pb2

        if self._metadata_cache is not None and not refresh:
            return self._metadata_cache
        request = get_model_metadata_pb2.GetModelMetadataRequest()
        self._model_spec(request.model_spec)
        request.metadata_field.append("signature_def")
        response = self._call(self._predict.GetModelMetadata, request, "GetModelMetadata")
        sig_map = get_model_metadata_pb2.SignatureDefMap()
        if not response.metadata["signature_def"].Unpack(sig_map):
            raise ServingError("INTERNAL", f"GetModelMetadata on {self._where()} returned no SignatureDefMap")
        self._metadata_cache = {k: signature_info(v) for k, v in sig_map.signature_def.items()}
        return self._metadata_cache

    def status(self) -> list[tuple[int, str, str]]:
        """``(version, state, error message)`` for each version the server knows of."""
        from tensorflow_serving.apis import get_model_status_pb2

        request = get_model_status_pb2.GetModelStatusRequest()
        self._model_spec(request.model_spec)
        response = self._call(self._models.GetModelStatus, request, "GetModelStatus")
        names = get_model_status_pb2.ModelVersionStatus.State
        return [(int(s.version), names.Name(s.state), s.status.error_message)
                for s in response.model_version_status]

    def wait_until_available(self, timeout: float = 60.0) -> int:
        """Block until some version is AVAILABLE; returns it. Raises ``ServingError`` on timeout."""
        deadline = time.monotonic() + timeout
        last = "no answer"
        while time.monotonic() < deadline:
            try:
                available = [v for v, state, _ in self.status() if state == "AVAILABLE"]
                if available:
                    return max(available)
                last = "no AVAILABLE version yet"
            except ServingError as err:
                last = str(err)
            time.sleep(0.2)
        raise ServingError("DEADLINE_EXCEEDED", f"{self._where()} not available after {timeout:.0f}s: {last}")

    # -- separation -------------------------------------------------------------------------
    def targets(self, signature: str = "serving_default") -> list[str]:
        """Output names of the separation signature (one per target)."""
        sigs = self.metadata()
        if signature not in sigs:
            raise ServingError("NOT_FOUND", f"{self._where()} has no signature {signature!r}; "
                               f"it has {sorted(sigs)}")
        return sorted(sigs[signature].outputs)

    def chunk_samples(self, channels: int, n_outputs: int, overlap: int) -> int:
        """Largest chunk whose float32 request and response both fit the message limit (with headroom)."""
        budget = int(self.max_message_bytes * 0.9) - 4096
        per_sample = 4 * channels * max(1, n_outputs)
        chunk = budget // per_sample
        if chunk <= 2 * overlap:
            raise ServingError("RESOURCE_EXHAUSTED", f"a {self.max_message_bytes}-byte message cannot carry "
                               f"{channels} channel(s) x {n_outputs} output(s) with {overlap} samples of overlap")
        return int(chunk)

    def separate(self, waveform: np.ndarray, *, signature: str = "serving_default", activity: bool = False,
                 chunk_samples: int | None = None, overlap_samples: int = 4096, min_samples: int = 4096,
                 sink=None, progress: bool = False) -> dict[str, np.ndarray]:
        """Separate a ``(channels, samples)`` float32 waveform (44.1 kHz) -> ``{target: (channels, samples)}``.

        Each chunk is one Predict request sized so request and response fit the message limit;
        chunks are crossfaded back together by `tfmusic.audio.chunking.separate_in_chunks`
        (``sink`` streams finished segments as there). With ``activity`` and a model that has an
        ``activity`` signature, ``{target}_activity`` frame curves ``(1 + samples // 1024,)`` are
        added (a second request per chunk).
        """
        from tfmusic.audio.chunking import separate_in_chunks

        wav = np.asarray(waveform, dtype=np.float32)
        if wav.ndim != 2:
            raise ValueError(f"waveform must be (channels, samples), got shape {wav.shape}")
        targets = self.targets(signature)
        sigs = self.metadata()
        with_activity = activity and "activity" in sigs
        limit = self.chunk_samples(wav.shape[0], len(targets), overlap_samples)
        # whole hops, rounded down, because separate_in_chunks rounds chunk lengths up to hops
        chunk = max(1024, min(chunk_samples or limit, limit) // 1024 * 1024)
        shape = sigs[signature].inputs.get("waveform", ("", None))[1]
        fixed = shape[-1] if shape and len(shape) == 3 and shape[-1] > 0 else None
        if fixed:  # fixed-length signature: every request carries exactly `fixed` samples
            if fixed > limit:
                raise ServingError("RESOURCE_EXHAUSTED", f"{self._where(signature)} takes {fixed}-sample requests, "
                                   f"over what a {self.max_message_bytes}-byte message carries ({limit})")
            chunk = min_samples = fixed
            overlap_samples = min(overlap_samples, fixed // 2)

        def one_chunk(piece: np.ndarray) -> dict[str, np.ndarray]:
            out = {k: v[0] for k, v in self.predict({"waveform": piece[None]}, signature=signature).items()}
            if with_activity:
                curves = self.predict({"waveform": piece[None]}, signature="activity")
                out.update({f"{k}_activity": v[0] for k, v in curves.items()})
            return out

        return separate_in_chunks(wav, one_chunk, chunk_samples=chunk, overlap_samples=overlap_samples,
                                  min_samples=min_samples, sink=sink, progress=progress,
                                  description=f"separating via {self.address}")


def separate_backend(args) -> tuple:
    """``tfmusic separate --server HOST:PORT`` chunk backend: each chunk goes through the server.

    The CLI's chunks may exceed the message limit, so each is split again into requests that fit.
    """
    from tfmusic.cli.main import CliError

    if not getattr(args, "server", None):
        raise CliError("--backend server needs --server HOST:PORT")
    try:
        client = ServingClient(args.server, args.server_model, timeout=args.server_timeout)
        targets = client.targets()
    except (ServingError, ValueError) as err:
        raise CliError(str(err)) from err
    keep = list(args.targets or targets)
    missing = [t for t in keep if t not in targets]
    if missing:
        raise CliError(f"model {args.server_model!r} at {args.server} has no target(s) {missing}; it has {targets}")

    def separate_chunk(piece: np.ndarray) -> dict:
        try:
            out = client.separate(piece, activity=True)
        except ServingError as err:
            raise CliError(str(err)) from err
        return {k: v for k, v in out.items() if k in keep or k.removesuffix("_activity") in keep}

    return separate_chunk, keep
