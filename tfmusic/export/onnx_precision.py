"""Reduced-precision ONNX variants of an fp32 export: int8 (dynamic quantization) and fp16.

Why here and not in tf2onnx: both are rewrites of the finished fp32 ONNX file with ONNX Runtime's
own tools, so the fp32 export (and its 1e-4 parity with the SavedModel) stays the reference and each
variant is checked against it on fresh random inputs with its own, looser, tolerance.

int8: ``onnxruntime.quantization.quantize_dynamic`` (weights int8 per output channel, activations
quantized per call). Only ops whose weight is an initializer are quantized: a ``MatMul`` of two
activations (the STFT/ISTFT basis products, whose basis the compaction pass rebuilds in-graph) would
otherwise quantize a 4096-row basis to 8 bits on every call, costing accuracy and time.

fp16: ``onnxconverter_common.float16`` (optional, the ``edge`` extra) with fp32 inputs/outputs kept,
so callers feed the same arrays. It is meant for GPU providers; ONNX Runtime's CPU provider has few
fp16 kernels and runs it through casts (measured in bench/bench_onnx_edge.py).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

PRECISIONS = ("fp32", "fp16", "int8")
CONTROL_FLOW = ["Loop", "Scan", "If"]
DFT_PREFIX = "tfmusic_dft"  # the compaction pass's node prefix: kept fp32 so ONNX Runtime folds the bases once
# relative max |diff| vs the fp32 ONNX on random inputs; the SDR check on real songs is the bench's job
VARIANT_TOLERANCE = {"fp16": 2e-2, "int8": 0.25}


class PrecisionError(RuntimeError):
    """A variant could not be built, or differs from its fp32 source beyond its tolerance."""


@dataclass
class VariantReport:
    path: Path
    precision: str
    max_rel_diff: float
    bytes: int


def variant_path(out: str | os.PathLike, precision: str) -> Path:
    """``sep.onnx`` -> ``sep.int8.onnx`` (fp32 keeps the plain name)."""
    out = Path(out)
    return out if precision == "fp32" else out.with_name(f"{out.stem}.{precision}{out.suffix or '.onnx'}")


def _weighted_nodes(model) -> tuple[list[str], list[str]]:
    """(quantizable MatMul/Conv/Gemm node names with an initializer weight, the other ones)."""
    inits = {t.name for t in model.graph.initializer}
    keep, skip = [], []
    for node in model.graph.node:
        if node.op_type in ("MatMul", "Gemm", "Conv"):
            (keep if len(node.input) > 1 and node.input[1] in inits else skip).append(node.name)
    return keep, skip


def quantize_int8(src: str | os.PathLike, dst: str | os.PathLike, *, include_conv: bool = False) -> Path:
    """Dynamic int8 quantization of ``src`` (fp32 ONNX) into ``dst``.

    ``include_conv`` also quantizes convolutions (``ConvInteger``), which ONNX Runtime's CPU provider
    runs slower than fp32 convolutions in our measurements, so it is off by default.
    """
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    model = onnx.load(str(src))
    keep, skip = _weighted_nodes(model)
    op_types = ["MatMul", "Gemm"] + (["Conv"] if include_conv else [])
    types = {node.name: node.op_type for node in model.graph.node}
    if not [name for name in keep if types[name] in op_types]:
        raise PrecisionError(f"{src}: no MatMul/Gemm{'/Conv' if include_conv else ''} with stored weights to quantize")
    quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8, per_channel=True,
                     op_types_to_quantize=op_types, nodes_to_exclude=skip)
    _copy_metadata(model, dst, "int8")
    return Path(dst)


def convert_fp16(src: str | os.PathLike, dst: str | os.PathLike) -> Path:
    """fp16 weights and arithmetic, fp32 inputs/outputs (needs the optional onnxconverter-common)."""
    import onnx

    try:
        from onnxconverter_common import float16
    except ImportError as err:
        raise PrecisionError("fp16 export needs onnxconverter-common: pip install 'tfmusic[edge]'") from err
    model = onnx.load(str(src))
    keep_fp32 = _shape_arithmetic_nodes(model) | {n.name for n in model.graph.node if n.name.startswith(DFT_PREFIX)}
    # control flow (the LSTM while loops) stays fp32: the converter mistypes loop-body conditions
    converted = float16.convert_float_to_float16(model, keep_io_types=True, node_block_list=sorted(keep_fp32),
                                                 op_block_list=list(float16.DEFAULT_OP_BLOCK_LIST) + CONTROL_FLOW)
    _fix_cast_targets(converted, keep_fp32)
    onnx.save(converted, str(dst))
    _copy_metadata(model, dst, "fp16")
    return Path(dst)


def _shape_arithmetic_nodes(model) -> set[str]:
    """Nodes of float shape arithmetic, which must stay fp32.

    tf2onnx clamps slice bounds in float (``Cast`` int -> float, ``Max`` with +-1e9, ``Cast`` back):
    in fp16 the bounds overflow and sample counts above 2048 round, so reshapes fail. Found by
    walking back from each float -> integer ``Cast`` to the integer -> float ``Cast`` that fed it.
    """
    import onnx
    from onnx import TensorProto

    integer = {TensorProto.INT32, TensorProto.INT64, TensorProto.INT16, TensorProto.INT8, TensorProto.UINT8,
               TensorProto.BOOL}
    inferred = onnx.shape_inference.infer_shapes(model)
    types = {v.name: v.type.tensor_type.elem_type for v in list(inferred.graph.value_info) + list(inferred.graph.input)}
    types.update({t.name: t.data_type for t in model.graph.initializer})
    producers = {out: node for node in model.graph.node for out in node.output}

    def cast_to(node) -> int:
        return next((a.i for a in node.attribute if a.name == "to"), -1)

    found: set[str] = set()
    stack = [n for n in model.graph.node
             if n.op_type == "Cast" and cast_to(n) in integer and types.get(n.input[0]) == TensorProto.FLOAT]
    while stack:
        node = stack.pop()
        if node.name in found:
            continue
        found.add(node.name)
        if node.op_type == "Cast" and types.get(node.input[0]) in integer:
            continue  # reached the integer source
        stack.extend(producers[i] for i in node.input if i in producers)
    return found


def _fix_cast_targets(model, kept: set[str]) -> None:
    """The converter declares converted ``Cast(to=float)`` outputs fp16 but leaves ``to``; make them agree."""
    from onnx import TensorProto

    declared = {v.name: v.type.tensor_type.elem_type for v in list(model.graph.value_info) + list(model.graph.output)}
    for node in model.graph.node:
        if node.op_type != "Cast" or node.name in kept:
            continue
        for attr in node.attribute:
            if attr.name == "to" and attr.i == TensorProto.FLOAT and declared.get(node.output[0]) == TensorProto.FLOAT16:
                attr.i = TensorProto.FLOAT16


def _copy_metadata(source_model, dst: str | os.PathLike, precision: str) -> None:
    """Keep the tfmusic metadata (targets, sample rate...) and record the precision in it."""
    import json

    import onnx

    from tfmusic.export.onnx import METADATA_KEY

    props = {p.key: p.value for p in source_model.metadata_props}
    meta = json.loads(props.get(METADATA_KEY, "{}"))
    meta["precision"] = precision
    props[METADATA_KEY] = json.dumps(meta)
    model = onnx.load(str(dst))
    del model.metadata_props[:]
    onnx.helper.set_model_props(model, props)
    onnx.save(model, str(dst))


def compare(reference: str | os.PathLike, candidate: str | os.PathLike, *, seed: int = 0,
            samples: int | None = None) -> float:
    """Max relative |diff| of ``candidate`` vs ``reference`` (both ONNX separators) on one random waveform."""
    import onnxruntime as ort

    from tfmusic.export.onnx import parity_error

    ref = ort.InferenceSession(str(reference), providers=["CPUExecutionProvider"])
    cand = ort.InferenceSession(str(candidate), providers=["CPUExecutionProvider"])
    shape = ref.get_inputs()[0].shape
    channels = shape[1] if isinstance(shape[1], int) else 2
    length = shape[2] if isinstance(shape[2], int) and shape[2] > 0 else (samples or 4 * 4096 + 517)
    rng = np.random.default_rng(seed)
    feeds = {ref.get_inputs()[0].name: (0.1 * rng.standard_normal((1, channels, length))).astype(np.float32)}
    names = [o.name for o in ref.get_outputs()]
    want = ref.run(names, feeds)
    got = dict(zip([o.name for o in cand.get_outputs()], cand.run(None, feeds)))
    return max(parity_error(w, got[n]) for n, w in zip(names, want))


def make_variant(src: str | os.PathLike, precision: str, out: str | os.PathLike | None = None,
                 *, check: bool = True) -> VariantReport:
    """Build the ``precision`` variant of the fp32 export ``src`` beside it (or at ``out``) and check it."""
    if precision not in PRECISIONS:
        raise PrecisionError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    src = Path(src)
    if precision == "fp32":
        return VariantReport(src, "fp32", 0.0, src.stat().st_size)
    dst = Path(out) if out else variant_path(src, precision)
    (quantize_int8 if precision == "int8" else convert_fp16)(src, dst)
    worst = float("nan")
    if check:
        worst = compare(src, dst)
        if not worst <= VARIANT_TOLERANCE[precision]:
            raise PrecisionError(f"{dst}: {precision} variant differs from the fp32 export by "
                                 f"{worst:.3g} (max |diff| / scale) > {VARIANT_TOLERANCE[precision]:g}")
    log.info("wrote %s (%s, %.1f MB, max rel diff vs fp32 %.3g)", dst, precision, dst.stat().st_size / 1e6, worst)
    return VariantReport(dst, precision, worst, dst.stat().st_size)
