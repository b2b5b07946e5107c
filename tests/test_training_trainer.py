"""The one trainer under the default strategy: run directory, resume, plateau, early stopping, AMP."""
import json

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
import keras  # noqa: E402

from tests._multiworker_worker import ToyTask  # noqa: E402
from tfmusic.training.config import TrainerConfig  # noqa: E402
from tfmusic.training.trainer import Trainer  # noqa: E402


def _config(**kw):
    base = dict(steps=4, batch_size=8, eval_every=2, eval_steps=2, log_every=1, seed=5)
    base.update(kw)
    return TrainerConfig(**base)


def _ckpt_tensors(path):
    reader = tf.train.load_checkpoint(path)
    return {name: reader.get_tensor(name) for name, _ in tf.train.list_variables(path)
            if "save_counter" not in name and "OBJECT_GRAPH" not in name}


def test_one_run_writes_the_run_directory(tmp_path):
    run = tmp_path / "run"
    task = ToyTask(seed=5)
    result = Trainer(task, _config(), run, progress=False, run_config={"model": "toy", "x": 1}).fit()
    assert result.step == 4 and result.start_step == 0 and not result.stopped_early
    assert json.loads((run / "config.json").read_text()) == {"model": "toy", "x": 1}
    history = json.loads((run / "history.json").read_text())["history"]
    assert [h["step"] for h in history] == [2, 4]
    assert set(history[0]["eval"]) == {"loss", "big_err", "rmse"}
    assert history[0]["eval"]["rmse"] == pytest.approx(history[0]["eval"]["loss"] ** 0.5)
    assert history[0]["lr"] == {"adam": pytest.approx(1e-2)}
    assert np.isfinite(history[1]["train"]["loss"])
    np.testing.assert_allclose(np.asarray(task.input_mean), task._data(64, 5)[0].mean(axis=0), rtol=1e-5)
    assert tf.train.latest_checkpoint(str(run / "checkpoints")).endswith("ckpt-4")
    assert tf.train.latest_checkpoint(str(run / "checkpoints" / "best")) is not None
    # model.keras holds the best weights; the task is left in its final state
    best = keras.saving.load_model(run / "model.keras")
    best_ckpt = _ckpt_tensors(tf.train.latest_checkpoint(str(run / "checkpoints" / "best")))
    stored = [best_ckpt[k] for k in sorted(best_ckpt) if k.startswith("model/")]
    assert len(stored) == len(best.variables)
    pairs = [(a, np.asarray(b)) for a, b in zip(stored, best.variables) if a.dtype == np.float32]
    assert len(pairs) == 4  # kernels and biases (model.keras does not keep dropout RNG states)
    for a, b in pairs:
        np.testing.assert_array_equal(a, b)
    final = _ckpt_tensors(tf.train.latest_checkpoint(str(run / "checkpoints")))
    np.testing.assert_array_equal(final["model/v0000/.ATTRIBUTES/VARIABLE_VALUE"], task.model.variables[0])
    # TensorBoard has training scalars incl. the learning rate, and eval scalars
    tags = set()
    for sub in ("train", "eval"):
        for event_file in (run / "tensorboard" / sub).glob("events.*"):
            for record in tf.compat.v1.train.summary_iterator(str(event_file)):
                tags.update(v.tag for v in record.summary.value)
    assert {"loss", "lr/adam", "rmse"} <= tags
    with pytest.raises(FileExistsError, match="--resume"):
        Trainer(ToyTask(seed=5), _config(), run, progress=False).fit()


def test_resumed_run_ends_with_the_same_weights(tmp_path):
    # Plateau with patience 0 changes the learning rate during the run, so its state must resume too.
    kw = dict(steps=6, plateau={"patience": 0, "cooldown": 0, "factor": 0.5, "min_delta": 100.0})
    from tfmusic.training.config import from_dict

    cfg = lambda **extra: from_dict(TrainerConfig, {**dict(batch_size=8, eval_every=2, eval_steps=2,
                                                           log_every=1, seed=5), **kw, **extra})
    full = Trainer(ToyTask(seed=5), cfg(), tmp_path / "full", progress=False).fit()
    part = Trainer(ToyTask(seed=5), cfg(steps=3), tmp_path / "split", progress=False).fit()
    assert part.step == 3
    rest = Trainer(ToyTask(seed=5), cfg(), tmp_path / "split", progress=False, resume=True).fit()
    assert rest.start_step == 3 and rest.step == 6
    a = _ckpt_tensors(str(tmp_path / "full" / "checkpoints" / "ckpt-6"))
    b = _ckpt_tensors(str(tmp_path / "split" / "checkpoints" / "ckpt-6"))
    assert a.keys() == b.keys() and len(a) > 10
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    assert [h["lr"] for h in full.history] == [h["lr"] for h in rest.history]
    assert full.history[-1]["lr"]["adam"] == pytest.approx(0.25e-2)
    assert full.history == rest.history
    # a different data order really changes the result (the comparison above can fail)
    other = Trainer(ToyTask(seed=6), cfg(), tmp_path / "other", progress=False).fit()
    c = _ckpt_tensors(str(tmp_path / "other" / "checkpoints" / "ckpt-6"))
    assert any(not np.array_equal(a[k], c[k]) for k in a if k.startswith("model/"))
    assert other.step == 6


