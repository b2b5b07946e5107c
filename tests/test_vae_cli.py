"""`tfmusic vae` command line: help texts and clean errors (training itself is covered in test_vae_training)."""

import pytest

from tfmusic.cli.main import main


def test_help_lists_subcommands(capsys):
    with pytest.raises(SystemExit):
        main(["vae", "train", "--help"])
    text = capsys.readouterr().out
    for flag in ("--model", "--objective", "--data", "--beta", "--gamma", "--delta", "--warmup-epochs",
                 "--strategy", "--resume"):
        assert flag in text
    assert main(["vae"]) == 1


def test_train_missing_data_dir_is_a_clean_error(tmp_path, capsys):
    rc = main(["vae", "train", "--model", "dmelodies-rnn", "--objective", "ar", "--data", str(tmp_path / "nope"),
               "--out", str(tmp_path / "run"), "--steps", "1"])
    assert rc == 2
    assert "nope" in capsys.readouterr().err


def test_music_model_needs_data(tmp_path, capsys):
    rc = main(["vae", "train", "--model", "measure", "--objective", "beta", "--out", str(tmp_path / "run")])
    assert rc == 2 and "--data is required" in capsys.readouterr().err


def test_evaluate_and_traverse_reject_non_runs(tmp_path, capsys):
    assert main(["vae", "evaluate", str(tmp_path)]) == 2
    assert "vae.json" in capsys.readouterr().err
    assert main(["vae", "traverse", str(tmp_path), "--dim", "0", "--out", str(tmp_path / "t")]) == 2


def test_bad_int_list(tmp_path, capsys):
    rc = main(["vae", "train", "--model", "dmelodies-cnn", "--objective", "ar", "--data", str(tmp_path),
               "--out", str(tmp_path / "run"), "--reg-dims", "0,x"])
    assert rc == 2 and "comma-separated" in capsys.readouterr().err


def _printed(capsys, *argv):
    import json

    assert main(["vae", "train", "--print-config", *argv]) == 0
    return json.loads(capsys.readouterr().out)


def test_print_config_shows_the_spec_defaults_per_family(capsys):
    music = _printed(capsys, "--model", "dmelodies-rnn", "--objective", "ar")
    assert music["trainer"]["batch_size"] == 512 and music["epochs"] == 100
    assert music["trainer"]["steps"] is None and music["trainer"]["eval_every"] is None  # data-dependent
    assert music["trainer"]["eval_steps"] == 20 and music["trainer"]["seed"] == 0 and music["vae"]["seed"] == 0
    assert music["trainer"]["plateau"]["patience"] is None and music["trainer"]["early_stopping"]["patience"] is None
    assert music["vae"]["learning_rate"] == 1e-4 and music["vae"]["teacher_forcing"] == 0.5
    assert music["vae"]["ramp_iterations"] == 1e5
    assert _printed(capsys, "--model", "measure", "--objective", "beta")["epochs"] == 30
    assert _printed(capsys, "--model", "measure", "--objective", "beta")["trainer"]["batch_size"] == 256
    assert _printed(capsys, "--model", "sprites", "--objective", "factor")["trainer"]["batch_size"] == 1024


def test_layers_defaults_file_flags_set(tmp_path, capsys):
    cfg = tmp_path / "run.yaml"
    cfg.write_text("vae: {beta: 0.5, z_dim: 8}\ntrainer: {batch_size: 32, log_every: 3}\nepochs: 2\n")
    out = _printed(capsys, "--model", "mnist", "--objective", "beta", "--config", str(cfg), "--batch-size", "64",
                   "--seed", "3", "--set", "vae.z_dim=6", "--set", "trainer.plateau.patience=4")
    assert out["vae"]["beta"] == 0.5 and out["epochs"] == 2  # file
    assert out["trainer"]["batch_size"] == 64  # flag over file
    assert out["vae"]["z_dim"] == 6 and out["trainer"]["plateau"]["patience"] == 4  # --set over all
    assert out["vae"]["seed"] == 3 and out["trainer"]["seed"] == 3 and out["trainer"]["log_every"] == 3


def test_config_errors_name_their_source(tmp_path, capsys):
    cfg = tmp_path / "bad.json"
    cfg.write_text('{"vae": {"bogus": 1}}')
    assert main(["vae", "train", "--model", "mnist", "--objective", "beta", "--print-config",
                 "--config", str(cfg)]) == 2
    assert "bad.json" in capsys.readouterr().err
    assert main(["vae", "train", "--model", "mnist", "--objective", "beta", "--print-config",
                 "--set", "vae.objective=factor"]) == 2
    assert "--set" in capsys.readouterr().err
    assert main(["vae", "train", "--model", "mnist", "--objective", "beta"]) == 2
    assert "--out" in capsys.readouterr().err


def test_finalize_fills_the_data_dependent_values():
    from tfmusic.training.vae_config import finalize_config, resolve_config

    config = finalize_config(resolve_config("mnist", "beta", []), 4000)
    assert config.vae.steps_per_epoch == 32 and config.trainer.steps == 3200  # 100 epochs of ceil(4000/128)
    assert config.trainer.eval_every == 32 and config.trainer.log_every == 10
    short = finalize_config(resolve_config("mnist", "beta", [("flags", {"trainer": {"steps": 5}})]), 4000)
    assert short.trainer.steps == 5 and short.trainer.eval_every == 5 and short.trainer.log_every == 5


def test_cli_run_writes_a_config_it_can_read_back(tmp_path, capsys):
    import json

    run = tmp_path / "run"
    assert main(["vae", "train", "--model", "mnist", "--objective", "beta", "--out", str(run), "--steps", "2",
                 "--batch-size", "8", "--eval-steps", "1", "--z-dim", "4", "--quiet"]) == 0
    capsys.readouterr()
    saved = json.loads((run / "config.json").read_text())
    assert saved["trainer"]["steps"] == 2 and saved["trainer"]["eval_every"] == 2
    assert saved["vae"]["steps_per_epoch"] == 500 and saved["vae"]["z_dim"] == 4
    assert _printed(capsys, "--model", "mnist", "--objective", "beta", "--config", str(run / "config.json")) == saved
    assert json.loads((run / "vae.json").read_text())["steps_per_epoch"] == 500
