"""SavedModels laid out for TF Serving: ``<repo>/<model>/<version>/`` with explicit signatures.

Every export goes through `keras.export.ExportArchive` with named ``tf.TensorSpec`` inputs, so the
signature keys never depend on Keras layer names:

* separation: ``serving_default`` ``waveform`` float32 ``(batch, channels, samples)`` at 44.1 kHz
  -> one output per target (same shape); ``activity`` ``waveform`` -> ``{target: (batch, frames)}``
  for the targets that predict instrument activity.
* VAE: ``encode`` ``x`` -> ``mean``, ``log_std``; ``decode`` ``z`` -> ``logits``; ``traverse``
  ``x``, ``dimension`` (int32 scalar), ``values`` (float32 vector) -> ``z`` ``(batch, values, z)`` and
  ``logits`` ``(batch, values, ...)``; ``serving_default`` is ``encode``.

Each version also gets ``assets.extra/tf_serving_warmup_requests`` (PredictionLog TFRecords that
``--enable_model_warmup`` replays) and ``assets.extra/tfmusic.json`` (kind, targets, rate). The
version folder is written under a temporary name, validated (signatures as ``saved_model_cli show``
reads them, no op from ``saved_model_cli scan``'s denylist, outputs equal to the Keras model's on
fresh random inputs) and only then renamed into place, so a polling server never sees half a model.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from tfmusic.audio.io import DEFAULT_SAMPLE_RATE as SAMPLE_RATE  # the one 44.1 kHz constant

log = logging.getLogger(__name__)

WAVEFORM = "waveform"
HOP = 1024  # chunk lengths stay whole STFT hops so activity frames line up
ACTIVITY_SUFFIX = "_activity"
WARMUP_FILE = "assets.extra/tf_serving_warmup_requests"
METADATA_FILE = "assets.extra/tfmusic.json"
MAX_WARMUP_RECORDS = 1000  # TF Serving's limit
PARITY_TOLERANCE = 1e-4  # max |a - b| relative to the reference output's scale


class ExportError(RuntimeError):
    """An export that could not be written or failed validation."""


@dataclass
class Endpoint:
    """One signature: ``fn(*tensors)`` -> dict of tensors, with named input specs (order = call order).

    ``example`` returns fresh random numpy inputs (keyed like ``inputs``) for warmup and parity checks.
    """

    name: str
    fn: Callable[..., Mapping[str, Any]]
    inputs: list  # list[tf.TensorSpec], each with a name
    example: Callable[[np.random.Generator], dict[str, np.ndarray]]
    outputs: list[str] = field(default_factory=list)  # output keys when known up front


@dataclass
class ValidationReport:
    """What validation checked: signatures (saved_model_cli show view), denylisted ops, parity."""

    signatures: dict[str, dict[str, dict[str, tuple[str, tuple[int, ...] | None]]]]
    denylisted_ops: list[str]
    max_rel_diff: dict[str, float] = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------
# Reading a SavedModel without loading it (what saved_model_cli show/scan look at)
# ---------------------------------------------------------------------------------------------

def read_meta_graph(version_dir: str | os.PathLike, tag: str = "serve"):
    """The ``MetaGraphDef`` tagged ``tag`` from ``saved_model.pb``; clear error if missing."""
    from tensorflow.core.protobuf import saved_model_pb2

    path = Path(version_dir) / "saved_model.pb"
    if not path.is_file():
        raise ExportError(f"{path}: no saved_model.pb (not a SavedModel version folder)")
    proto = saved_model_pb2.SavedModel()
    try:
        proto.ParseFromString(path.read_bytes())
    except Exception as err:  # noqa: BLE001 - corrupt protobuf, report file
        raise ExportError(f"{path}: cannot parse SavedModel protobuf: {err}") from err
    for meta in proto.meta_graphs:
        if tag in meta.meta_info_def.tags:
            return meta
    raise ExportError(f"{path}: no meta graph tagged {tag!r}")


def read_signature_defs(version_dir: str | os.PathLike) -> dict[str, Any]:
    """Public ``SignatureDef`` protos by key (internal ``__saved_model_init_op`` left out)."""
    meta = read_meta_graph(version_dir)
    return {k: v for k, v in meta.signature_def.items() if not k.startswith("__")}


def signature_summary(version_dir: str | os.PathLike) -> dict[str, dict[str, dict]]:
    """``{signature: {"inputs": {key: (dtype, shape)}, "outputs": {...}}}`` as saved_model_cli shows it."""
    from tfmusic.serving.client import signature_info

    out = {}
    for key, sig in read_signature_defs(version_dir).items():
        info = signature_info(sig)
        out[key] = {"inputs": info.inputs, "outputs": info.outputs}
    return out


def denylisted_ops(version_dir: str | os.PathLike) -> list[str]:
    """Ops from ``saved_model_cli scan``'s denylist found in the graph or its functions (sorted)."""
    try:
        from tensorflow.python.tools.saved_model_cli import _OP_DENYLIST as denylist
    except ImportError:  # private name moved: fall back to the documented list
        denylist = {"WriteFile", "ReadFile", "PrintV2"}
    meta = read_meta_graph(version_dir)
    ops = {n.op for n in meta.graph_def.node}
    for fn in meta.graph_def.library.function:
        ops.update(n.op for n in fn.node_def)
    return sorted(ops & set(denylist))


