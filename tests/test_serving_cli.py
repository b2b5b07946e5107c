"""End to end through the CLIs: `tfmusic export onnx`, `tfmusic serve --run separate --server`,
`tfmusic separate --backend onnx` without TensorFlow, plus the real Separator through export + ONNX."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from tests.test_export_saved_model import export_tiny_separator

SCRIPT_NO_TF = """
import sys
from tfmusic.cli.main import main
rc = main(sys.argv[1:])
heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("tensorflow", "keras", "tf2onnx"))
print("HEAVY", heavy[:5])
sys.exit(rc)
"""
ENV = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "TF_CPP_MIN_LOG_LEVEL": "2"}


def tfmusic(*argv, timeout=300):
    done = subprocess.run([sys.executable, "-m", "tfmusic", *argv], capture_output=True, text=True,
                          timeout=timeout, env=ENV)
    assert done.returncode == 0, f"tfmusic {' '.join(argv)}\n{done.stdout}\n{done.stderr[-3000:]}"
    return done.stdout


def test_cli_onnx_serve_run_separate_and_onnx_without_tf(tmp_path, capsys):
    import soundfile as sf

    from tfmusic.cli.main import main

    repo = tmp_path / "models"
    export_tiny_separator(repo)
    song = (0.1 * np.random.default_rng(0).standard_normal((30000, 2))).astype(np.float32)
    sf.write(tmp_path / "song.wav", song, 44100, subtype="FLOAT")
    # in this process (TensorFlow is loaded here already); the server and the TF-free client are subprocesses
    assert main(["export", "onnx", "--saved-model", str(repo / "separator"), "--out", str(tmp_path / "sep.onnx")]) == 0
    assert "sep.onnx: signature serving_default" in capsys.readouterr().out

    # one command starts the server on a free port, runs separate through it, and stops it
    tfmusic("serve", "--models", str(repo), "--port", "0", "--run", "separate", str(tmp_path / "song.wav"),
            "--server", "{address}", "--out", str(tmp_path / "via_server"), "--quiet", "--chunk-seconds", "0.3",
            "--overlap-seconds", "0.05")
    folder = tmp_path / "via_server" / "song"
    via_server, rate = sf.read(folder / "vocals.wav", always_2d=True)
    assert rate == 44100 and via_server.shape == (30000, 2)
    assert (folder / "drums.wav").is_file() and (folder / "activity.csv").is_file()  # activity signature used

    done = subprocess.run([sys.executable, "-c", SCRIPT_NO_TF, "separate", str(tmp_path / "song.wav"), "--backend",
                           "onnx", "--model", str(tmp_path / "sep.onnx"), "--out", str(tmp_path / "via_onnx"),
                           "--quiet", "--chunk-seconds", "0.3", "--overlap-seconds", "0.05"],
                          capture_output=True, text=True, timeout=300, env=ENV)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "HEAVY []" in done.stdout
    via_onnx, _ = sf.read(tmp_path / "via_onnx" / "song" / "vocals.wav", always_2d=True)
    np.testing.assert_allclose(via_onnx, via_server, atol=1e-4)  # same model, same chunks: backends agree
    assert np.abs(via_server).max() > 1e-3


def test_cli_errors_are_clean(tmp_path):
    done = subprocess.run([sys.executable, "-m", "tfmusic", "serve", "--models", str(tmp_path / "missing")],
                          capture_output=True, text=True, timeout=120, env=ENV)
    assert done.returncode == 2 and "does not exist" in done.stderr
    done = subprocess.run([sys.executable, "-m", "tfmusic", "export", "onnx", "--saved-model", str(tmp_path),
                           "--out", str(tmp_path / "x.onnx")], capture_output=True, text=True, timeout=120, env=ENV)
    assert done.returncode == 2 and "neither a SavedModel version folder" in done.stderr


@pytest.mark.slow
def _peak_rss_gb() -> float:
    """The kernel's high-water mark of this process's resident memory."""
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith("VmHWM")) / 2**20


def _reset_peak_rss_gb() -> float | None:
    """Reset the high-water mark to the current RSS and return it (None where the kernel does not allow it)."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return _peak_rss_gb()
    except OSError:
        return None


def test_real_separator_saved_model_and_onnx(tmp_path):
    """The project's Separator (STFT as a DFT basis, tiny Open-Unmix) exports and converts with parity.

    Fixed-length signature (``samples``) because ISTFT cannot take a dynamic ``length`` yet.
    """
    import keras
    import tensorflow as tf

    from tfmusic.export.onnx import OnnxSeparator, export_onnx
    from tfmusic.export.saved_model import export_separator
    from tfmusic.models.openunmix import OpenUnmix
    from tfmusic.models.separator import Separator

    keras.utils.set_random_seed(0)
    sep = Separator({"drums": OpenUnmix(nb_channels=2, hidden_size=8, nb_layers=1, max_bin=64, target="drums")})
    sep(np.zeros((1, 2, 8192), np.float32))
    path, report = export_separator(sep, tmp_path, "separator", 1, samples=8192)
    assert report.max_rel_diff["serving_default"] <= 1e-4
    before = _reset_peak_rss_gb()
    (result,) = export_onnx(path, tmp_path / "sep.onnx")
    assert result.max_rel_diff <= 1e-4
    if before is not None:  # the converter never sees the 4096-point DFT bases: it once took +9 GB here
        assert _peak_rss_gb() - before < 3.0, f"ONNX conversion peaked at +{_peak_rss_gb() - before:.1f} GB"
    x = (0.1 * np.random.default_rng(1).standard_normal((1, 2, 8192))).astype(np.float32)
    want = sep(x)["drums"]
    np.testing.assert_allclose(OnnxSeparator(result.path)(x)["drums"], np.asarray(want), atol=1e-4)
    got = tf.saved_model.load(str(path)).signatures["serving_default"](waveform=tf.constant(x))["drums"]
    np.testing.assert_allclose(got.numpy(), np.asarray(want), atol=1e-5)


@pytest.mark.slow
def test_real_vae_export_infers_input_and_converts(tmp_path):
    """A project VAE (dMelodies CNN, tiny z): input spec inferred, four signatures, ONNX encode/decode."""
    from tfmusic.export.onnx import export_onnx
    from tfmusic.export.saved_model import export_vae, signature_summary, vae_input_spec
    from tfmusic.models.vae.presets import build_vae

    vae = build_vae("dmelodies-cnn", z_dim=4, seed=0)
    shape, dtype, high = vae_input_spec(vae)
    assert dtype == "int32" and high and len(shape) == 1
    vae(np.zeros((1, *shape), dtype))
    path, report = export_vae(vae, tmp_path, "vae", 1)
    assert max(report.max_rel_diff.values()) <= 1e-4
    sigs = signature_summary(path)
    assert sigs["traverse"]["outputs"]["logits"][1][:2] == (-1, -1)
    results = export_onnx(path, tmp_path / "vae.onnx")
    assert [r.signature for r in results] == ["encode", "decode"]
    assert all(r.max_rel_diff <= 1e-4 for r in results)
