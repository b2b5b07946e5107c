"""ONNX export from the served SavedModel, a parity check in ONNX Runtime, and a TF-free runner.

Conversion goes SavedModel -> ``tf2onnx.tf_loader.from_saved_model`` -> ONNX (opset 17 by default),
never ``from_keras`` (broken on Keras 3). The separation graph converts because the STFT is a
fixed windowed-DFT basis in real arithmetic (no RFFT/complex ops). Every export is checked right
away: TF and ONNX Runtime run the same fresh random inputs and the largest absolute difference,
relative to the output's scale (max |reference|; absolute where the reference is all zeros, as when
activity gating silences a stem), must be <= 1e-4, or the export fails.

Size and memory: tf2onnx would fold the in-graph STFT bases into ~134 MB of constants (and use >11 GB
doing it); `tfmusic.export.onnx_compact` cuts them out of the TF graph before conversion and rebuilds
them in the ONNX graph from 4096-entry tables (bit-exact, checked), so the file is about the size of the
weights. Reduced-precision variants (int8, fp16) live in `tfmusic.export.onnx_precision`.

Known converter pitfall (tf2onnx 1.17): a ``Conv2DTranspose`` with ``output_padding`` loses its bias
on the padded positions (the bias is fused into ONNX ``ConvTranspose`` and the extra positions are
zero-padded afterwards) or fails to load (negative pads). Models append those positions themselves
(see ``tfmusic.models.iass.DecoderBlock``); the parity check catches any new case.

``OnnxSeparator`` imports only numpy and onnxruntime (never TensorFlow or Keras), so
``tfmusic separate --backend onnx`` runs on machines without TF. Keep TF imports in this module
inside the export functions.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from tfmusic.export.endpoints import ACTIVITY_SUFFIX, PITCH_SUFFIX, TRANSCRIBE  # numpy-only module

log = logging.getLogger(__name__)

DEFAULT_OPSET = 17
PARITY_TOLERANCE = 1e-4
METADATA_KEY = "tfmusic"  # ONNX metadata_props key holding the export metadata JSON
DEFAULT_SIGNATURES = {"separator": ["serving_default"], "vae": ["encode", "decode"]}


CURVE_SUFFIXES = (ACTIVITY_SUFFIX, PITCH_SUFFIX)  # frame-curve outputs of a separator


def _curve_target(name: str) -> str | None:
    """``"bass"`` for ``"bass_pitch"`` / ``"bass_activity"``; None for a stem."""
    for suffix in CURVE_SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return None


class OnnxExportError(RuntimeError):
    """Conversion failed or the ONNX model does not match the SavedModel."""


@dataclass
class OnnxExport:
    path: Path
    signature: str
    inputs: list[str]
    outputs: list[str]
    max_rel_diff: float
    opset: int


def _example_inputs(sig_inputs: dict, meta: dict, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Fresh random inputs for a signature, shaped from its spec and the export metadata."""
    out = {}
    for key, (dtype, shape) in sig_inputs.items():
        if shape is None:
            raise OnnxExportError(f"input {key!r} has unknown rank; cannot build a parity example")
        dims = []
        for axis, d in enumerate(shape):
            if d >= 0:
                dims.append(d)
            elif axis == 0:
                dims.append(2)
            else:
                dims.append(4 * 4096 + 517 if key == "waveform" else 3)  # odd length exercises padding
        if dtype in ("DT_FLOAT", "DT_DOUBLE", "DT_HALF"):
            scale = 0.1 if key == "waveform" else 1.0
            arr = scale * rng.standard_normal(dims)
            out[key] = arr.astype({"DT_FLOAT": np.float32, "DT_DOUBLE": np.float64, "DT_HALF": np.float16}[dtype])
        elif dtype in ("DT_INT32", "DT_INT64"):
            high = int(meta.get("input_high") or 2)
            if key == "dimension":
                high = int(meta.get("z_dim") or 1)
            out[key] = rng.integers(0, high, size=dims).astype(np.int32 if dtype == "DT_INT32" else np.int64)
        else:
            raise OnnxExportError(f"input {key!r}: no random example for dtype {dtype}")
    return out


