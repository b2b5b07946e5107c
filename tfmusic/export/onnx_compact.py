"""Shrink an exported separator: rebuild the folded STFT bases inside the ONNX graph.

Why: tf2onnx evaluates every TF op whose inputs are constant (``compute_const_folding_using_tf``)
and stores the result, so the forward/inverse windowed-DFT bases that ``tfmusic.audio.stft``
builds in-graph from 4096-entry tables come out as ~134 MB of float32 initializers: ten times
the model's own weights. Its only guard (skip results >= 1e6 elements when every input has
<= 1000) cannot hold for a 4096 x 4098 outer product, so no TF-side rewrite avoids it.

What: a post-pass with the ``onnx`` package. Each large float initializer whose shape fits an
STFT basis (a row block of the forward ``(n_fft, 2 * bins)`` [cos | -sin] basis, or the inverse
``(2 * bins, n_fft)`` basis) is compared bit for bit with the basis ``tfmusic.audio.stft`` builds;
a match is replaced by a small subgraph (``Range`` x ``Range`` -> ``Mod`` -> ``Gather`` from the
same float32 cos/sin tables -> ``Mul`` by the same window) that ONNX Runtime constant-folds once at
session start. Before anything is replaced, the subgraphs are run in ONNX Runtime and must reproduce
the stored bytes exactly, so the rewritten model computes what the unrewritten one did.

Memory: letting tf2onnx fold the bases first costs far more than the file: its folding keeps every
intermediate of the basis computation (index grids, gathers, products: ~30 arrays of 4096 x 2049)
and runs a TF session per node, so converting even a tiny separator peaked at 11-13 GB. So the
export cuts them out *before* conversion (`cut_stft_bases`: each basis tensor the converter would
fold becomes a placeholder, the computation behind it is pruned) and puts them back *after*
(`restore_stft_bases`: the same in-graph subgraphs, verified bit for bit against the TF values).
`compact_stft_constants` stays as the fallback for bases that did get folded into initializers.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

log = logging.getLogger(__name__)

MIN_ELEMENTS = 1 << 20  # only initializers this big are worth a look (a 1024 x 1024 float32 block is 4 MB)


@dataclass
class CompactReport:
    """What the pass replaced: initializer names and the bytes saved."""

    replaced: list[str] = field(default_factory=list)
    bytes_before: int = 0
    bytes_after: int = 0


def _bases(n_fft: int) -> tuple[np.ndarray, np.ndarray]:
    """The forward and inverse bases exactly as the exported model computed them (TF float32)."""
    from tfmusic.audio import stft

    forward = np.asarray(stft._forward_basis_tensor(n_fft, "float32"))
    inverse = np.asarray(stft._inverse_basis_tensor(n_fft, "float32"))
    return forward, inverse


class _Builder:
    """Emits the basis subgraphs into a graph with unique names; shared tables are emitted once."""

    def __init__(self, graph, n_fft: int, prefix: str) -> None:
        self.graph, self.n, self.prefix = graph, n_fft, prefix
        self.nodes: list = []
        self.inits: list = []
        self._count = 0
        self._made: dict[str, str] = {}

    def _name(self, what: str) -> str:
        self._count += 1
        return f"{self.prefix}/{what}_{self._count}"

    def const(self, array: np.ndarray, what: str) -> str:
        from onnx import numpy_helper

        name = self._name(what)
        self.inits.append(numpy_helper.from_array(np.asarray(array), name))
        return name

    def node(self, op: str, inputs: list[str], **attrs) -> str:
        from onnx import helper

        out = self._name(op.lower())
        self.nodes.append(helper.make_node(op, inputs, [out], name=out, **attrs))
        return out

    def _tables(self) -> tuple[str, str]:
        from tfmusic.audio import stft

        if "cos" not in self._made:
            cos_t, sin_t = stft._trig_tables(self.n)
            self._made["cos"] = self.const(cos_t, "cos_table")
            self._made["msin"] = self.const(-sin_t, "neg_sin_table")
        return self._made["cos"], self._made["msin"]

    def _phase_index(self, rows: int, cols: int) -> str:
        """``(r * c) mod n_fft``, int32 ``(rows, cols)`` (max 4095 * 4095 fits int32)."""
        def arange(count: int, axis: int) -> str:
            r = self.node("Range", [self.const(np.array(0, np.int32), "zero"),
                                    self.const(np.array(count, np.int32), "count"),
                                    self.const(np.array(1, np.int32), "one")])
            return self.node("Unsqueeze", [r, self.const(np.array([axis], np.int64), "axis")])
        prod = self.node("Mul", [arange(rows, 1), arange(cols, 0)])
        return self.node("Mod", [prod, self.const(np.array(self.n, np.int32), "n_fft")], fmod=0)

    def forward(self) -> str:
        """``(n_fft, 2 * bins)``: the [cos | -sin] basis times the periodic Hann window (as stft.py)."""
        from tfmusic.audio import stft

        if "forward" not in self._made:
            cos_t, msin_t = self._tables()
            idx = self._phase_index(self.n, self.n // 2 + 1)
            window = self.const(stft.hann_window(self.n).astype(np.float32)[:, None], "window")
            parts = [self.node("Mul", [self.node("Gather", [t, idx], axis=0), window]) for t in (cos_t, msin_t)]
            self._made["forward"] = self.node("Concat", parts, axis=1)
        return self._made["forward"]

    def inverse(self) -> str:
        """``(2 * bins, n_fft)``: inverse real-DFT basis times weight x window, the product in float64."""
        from onnx import TensorProto

        from tfmusic.audio import stft

        if "inverse" not in self._made:
            bins = self.n // 2 + 1
            cos_t, msin_t = self._tables()
            idx = self._phase_index(bins, self.n)
            weight = np.full((bins, 1), 2.0 / self.n)
            weight[0] = 1.0 / self.n
            if self.n % 2 == 0:
                weight[-1] = 1.0 / self.n
            scale64 = self.node("Mul", [self.const(weight, "weight"),
                                        self.const(stft.hann_window(self.n)[None, :], "window64")])
            scale = self.node("Cast", [scale64], to=TensorProto.FLOAT)
            parts = [self.node("Mul", [self.node("Gather", [t, idx], axis=0), scale]) for t in (cos_t, msin_t)]
            self._made["inverse"] = self.node("Concat", parts, axis=0)
        return self._made["inverse"]

    def rows(self, source: str, start: int, stop: int, out: str) -> None:
        """``out = source[start:stop]`` under the initializer's own name, so consumers are untouched."""
        from onnx import helper

        self.nodes.append(helper.make_node(
            "Slice", [source, self.const(np.array([start], np.int64), "start"),
                      self.const(np.array([stop], np.int64), "stop"),
                      self.const(np.array([0], np.int64), "axes")], [out], name=self._name("slice")))

    def alias(self, source: str, out: str) -> None:
        from onnx import helper

        self.nodes.append(helper.make_node("Identity", [source], [out], name=self._name("identity")))


