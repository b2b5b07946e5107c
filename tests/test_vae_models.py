"""VAE encoders/decoders: output shapes, teacher forcing, serialization round trip."""

import keras
import numpy as np
import pytest

from tfmusic.models.vae.decoders import HierarchicalDecoder
from tfmusic.models.vae.presets import build_vae

CASES = {
    "dmelodies-rnn": (lambda r: r.integers(0, 52, (3, 16)).astype("int32"), (3, 16, 62), 32),
    "dmelodies-cnn": (lambda r: r.integers(0, 52, (3, 16)).astype("int32"), (3, 16, 62), 32),
    "measure": (lambda r: r.integers(0, 35, (3, 24)).astype("int32"), (3, 24, 35), 32),
    "sprites": (lambda r: (r.uniform(size=(3, 64, 64, 1)) > 0.5).astype("float32"), (3, 64, 64, 1), 10),
    "mnist": (lambda r: r.uniform(size=(3, 28, 28, 1)).astype("float32"), (3, 28, 28, 1), 16),
}


def _small(model):
    return build_vae(model, vocab_size=35 if model == "measure" else None,
                     hidden=8 if model in ("dmelodies-rnn", "measure") else None, seed=1)


@pytest.mark.parametrize("model", sorted(CASES))
def test_shapes_and_round_trip(model, tmp_path):
    make, logits_shape, z_dim = CASES[model]
    x = make(np.random.default_rng(0))
    vae = _small(model)
    out = vae(x, training=False)
    assert tuple(out["mean"].shape) == (3, z_dim) and tuple(out["log_std"].shape) == (3, z_dim)
    assert tuple(out["logits"].shape) == logits_shape
    mean, log_std = vae.encode(x)
    logits = vae.decode(mean)
    path = tmp_path / f"{model}.keras"
    vae.save(path)
    restored = keras.saving.load_model(path)
    m2, s2 = restored.encode(x)
    np.testing.assert_allclose(np.asarray(m2), np.asarray(mean), atol=1e-5)
    np.testing.assert_allclose(np.asarray(s2), np.asarray(log_std), atol=1e-5)
    np.testing.assert_allclose(np.asarray(restored.decode(mean)), np.asarray(logits), atol=1e-5)
    assert restored.get_config()["encoder"]["config"] == vae.get_config()["encoder"]["config"]


def test_dmelodies_rnn_matches_spec_sizes():
    vae = build_vae("dmelodies-rnn")
    x = np.zeros((2, 16), "int32")
    vae(x)
    enc = vae.encoder
    assert enc.hidden == 64 and enc.dropout == 0.2 and enc.head_hidden == 128
    dec = vae.decoder
    assert (dec.n_beats, dec.ticks_per_beat, dec.hidden, dec.num_classes) == (2, 8, 64, 62)
    measure = build_vae("measure", vocab_size=35)
    measure(np.zeros((2, 24), "int32"))
    assert (measure.decoder.n_beats, measure.decoder.ticks_per_beat, measure.decoder.hidden) == (4, 6, 128)
    assert measure.encoder.hidden == 128 and measure.encoder.head_hidden == 256


def test_teacher_forcing_feeds_targets_back():
    dec = HierarchicalDecoder(num_classes=7, z_dim=4, hidden=8, dropout=0.0, n_beats=2, ticks_per_beat=3)
    z = np.random.default_rng(1).normal(size=(2, 4)).astype("float32")
    free = np.asarray(dec(z))
    greedy = free.argmax(-1).astype("int32")
    # forcing with the decoder's own greedy choices reproduces free running exactly
    np.testing.assert_allclose(np.asarray(dec(z, targets=greedy, teacher_forcing=True)), free, atol=1e-6)
    # forcing with other tokens changes every step after the first
    other = (greedy + 1) % 7
    forced = np.asarray(dec(z, targets=other, teacher_forcing=True))
    np.testing.assert_allclose(forced[:, 0], free[:, 0], atol=1e-6)
    assert not np.allclose(forced[:, 1:], free[:, 1:])
    # teacher_forcing=False ignores the targets
    np.testing.assert_allclose(np.asarray(dec(z, targets=other, teacher_forcing=False)), free, atol=1e-6)


def test_unknown_names_fail_clearly():
    with pytest.raises(ValueError, match="unknown VAE model"):
        build_vae("transformer")
    with pytest.raises(ValueError, match="vocab_size"):
        build_vae("measure")
