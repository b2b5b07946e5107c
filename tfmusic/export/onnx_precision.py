"""Reduced-precision ONNX variants of an fp32 export: int8 (dynamic or static quantization) and fp16.

Why here and not in tf2onnx: both are rewrites of the finished fp32 ONNX file with ONNX Runtime's
own tools, so the fp32 export (and its 1e-4 parity with the SavedModel) stays the reference and each
variant is checked against it on fresh random inputs with its own, looser, tolerance.

int8: ``onnxruntime.quantization.quantize_dynamic`` (weights int8 per output channel, activations
quantized per call). Only ops whose weight is an initializer are quantized: a ``MatMul`` of two
activations (the STFT/ISTFT basis products, whose basis the compaction pass rebuilds in-graph) would
otherwise quantize a 4096-row basis to 8 bits on every call, costing accuracy and time.

int8-static: ``onnxruntime.quantization.quantize_static`` in QDQ form, per channel, calibrated on a
few mixtures: convolutions, transposed convolutions and every MatMul (the STFT/ISTFT basis products
too) run on int8 kernels. Why: dynamic int8 speeds up only the weight MatMuls, a few % of the time
(profiled: STFT/ISTFT MatMuls 48 %, ConvTranspose 25 %, Conv 17 %), so it cannot reach 2x; static
ranges let ONNX Runtime fuse every heavy op into an int8 kernel (24 ``QLinearConv`` + 6
``QLinearMatMul`` in the demo separator's optimized graph). The activation ranges come from the
calibration audio, so it must be music like the inputs (not noise). Measured on the demo IASS
separator (output SNR vs fp32 on 8 s of a held-out song): it fails on accuracy, not kernels. All
convolutions quantized: 0.5 dB (min-max ranges), 3.0 dB (99.99th-percentile ranges); a single
quantized convolution already costs most of it (the first encoder conv alone: 4.6 dB, the last
decoder conv alone: 9.4 dB). Likely cause (not verified): per-tensor uint8 steps are coarse for the
heavy-tailed magnitude activations, and the dense 1487 -> 2049 ``fc`` spreads every bin's error over
all bins. So the CLI does not offer this variant; the bench builds it to measure the int8 speed
ceiling and its SDR loss.

fp16: ``onnxconverter_common.float16`` (optional, the ``edge`` extra) with fp32 inputs/outputs kept,
so callers feed the same arrays. It is meant for GPU providers; ONNX Runtime's CPU provider has few
fp16 kernels and runs it through casts (measured in bench/bench_onnx_edge.py).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

log = logging.getLogger(__name__)

PRECISIONS = ("fp32", "fp16", "int8", "int8-static")
STATIC_OPS = ["Conv", "ConvTranspose", "MatMul", "Gemm"]
CONTROL_FLOW = ["Loop", "Scan", "If"]
DFT_PREFIX = "tfmusic_dft"  # the compaction pass's node prefix: kept fp32 so ONNX Runtime folds the bases once
# relative max |diff| vs the fp32 ONNX on random inputs; the SDR check on real songs is the bench's job
VARIANT_TOLERANCE = {"fp16": 2e-2, "int8": 0.25, "int8-static": 0.25}


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


def quantize_int8_static(src: str | os.PathLike, dst: str | os.PathLike, calibration: Sequence[np.ndarray]) -> Path:
    """Static QDQ int8 quantization of ``src`` (fp32 ONNX separator) into ``dst``.

    ``calibration``: waveforms ``(channels, samples)`` (a few seconds of music each) whose activation
    ranges (min/max) fix the activations' int8 scales. Weights: int8 per output channel;
    activations: uint8 (the u8 x s8 kernels of x86 VNNI).
    """
    import onnx
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    if not len(calibration):
        raise PrecisionError("int8-static needs calibration audio (a few mixtures)")
    model = onnx.load(str(src))
    name = model.graph.input[0].name
    prepared = _transposed_as_conv(onnx.load(str(src)))
    staged = Path(dst).with_name(Path(dst).name + ".staged")
    onnx.save(prepared, str(staged))

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.items = iter([{name: np.asarray(w, np.float32)[None]} for w in calibration])

        def get_next(self):
            return next(self.items, None)

    try:
        quantize_static(str(staged), str(dst), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, op_types_to_quantize=STATIC_OPS)
    finally:
        staged.unlink(missing_ok=True)
    _copy_metadata(model, dst, "int8-static")
    return Path(dst)


def _transposed_as_conv(model):
    """Each stride-1 ``ConvTranspose`` (the decoder's 3x3 layers) as the equal ``Conv``: kernel
    flipped in space with in/out channels swapped, padded by ``k - 1`` (a stride-1 transposed
    convolution without pads is the 'full' convolution). Why: ONNX Runtime's CPU provider has an int8
    kernel for QDQ ``Conv`` but runs a QDQ ``ConvTranspose`` as dequantize + fp32 (checked in the
    optimized graph). Strided ones (the (1,3) upsamplers, a small share) are left as they are.
    """
    from onnx import helper, numpy_helper

    inits = {t.name: t for t in model.graph.initializer}
    nodes = []
    for node in model.graph.node:
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        weight = inits.get(node.input[1]) if node.op_type == "ConvTranspose" else None
        if (weight is None or len(weight.dims) != 4 or any(v != 1 for v in attrs.get("strides", [1, 1]))
                or any(v != 1 for v in attrs.get("dilations", [1, 1])) or attrs.get("group", 1) != 1
                or any(k in attrs for k in ("pads", "output_padding", "output_shape", "auto_pad"))):
            nodes.append(node)
            continue
        w = numpy_helper.to_array(weight)
        flipped = np.ascontiguousarray(w.transpose(1, 0, 2, 3)[:, :, ::-1, ::-1])
        name = f"{weight.name}_as_conv"
        model.graph.initializer.append(numpy_helper.from_array(flipped, name))
        kh, kw = w.shape[2:]
        nodes.append(helper.make_node("Conv", [node.input[0], name, *node.input[2:]], list(node.output),
                                      name=f"{node.name}_as_conv", kernel_shape=[kh, kw],
                                      pads=[kh - 1, kw - 1, kh - 1, kw - 1], strides=[1, 1], dilations=[1, 1]))
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    used = {i for n in model.graph.node for i in n.input}
    kept = [t for t in model.graph.initializer if t.name in used]
    del model.graph.initializer[:]
    model.graph.initializer.extend(kept)
    return model


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
            samples: int | None = None, waveform: np.ndarray | None = None) -> float:
    """Max relative |diff| of ``candidate`` vs ``reference`` (both ONNX separators) on one random
    waveform, or on ``waveform`` ``(channels, samples)``."""
    import onnxruntime as ort

    from tfmusic.export.onnx import parity_error

    ref = ort.InferenceSession(str(reference), providers=["CPUExecutionProvider"])
    cand = ort.InferenceSession(str(candidate), providers=["CPUExecutionProvider"])
    shape = ref.get_inputs()[0].shape
    channels = shape[1] if isinstance(shape[1], int) else 2
    length = shape[2] if isinstance(shape[2], int) and shape[2] > 0 else (samples or 4 * 4096 + 517)
    rng = np.random.default_rng(seed)
    x = (0.1 * rng.standard_normal((1, channels, length))) if waveform is None else np.asarray(waveform)[None]
    feeds = {ref.get_inputs()[0].name: x.astype(np.float32)}
    names = [o.name for o in ref.get_outputs()]
    want = ref.run(names, feeds)
    got = dict(zip([o.name for o in cand.get_outputs()], cand.run(None, feeds)))
    return max(parity_error(w, got[n]) for n, w in zip(names, want))


def make_variant(src: str | os.PathLike, precision: str, out: str | os.PathLike | None = None,
                 *, check: bool = True, calibration: Sequence[np.ndarray] = ()) -> VariantReport:
    """Build the ``precision`` variant of the fp32 export ``src`` beside it (or at ``out``) and check it
    (``calibration``: waveforms for ``int8-static``, see :func:`quantize_int8_static`)."""
    if precision not in PRECISIONS:
        raise PrecisionError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    src = Path(src)
    if precision == "fp32":
        return VariantReport(src, "fp32", 0.0, src.stat().st_size)
    dst = Path(out) if out else variant_path(src, precision)
    if precision == "int8-static":
        quantize_int8_static(src, dst, calibration)
    else:
        (quantize_int8 if precision == "int8" else convert_fp16)(src, dst)
    worst = float("nan")
    if check:
        # static ranges fit music, not white noise: the int8-static check runs on a calibration piece
        worst = compare(src, dst, waveform=calibration[0] if precision == "int8-static" else None)
        if not worst <= VARIANT_TOLERANCE[precision]:
            raise PrecisionError(f"{dst}: {precision} variant differs from the fp32 export by "
                                 f"{worst:.3g} (max |diff| / scale) > {VARIANT_TOLERANCE[precision]:g}")
    log.info("wrote %s (%s, %.1f MB, max rel diff vs fp32 %.3g)", dst, precision, dst.stat().st_size / 1e6, worst)
    return VariantReport(dst, precision, worst, dst.stat().st_size)
