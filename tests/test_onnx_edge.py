"""ONNX for the edge: the STFT bases rebuilt in-graph (file ~ weights), int8 and fp16 variants, the CLI."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from tfmusic.export import onnx as tfonnx
from tfmusic.export import onnx_compact, onnx_precision


N_FFT = 1024  # small enough to export fast; MIN_ELEMENTS is lowered so its bases count as big


class MaskingSeparator(keras.Model):
    """The Separator contract with the real (DFT-basis) STFT/ISTFT and a tiny mask (fast to export)."""

    def __init__(self, **kwargs):
        from tfmusic.audio.stft import ISTFT, STFT

        super().__init__(**kwargs)
        self.stft = STFT(n_fft=N_FFT, hop_length=N_FFT // 4, center=True)
        self.istft = ISTFT(n_fft=N_FFT, hop_length=N_FFT // 4, center=True)
        self.mask = keras.layers.Dense(N_FFT // 2 + 1, activation="sigmoid")
        self.squeeze = keras.layers.Dense(8)

    def call(self, waveform, training=False):
        real, imag = self.stft(waveform)
        mag = keras.ops.sqrt(real * real + imag * imag + 1e-8)
        mask = self.mask(self.squeeze(keras.ops.log(mag + 1.0)))
        return {"bass": self.istft(real * mask, imag * mask, length=keras.ops.shape(waveform)[-1])}


@pytest.fixture(scope="module")
def exported(tmp_path_factory, request):
    """A tiny masking separator as SavedModel and fp32 ONNX, and its weight bytes."""
    from tfmusic.export.saved_model import export_separator

    root = tmp_path_factory.mktemp("edge")
    patch = pytest.MonkeyPatch()
    patch.setattr(onnx_compact, "MIN_ELEMENTS", 1 << 16)
    request.addfinalizer(patch.undo)
    keras.utils.set_random_seed(3)
    model = MaskingSeparator()
    model(np.zeros((1, 2, 3 * N_FFT), np.float32))
    weight_bytes = sum(int(np.prod(w.shape)) * 4 for w in model.weights)
    sm_dir, _ = export_separator(model, root / "repo", "separator", example_samples=4 * 4096)
    (result,) = tfonnx.export_onnx(sm_dir, root / "sep.onnx")
    return sm_dir, result, weight_bytes


def test_stft_bases_are_rebuilt_not_stored(exported):
    import onnx

    _, result, weight_bytes = exported
    model = onnx.load(str(result.path))
    biggest = max(int(np.prod(t.dims)) for t in model.graph.initializer)
    assert biggest < (N_FFT // 4) * (N_FFT + 2)  # no basis block left
    assert any(n.name.startswith(onnx_precision.DFT_PREFIX) for n in model.graph.node)
    # weights + the n_fft-entry tables + graph (the folded bases alone were 8 n_fft^2 bytes)
    assert result.path.stat().st_size < weight_bytes + 100_000 < 8 * N_FFT**2
    assert result.max_rel_diff <= 1e-4  # parity with the SavedModel, checked by the export itself


def test_converter_never_sees_the_bases(exported):
    """The bases are cut out of the TF graph before tf2onnx runs (its folding of them took > 9 GB)."""
    import tf2onnx

    sm_dir, _, _ = exported
    tfonnx._patch_tf2onnx_numpy2()
    graph_def, _, outputs = tf2onnx.tf_loader.from_saved_model(str(sm_dir), None, None, tag="serve",
                                                                signatures=["serving_default"])
    pruned, cut = onnx_compact.cut_stft_bases(graph_def, outputs)
    kinds = sorted({basis.kind for basis in cut.values()})
    assert kinds == ["forward", "inverse"]
    assert {n.name + ":0" for n in pruned.node if n.op == "Placeholder"} >= set(cut)
    assert len(pruned.node) < len(graph_def.node) - 10  # the basis computation is gone
    assert onnx_compact.cut_stft_bases(pruned, outputs)[1] == {}  # no foldable basis left


def test_compaction_is_bit_exact_and_idempotent(exported, tmp_path):
    import onnx
    import onnxruntime as ort

    from tests.test_export_saved_model import export_tiny_separator

    _, result, _ = exported
    model = onnx.load(str(result.path))
    assert onnx_compact.compact_stft_constants(model).replaced == []  # nothing left to replace
    # a model without STFT: untouched
    sm_dir, _ = export_tiny_separator(tmp_path / "repo")
    (plain,) = tfonnx.export_onnx(sm_dir, tmp_path / "plain.onnx")
    assert not any(n.name.startswith(onnx_precision.DFT_PREFIX) for n in onnx.load(str(plain.path)).graph.node)
    # the rebuilt bases give exactly the outputs of the folded ones
    forward, _ = onnx_compact._bases(N_FFT)
    rows = N_FFT // 4
    block = forward[rows:2 * rows]
    x = onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, rows])
    y = onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, N_FFT + 2])
    folded = onnx.helper.make_model(onnx.helper.make_graph(
        [onnx.helper.make_node("MatMul", ["x", "w"], ["y"])], "g", [x], [y],
        initializer=[onnx.numpy_helper.from_array(block, "w")]), opset_imports=[onnx.helper.make_opsetid("", 17)])
    compacted = onnx.ModelProto()
    compacted.CopyFrom(folded)
    assert onnx_compact.compact_stft_constants(compacted, min_elements=1).replaced == ["w"]
    feed = {"x": np.random.default_rng(0).standard_normal((1, rows)).astype(np.float32)}
    want = ort.InferenceSession(folded.SerializeToString()).run(None, feed)[0]
    got = ort.InferenceSession(compacted.SerializeToString()).run(None, feed)[0]
    np.testing.assert_array_equal(got, want)
    assert compacted.ByteSize() < folded.ByteSize() / 10


@pytest.mark.parametrize("precision", ["int8", "fp16"])
def test_precision_variants(exported, precision):
    _, result, _ = exported
    report = onnx_precision.make_variant(result.path, precision)
    assert report.path.name == f"sep.{precision}.onnx"
    assert report.max_rel_diff <= onnx_precision.VARIANT_TOLERANCE[precision]
    assert tfonnx.read_onnx_metadata(report.path)["precision"] == precision
    sep = tfonnx.OnnxSeparator(report.path)
    out = sep((0.1 * np.random.default_rng(1).standard_normal((1, 2, 3 * N_FFT))).astype(np.float32))
    assert out["bass"].shape == (1, 2, 3 * N_FFT) and out["bass"].dtype == np.float32


def test_cli_precision_flag(exported, tmp_path, capsys, monkeypatch):
    import shutil

    from tfmusic.cli.main import main

    sm_dir, result, _ = exported
    out = tmp_path / "m.onnx"

    def fake_export(saved_model, path, signatures=None, **kwargs):  # the conversion is tested above
        shutil.copy(result.path, path)
        return [tfonnx.OnnxExport(out, result.signature, result.inputs, result.outputs, result.max_rel_diff, 17)]

    monkeypatch.setattr(tfonnx, "export_onnx", fake_export)
    assert main(["export", "onnx", "--saved-model", str(sm_dir), "--out", str(out), "--precision", "int8"]) == 0
    printed = capsys.readouterr().out
    assert (tmp_path / "m.int8.onnx").is_file() and "int8" in printed and "MB" in printed
    assert tfonnx.read_onnx_metadata(tmp_path / "m.int8.onnx")["kind"] == "separator"
    with pytest.raises(SystemExit) as err:
        main(["export", "onnx", "--saved-model", str(sm_dir), "--out", str(out), "--precision", "int4"])
    assert err.value.code == 2


def test_stride_one_conv_transpose_rewritten_as_equal_conv(tmp_path):
    """int8-static's pre-pass: a stride-1 ConvTranspose (no pads: 'full') becomes the equal Conv, so
    ONNX Runtime can run it on its int8 Conv kernel; strided ones are left alone."""
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    w = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)  # (in, out, kh, kw)
    up = rng.standard_normal((3, 2, 1, 3)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("ConvTranspose", ["x", "w", "b"], ["y"], name="full", kernel_shape=[3, 3]),
         helper.make_node("ConvTranspose", ["y", "up"], ["z"], name="up", kernel_shape=[1, 3], strides=[1, 3])],
        "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 5, 7])],
        [helper.make_tensor_value_info("z", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(w, "w"), numpy_helper.from_array(np.arange(3, dtype=np.float32), "b"),
         numpy_helper.from_array(up, "up")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    x = rng.standard_normal((1, 4, 5, 7)).astype(np.float32)
    want = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    rewritten = onnx_precision._transposed_as_conv(model)
    assert [n.op_type for n in rewritten.graph.node] == ["Conv", "ConvTranspose"]
    assert {t.name for t in rewritten.graph.initializer} == {"w_as_conv", "b", "up"}
    got = ort.InferenceSession(rewritten.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_int8_static_variant_builds_and_runs(exported):
    """The QDQ variant the bench measures: calibrated on music-like pieces, int8 nodes present, runs."""
    import onnx

    _, result, _ = exported
    rng = np.random.default_rng(2)
    pieces = [(0.1 * rng.standard_normal((2, 4 * N_FFT))).astype(np.float32) for _ in range(2)]
    report = onnx_precision.make_variant(result.path, "int8-static", calibration=pieces, check=False)
    assert report.path.name == "sep.int8-static.onnx"
    assert {"QuantizeLinear", "DequantizeLinear"} <= {n.op_type for n in onnx.load(report.path).graph.node}
    assert tfonnx.read_onnx_metadata(report.path)["precision"] == "int8-static"
    # max |diff| / scale on a calibration piece: 0.015 measured on this tiny model (make_variant allows 0.25)
    assert onnx_precision.compare(result.path, report.path, waveform=pieces[0]) <= 0.05
    with pytest.raises(onnx_precision.PrecisionError, match="calibration"):
        onnx_precision.make_variant(result.path, "int8-static")
