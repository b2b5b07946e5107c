"""ONNX export from the SavedModel: parity with TF, VAE encode/decode, and the TF-free runner."""

from __future__ import annotations

import json
import subprocess
import sys

import keras
import numpy as np
import pytest

from tests.test_export_saved_model import N_FFT, TinyVAE, export_tiny_separator, export_tiny_vae
from tfmusic.export import onnx as tfonnx
from tfmusic.export import saved_model as sm
from tfmusic.models.iass import DecoderBlock


class UpsamplingVAE(TinyVAE):
    """Decoder through an IASS ``DecoderBlock`` with ``output_padding`` and non-zero biases.

    tf2onnx drops a transposed conv's bias on output-padding bins; random-init (zero) biases hide
    that, and the dense layer after it spreads the error everywhere (the trained IASS drums bug).
    """

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.seed_dense = keras.layers.Dense(self.length * 5 * 3)
        self.block = DecoderBlock(4, 3, 2, output_padding=2, last=True)

    def decode(self, z, training=False):
        h = keras.ops.reshape(self.seed_dense(z), (-1, self.length, 5, 3))  # (B, T, F=5, 3)
        h = self.block(h, training=training)  # (B, T, 3 * 5 + 2, 2)
        return self.out(keras.ops.reshape(h, (-1, self.length, 34)))[..., : self.vocab]


def test_separator_onnx_parity_and_metadata(tmp_path):
    import onnxruntime as ort
    import tensorflow as tf

    sm_dir, _ = export_tiny_separator(tmp_path / "repo")
    (result,) = tfonnx.export_onnx(sm_dir, tmp_path / "sep.onnx")
    assert result.path == tmp_path / "sep.onnx" and result.max_rel_diff <= 1e-4
    assert result.inputs == ["waveform"] and sorted(result.outputs) == ["drums", "vocals"]
    meta = tfonnx.read_onnx_metadata(result.path)
    assert meta["kind"] == "separator" and meta["opset"] == 17 and meta["signature"] == "serving_default"
    # independent re-check on another shape than the export's parity example
    x = (0.2 * np.random.default_rng(11).standard_normal((2, 2, N_FFT + 777))).astype(np.float32)
    sess = ort.InferenceSession(str(result.path), providers=["CPUExecutionProvider"])
    got = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, {"waveform": x})))
    want = tf.saved_model.load(str(sm_dir)).signatures["serving_default"](waveform=tf.constant(x))
    for k in ("drums", "vocals"):
        np.testing.assert_allclose(got[k], want[k].numpy(), atol=1e-5)


def test_parity_check_fails_on_a_different_model(tmp_path):
    a, _ = export_tiny_separator(tmp_path / "repo", "a", seed=1)
    b, _ = export_tiny_separator(tmp_path / "repo", "b", seed=2)
    tfonnx.export_onnx(b, tmp_path / "b.onnx", check=False)
    with pytest.raises(tfonnx.OnnxExportError, match="differs from the SavedModel"):
        tfonnx.check_parity(a, tmp_path / "b.onnx", "serving_default")


def test_vae_encode_decode_onnx(tmp_path):
    sm_dir, _ = export_tiny_vae(tmp_path / "repo")
    results = tfonnx.export_onnx(sm_dir, tmp_path / "vae.onnx")
    assert [r.path.name for r in results] == ["vae.encode.onnx", "vae.decode.onnx"]
    assert sorted(results[0].outputs) == ["log_std", "mean"] and results[1].outputs == ["logits"]
    assert all(r.max_rel_diff <= 1e-4 for r in results)
    with pytest.raises(tfonnx.OnnxExportError, match="no signature"):
        tfonnx.export_onnx(sm_dir, tmp_path / "x.onnx", ["nope"])


def test_output_padding_bias_survives_onnx_conversion(tmp_path):
    keras.utils.set_random_seed(5)
    model = UpsamplingVAE()
    model(np.zeros((1, 16), np.int32))
    rng = np.random.default_rng(5)
    for weight in model.weights:
        if weight.name == "bias":
            weight.assign(rng.standard_normal(weight.shape).astype(np.float32))
    sm_dir, _ = sm.export_vae(model, tmp_path / "repo", "vae", input_shape=(16,), input_dtype="int32", input_high=12)
    (decode,) = tfonnx.export_onnx(sm_dir, tmp_path / "vae.onnx", ["decode"])
    assert decode.max_rel_diff <= 1e-5, decode.max_rel_diff


def test_parity_error_is_relative_absolute_at_zero_scale_and_never_nan():
    ref = np.array([0.0, -2.0, 1.0], np.float32)
    assert tfonnx.parity_error(ref, ref + np.float32(1e-3)) == pytest.approx(5e-4, rel=1e-3)
    silent = np.zeros(4, np.float32)  # e.g. activity gating silenced everything
    assert tfonnx.parity_error(silent, silent) == 0.0
    assert tfonnx.parity_error(silent, silent + np.float32(1e-7)) == pytest.approx(1e-7, rel=1e-3)
    assert tfonnx.parity_error(ref, np.array([np.nan, -2.0, 1.0], np.float32)) == float("inf")


NO_TF_SCRIPT = """
import json, sys
import numpy as np
from tfmusic.audio.chunking import separate_in_chunks
from tfmusic.export.onnx import OnnxSeparator
sep = OnnxSeparator(sys.argv[1])
audio = np.random.default_rng(0).standard_normal((2, 30000)).astype(np.float32) * 0.1
stems = separate_in_chunks(audio, lambda p: {k: v[0] for k, v in sep(p[None]).items()},
                           chunk_samples=8192, overlap_samples=2048, min_samples=4096, progress=False)
heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("tensorflow", "keras", "tf2onnx", "tensorboard"))
print(json.dumps({"targets": sorted(stems), "shape": list(stems["vocals"].shape), "heavy": heavy[:5]}))
"""


def test_onnx_runner_does_not_import_tensorflow(tmp_path):
    sm_dir, _ = export_tiny_separator(tmp_path / "repo")
    tfonnx.export_onnx(sm_dir, tmp_path / "sep.onnx")
    done = subprocess.run([sys.executable, "-c", NO_TF_SCRIPT, str(tmp_path / "sep.onnx")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report == {"targets": ["drums", "vocals"], "shape": [2, 30000], "heavy": []}