def _patch_tf2onnx_numpy2() -> None:
    """tf2onnx 1.17 still touches ``np.object``/``np.cast`` in places; Keras ships the fix, reuse it."""
    try:
        from keras.src.export.tf2onnx_lib import patch_tf2onnx
    except ImportError:  # pragma: no cover - older/newer Keras layouts
        return
    patch_tf2onnx()


def export_signature(saved_model_dir: str | os.PathLike, out: str | os.PathLike, signature: str = "serving_default",
                     *, opset: int = DEFAULT_OPSET, check: bool = True, seed: int | None = None,
                     tolerance: float = PARITY_TOLERANCE) -> OnnxExport:
    """Convert one signature of a SavedModel version folder to ``out`` and check parity."""
    import onnx
    import tensorflow as tf
    import tf2onnx

    from tfmusic.export.onnx_compact import (
        compact_stft_constants,
        cut_stft_bases,
        restore_stft_bases,
    )
    from tfmusic.export.saved_model import read_metadata, signature_summary

    saved_model_dir = Path(saved_model_dir)
    sigs = signature_summary(saved_model_dir)
    if signature not in sigs:
        raise OnnxExportError(f"{saved_model_dir}: no signature {signature!r} (has {sorted(sigs)})")
    if not 13 <= opset <= 18:
        raise OnnxExportError(f"opset {opset} outside the range tf2onnx 1.17 is tested with (13-18; use 17 or 18)")
    meta = read_metadata(saved_model_dir)
    _patch_tf2onnx_numpy2()
    try:
        graph_def, inputs, outputs, tables, renames = tf2onnx.tf_loader.from_saved_model(
            str(saved_model_dir), None, None, tag="serve", signatures=[signature],
            return_initialized_tables=True, return_tensors_to_rename=True)
        graph_def, cut = cut_stft_bases(graph_def, outputs)  # the converter never folds the bases (memory)
        with tf.device("/cpu:0"):
            model_proto, _ = tf2onnx.convert._convert_common(
                graph_def, name=f"{saved_model_dir}:{signature}", opset=opset, input_names=inputs + list(cut),
                output_names=outputs, tensors_to_rename=renames, initialized_tables=tables)
        del graph_def
        restore_stft_bases(model_proto, cut)
    except Exception as err:  # noqa: BLE001 - tf2onnx raises many types; name the model
        raise OnnxExportError(f"{saved_model_dir}: tf2onnx could not convert signature {signature!r}: {err}") from err
    try:
        onnx.checker.check_model(model_proto)
    except onnx.checker.ValidationError as err:
        unsupported = sorted({n.op_type for n in model_proto.graph.node
                              if n.domain in ("", "ai.onnx") and not onnx.defs.has(n.op_type)})
        raise OnnxExportError(f"{saved_model_dir}: signature {signature!r} has no ONNX equivalent for TF ops "
                              f"{unsupported or '?'} (opset {opset}): {str(err).splitlines()[0]}") from err
    try:
        compact = compact_stft_constants(model_proto)
    except RuntimeError as err:  # the rebuilt bases did not reproduce the folded ones: keep them
        log.warning("%s: kept the folded STFT bases: %s", saved_model_dir, err)
    else:
        if compact.replaced:
            log.info("rebuilt %d STFT bases in-graph: initializers %.1f MB -> %.1f MB", len(compact.replaced),
                     compact.bytes_before / 1e6, compact.bytes_after / 1e6)
    props = {METADATA_KEY: json.dumps({**meta, "signature": signature, "opset": opset})}
    onnx.helper.set_model_props(model_proto, props)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model_proto, str(out))
    in_names = [i.name for i in model_proto.graph.input]
    out_names = [o.name for o in model_proto.graph.output]
    if sorted(in_names) != sorted(sigs[signature]["inputs"]) or sorted(out_names) != sorted(sigs[signature]["outputs"]):
        raise OnnxExportError(f"{out}: ONNX names {in_names} -> {out_names} do not match the signature's "
                              f"{sorted(sigs[signature]['inputs'])} -> {sorted(sigs[signature]['outputs'])}")
    worst = float("nan")
    if check:
        worst = check_parity(saved_model_dir, out, signature, seed=seed, tolerance=tolerance)
    log.info("wrote %s (signature %s, opset %d, max rel diff %.3g)", out, signature, opset, worst)
    return OnnxExport(out, signature, in_names, out_names, worst, opset)


