"""ONNX export from the SavedModel: parity with TF, VAE encode/decode, and the TF-free runner."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from tests.test_export_saved_model import N_FFT, export_tiny_separator, export_tiny_vae
from tfmusic.export import onnx as tfonnx


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
