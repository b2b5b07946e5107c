"""SavedModels laid out for TF Serving: ``<repo>/<model>/<version>/`` with explicit signatures.

Every export goes through `keras.export.ExportArchive` with named ``tf.TensorSpec`` inputs, so the
signature keys never depend on Keras layer names:

* separation: ``serving_default`` ``waveform`` float32 ``(batch, channels, samples)`` at 44.1 kHz
  -> one output per target (same shape); ``activity`` ``waveform`` -> ``{target: (batch, frames)}``
  for the targets that predict instrument activity; ``pitch`` ``waveform`` -> ``{target: (batch, 88, frames)}``
  key probabilities (A0..C8) for IASS+pitch targets. A variable-length signature has a minimum
  length (the STFT's reflect padding and the model's own padding need enough samples), found by
  probing the model at export, stored as ``min_samples`` in ``tfmusic.json`` and checked in the
  graph: shorter inputs get INVALID_ARGUMENT naming the minimum, on TF Serving too.
* VAE: ``encode`` ``x`` -> ``mean``, ``log_std``; ``decode`` ``z`` -> ``logits``; ``traverse``
  ``x`` ``(batch, ...)``, ``dimension`` int32 ``(batch,)``, ``values`` float32 ``(batch, n)`` -> ``z``
  ``(batch, n, z)`` and ``logits`` ``(batch, n, ...)``; ``serving_default`` is ``encode``.

Every input of every signature has the batch dimension first. TF Serving with ``--enable_batching``
batches every signature of a model and refuses a request (and so a warmup record, which fails the
load) whose inputs lack it. TF Serving documents a second way, per-model batching parameters
(``--enable_per_model_batching_parameters`` with ``assets.extra/batching_params.pbtxt``), but that
switches batching per model, not per signature, and needs a flag the standard command line lacks;
batchable signatures work with the plain ``--enable_batching`` command and actually batch.

Each version also gets ``assets.extra/tf_serving_warmup_requests`` (PredictionLog TFRecords that
``--enable_model_warmup`` replays) and ``assets.extra/tfmusic.json`` (kind, targets, rate). The
version folder is written under a temporary name, validated (signatures as ``saved_model_cli show``
reads them, no op from ``saved_model_cli scan``'s denylist, outputs equal to the Keras model's on
fresh random inputs) and only then renamed into place, so a polling server never sees half a model.
Why one module: the endpoints, their warmup examples and the validation that replays them share
the `Endpoint` type and are read together (over 400 lines on purpose).
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
from tfmusic.serving import repository
from tfmusic.serving.batching import batch_size_of
from tfmusic.serving.errors import ServingError
from tfmusic.serving.repository import MAX_WARMUP_RECORDS, WARMUP_FILE, list_versions, read_warmup  # noqa: F401
from tfmusic.serving.tensors import signature_info

log = logging.getLogger(__name__)

WAVEFORM = "waveform"
HOP = 1024  # chunk lengths stay whole STFT hops so activity frames line up
ACTIVITY_SUFFIX = "_activity"
PITCH_SUFFIX = "_pitch"  # IASS+pitch targets: (batch, 88, frames) key probabilities
METADATA_FILE = "assets.extra/tfmusic.json"
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
    min_samples: int | None = None  # separators: fewest waveform samples the signature accepts


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
    """The ``MetaGraphDef`` tagged ``tag`` from ``saved_model.pb``; `ExportError` naming the file if missing."""
    try:
        return repository.read_meta_graph(version_dir, tag)
    except repository.RepositoryError as err:
        raise ExportError(str(err)) from err


def read_signature_defs(version_dir: str | os.PathLike) -> dict[str, Any]:
    """Public ``SignatureDef`` protos by key (internal ``__saved_model_init_op`` left out)."""
    try:
        return repository.read_signature_defs(version_dir)
    except repository.RepositoryError as err:
        raise ExportError(str(err)) from err


def signature_summary(version_dir: str | os.PathLike) -> dict[str, dict[str, dict]]:
    """``{signature: {"inputs": {key: (dtype, shape)}, "outputs": {...}}}`` as saved_model_cli shows it."""
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
    stems = sorted(k for k in shapes if not k.endswith((ACTIVITY_SUFFIX, PITCH_SUFFIX)))
    pitch = sorted(k[: -len(PITCH_SUFFIX)] for k in shapes if k.endswith(PITCH_SUFFIX))
    activity = sorted(k[: -len(ACTIVITY_SUFFIX)] for k in shapes if k.endswith(ACTIVITY_SUFFIX))
    if not stems:
        raise ExportError(f"separator returned no stem outputs (got {sorted(shapes)})")
    spec = tf.TensorSpec((None, channels, samples), tf.float32, name=WAVEFORM)
    shortest = samples or min_separator_samples(model, channels, example_samples)

    def example(rng: np.random.Generator) -> dict[str, np.ndarray]:
        return {WAVEFORM: (0.1 * rng.standard_normal((1, channels, example_samples))).astype(np.float32)}

    def checked(waveform):
        if samples is not None or shortest <= 1:
            return waveform
        check = tf.debugging.assert_greater_equal(
            tf.shape(waveform)[-1], shortest,
            message=f"waveform too short: this separator needs at least {shortest} samples per channel")
        with tf.control_dependencies([check]):
            return tf.identity(waveform)

    def serve_stems(waveform):
        out = model(checked(waveform), training=False)
        return {t: out[t] for t in stems}

    endpoints = [Endpoint("serving_default", serve_stems, [spec], example, stems, shortest)]
    if activity:
        def serve_activity(waveform):
            out = model(checked(waveform), training=False)
            return {t: out[t + ACTIVITY_SUFFIX] for t in activity}

        endpoints.append(Endpoint("activity", serve_activity, [spec], example, activity, shortest))
    if pitch:
        def serve_pitch(waveform):
            out = model(checked(waveform), training=False)
            return {t: out[t + PITCH_SUFFIX] for t in pitch}

        endpoints.append(Endpoint("pitch", serve_pitch, [spec], example, pitch, shortest))
    return endpoints


def min_separator_samples(model, channels: int, works: int) -> int:
    """Fewest samples per channel the separator runs on (binary search; ``works`` is a length known to run).

    Shorter inputs fail deep inside the graph (e.g. a MirrorPad error from reflect padding), so the
    export states the minimum and checks it up front.
    """
    def runs(n: int) -> bool:
        try:
            model(np.zeros((1, channels, n), np.float32), training=False)
            return True
        except Exception:  # noqa: BLE001 - any failure means "too short"
            return False

    lo, hi = 0, int(works)  # runs(lo) is False (or lo == 0), runs(hi) is True
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if runs(mid) else (mid, hi)
    return hi


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
        # Every input carries the batch dimension (dimension: (B,), values: (B, V)) so TF Serving's
        # batching, which batches every signature, accepts the request and its warmup record.
        mean, _ = model.encode(x, training=False)
        batch = tf.shape(mean)[0]
        n_values = tf.shape(values)[1]
        mask = tf.one_hot(dimension, z_dim, dtype=mean.dtype)[:, None, :]  # (B, 1, z)
        z = mean[:, None, :] * (1.0 - mask) + values[:, :, None] * mask  # (B, V, z)
        logits = model.decode(tf.reshape(z, (-1, z_dim)), training=False)
        rest = tf.shape(logits)[1:]
        logits = tf.reshape(logits, tf.concat([[batch, n_values], rest], axis=0))
        return {"z": z, "logits": logits}

    traverse_specs = [x_spec, tf.TensorSpec((None,), tf.int32, name="dimension"),
                      tf.TensorSpec((None, None), tf.float32, name="values")]

    def traverse_example(rng):
        x = x_example(rng)
        return {"x": x, "dimension": rng.integers(0, z_dim, size=len(x)).astype(np.int32),
                "values": np.tile(np.linspace(-2, 2, n_traverse).astype(np.float32), (len(x), 1))}

    return [
        Endpoint("serving_default", encode, [x_spec], lambda rng: {"x": x_example(rng)}),
        Endpoint("encode", encode, [x_spec], lambda rng: {"x": x_example(rng)}),
        Endpoint("decode", decode, [z_spec],
                 lambda rng: {"z": rng.standard_normal((2, z_dim)).astype(np.float32)}),
        Endpoint("traverse", traverse, traverse_specs, traverse_example),
    ]


# ---------------------------------------------------------------------------------------------
# Writing
# ---------------------------------------------------------------------------------------------

def write_warmup(version_dir: str | os.PathLike, model_name: str,
                 requests: list[tuple[str, dict[str, np.ndarray]]]) -> Path:
    """Write warmup records that TF Serving can replay with ``--enable_batching`` on.

    With batching, TF Serving runs warmup through its batching session, which rejects a request
    unless every input has a batch dimension of one common size (``ComputeTensorBatchSize``); a
    rejected warmup record fails the model's load, so that is checked here, at export.
    """
    for signature, inputs in requests:
        try:
            batch_size_of(inputs)
        except ServingError as err:
            raise ExportError(f"warmup request for signature {signature!r} would fail under TF Serving "
                              f"batching: {err.message}") from err
    try:
        return repository.write_warmup(version_dir, model_name, requests)
    except repository.RepositoryError as err:
        raise ExportError(str(err)) from err


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
    named = {e.name: e.outputs for e in endpoints}
    meta = {"kind": "separator", "targets": endpoints[0].outputs, "channels": channels, "samples": samples,
            "min_samples": endpoints[0].min_samples,
            "activity_targets": named.get("activity", [])}
    if "pitch" in named:
        meta["pitch_targets"] = named["pitch"]
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