def parity_error(reference: np.ndarray, candidate: np.ndarray) -> float:
    """``max |candidate - reference| / max |reference|``, in float64; never NaN for finite inputs.

    An all-zero reference (e.g. a separator whose activity gate silenced every frame) has no
    scale, so the absolute difference is returned; any non-finite value gives ``inf``.
    """
    ref = np.asarray(reference, dtype=np.float64)
    got = np.asarray(candidate, dtype=np.float64)
    if ref.size == 0:
        return 0.0
    if not (np.all(np.isfinite(ref)) and np.all(np.isfinite(got))):
        return float("inf")
    scale = float(np.max(np.abs(ref)))
    diff = float(np.max(np.abs(got - ref)))
    return diff / scale if scale > 0 else diff


def check_parity(saved_model_dir: str | os.PathLike, onnx_path: str | os.PathLike, signature: str,
                 *, seed: int | None = None, tolerance: float = PARITY_TOLERANCE) -> float:
    """Max |TF - ORT| / max |TF| over outputs on fresh random inputs; raises if above ``tolerance``."""
    import onnxruntime as ort
    import tensorflow as tf

    from tfmusic.export.saved_model import read_metadata, signature_summary

    rng = np.random.default_rng(seed)  # fresh inputs each export unless a seed is given
    meta = read_metadata(saved_model_dir)
    inputs = _example_inputs(signature_summary(saved_model_dir)[signature]["inputs"], meta, rng)
    loaded = tf.saved_model.load(str(saved_model_dir))
    want = {k: v.numpy() for k, v in loaded.signatures[signature](**{k: tf.constant(v) for k, v in inputs.items()}).items()}
    try:
        session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    except Exception as err:  # noqa: BLE001 - onnxruntime raises its own types
        raise OnnxExportError(f"{onnx_path}: ONNX Runtime cannot load the converted signature {signature!r}: "
                              f"{str(err).splitlines()[0]}") from err
    names = [o.name for o in session.get_outputs()]
    got = dict(zip(names, session.run(names, inputs)))
    worst = 0.0
    for key, ref in want.items():
        if got[key].shape != ref.shape:
            raise OnnxExportError(f"{onnx_path}: output {key!r} shape {got[key].shape} != TF {ref.shape}")
        worst = max(worst, parity_error(ref, got[key]))
    if not worst <= tolerance:
        raise OnnxExportError(f"{onnx_path}: ONNX Runtime differs from the SavedModel on signature {signature!r}: "
                              f"max |diff| / scale = {worst:.3g} > {tolerance:g}")
    return worst


def export_onnx(saved_model_dir: str | os.PathLike, out: str | os.PathLike, signatures: list[str] | None = None,
                *, opset: int = DEFAULT_OPSET, check: bool = True) -> list[OnnxExport]:
    """Export the signatures that make sense for the model kind (separator: stems, or with pitch targets
    ``transcribe``, stems plus activity and pitch curves; VAE: encode+decode).

    One signature is written to ``out``; several to ``<out stem>.<signature>.onnx`` beside it.
    """
    from tfmusic.export.saved_model import read_metadata

    meta = read_metadata(saved_model_dir)
    defaults = DEFAULT_SIGNATURES.get(meta.get("kind"), ["serving_default"])
    if meta.get("kind") == "separator" and TRANSCRIBE in meta.get("signatures", []):
        defaults = [TRANSCRIBE]  # IASS+pitch: stems and frame curves from one graph (--transcribe needs them)
    signatures = list(signatures or defaults)
    out = Path(out)
    if len(signatures) == 1:
        return [export_signature(saved_model_dir, out, signatures[0], opset=opset, check=check)]
    return [export_signature(saved_model_dir, out.with_name(f"{out.stem}.{sig}{out.suffix or '.onnx'}"), sig,
                             opset=opset, check=check) for sig in signatures]


# ---------------------------------------------------------------------------------------------
# Runner (numpy + onnxruntime only)
# ---------------------------------------------------------------------------------------------

