"""The references' initialization (Xavier-normal weights, zero biases) as an option of every VAE."""
import numpy as np
import pytest

from tfmusic.models.vae import build_vae, initialize
from tfmusic.models.vae.init import xavier_std
from tfmusic.training.vae import dummy_input


def _built(model, **kw):
    vae = build_vae(model, **kw)
    vae(dummy_input(model))
    return vae


def test_xavier_sets_every_weight_and_zeroes_every_bias():
    vae = _built("dmelodies-rnn", hidden=16)
    before = {w.path: np.array(w) for w in vae.trainable_weights}
    count = initialize(vae, "xavier", seed=3)
    weights = {w.path: np.array(w) for w in vae.trainable_weights}
    biases = [p for p in weights if p.rsplit("/", 1)[-1].startswith("bias")]
    assert any(weights[p].ndim == 2 for p in biases)  # the GRU's (2, 3H) biases are found by name
    assert all(not weights[p].any() for p in biases)
    for path in ("recurrent_kernel", "embeddings"):  # the weights Keras initializes differently
        assert any(path in p and not np.array_equal(before[p], weights[p]) for p in weights)
    assert count == sum(1 for w in weights.values() if w.ndim >= 2) + sum(1 for p in biases if weights[p].ndim == 1)


def test_xavier_std_follows_pytorch_fans_and_is_not_truncated():
    assert xavier_std((128, 384)) == pytest.approx(np.sqrt(2 / 512))  # GRU recurrent kernel (H, 3H)
    assert xavier_std((4, 16, 32)) == pytest.approx(np.sqrt(2 / (4 * 48)))  # Conv1D (k, in, out)
    vae = _built("dmelodies-rnn")
    initialize(vae, "xavier", seed=0)
    kernel = next(np.array(w) for w in vae.trainable_weights if w.path.endswith("tick_rnn/cell_1/recurrent_kernel"))
    std = xavier_std(kernel.shape)
    assert kernel.std() == pytest.approx(std, rel=0.05)
    assert np.abs(kernel).max() > 2.5 * std  # a truncated normal would stop at 2 std


def test_keras_scheme_is_a_no_op_and_bad_names_are_refused():
    vae = _built("dmelodies-cnn")
    before = [np.array(w) for w in vae.trainable_weights]
    assert initialize(vae, "keras") == 0
    assert all(np.array_equal(a, np.array(w)) for a, w in zip(before, vae.trainable_weights))
    with pytest.raises(ValueError, match="unknown initialization"):
        initialize(vae, "he")
    with pytest.raises(ValueError, match="built"):
        initialize(build_vae("dmelodies-cnn"), "xavier")
