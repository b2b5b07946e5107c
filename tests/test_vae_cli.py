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