def read_metadata(version_dir: str | os.PathLike) -> dict:
    """The ``assets.extra/tfmusic.json`` written at export ({} for foreign SavedModels)."""
    path = Path(version_dir) / METADATA_FILE
    return json.loads(path.read_text()) if path.is_file() else {}


# ---------------------------------------------------------------------------------------------
# Repository layout
# ---------------------------------------------------------------------------------------------

def list_versions(model_dir: str | os.PathLike) -> list[int]:
    """Complete numeric version folders (holding saved_model.pb), ascending, as TF Serving sees them."""
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        return []
    return sorted(int(p.name) for p in model_dir.iterdir()
                  if p.is_dir() and re.fullmatch(r"\d+", p.name) and (p / "saved_model.pb").is_file())


def next_version(repo: str | os.PathLike, name: str) -> int:
    """One above the highest existing version of ``name`` (1 for a new model)."""
    versions = list_versions(Path(repo) / name)
    return (versions[-1] + 1) if versions else 1


# ---------------------------------------------------------------------------------------------
# Endpoints
# ---------------------------------------------------------------------------------------------

def _probe_outputs(model, channels: int, samples: int) -> dict[str, tuple]:
    outputs = model(np.zeros((1, channels, samples), np.float32), training=False)
    if not isinstance(outputs, Mapping):
        raise ExportError(f"separator must return a dict of outputs, got {type(outputs).__name__}")
    return {k: tuple(v.shape) for k, v in outputs.items()}


def separator_endpoints(model, channels: int = 2, example_samples: int = 16384,
                        samples: int | None = None) -> list[Endpoint]:
    """``serving_default`` (waveform -> stems) and, if the model predicts activity, ``activity``.

    ``samples`` fixes the waveform length of the signature (a multiple of the 1024 hop; clients
    then send exactly that many samples per request); ``None`` accepts any length.
    """
    import tensorflow as tf

    if samples is not None:
        if samples <= 0 or samples % HOP:
            raise ExportError(f"fixed samples must be a positive multiple of {HOP}, got {samples}")
        example_samples = samples
    shapes = _probe_outputs(model, channels, example_samples)
    stems = sorted(k for k in shapes if not k.endswith(ACTIVITY_SUFFIX))
    activity = sorted(k[: -len(ACTIVITY_SUFFIX)] for k in shapes if k.endswith(ACTIVITY_SUFFIX))
    if not stems:
        raise ExportError(f"separator returned no stem outputs (got {sorted(shapes)})")
    spec = tf.TensorSpec((None, channels, samples), tf.float32, name=WAVEFORM)

    def example(rng: np.random.Generator) -> dict[str, np.ndarray]:
        return {WAVEFORM: (0.1 * rng.standard_normal((1, channels, example_samples))).astype(np.float32)}

    def serve_stems(waveform):
        out = model(waveform, training=False)
        return {t: out[t] for t in stems}

    endpoints = [Endpoint("serving_default", serve_stems, [spec], example, stems)]
    if activity:
        def serve_activity(waveform):
            out = model(waveform, training=False)
            return {t: out[t + ACTIVITY_SUFFIX] for t in activity}

        endpoints.append(Endpoint("activity", serve_activity, [spec], example, activity))
    return endpoints


