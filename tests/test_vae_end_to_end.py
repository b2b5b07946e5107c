"""End to end on generated TFRecords: `tfmusic vae train` -> `tfmusic vae evaluate`, and the library path the
experiments measure with (train_run -> evaluate_run -> collect_codes) on the same data."""
import json

import numpy as np
import pytest

from tfmusic.cli.main import main
from tfmusic.data import dmelodies


@pytest.fixture(scope="module")
def dmel_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("dmel")
    dmelodies.generate(out, limit=600, num_shards={"train": 1, "validation": 1, "test": 1}, progress=False)
    return out


def _check_discrete(metrics, points):
    assert metrics["num_points"] == points and metrics["split"] == "test"
    for key in ("mig", "modularity", "sap", "reconstruction_accuracy"):
        assert 0.0 <= metrics[key] <= 1.0, key
    assert len(metrics["mig_per_factor"]) == len(dmelodies.FACTOR_NAMES)


def test_cli_train_then_evaluate(dmel_dir, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["vae", "train", "--model", "dmelodies-cnn", "--objective", "ar", "--data", str(dmel_dir),
                 "--out", str(run), "--steps", "3", "--batch-size", "32", "--eval-steps", "1", "--init", "xavier",
                 "--quiet"]) == 0
    assert json.loads((run / "config.json").read_text())["vae"]["init"] == "xavier"
    assert (run / "model.keras").is_file()
    assert main(["vae", "evaluate", str(run), "--batch-size", "20", "--max-batches", "2", "--quiet"]) == 0
    assert "mig=" in capsys.readouterr().out
    _check_discrete(json.loads((run / "evaluation.json").read_text()), 40)


def test_train_run_evaluate_run_and_collect_codes_agree(dmel_dir, tmp_path):
    from tfmusic.training.vae import VAEConfig, collect_codes, evaluate_run, load_run, open_data, train_run

    data = open_data("dmelodies-cnn", dmel_dir)
    cfg = VAEConfig(model="dmelodies-cnn", objective="beta", seed=1, init="xavier", warmup_epochs=-1)
    result = train_run(cfg, data, tmp_path / "run", data_dir=str(dmel_dir), batch_size=32, steps=4, eval_every=2,
                       eval_steps=1, progress=False)
    assert result.step == 4 and [r["step"] for r in result.history] == [2, 4]
    metrics = evaluate_run(tmp_path / "run", batch_size=16, max_batches=2)  # data dir from the run's vae.json
    _check_discrete(metrics, 32)
    vae, meta = load_run(tmp_path / "run")
    assert meta["vae"]["init"] == "xavier"
    codes = collect_codes(vae, data.dataset("test", 16), max_batches=2)
    assert codes["z"].shape == codes["mean"].shape == (32, 32) and codes["attributes"].shape == (32, 9)
    assert codes["accuracy"] == pytest.approx(metrics["reconstruction_accuracy"])
    ds_factors = np.concatenate([np.asarray(a) for _, a in data.dataset("test", 16).take(2)])
    np.testing.assert_array_equal(codes["attributes"], ds_factors)  # the split's factors, in order
