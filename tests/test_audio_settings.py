"""The one audio-settings definition: models carry theirs, and a model/dataset mismatch is refused."""
import json

import pytest

from tfmusic.audio.settings import DEFAULT, AudioSettings, check_same
from tfmusic.training.config import ConfigError
from tfmusic.training.separation import SeparationConfig, SeparationTask


def _dataset(tmp_path, n_fft=4096, hop=1024, rate=44100):
    (tmp_path / "manifest.json").write_text(json.dumps({"config": {"sample_rate": rate}, "n_fft": n_fft, "hop": hop}))
    return str(tmp_path)


def test_training_takes_the_datasets_framing(tmp_path):
    task = SeparationTask(SeparationConfig(model="umx", data_dir=_dataset(tmp_path, n_fft=2048, hop=512)))
    assert task.audio_settings() == AudioSettings(44100, 2048, 512)


def test_model_override_that_disagrees_with_the_dataset_is_refused(tmp_path):
    cfg = SeparationConfig(model="iass", data_dir=_dataset(tmp_path), model_kwargs={"n_fft": 2048, "hop_length": 512})
    with pytest.raises(ConfigError, match="framed with 44100 Hz, n_fft 4096, hop 1024"):
        SeparationTask(cfg).audio_settings()


def test_settings_values_and_mismatch_message():
    assert (DEFAULT.sample_rate, DEFAULT.n_fft, DEFAULT.hop_length, DEFAULT.n_bins) == (44100, 4096, 1024, 2049)
    with pytest.raises(ValueError, match="audio settings differ"):
        check_same(DEFAULT, AudioSettings(44100, 2048, 512), "model vs dataset")
    with pytest.raises(ValueError, match="invalid audio settings"):
        AudioSettings(44100, 1024, 2048)
