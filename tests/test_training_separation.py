"""`tfmusic train iass|umx` end to end on a tiny synthetic multitrack dataset (real pipeline + models;
the dataset and the IASS run are session fixtures in tests/conftest.py)."""
import json

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from tfmusic.cli.main import main  # noqa: E402


# the arguments every training run here shares (tests/conftest.py's iass_cli_run too)
COMMON = ["--batch-size", "2", "--segment-seconds", "0.5", "--eval-every", "2", "--eval-steps", "1",
          "--stats-batches", "1", "--quiet"]


def _tags(run, sub):
    tags = set()
    for event_file in (run / "tensorboard" / sub).glob("events.*"):
        for record in tf.compat.v1.train.summary_iterator(str(event_file)):
            tags.update(v.tag for v in record.summary.value)
    return tags


def test_train_iass_cli(iass_cli_run):
    """The session's one `tfmusic train iass` run (tests/conftest.py; its TensorBoard extras are checked
    by tests/test_tensorboard_tasks.py): flags over the config file, history, eval metrics, summaries."""
    run, out, cfg = iass_cli_run
    assert "best eval loss" in out and "model.keras" in out
    config = json.loads((run / "config.json").read_text())
    assert config["model"] == "iass" and config["target"] == "vocals" and config["nb_channels"] == 1
    assert config["activity_weight"] == 1.5 and config["trainer"]["plateau"]["patience"] == 3
    assert config["trainer"]["steps"] == 2  # the flag overrides the file
    assert (run / "config.yaml").read_text() == cfg.read_text()
    history = json.loads((run / "history.json").read_text())["history"]
    assert len(history) == 1
    ev = history[0]["eval"]
    assert {"loss", "mse", "bce", "activity_f1", "activity_precision", "activity_recall"} <= set(ev)
    assert ev["loss"] == pytest.approx(ev["mse"] + 1.5 * ev["bce"], rel=1e-5)
    assert 0.0 <= ev["activity_f1"] <= 1.0 and np.isfinite(history[0]["train"]["loss"])
    assert {"loss", "mse", "bce", "lr/adamw"} <= _tags(run, "train")
    assert {"activity_f1", "audio/mixture", "audio/estimate", "audio/target", "spectrogram/estimate",
            "activity/predicted_vs_labels"} <= _tags(run, "eval")
    # the separation side loads the run directory; input statistics were set from the data
    from tfmusic.models.iass import IASS
    from tfmusic.models.separator import load_separator

    sep = load_separator([str(run)])
    model = sep.targets["vocals"]
    assert isinstance(model, IASS) and model.mask_activation == "softplus"  # the training default
    assert float(np.abs(np.asarray(model.input_mean)).max()) > 0.0
    assert not np.allclose(np.asarray(model.input_std), 1.0)
    waves = sep(np.random.default_rng(1).normal(size=(1, 2, 32768)).astype(np.float32))
    assert waves["vocals"].shape == (1, 2, 32768)


def test_train_umx_cli_resume_and_errors(stems_dir, tmp_path, capsys):
    run = tmp_path / "umx"
    args = ["train", "umx", "--data", str(stems_dir), "--target", "drums", "--run-dir", str(run),
            "--set", "model_kwargs.hidden_size=16", "--set", "model_kwargs.nb_layers=1", *COMMON]
    assert main([*args, "--steps", "2", "--no-eval"]) == 0
    config = json.loads((run / "config.json").read_text())
    assert config["nb_channels"] == 2 and config["model_kwargs"] == {"hidden_size": 16, "nb_layers": 1}
    assert config["eval_split"] is None
    # the same run again without --resume is refused; with --resume it continues to step 3
    assert main([*args, "--steps", "3"]) == 2
    assert "--resume" in capsys.readouterr().err
    assert main(["train", "umx", "--run-dir", str(run), "--resume", "--steps", "3", "--quiet"]) == 0
    assert "steps: 2 -> 3" in capsys.readouterr().out
    assert json.loads((run / "config.json").read_text())["trainer"]["steps"] == 3
    assert tf.train.latest_checkpoint(str(run / "checkpoints")).endswith("ckpt-3")
    import keras

    from tfmusic.models.openunmix import OpenUnmix

    model = keras.saving.load_model(run / "model.keras")
    assert isinstance(model, OpenUnmix) and model.nb_channels == 2 and model.target == "drums"


