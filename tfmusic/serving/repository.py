"""The TF Serving model repository format: ``<base>/<model>/<version>/`` folders, signatures, warmup records.

Both sides use it: the exporter writes this layout and the embedded server reads it, so it lives
here, below both (it imports only `tfmusic.serving.tensors`); `tfmusic.serving` never imports
`tfmusic.export`. Warmup records are PredictionLog TFRecords at
``assets.extra/tf_serving_warmup_requests`` (TF Serving reads at most 1000).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import numpy as np

from tfmusic.serving.tensors import to_tensor_proto

WARMUP_FILE = "assets.extra/tf_serving_warmup_requests"
# A separator's frame-curve outputs and the signature giving stems and curves at once: written by
# tfmusic.export.endpoints, read by the client and the ONNX runner.
ACTIVITY_SUFFIX = "_activity"  # (batch, frames) activity probability per IASS target
PITCH_SUFFIX = "_pitch"  # (batch, 88, frames) key probabilities per IASS+pitch target
TRANSCRIBE = "transcribe"  # separators with pitch targets: every output in one call
MAX_WARMUP_RECORDS = 1000  # TF Serving's limit (servables/tensorflow/saved_model_warmup_util.cc)


class RepositoryError(ValueError):
    """A version folder that is not a readable SavedModel."""


def list_versions(model_dir: str | os.PathLike) -> list[int]:
    """Complete numeric version folders (holding saved_model.pb), ascending, as TF Serving sees them."""
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        return []
    root = model_dir.resolve()
    # A version folder that is a symlink out of its model folder is ignored: nothing outside the
    # repository is ever loaded.
    return sorted(int(p.name) for p in model_dir.iterdir()
                  if p.is_dir() and re.fullmatch(r"\d+", p.name) and (p / "saved_model.pb").is_file()
                  and p.resolve().is_relative_to(root))


def read_meta_graph(version_dir: str | os.PathLike, tag: str = "serve"):
    """The ``MetaGraphDef`` tagged ``tag`` from ``saved_model.pb``; `RepositoryError` naming the file if missing."""
    from tensorflow.core.protobuf import saved_model_pb2

    path = Path(version_dir) / "saved_model.pb"
    if not path.is_file():
        raise RepositoryError(f"{path}: no saved_model.pb (not a SavedModel version folder)")
    proto = saved_model_pb2.SavedModel()
    try:
        proto.ParseFromString(path.read_bytes())
    except Exception as err:  # noqa: BLE001 - corrupt protobuf, report file
        raise RepositoryError(f"{path}: cannot parse SavedModel protobuf: {err}") from err
    for meta in proto.meta_graphs:
        if tag in meta.meta_info_def.tags:
            return meta
    raise RepositoryError(f"{path}: no meta graph tagged {tag!r}")


def read_signature_defs(version_dir: str | os.PathLike) -> dict[str, Any]:
    """Public ``SignatureDef`` protos by key (internal ``__saved_model_init_op`` left out)."""
    meta = read_meta_graph(version_dir)
    return {k: v for k, v in meta.signature_def.items() if not k.startswith("__")}


def write_warmup(version_dir: str | os.PathLike, model_name: str,
                 requests: list[tuple[str, dict[str, np.ndarray]]]) -> Path:
    """Write ``(signature, inputs)`` pairs as PredictionLog TFRecords where TF Serving looks for them."""
    import tensorflow as tf
    from tensorflow_serving.apis import model_pb2, predict_pb2, prediction_log_pb2

    if len(requests) > MAX_WARMUP_RECORDS:
        raise RepositoryError(f"{len(requests)} warmup requests; TF Serving reads at most {MAX_WARMUP_RECORDS}")
    path = Path(version_dir) / WARMUP_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    with tf.io.TFRecordWriter(str(path)) as writer:
        for signature, inputs in requests:
            request = predict_pb2.PredictRequest(
                model_spec=model_pb2.ModelSpec(name=model_name, signature_name=signature))
            for key, value in inputs.items():
                request.inputs[key].CopyFrom(to_tensor_proto(value))
            record = prediction_log_pb2.PredictionLog(predict_log=prediction_log_pb2.PredictLog(request=request))
            writer.write(record.SerializeToString())
    return path


def read_warmup(version_dir: str | os.PathLike) -> list:
    """PredictRequests stored in the version's warmup file ([] if none)."""
    import tensorflow as tf
    from tensorflow_serving.apis import prediction_log_pb2

    path = Path(version_dir) / WARMUP_FILE
    if not path.is_file():
        return []
    out = []
    for raw in tf.data.TFRecordDataset(str(path)):
        record = prediction_log_pb2.PredictionLog.FromString(raw.numpy())
        if record.HasField("predict_log"):
            out.append(record.predict_log.request)
    return out
