"""Both task families get the trainer's telemetry through the CLI and the trainer; remote run dirs fail fast."""
import pytest

tf = pytest.importorskip("tensorflow")
from tensorboard.backend.event_processing import event_accumulator as ea  # noqa: E402

from tests.test_vae_training import _dmelodies_data, _trainer_config  # noqa: E402
from tfmusic.cli.main import main  # noqa: E402


def _tags(path):
    acc = ea.EventAccumulator(str(path), size_guidance={ea.TENSORS: 0})
    acc.Reload()
    return set(acc.Tags()["tensors"])


def test_train_iass_cli_histograms_and_profile(iass_cli_run):
    """The session's `tfmusic train iass --histograms --profile-steps 2,2` run (tests/conftest.py)."""
    run, _, _ = iass_cli_run
    train = _tags(run / "tensorboard" / "train")
    assert {"perf/steps_per_second", "perf/examples_per_second", "grad_norm/adamw", "train_step"} <= train
    assert any(t.startswith("weights/") for t in train)
    activations = {t for t in train if t.startswith("activations/")}
    assert len(activations) >= 3  # the U-Net's blocks and the activity head
    assert list((run / "tensorboard" / "train" / "plugins" / "profile").glob("*/*.xplane.pb"))
    session = _tags(run / "tensorboard")
    assert {"_hparams_/session_start_info", "_hparams_/session_end_info", "final/eval_loss"} <= session


def test_profile_steps_flag_is_checked(capsys):
    with pytest.raises(SystemExit):
        main(["train", "iass", "--profile-steps", "3"])
    assert "START,END" in capsys.readouterr().err


def test_factor_vae_logs_both_gradient_norms(tmp_path):
    from tfmusic.training.trainer import Trainer
    from tfmusic.training.vae import VAEConfig, VAETask

    cfg = VAEConfig(model="dmelodies-cnn", objective="factor", hidden=8, z_dim=6, warmup_epochs=-1,
                    ramp_iterations=10)
    run = tmp_path / "vae"
    Trainer(VAETask(cfg, _dmelodies_data()), _trainer_config(summaries=False, histograms=True), run,
            progress=False, run_config={"vae": {"objective": "factor", "z_dim": 6}}).fit()
    train = _tags(run / "tensorboard" / "train")
    assert {"grad_norm/vae", "grad_norm/discriminator", "perf/steps_per_second"} <= train
    assert any(t.startswith("activations/") for t in train) and any(t.startswith("weights/") for t in train)
    assert "_hparams_/session_start_info" in _tags(run / "tensorboard")


@pytest.mark.parametrize("url", ["gs://bucket/run", "s3://bucket/run"])
def test_remote_run_dirs_fail_fast_without_a_local_folder(tmp_path, monkeypatch, capsys, url):
    monkeypatch.chdir(tmp_path)
    assert main(["train", "iass", "--data", str(tmp_path), "--run-dir", url, "--quiet"]) == 2
    err = capsys.readouterr().err
    assert url in err and "local folders" in err
    assert main(["vae", "train", "--model", "mnist", "--objective", "beta", "--out", url, "--quiet"]) == 2
    assert url in capsys.readouterr().err
    from tests._multiworker_worker import ToyTask
    from tfmusic.training.config import TrainerConfig
    from tfmusic.training.trainer import Trainer

    with pytest.raises(ValueError, match="local folders"):
        Trainer(ToyTask(), TrainerConfig(steps=1, batch_size=8), url, progress=False)
    assert list(tmp_path.iterdir()) == []  # no "gs:" / "s3:" folder