def vae_endpoints(model, input_shape: tuple, input_dtype: str = "float32",
                  input_high: int | None = None, n_traverse: int = 5) -> list[Endpoint]:
    """``serving_default``/``encode``, ``decode`` and ``traverse`` for a model with encode/decode.

    ``input_shape`` excludes the batch axis. Integer inputs (tokens) draw examples in
    ``[0, input_high)``.
    """
    import tensorflow as tf

    for attr in ("encode", "decode"):
        if not callable(getattr(model, attr, None)):
            raise ExportError(f"VAE export needs model.{attr}(); {type(model).__name__} has none")
    dtype = tf.as_dtype(input_dtype)
    if dtype.is_integer and not input_high:
        raise ExportError("integer VAE inputs need input_high (number of token classes) for examples")
    x_spec = tf.TensorSpec((None, *input_shape), dtype, name="x")
    mean, _ = model.encode(tf.zeros((1, *input_shape), dtype), training=False)
    z_dim = int(mean.shape[-1])
    z_spec = tf.TensorSpec((None, z_dim), tf.float32, name="z")

    def x_example(rng):
        if dtype.is_integer:
            return rng.integers(0, input_high, size=(2, *input_shape)).astype(dtype.as_numpy_dtype)
        return rng.standard_normal((2, *input_shape)).astype(dtype.as_numpy_dtype)

    def encode(x):
        mean, log_std = model.encode(x, training=False)
        return {"mean": mean, "log_std": log_std}

    def decode(z):
        return {"logits": model.decode(z, training=False)}

    def traverse(x, dimension, values):
        mean, _ = model.encode(x, training=False)
        n_values = tf.shape(values)[0]
        batch = tf.shape(mean)[0]
        mask = tf.one_hot(dimension, z_dim, dtype=mean.dtype)  # (z,)
        z = mean[:, None, :] * (1.0 - mask) + values[None, :, None] * mask  # (B, V, z)
        logits = model.decode(tf.reshape(z, (-1, z_dim)), training=False)
        rest = tf.shape(logits)[1:]
        logits = tf.reshape(logits, tf.concat([[batch, n_values], rest], axis=0))
        return {"z": z, "logits": logits}

    traverse_specs = [x_spec, tf.TensorSpec((), tf.int32, name="dimension"),
                      tf.TensorSpec((None,), tf.float32, name="values")]
    return [
        Endpoint("serving_default", encode, [x_spec], lambda rng: {"x": x_example(rng)}),
        Endpoint("encode", encode, [x_spec], lambda rng: {"x": x_example(rng)}),
        Endpoint("decode", decode, [z_spec],
                 lambda rng: {"z": rng.standard_normal((2, z_dim)).astype(np.float32)}),
        Endpoint("traverse", traverse, traverse_specs, lambda rng: {
            "x": x_example(rng), "dimension": np.array(int(rng.integers(0, z_dim)), np.int32),
            "values": np.linspace(-2, 2, n_traverse).astype(np.float32)}),
    ]


# ---------------------------------------------------------------------------------------------
# Writing
# ---------------------------------------------------------------------------------------------

def write_warmup(version_dir: str | os.PathLike, model_name: str,
                 requests: list[tuple[str, dict[str, np.ndarray]]]) -> Path:
    """Write ``(signature, inputs)`` pairs as PredictionLog TFRecords where TF Serving looks for them."""
    import tensorflow as tf
    from tensorflow_serving.apis import model_pb2, predict_pb2, prediction_log_pb2

    from tfmusic.serving.client import to_tensor_proto

    if len(requests) > MAX_WARMUP_RECORDS:
        raise ExportError(f"{len(requests)} warmup requests; TF Serving reads at most {MAX_WARMUP_RECORDS}")
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