def _match(array: np.ndarray, n_fft: int, bases: dict[int, tuple[np.ndarray, np.ndarray]]
           ) -> tuple[str, int, int] | None:
    """``("forward", start, stop)`` / ``("inverse", 0, rows)`` if ``array`` is exactly that basis block."""
    if n_fft not in bases:
        bases[n_fft] = _bases(n_fft)
    forward, inverse = bases[n_fft]
    rows = array.shape[0]
    if array.shape == inverse.shape and np.array_equal(array, inverse):
        return ("inverse", 0, rows)
    if array.shape[1] == forward.shape[1] and n_fft % rows == 0:
        for start in range(0, n_fft, rows):
            if np.array_equal(array, forward[start:start + rows]):
                return ("forward", start, start + rows)
    return None


def _candidate_n_fft(shape: tuple[int, ...]) -> list[int]:
    """n_fft values an STFT-basis-shaped 2-D initializer could come from (even n_fft: 2 * bins = n_fft + 2)."""
    if len(shape) != 2:
        return []
    rows, cols = shape
    out = []
    if cols >= 4 and (cols - 2) % 2 == 0 and (cols - 2) % rows == 0:
        out.append(cols - 2)  # forward row block
    if rows == cols + 2 and cols % 2 == 0:
        out.append(cols)  # inverse
    return out