@pytest.mark.parametrize("keep", ["best", "final"])
def test_keep_model_best_or_final(tmp_path, keep):
    """``keep_model``: model.keras holds the best-evaluated weights (step 2 here) or the final ones (step 6)."""
    run = tmp_path / keep
    task = ToyTask(seed=1, learning_rate=0.5)  # evaluation loss 4.1, 17.2, 8.6: the best is not the last
    result = Trainer(task, _config(steps=6, keep_model=keep), run, progress=False).fit()
    assert result.best_step == 2
    kept = keras.saving.load_model(run / "model.keras")
    folder = run / "checkpoints" / ("best" if keep == "best" else "")
    want = _ckpt_tensors(tf.train.latest_checkpoint(str(folder)))["model/v0000/.ATTRIBUTES/VARIABLE_VALUE"]
    np.testing.assert_array_equal(np.asarray(kept.variables[0]), want)
    final = _ckpt_tensors(tf.train.latest_checkpoint(str(run / "checkpoints")))["model/v0000/.ATTRIBUTES/VARIABLE_VALUE"]
    assert (keep == "final") == np.array_equal(np.asarray(kept.variables[0]), final)


def test_keep_model_is_validated_and_final_for_vaes():
    from tfmusic.training.config import ConfigError
    from tfmusic.training.vae_config import resolve_config

    with pytest.raises(ConfigError, match="keep_model"):
        TrainerConfig(keep_model="last").validate()
    assert resolve_config("dmelodies-cnn", "annealed", []).trainer.keep_model == "final"
    layer = {"trainer": {"keep_model": "best"}}
    assert resolve_config("dmelodies-cnn", "annealed", [("--set", layer)]).trainer.keep_model == "best"


def test_plateau_and_early_stopping_in_the_loop(tmp_path):
    from tfmusic.training.config import from_dict

    # learning rate 0: the evaluation loss never improves after the first round
    cfg = from_dict(TrainerConfig, dict(steps=40, batch_size=8, eval_every=2, eval_steps=1, log_every=5,
                                        plateau={"patience": 0, "cooldown": 0, "factor": 0.5},
                                        early_stopping={"patience": 3}))
    result = Trainer(ToyTask(seed=1, learning_rate=0.0), cfg, tmp_path / "r", progress=False).fit()
    assert result.stopped_early and result.step == 8  # evals at 2 (best), 4, 6, 8 -> 3 bad rounds
    assert result.best_step == 2
    assert [h["best"] for h in result.history] == [True, False, False, False]
    with pytest.raises(FileExistsError):
        Trainer(ToyTask(seed=1), cfg, tmp_path / "r", progress=False).fit()
    # resuming a finished (early-stopped) run does nothing more
    again = Trainer(ToyTask(seed=1, learning_rate=0.0), cfg, tmp_path / "r", progress=False, resume=True).fit()
    assert again.step == 8 and again.start_step == 8


def test_plateau_reduces_learning_rate(tmp_path):
    from tfmusic.training.config import from_dict

    cfg = from_dict(TrainerConfig, dict(steps=6, batch_size=8, eval_every=2, eval_steps=1, log_every=5,
                                        plateau={"patience": 0, "cooldown": 0, "factor": 0.5}))
    result = Trainer(ToyTask(seed=1, learning_rate=0.0), cfg, tmp_path / "r", progress=False).fit()
    # a zero learning rate stays zero, so check the decision through a non-zero floor instead
    assert [h["lr"]["adam"] for h in result.history] == [0.0, 0.0, 0.0]
    task = ToyTask(seed=1, learning_rate=1e-9)
    result = Trainer(task, cfg, tmp_path / "s", progress=False).fit()
    lrs = [h["lr"]["adam"] for h in result.history]
    assert lrs[0] == pytest.approx(1e-9) and lrs[1] == pytest.approx(0.5e-9) and lrs[2] == pytest.approx(0.25e-9)


def test_mixed_precision_float16_step(tmp_path):
    before = keras.mixed_precision.global_policy().name
    task = ToyTask(seed=2)
    result = Trainer(task, _config(steps=2, mixed_precision="mixed_float16"), tmp_path / "amp",
                     progress=False).fit()
    assert isinstance(task.optimizer, keras.optimizers.LossScaleOptimizer)
    assert task.model.layers[0].compute_dtype == "float16"
    assert np.isfinite(result.history[0]["train"]["loss"])
    assert keras.mixed_precision.global_policy().name == before