def test_cli_config_errors(tmp_path, capsys):
    assert main(["train", "iass", "--print-config", "--set", "trainer.plateau.patience=7"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["trainer"]["plateau"]["patience"] == 7 and printed["nb_channels"] == 1
    bad = tmp_path / "bad.yaml"
    bad.write_text("trainer:\n  stepz: 3\n")
    assert main(["train", "iass", "--config", str(bad), "--data", str(tmp_path)]) == 2
    assert "bad.yaml" in capsys.readouterr().err
    assert main(["train", "umx", "--data", str(tmp_path)]) == 2
    assert "manifest.json" in capsys.readouterr().err
    assert main(["train", "umx", "--set", "model=iass", "--print-config"]) == 2
    assert main(["train", "iass", "--resume", "--run-dir", str(tmp_path / "nope")]) == 2
    assert "nothing to resume" in capsys.readouterr().err


def test_train_iass_init_from_fine_tunes(iass_cli_run, stems_dir, tmp_path, capsys):
    """``init_from`` starts a fresh run from a saved model's weights (statistics included); a model of
    another target is refused with the file named."""
    import keras

    source_run = iass_cli_run[0]
    source = keras.saving.load_model(source_run / "model.keras")
    run = tmp_path / "fine"
    args = ["train", "iass", "--data", str(stems_dir), "--target", "vocals", "--run-dir", str(run), "--steps", "1",
            "--no-eval", "--lr", "1e-12", "--set", "weight_decay=0", "--set", f"init_from={source_run / 'model.keras'}",
            *COMMON]
    assert main(args) == 0
    tuned = keras.saving.load_model(run / "model.keras")
    np.testing.assert_array_equal(np.asarray(tuned.input_mean), np.asarray(source.input_mean))
    for a, b in zip(tuned.trainable_weights, source.trainable_weights):  # (BatchNorm's moving statistics move)
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-6, err_msg=a.path)
    capsys.readouterr()
    wrong = [{"vocals": "drums", str(run): str(tmp_path / "wrong")}.get(a, a) for a in args]
    assert main(wrong) == 2
    err = capsys.readouterr().err
    assert "init_from" in err and "model.keras" in err and "target" in err


def test_activity_threshold_is_chosen_on_the_validation_split(iass_cli_run, stems_dir):
    """`tfmusic train iass` ends by choosing the gate threshold: the record's gated squared errors are the
    ones the model's own gating gives (recomputed here through the Keras model at two thresholds), the
    lowest wins, and model.keras carries it."""
    import keras

    from tfmusic.audio.stft import STFT, Magnitude
    from tfmusic.data.stems.dataset import make_eval_dataset
    from tfmusic.training.activity_gate import THRESHOLDS

    run = iass_cli_run[0]
    record = json.loads((run / "activity_threshold.json").read_text())
    model = keras.saving.load_model(run / "model.keras")
    assert model.activity_threshold == record["threshold"] and record["split"] == "valid"
    errors = {float(t): e for t, e in record["errors"].items()}
    assert sorted(errors) == list(THRESHOLDS) and errors[record["threshold"]] == min(errors.values())
    stft = STFT(n_fft=4096, hop_length=1024, center=False, method="fft", dtype="float32")
    magnitude = Magnitude(dtype="float32")
    batches = list(make_eval_dataset(stems_dir, "valid", "vocals", 2, segment_seconds=0.5, channels=1))
    for threshold in {record["threshold"], 0.5, 0.05}:
        model.activity_threshold = threshold
        total = 0.0
        for mixture, target, _ in batches:
            estimate = model(magnitude(*stft(mixture)), training=False)["estimate"]
            total += float(np.sum((np.asarray(estimate) - np.asarray(magnitude(*stft(target)))) ** 2))
        assert total == pytest.approx(errors[threshold], rel=1e-4), threshold