class _Basis(NamedTuple):
    """A tensor found to be exactly an STFT basis block: ``forward[start:stop]`` or the whole inverse."""

    value: np.ndarray
    n_fft: int
    kind: str  # "forward" | "inverse"
    start: int
    stop: int


def compact_stft_constants(model, min_elements: int | None = None) -> CompactReport:
    """Replace folded STFT-basis initializers of ``model`` (an ``onnx.ModelProto``, edited in place).

    ``min_elements`` defaults to the module's ``MIN_ELEMENTS`` (read at call time, so tests can lower it).

    Raises ``RuntimeError`` if the emitted subgraphs do not reproduce the stored bytes exactly.
    """
    from onnx import TensorProto, numpy_helper

    min_elements = MIN_ELEMENTS if min_elements is None else min_elements
    bases: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    hits: dict[str, _Basis] = {}
    for init in model.graph.initializer:
        if init.data_type != TensorProto.FLOAT or int(np.prod(init.dims)) < min_elements:
            continue
        found = _find(numpy_helper.to_array(init), bases)
        if found:
            hits[init.name] = found
    return _install(model, hits)


def _find(array: np.ndarray, bases: dict) -> _Basis | None:
    """``array`` as the STFT basis block it exactly is (for some n_fft), else None."""
    for n_fft in _candidate_n_fft(tuple(array.shape)):
        found = _match(array, n_fft, bases)
        if found:
            return _Basis(array, n_fft, *found)
    return None


def _install(model, hits: dict[str, _Basis]) -> CompactReport:
    """Compute each of ``hits`` (an initializer or a graph input of ``model``, by name) with an in-graph
    subgraph instead, after checking the subgraphs reproduce the values bit for bit."""
    from onnx import numpy_helper

    graph = model.graph
    report = CompactReport(bytes_before=sum(numpy_helper.to_array(t).nbytes for t in graph.initializer))
    if not hits:
        report.bytes_after = report.bytes_before
        return report
    builders: dict[int, _Builder] = {}
    for name, basis in hits.items():
        builder = builders.setdefault(basis.n_fft, _Builder(graph, basis.n_fft, f"tfmusic_dft{basis.n_fft}"))
        if basis.kind == "inverse":
            builder.alias(builder.inverse(), name)
        else:
            builder.rows(builder.forward(), basis.start, basis.stop, name)
    new_nodes = [n for b in builders.values() for n in b.nodes]
    new_inits = [t for b in builders.values() for t in b.inits]
    _verify(new_nodes, new_inits, [(name, basis.value) for name, basis in hits.items()], model.opset_import)
    keep = [t for t in graph.initializer if t.name not in hits]
    del graph.initializer[:]
    graph.initializer.extend(keep + new_inits)
    inputs = [i for i in graph.input if i.name not in hits]
    del graph.input[:]
    graph.input.extend(inputs)
    # the subgraph has only constant inputs, so putting it first keeps the node list topologically sorted
    nodes = list(graph.node)
    del graph.node[:]
    graph.node.extend(new_nodes + nodes)
    report.replaced = sorted(hits)
    report.bytes_after = sum(numpy_helper.to_array(t).nbytes for t in graph.initializer)
    log.info("rebuilt %d STFT bases in-graph: %.1f MB -> %.1f MB of initializers",
             len(hits), report.bytes_before / 1e6, report.bytes_after / 1e6)
    return report