def _max_rel_diff(a: np.ndarray, b: np.ndarray) -> float:
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    if a.shape != b.shape:
        return float("inf")
    scale = max(float(np.max(np.abs(b))) if b.size else 0.0, 1e-6)
    return float(np.max(np.abs(a - b))) / scale if a.size else 0.0


def validate_saved_model(version_dir: str | os.PathLike, endpoints: list[Endpoint], seed: int = 1234,
                         tolerance: float = PARITY_TOLERANCE) -> ValidationReport:
    """Check signatures, denylisted ops and SavedModel-vs-Keras outputs; raise ``ExportError`` if off."""
    import tensorflow as tf

    version_dir = Path(version_dir)
    summary = signature_summary(version_dir)
    for ep in endpoints:
        if ep.name not in summary:
            raise ExportError(f"{version_dir}: signature {ep.name!r} missing (has {sorted(summary)})")
        want = sorted(spec.name for spec in ep.inputs)
        have = sorted(summary[ep.name]["inputs"])
        if want != have:
            raise ExportError(f"{version_dir}: signature {ep.name!r} inputs {have}, expected {want}")
    bad = denylisted_ops(version_dir)
    if bad:
        raise ExportError(f"{version_dir}: graph uses ops on saved_model_cli's denylist: {bad}")
    loaded = tf.saved_model.load(str(version_dir))
    rng = np.random.default_rng(seed)
    report = ValidationReport(summary, bad)
    for ep in endpoints:
        inputs = ep.example(rng)
        got = loaded.signatures[ep.name](**{k: tf.constant(v) for k, v in inputs.items()})
        want = ep.fn(*[tf.constant(inputs[spec.name]) for spec in ep.inputs])
        if sorted(got) != sorted(want):
            raise ExportError(f"{version_dir}: signature {ep.name!r} outputs {sorted(got)} != {sorted(want)}")
        worst = max(_max_rel_diff(got[k].numpy(), np.asarray(want[k])) for k in want)
        report.max_rel_diff[ep.name] = worst
        if not worst <= tolerance:
            raise ExportError(f"{version_dir}: signature {ep.name!r} differs from the Keras model "
                              f"(max |diff| / scale = {worst:.3g} > {tolerance:g})")
    return report


