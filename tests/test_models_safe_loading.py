"""Model files are data: a .keras file carrying Python code (a Lambda layer) is refused by every loader."""
import keras
import numpy as np
import pytest

from tfmusic.cli.main import main as tfmusic_main
from tfmusic.models.files import UnsafeModelError, load_keras_file


def _lambda_model(path):
    inputs = keras.Input((2, 8))
    outputs = keras.layers.Lambda(lambda x: x * 2.0)(inputs)  # arbitrary code stored in the file
    keras.Model(inputs, outputs).save(path)
    return path


def test_lambda_model_is_refused(tmp_path):
    path = _lambda_model(tmp_path / "evil.keras")
    with pytest.raises(UnsafeModelError, match="evil.keras: refused"):
        load_keras_file(path)


def test_separate_refuses_lambda_model(tmp_path, capsys):
    path = _lambda_model(tmp_path / "evil.keras")
    import soundfile as sf

    wav = tmp_path / "song.wav"
    sf.write(wav, np.zeros((44100, 2), np.float32), 44100)
    assert tfmusic_main(["separate", str(wav), "--model", str(path), "--out", str(tmp_path / "out")]) == 2
    assert "evil.keras: refused" in capsys.readouterr().err
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_corrupt_file_names_the_file(tmp_path):
    path = tmp_path / "broken.keras"
    path.write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="broken.keras: could not load"):
        load_keras_file(path)