def cut_stft_bases(graph_def, outputs: list[str], min_elements: int | None = None):
    """Before conversion: each STFT-basis tensor of a frozen TF ``graph_def`` that a converter would constant-fold
    (computed from constants only, big, consumed by a runtime op) becomes a placeholder of the same name, and the
    computation behind it is pruned. Returns ``(graph_def, {tensor name: basis})``; pass the names to the
    converter as extra inputs and the dict to `restore_stft_bases` afterwards. Nothing to cut: the input back."""
    import tensorflow as tf

    min_elements = MIN_ELEMENTS if min_elements is None else min_elements
    graph = tf.Graph()
    with graph.as_default():
        tf.import_graph_def(graph_def, name="")
    constant = _constant_ops(graph)
    candidates = []
    for op in graph.get_operations():
        if not constant[op.name] or op.type == "Const" or len(op.outputs) != 1:
            continue
        out = op.outputs[0]
        if (out.dtype == tf.float32 and out.shape.is_fully_defined() and out.shape.num_elements() >= min_elements
                and _candidate_n_fft(tuple(out.shape.as_list()))
                and any(not constant[c.name] for c in out.consumers())):
            candidates.append(out.name)
    if not candidates:
        return graph_def, {}
    with tf.compat.v1.Session(graph=graph) as session:
        values = dict(zip(candidates, session.run(candidates)))
    bases: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    cut = {name: found for name, found in ((n, _find(v, bases)) for n, v in values.items()) if found}
    if not cut:
        return graph_def, {}
    edited = tf.compat.v1.GraphDef()
    edited.CopyFrom(graph_def)
    for node in edited.node:
        name = f"{node.name}:0"
        if name in cut:
            shape = tf.TensorShape(cut[name].value.shape).as_proto()
            node.Clear()
            node.name, node.op = name[:-2], "Placeholder"
            node.attr["dtype"].type = tf.float32.as_datatype_enum
            node.attr["shape"].shape.CopyFrom(shape)
    return _prune(edited, outputs), cut


def _prune(graph_def, outputs: list[str]):
    """``graph_def`` without the nodes that no output needs any more (the cut bases' computation)."""
    by_name = {node.name: node for node in graph_def.node}
    needed, stack = set(), [o.split(":")[0] for o in outputs]
    while stack:
        name = stack.pop()
        if name not in needed:
            needed.add(name)
            stack.extend(i.lstrip("^").split(":")[0] for i in by_name[name].input)
    pruned = type(graph_def)()
    pruned.versions.CopyFrom(graph_def.versions)
    pruned.library.CopyFrom(graph_def.library)
    pruned.node.extend(node for node in graph_def.node if node.name in needed)
    return pruned


def restore_stft_bases(model, cut: dict[str, _Basis]) -> CompactReport:
    """After conversion: the graph inputs `cut_stft_bases` made are computed in-graph again (bit-exact)."""
    names = {i.name for i in model.graph.input}
    missing = sorted(set(cut) - names)
    if missing:
        raise RuntimeError(f"converted graph lost the STFT basis inputs {missing}")
    return _install(model, cut)


def _constant_ops(graph) -> dict[str, bool]:
    """Op name -> whether its outputs depend on constants only (no placeholder, variable or stateful op)."""
    memo: dict[str, bool] = {}
    for op in graph.get_operations():
        stack = [op]
        while stack:
            top = stack[-1]
            if top.name in memo:
                stack.pop()
                continue
            deps = [t.op for t in top.inputs] + list(top.control_inputs)
            todo = [d for d in deps if d.name not in memo]
            if todo:
                stack.extend(todo)
                continue
            stack.pop()
            if top.type == "Const":
                memo[top.name] = True
            else:
                stateful = top.op_def is not None and top.op_def.is_stateful
                memo[top.name] = bool(top.inputs) and not stateful and top.type not in _NEVER_CONSTANT \
                    and all(memo[d.name] for d in deps)
    return memo


_NEVER_CONSTANT = {"Placeholder", "PlaceholderWithDefault", "Enter", "Switch", "Merge", "NextIteration", "Exit"}


def _verify(nodes: list, inits: list, hits: list[tuple[str, np.ndarray]], opset_import) -> None:
    """Run the new subgraphs alone in ONNX Runtime; every output must equal the stored initializer bit for bit."""
    import onnxruntime as ort
    from onnx import helper

    outputs = [helper.make_tensor_value_info(name, helper.np_dtype_to_tensor_dtype(a.dtype), list(a.shape))
               for name, a in hits]
    graph = helper.make_graph(nodes, "tfmusic_dft_check", [], outputs, initializer=inits)
    model = helper.make_model(graph, opset_imports=list(opset_import))
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    got = session.run([name for name, _ in hits], {})
    for (name, want), value in zip(hits, got):
        if value.shape != want.shape or not np.array_equal(value.view(np.uint32), want.view(np.uint32)):
            bad = float(np.max(np.abs(value.astype(np.float64) - want))) if value.shape == want.shape else float("nan")
            raise RuntimeError(f"in-graph STFT basis for {name!r} does not reproduce the folded constant "
                               f"(max |diff| {bad:.3g}); leaving the export uncompacted is safer")
