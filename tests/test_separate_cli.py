"""`tfmusic separate` end to end on short generated audio with random-weight models."""

import json

import keras
import numpy as np
import pytest
import soundfile as sf

from tfmusic.cli.main import main
from tfmusic.models.iass import IASS
from tfmusic.models.openunmix import OpenUnmix


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    keras.utils.set_random_seed(0)
    run = root / "iass_vocals"
    run.mkdir()
    IASS().build_for_frames().save(run / "model.keras")
    (run / "config.json").write_text(json.dumps({"model": "iass", "target": "vocals"}))
    umx = root / "umx_bass.keras"
    OpenUnmix(hidden_size=16, nb_layers=1, target="bass").build_for_frames().save(umx)
    return str(run), str(umx)


def test_separate_stereo_22k_song_with_plot(models, tmp_path, capsys):
    rng = np.random.default_rng(0)
    song = tmp_path / "song.wav"
    sf.write(song, 0.1 * rng.standard_normal((22050 * 3, 2)).astype(np.float32), 22050)
    mono = tmp_path / "mono.flac"
    sf.write(mono, 0.1 * rng.standard_normal(30000).astype(np.float32), 44100)
    out = tmp_path / "out"
    code = main(["separate", str(song), str(mono), "--model", models[0], "--model", models[1],
                 "--out", str(out), "--chunk-seconds", "2", "--overlap-seconds", "0.5",
                 "--wiener-iterations", "1", "--plot", "--median-frames", "11"])
    assert code == 0
    for target in ("vocals", "bass"):
        audio, sr = sf.read(out / "song" / f"{target}.wav", always_2d=True)
        assert sr == 44100 and audio.shape == (44100 * 3, 2) and np.all(np.isfinite(audio))
        audio, sr = sf.read(out / "mono" / f"{target}.wav", always_2d=True)
        assert audio.shape == (30000, 1)
    table = np.loadtxt(out / "song" / "activity.csv", delimiter=",", skiprows=1)
    assert table.shape == (1 + 44100 * 3 // 1024, 2) and np.all((table[:, 1] >= 0) & (table[:, 1] <= 1))
    assert (out / "song" / "activity.png").stat().st_size > 1000
    assert "song.wav: 3.0 s" in capsys.readouterr().out


def test_separate_reports_bad_input_cleanly(models, tmp_path, capsys):
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF nonsense")
    assert main(["separate", str(bad), "--model", models[1], "--out", str(tmp_path / "o"), "--quiet"]) == 2
    assert "bad.wav" in capsys.readouterr().err
    assert main(["separate", str(tmp_path / "missing.wav"), "--model", models[1]]) == 2
    assert "missing.wav" in capsys.readouterr().err
    song = tmp_path / "ok.wav"
    sf.write(song, np.zeros(4410, np.float32), 44100)
    assert main(["separate", str(song), "--model", models[1], "--targets", "drums", "--out", str(tmp_path / "o")]) == 2
    assert "no model for target" in capsys.readouterr().err
