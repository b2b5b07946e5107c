"""Tensor conversion: numpy <-> ``TensorProto``, ``SignatureDef`` summaries, and TF Serving's JSON tensors.

Used by the client (requests/responses), the embedded server and the exporter (warmup records),
so there is one conversion. It imports only `tfmusic.serving.errors`, which keeps it at the bottom of the
serving/export layering. JSON typing follows TF Serving's ``util/json_tensor.cc``: a value must
already have the input's type (``0.5`` for an int32 input is an error, not a truncation).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tfmusic.serving.errors import ServingError


def _dtype_maps() -> tuple[dict, dict]:
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


# ---------------------------------------------------------------------------------------------
# JSON tensors (REST)
# ---------------------------------------------------------------------------------------------

def _json_type_ok(value: Any, dtype: np.dtype) -> bool:
    """Whether one JSON scalar may fill a tensor of ``dtype`` (json_tensor.cc's AddValueToTensor rules)."""
    if dtype.kind == "f":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if dtype.kind in "iu":
        return isinstance(value, int) and not isinstance(value, bool) and (dtype.kind == "i" or value >= 0)
    if dtype.kind == "b":
        return isinstance(value, bool)
    return isinstance(value, str)


def json_to_array(name: str, value: Any, dtype: np.dtype) -> np.ndarray:
    """A JSON (nested list) value as an array of ``dtype``; INVALID_ARGUMENT if a value has another type."""
    dtype = np.dtype(dtype)

    def check(v: Any) -> None:
        if isinstance(v, list):
            for item in v:
                check(item)
        elif isinstance(v, dict) and "b64" in v and dtype.kind in "OSU":
            return
        elif not _json_type_ok(v, dtype):
            kind = type(v).__name__
            raise ServingError("INVALID_ARGUMENT", f"JSON Value: {v!r} Type: {kind} is not of expected type: "
                               f"{np.dtype(dtype).name} (input {name!r})")

    check(value)
    try:
        return np.asarray(value, dtype=dtype)
    except (TypeError, ValueError) as err:  # ragged lists
        raise ServingError("INVALID_ARGUMENT", f"input {name!r}: not a rectangular tensor: {err}") from err


def array_to_json(array: np.ndarray) -> Any:
    """A numpy array as JSON-ready nested lists (bytes decoded as UTF-8)."""
    arr = np.asarray(array)
    if arr.dtype.kind in "OS":
        return np.vectorize(lambda b: b.decode() if isinstance(b, bytes) else b, otypes=[object])(arr).tolist()
    return arr.tolist()
