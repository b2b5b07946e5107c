"""SavedModel export for TF Serving: layout, signatures, warmup, validation, parity with Keras."""

from __future__ import annotations

import sys
from pathlib import Path

import keras
import numpy as np
import pytest

from tfmusic.export import saved_model as sm

HOP, N_FFT = 1024, 4096


class TinySeparator(keras.Model):
    """Stand-in with the Separator contract: waveform (B,C,S) -> {target: (B,C,S), target_activity: (B,T)}."""

    def __init__(self, targets=("drums", "vocals"), activity=("vocals",), **kwargs):
        super().__init__(**kwargs)
        self.targets = tuple(targets)
        self.activity = tuple(activity)
        self.mix = {t: keras.layers.Dense(2, name=f"mix_{t}") for t in self.targets}
        self.pool = keras.layers.AveragePooling1D(pool_size=N_FFT, strides=HOP, padding="valid")
        self.act = keras.layers.Dense(1, name="act")

    def call(self, waveform, training=False):
        x = keras.ops.transpose(waveform, (0, 2, 1))  # (B, S, C)
        out = {t: keras.ops.transpose(keras.ops.tanh(self.mix[t](x)), (0, 2, 1)) for t in self.targets}
        # center=True framing like the Separator's STFT: T = 1 + S // HOP
        frames = self.pool(keras.ops.pad(keras.ops.abs(x), ((0, 0), (N_FFT // 2, N_FFT // 2), (0, 0))))
        for t in self.activity:
            out[f"{t}_activity"] = keras.ops.sigmoid(self.act(frames))[..., 0]
        return out


class TinyVAE(keras.Model):
    """Stand-in with the VAE contract: encode(tokens) -> (mean, log_std); decode(z) -> logits."""

    def __init__(self, length=16, vocab=12, z_dim=4, **kwargs):
        super().__init__(**kwargs)
        self.length, self.vocab, self.z = length, vocab, z_dim
        self.embed = keras.layers.Embedding(vocab, 8)
        self.flat = keras.layers.Flatten()
        self.head = keras.layers.Dense(2 * z_dim)
        self.out = keras.layers.Dense(length * vocab)

    def encode(self, x, training=False):
        h = self.head(self.flat(self.embed(x)))
        return h[:, : self.z], h[:, self.z:]

    def decode(self, z, training=False):
        return keras.ops.reshape(self.out(z), (-1, self.length, self.vocab))

    def call(self, x, training=False):
        mean, log_std = self.encode(x)
        return self.decode(mean)


def make_separator(seed: int = 0) -> TinySeparator:
    keras.utils.set_random_seed(seed)
    model = TinySeparator()
    model(np.zeros((1, 2, N_FFT + HOP), np.float32))
    return model


def make_vae(seed: int = 0) -> TinyVAE:
    keras.utils.set_random_seed(seed)
    model = TinyVAE()
    model(np.zeros((1, 16), np.int32))
    return model


def export_tiny_separator(repo: Path, name: str = "separator", version: int | None = None, seed: int = 0):
    return sm.export_separator(make_separator(seed), repo, name, version, example_samples=N_FFT + 2 * HOP)


def export_tiny_vae(repo: Path, name: str = "vae", version: int | None = None):
    return sm.export_vae(make_vae(), repo, name, version, input_shape=(16,), input_dtype="int32", input_high=12)


def test_separator_layout_signatures_and_parity(tmp_path):
    import tensorflow as tf

    path, report = export_tiny_separator(tmp_path / "repo")
    assert path == tmp_path / "repo" / "separator" / "1"
    assert (path / "saved_model.pb").is_file() and (path / "variables").is_dir()
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".tmp")]
    sigs = sm.signature_summary(path)
    assert sorted(sigs) == ["activity", "serving_default"]
    assert sigs["serving_default"]["inputs"] == {"waveform": ("DT_FLOAT", (-1, 2, -1))}
    assert sigs["serving_default"]["outputs"] == {"drums": ("DT_FLOAT", (-1, 2, -1)),
                                                  "vocals": ("DT_FLOAT", (-1, 2, -1))}
    assert sigs["activity"]["outputs"] == {"vocals": ("DT_FLOAT", (-1, -1))}
    assert report.denylisted_ops == [] and max(report.max_rel_diff.values()) <= sm.PARITY_TOLERANCE
    meta = sm.read_metadata(path)
    assert meta["kind"] == "separator" and meta["targets"] == ["drums", "vocals"]
    assert meta["activity_targets"] == ["vocals"] and meta["sample_rate"] == 44100

    # export -> load -> same outputs on a new, longer input
    model = make_separator()
    wav = np.random.default_rng(7).standard_normal((3, 2, N_FFT + 5 * HOP)).astype(np.float32) * 0.3
    want = model(wav)
    loaded = tf.saved_model.load(str(path))
    got = loaded.signatures["serving_default"](waveform=tf.constant(wav))
    for t in ("drums", "vocals"):
        np.testing.assert_allclose(got[t].numpy(), want[t], atol=1e-5)
    act = loaded.signatures["activity"](waveform=tf.constant(wav))["vocals"].numpy()
    assert act.shape == (3, 1 + wav.shape[-1] // HOP)
    np.testing.assert_allclose(act, want["vocals_activity"], atol=1e-5)

    # warmup records are PredictionLogs for each signature
    requests = sm.read_warmup(path)
    assert sorted(r.model_spec.signature_name for r in requests) == ["activity", "serving_default"]
    assert all(r.model_spec.name == "separator" and "waveform" in r.inputs for r in requests)

    # versions: next one is 2; existing one is refused
    assert sm.next_version(tmp_path / "repo", "separator") == 2
    with pytest.raises(sm.ExportError, match="already exists"):
        export_tiny_separator(tmp_path / "repo", version=1)


def test_vae_signatures_and_traverse(tmp_path):
    import tensorflow as tf

    path, report = export_tiny_vae(tmp_path)
    sigs = sm.signature_summary(path)
    assert sorted(sigs) == ["decode", "encode", "serving_default", "traverse"]
    assert sigs["encode"]["inputs"] == {"x": ("DT_INT32", (-1, 16))}
    assert sigs["encode"]["outputs"] == {"mean": ("DT_FLOAT", (-1, 4)), "log_std": ("DT_FLOAT", (-1, 4))}
    assert sigs["decode"]["inputs"] == {"z": ("DT_FLOAT", (-1, 4))}
    assert sigs["decode"]["outputs"] == {"logits": ("DT_FLOAT", (-1, 16, 12))}
    # every input has the batch dimension, so TF Serving's batching accepts the signature
    assert sigs["traverse"]["inputs"] == {"x": ("DT_INT32", (-1, 16)), "dimension": ("DT_INT32", (-1,)),
                                          "values": ("DT_FLOAT", (-1, -1))}
    loaded = tf.saved_model.load(str(path))
    model = make_vae()
    x = np.random.default_rng(3).integers(0, 12, (2, 16)).astype(np.int32)
    values = np.array([-1.0, 0.0, 2.5], np.float32)
    out = loaded.signatures["traverse"](x=tf.constant(x), dimension=tf.constant([2, 2]),
                                        values=tf.constant(np.tile(values, (2, 1))))
    assert out["z"].shape == (2, 3, 4) and out["logits"].shape == (2, 3, 16, 12)
    mean, _ = model.encode(x)
    z = np.repeat(np.asarray(mean)[:, None, :], 3, axis=1)
    z[:, :, 2] = values
    np.testing.assert_allclose(out["z"].numpy(), z, atol=1e-5)
    want = np.asarray(model.decode(z.reshape(-1, 4))).reshape(2, 3, 16, 12)
    np.testing.assert_allclose(out["logits"].numpy(), want, atol=1e-4)


def test_saved_model_cli_show_and_scan(tmp_path, capsys):
    """saved_model_cli's own show --all and scan code (run in process) agree with our validation."""
    from tensorflow.python.tools import saved_model_cli, saved_model_utils

    path, _ = export_tiny_separator(tmp_path)
    saved_model_cli._show_all(str(path))
    shown = capsys.readouterr().out
    assert "signature_def['serving_default']" in shown and "signature_def['activity']" in shown
    assert "inputs['waveform'] tensor_info:" in shown and "shape: (-1, 2, -1)" in shown
    meta = saved_model_utils.get_meta_graph_def(str(path), "serve")
    saved_model_cli.scan_meta_graph_def(meta, saved_model_cli._OP_DENYLIST)
    assert "does not contain the default denylisted ops" in capsys.readouterr().out
    assert (Path(sys.executable).parent / "saved_model_cli").is_file()  # the same tool is on PATH in the venv


def test_denylisted_op_is_refused(tmp_path):
    import tensorflow as tf

    model = make_separator()
    endpoints = sm.separator_endpoints(model, example_samples=N_FFT + HOP)[:1]
    original = endpoints[0].fn

    def noisy(waveform):
        tf.print("shape", tf.shape(waveform))
        return original(waveform)

    endpoints[0].fn = noisy
    with pytest.raises(sm.ExportError, match="PrintV2"):
        sm.export_endpoints(model, endpoints, tmp_path, "sep", 1)
    assert not (tmp_path / "sep" / "1").exists()


def test_validation_catches_mismatch(tmp_path):
    """A SavedModel that does not match the Keras function fails validation (parity really checks)."""
    model = make_separator()
    endpoints = sm.separator_endpoints(model, example_samples=N_FFT + HOP)
    path, _ = sm.export_endpoints(model, endpoints, tmp_path, "sep", 1)
    original = endpoints[0].fn
    endpoints[0].fn = lambda w: {k: v + 1.0 for k, v in original(w).items()}
    with pytest.raises(sm.ExportError, match="differs from the Keras model"):
        sm.validate_saved_model(path, endpoints)


def test_bad_inputs_are_named(tmp_path):
    with pytest.raises(sm.ExportError, match="saved_model.pb"):
        sm.signature_summary(tmp_path)
    with pytest.raises(sm.ExportError, match="model name"):
        export_tiny_separator(tmp_path, name="bad name")