def read_onnx_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """The tfmusic metadata stored in an exported ONNX file ({} for foreign files)."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    raw = session.get_modelmeta().custom_metadata_map.get(METADATA_KEY)
    return json.loads(raw) if raw else {}


class OnnxSeparator:
    """Waveform -> stems with ONNX Runtime; no TensorFlow import anywhere on this path."""

    def __init__(self, path: str | os.PathLike, threads: int | None = None) -> None:
        import onnxruntime as ort

        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(2, "ONNX model not found", str(path))
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = int(threads)
        try:
            self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as err:  # noqa: BLE001 - onnxruntime raises its own types
            raise ValueError(f"{path}: cannot load ONNX model: {err}") from err
        inputs = [i.name for i in self.session.get_inputs()]
        if inputs != ["waveform"]:
            raise ValueError(f"{path}: expected one input 'waveform', found {inputs} (export a separator's "
                             "serving_default signature)")
        raw = self.session.get_modelmeta().custom_metadata_map.get(METADATA_KEY)
        self.metadata = json.loads(raw) if raw else {}
        self.path = path
        self.outputs = [o.name for o in self.session.get_outputs()]
        # a `transcribe` export also carries frame curves (<target>_activity, <target>_pitch): not stems
        self.targets = [n for n in self.outputs if not n.endswith(CURVE_SUFFIXES)]
        self.sample_rate = int(self.metadata.get("sample_rate", 44100))
        self.channels = self.metadata.get("channels")
        length = self.session.get_inputs()[0].shape[-1]
        self.fixed_samples = length if isinstance(length, int) and length > 0 else None

    def __call__(self, waveform: np.ndarray) -> dict[str, np.ndarray]:
        """``(B, C, S)`` float32 -> ``{target: (B, C, S)}`` (plus any frame curves the export carries);
        fixed-length models are fed crossfaded chunks."""
        wav = np.ascontiguousarray(waveform, dtype=np.float32)
        if self.channels and wav.shape[1] != self.channels:
            raise ValueError(f"{self.path}: model takes {self.channels} channel(s), got {wav.shape[1]}")
        if self.fixed_samples is None or wav.shape[-1] == self.fixed_samples:
            return dict(zip(self.outputs, self.session.run(self.outputs, {"waveform": wav})))
        from tfmusic.audio.chunking import separate_in_chunks

        def run(piece: np.ndarray) -> dict[str, np.ndarray]:
            return {k: v[0] for k, v in zip(self.outputs, self.session.run(self.outputs, {"waveform": piece[None]}))}

        per_item = [separate_in_chunks(item, run, chunk_samples=self.fixed_samples,
                                       overlap_samples=min(4096, self.fixed_samples // 2),
                                       min_samples=self.fixed_samples, progress=False) for item in wav]
        return {t: np.stack([p[t] for p in per_item]) for t in self.outputs}


def onnx_chunk_backend(model_paths: list[str], targets: list[str] | None = None, threads: int | None = None
                       ) -> tuple[Callable[[np.ndarray], dict], list[str]]:
    """A chunk function for `tfmusic.audio.chunking` running one ``.onnx`` separator (no TensorFlow): the kept
    targets' stems and, from a ``transcribe`` export, their activity and pitch curves.

    Returns ``(fn, targets kept)``; raises `OnnxExportError` for a wrong model list or unknown targets.
    """
    paths = [p for p in model_paths if str(p).endswith(".onnx")]
    if len(paths) != 1 or len(model_paths) != 1:
        raise OnnxExportError("--backend onnx needs exactly one --model FILE.onnx (from `tfmusic export onnx`)")
    try:
        separator = OnnxSeparator(paths[0], threads=threads)
    except (OSError, ValueError) as err:
        raise OnnxExportError(str(err)) from err
    if targets:
        missing = [t for t in targets if t not in separator.targets]
        if missing:
            raise OnnxExportError(f"{paths[0]}: no output for target(s) {missing}; it has {separator.targets}")
    keep = list(targets or separator.targets)

    def separate_chunk(piece: np.ndarray) -> dict:
        out = separator(piece[None])
        return {k: v[0] for k, v in out.items() if k in keep or _curve_target(k) in keep}

    return separate_chunk, keep
