"""Activation recomputation (``trainer.recompute``, ``tfmusic.training.recompute``): the recomputed
layers run again in the backward pass, with the same gradients and the same layer state (BatchNorm
moving statistics, dropout masks) as without it."""

from __future__ import annotations

import numpy as np
import pytest

keras = pytest.importorskip("keras")
tf = pytest.importorskip("tensorflow")

from tests._graphs import traced_ops  # noqa: E402
from tfmusic.training.recompute import recompute_layers  # noqa: E402


def _iass():
    from tfmusic.models.iass import IASS

    keras.utils.set_random_seed(0)
    return IASS(nb_channels=1).build_for_frames()


def _step(model, x):
    """Loss, gradients, and the number of forward convolutions in the traced step."""
    @tf.function
    def step(x):
        with tf.GradientTape() as tape:
            out = model(x, training=True)
            loss = tf.reduce_mean(tf.square(out["estimate"] - 0.5 * x)) + tf.reduce_mean(out["activity_logits"] ** 2)
        return loss, tape.gradient(loss, model.trainable_variables)

    loss, grads = step(x)
    return loss, grads, traced_ops(step, x)["Conv2D"]


def test_iass_blocks_recomputed_give_identical_gradients_and_batchnorm_state():
    plain, recomputed = _iass(), _iass()
    recomputed.set_weights(plain.get_weights())
    blocks = [recomputed.enc1, recomputed.enc2, recomputed.enc3, recomputed.dec2, recomputed.dec3, recomputed.dec4]
    undo = recompute_layers(blocks)
    x = tf.constant(np.abs(np.random.default_rng(1).normal(size=(2, 1, 12, 2049))).astype(np.float32))
    loss_a, grads_a, convs_a = _step(plain, x)
    loss_b, grads_b, convs_b = _step(recomputed, x)
    # the blocks' convolutions run again inside the backward pass (what saves their activations' memory)
    block_convs = sum(isinstance(layer, keras.layers.Conv2D) for block in blocks for layer in block._flatten_layers())
    assert (convs_a, convs_b - convs_a) == (convs_a, block_convs) and block_convs > 0
    assert float(loss_a) == float(loss_b)
    assert all(g is not None for g in grads_b)  # the skip convs get gradients through the decoder's skip=
    for a, b in zip(grads_a, grads_b):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    for a, b in zip(plain.non_trainable_variables, recomputed.non_trainable_variables):  # moved once, not twice
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    with pytest.raises(ValueError, match="already has a patched call"):
        recompute_layers(blocks[:1])
    undo()
    assert not any("call" in vars(block) for block in blocks)


def test_trainer_recompute_keeps_dropout_masks_and_undoes(tmp_path, monkeypatch):
    """ToyTask (Dense-Dropout-Dense) through the trainer: with recompute on, the recomputed Dense runs once
    more per traced training step than the other Dense (its backward recomputation); on/off train
    bit-identically."""
    from tests._multiworker_worker import ToyTask
    from tfmusic.training.config import TrainerConfig
    from tfmusic.training.trainer import Trainer

    class RecomputedToy(ToyTask):
        def recompute_layers(self):
            return self.model.layers[:2]  # Dense(relu) and Dropout: its seed state must not advance twice

    calls: dict[int, int] = {}
    dense_call = keras.layers.Dense.call

    def counted(layer, inputs, training=None):
        calls[id(layer)] = calls.get(id(layer), 0) + 1
        return dense_call(layer, inputs, training=training)

    monkeypatch.setattr(keras.layers.Dense, "call", counted)
    weights, extra = {}, {}
    for on in (False, True):
        calls.clear()
        task = RecomputedToy(batch_size=8, seed=3)
        config = TrainerConfig(steps=4, batch_size=8, eval_every=4, eval_steps=1, log_every=2, seed=3,
                               deterministic=True, recompute=on, summaries=False)
        Trainer(task, config, tmp_path / str(on), progress=False).fit()
        weights[on] = task.model.get_weights()
        extra[on] = calls[id(task.model.layers[0])] - calls[id(task.model.layers[2])]
        assert not any("call" in vars(layer) for layer in task.model.layers)  # undone after fit
    assert extra[False] == 0 and extra[True] > 0
    for a, b in zip(weights[False], weights[True]):
        np.testing.assert_array_equal(a, b)