def export_endpoints(model, endpoints: list[Endpoint], repo: str | os.PathLike, name: str,
                     version: int | None = None, *, metadata: Mapping[str, Any] | None = None,
                     warmup_per_signature: int = 1, overwrite: bool = False,
                     validate: bool = True) -> tuple[Path, ValidationReport | None]:
    """Write ``<repo>/<name>/<version>/`` atomically (temp folder + rename); returns (path, report)."""
    import keras

    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", name):
        raise ExportError(f"model name {name!r}: use letters, digits, '_', '-', '.'")
    if endpoints[0].name != "serving_default" and all(e.name != "serving_default" for e in endpoints):
        raise ExportError("TF Serving needs a 'serving_default' signature")
    model_dir = Path(repo) / name
    version = next_version(repo, name) if version is None else int(version)
    if version < 1:
        raise ExportError(f"version must be a positive integer, got {version}")
    final = model_dir / str(version)
    if final.exists() and not overwrite:
        raise ExportError(f"{final} already exists (pass overwrite=True / --overwrite, or a new --version)")
    model_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{version}-", dir=model_dir))
    try:
        archive = keras.export.ExportArchive()
        archive.track(model)
        for ep in endpoints:
            try:
                archive.add_endpoint(ep.name, ep.fn, input_signature=ep.inputs)
            except Exception as err:  # noqa: BLE001 - tracing errors come in many types
                hint = ""
                if any(None in spec.shape.as_list()[1:] for spec in ep.inputs if spec.shape.rank):
                    hint = (" (if the model cannot trace a variable-length input, export a fixed length, "
                            "e.g. --samples 44032)")
                raise ExportError(f"signature {ep.name!r} of {name!r} could not be traced: "
                                  f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
                                  f"{hint}") from err
        out = tmp / "v"
        archive.write_out(str(out), verbose=False)
        rng = np.random.default_rng(0)
        write_warmup(out, name, [(ep.name, ep.example(rng)) for ep in endpoints
                                 for _ in range(warmup_per_signature)])
        meta = {"name": name, "version": version, "sample_rate": SAMPLE_RATE,
                "signatures": [ep.name for ep in endpoints], **(metadata or {})}
        (out / METADATA_FILE).write_text(json.dumps(meta, indent=2))
        report = validate_saved_model(out, endpoints) if validate else None
        if final.exists():
            shutil.rmtree(final)
        os.replace(out, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log.info("exported %s", final)
    return final, report


def export_separator(model, repo: str | os.PathLike, name: str, version: int | None = None, *,
                     channels: int = 2, example_samples: int = 16384, samples: int | None = None,
                     overwrite: bool = False, validate: bool = True) -> tuple[Path, ValidationReport | None]:
    """Export a waveform -> ``{target: stem, target_activity: frames}`` Keras model for serving."""
    endpoints = separator_endpoints(model, channels=channels, example_samples=example_samples, samples=samples)
    meta = {"kind": "separator", "targets": endpoints[0].outputs, "channels": channels, "samples": samples,
            "activity_targets": endpoints[1].outputs if len(endpoints) > 1 else []}
    return export_endpoints(model, endpoints, repo, name, version, metadata=meta, overwrite=overwrite,
                            validate=validate)


def vae_input_spec(model) -> tuple[tuple[int, ...], str, int | None]:
    """``(input shape without batch, dtype, token classes or None)`` of a tfmusic VAE.

    Token models (``encoder.build_input_dtype == "int32"``) take sequences as long as the decoder
    writes; image models take inputs shaped like the decoder's logits.
    """
    import tensorflow as tf

    encoder = getattr(model, "encoder", None)
    if encoder is None or not hasattr(model, "z_dim"):
        raise ExportError(f"cannot infer the input of {type(model).__name__}; pass input_shape/input_dtype")
    dtype = getattr(encoder, "build_input_dtype", "float32")
    logits = model.decode(tf.zeros((1, int(model.z_dim)), tf.float32), training=False)
    shape = tuple(int(d) for d in logits.shape[1:])
    if tf.as_dtype(dtype).is_integer:
        return shape[:-1], dtype, int(getattr(encoder, "vocab_size", shape[-1]))
    return shape, dtype, None


def export_vae(model, repo: str | os.PathLike, name: str, version: int | None = None, *,
               input_shape: tuple | None = None, input_dtype: str = "float32", input_high: int | None = None,
               overwrite: bool = False, validate: bool = True) -> tuple[Path, ValidationReport | None]:
    """Export a model with ``encode``/``decode`` as encode/decode/traverse signatures.

    Without ``input_shape`` the input is inferred with `vae_input_spec`.
    """
    if input_shape is None:
        input_shape, input_dtype, input_high = vae_input_spec(model)
    endpoints = vae_endpoints(model, tuple(input_shape), input_dtype, input_high)
    meta = {"kind": "vae", "input_shape": list(input_shape), "input_dtype": input_dtype,
            "input_high": input_high, "z_dim": int(endpoints[2].inputs[0].shape[-1])}
    return export_endpoints(model, endpoints, repo, name, version, metadata=meta, overwrite=overwrite,
                            validate=validate)


def resolve_version_dir(path: str | os.PathLike) -> Path:
    """A version folder as given, or the latest version inside a model folder."""
    path = Path(path)
    if (path / "saved_model.pb").is_file():
        return path
    versions = list_versions(path)
    if not versions:
        raise ExportError(f"{path}: neither a SavedModel version folder nor a model folder with versions")
    return path / str(versions[-1])
