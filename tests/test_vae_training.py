"""VAE tasks on the one trainer: a training step per objective, Factor-VAE's discriminator update,
run-directory outputs and traversal rendering (tiny shapes)."""

import json

import numpy as np
import pytest

from tfmusic.data import dmelodies
from tfmusic.training.config import TrainerConfig
from tfmusic.training.trainer import TaskContext, Trainer
from tfmusic.training.vae import ArrayData, VAEConfig, VAETask, save_run_meta


def _dmelodies_data(n_train=32, n_eval=16):
    rng = np.random.default_rng(0)
    idx = rng.choice(dmelodies.NUM_ITEMS, n_train + n_eval, replace=False)
    tokens, factors = dmelodies.generate_items(idx)
    tokens, factors = tokens.astype("int32"), factors.astype("int32")
    return ArrayData("dmelodies", {"train": (tokens[:n_train], factors[:n_train]),
                                   "validation": (tokens[n_train:], factors[n_train:])},
                     attribute_names=dmelodies.FACTOR_NAMES)


def _trainer_config(**kw):
    base = dict(steps=2, batch_size=16, eval_every=2, eval_steps=1, log_every=1, seed=0)
    base.update(kw)
    cfg = TrainerConfig(**base)
    cfg.plateau.patience = None
    cfg.early_stopping.patience = None
    return cfg


# full trainer runs use the CNN VAE (the hierarchical RNN takes ~20 s to trace on 2 cores);
# the RNN's train step is exercised eagerly in test_rnn_ar_train_step_with_teacher_forcing
@pytest.mark.parametrize("model,objective", [("dmelodies-cnn", "beta"), ("dmelodies-cnn", "annealed"),
                                             ("dmelodies-cnn", "factor"), ("dmelodies-cnn", "ar")])
def test_one_training_run_per_objective(tmp_path, model, objective):
    data = _dmelodies_data()
    cfg = VAEConfig(model=model, objective=objective, hidden=8, z_dim=12, warmup_epochs=-1,
                    ramp_iterations=10)
    task = VAETask(cfg, data)
    run_dir = tmp_path / "run"
    save_run_meta(run_dir, cfg, data, 2, None)
    with_images = objective == "ar"
    tcfg = _trainer_config(summaries=with_images)
    result = Trainer(task, tcfg, run_dir, progress=False, run_config={"vae": cfg.model}).fit()
    assert result.step == tcfg.steps
    history = json.loads((run_dir / "history.json").read_text())["history"]
    train, ev = history[-1]["train"], history[-1]["eval"]
    for key in ("loss", "recon", "kl", "accuracy", "kl_dim/00", "kl_dim/11"):
        assert key in train and np.isfinite(train[key]), key
    assert np.isfinite(ev["loss"])
    if objective == "ar":
        assert "reg_tonic" in train and "reg_term" in train
    if objective == "factor":
        assert "disc_loss" in train and "tc" in train
        assert int(task.disc_optimizer.iterations.numpy()) == 2
    if with_images:
        assert any((run_dir / "tensorboard" / "eval").iterdir())
    assert int(task.optimizer.iterations.numpy()) == tcfg.steps
    assert (run_dir / "model.keras").is_file() and (run_dir / "checkpoints").is_dir()


def _built_task(cfg, data, tmp_path):
    """A task driven without a trainer: the context is all it needs."""
    import tensorflow as tf

    task = VAETask(cfg, data)
    task.bind(TaskContext(strategy=tf.distribute.get_strategy(), batch_size=16, seed=0))
    with task.context.strategy.scope():
        task.build()
    return task


def test_rnn_ar_train_step_with_teacher_forcing(tmp_path):
    data = _dmelodies_data()
    task = _built_task(VAEConfig(model="dmelodies-rnn", objective="ar", hidden=8, z_dim=12, steps_per_epoch=2),
                       data, tmp_path)
    assert task.autoregressive
    x, a = data.splits["train"][0][:8], data.splits["train"][1][:8]
    before = [np.array(w) for w in task.vae.trainable_weights]
    logs = task.train_step((x, a))
    assert float(logs["teacher_forcing"]) in (0.0, 1.0)
    assert np.isfinite(float(logs["loss"])) and "reg_rhythm_bar1" in logs
    assert any(not np.array_equal(b, np.array(w)) for b, w in zip(before, task.vae.trainable_weights))
    assert int(task.optimizer.iterations.numpy()) == 1
    ev = task.eval_step((x, a))
    assert 0.0 <= float(ev["accuracy"]) <= 1.0


def test_factor_discriminator_update_touches_only_discriminator(tmp_path):
    task = _built_task(VAEConfig(model="dmelodies-cnn", objective="factor", z_dim=8, steps_per_epoch=2),
                       _dmelodies_data(), tmp_path)
    vae_before = [np.array(w) for w in task.vae.weights]
    disc_before = [np.array(w) for w in task.discriminator.weights]
    rng = np.random.default_rng(0)
    z1, z2 = rng.normal(size=(2, 16, 8)).astype("float32")
    logs = task.discriminator_update(z1, z2)
    assert np.isfinite(float(logs["disc_loss"]))
    for before, after in zip(vae_before, task.vae.weights):
        np.testing.assert_array_equal(before, np.array(after))
    changed = [not np.array_equal(b, np.array(a)) for b, a in zip(disc_before, task.discriminator.weights)]
    assert all(changed)
    assert int(task.disc_optimizer.iterations.numpy()) == 1
    assert int(task.optimizer.iterations.numpy()) == 0
    assert task.disc_optimizer.beta_1 == 0.8 and task.disc_optimizer.beta_2 == 0.9


def test_traversal_writes_pianoroll_scores_and_attributes(tmp_path):
    from tfmusic.models.vae.presets import build_vae
    from tfmusic.data.codecs import codec_for
    from tfmusic.music.traversal import summary_images, write_traversal

    vae = build_vae("dmelodies-cnn", z_dim=12, seed=0)
    tokens, _ = dmelodies.generate_items(np.arange(3))
    vae(tokens)
    out = write_traversal(vae, codec_for("dmelodies"), 0, np.linspace(-2, 2, 4), tmp_path, x=tokens, engrave=False)
    for key in ("pianoroll_png", "midi", "musicxml"):
        assert (tmp_path / out["files"][key].split("/")[-1]).stat().st_size > 0
    assert len(out["tokens"]) == 4 and out["shown"] == "tonic"
    images = summary_images(vae, tokens, [0, 3])
    assert set(images) == {"traversal/dim_00", "traversal/dim_03", "reconstruction"}
    assert images["traversal/dim_00"].shape[0] == 62 and images["traversal/dim_00"].ndim == 3
    with pytest.raises(ValueError, match="outside"):
        write_traversal(vae, codec_for("dmelodies"), 40, [0.0], tmp_path, engrave=False)


def test_keyword_train_run_is_one_layer_over_the_same_defaults(tmp_path):
    from tfmusic.training.vae import train_run

    cfg = VAEConfig(model="dmelodies-cnn", objective="beta", hidden=8, z_dim=6, warmup_epochs=-1, seed=4)
    result = train_run(cfg, _dmelodies_data(), tmp_path / "run", batch_size=16, steps=2, eval_steps=1,
                       progress=False)
    assert result.step == 2
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["trainer"]["seed"] == 4 and saved["trainer"]["batch_size"] == 16
    assert saved["trainer"]["eval_every"] == 2 and saved["trainer"]["log_every"] == 2  # min(defaults, steps)
    assert saved["vae"]["steps_per_epoch"] == 2 and saved["epochs"] == 100  # ceil(32 / 16)
