"""SavedModels laid out for TF Serving: ``<repo>/<model>/<version>/`` with explicit signatures.

Every export goes through `keras.export.ExportArchive` with named ``tf.TensorSpec`` inputs, so the
signature keys never depend on Keras layer names; which signatures a separator or a VAE serves is
:mod:`tfmusic.export.endpoints`. The minimum waveform length found there is stored as
``min_samples`` in ``tfmusic.json``.

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
from typing import Any, Mapping

import numpy as np

from tfmusic.audio.io import DEFAULT_SAMPLE_RATE as SAMPLE_RATE  # the one 44.1 kHz constant
from tfmusic.export.endpoints import Endpoint, ExportError, separator_endpoints, vae_endpoints, vae_input_spec
from tfmusic.serving import repository
from tfmusic.serving.batching import batch_size_of
from tfmusic.serving.errors import ServingError
from tfmusic.serving.repository import MAX_WARMUP_RECORDS, WARMUP_FILE, list_versions, read_warmup  # noqa: F401
from tfmusic.serving.tensors import signature_info

log = logging.getLogger(__name__)

METADATA_FILE = "assets.extra/tfmusic.json"
PARITY_TOLERANCE = 1e-4  # max |a - b| relative to the reference output's scale


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
