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
    for target in ("vocals", "bass"):  # stems at the song's own rate and length
        audio, sr = sf.read(out / "song" / f"{target}.wav", always_2d=True)
        assert sr == 22050 and audio.shape == (22050 * 3, 2) and np.all(np.isfinite(audio))
        audio, sr = sf.read(out / "mono" / f"{target}.wav", always_2d=True)
        assert sr == 44100 and audio.shape == (30000, 1)
    model_rate = tmp_path / "model_rate"
    assert main(["separate", str(song), "--model", models[1], "--out", str(model_rate), "--stem-rate", "model",
                 "--quiet"]) == 0
    audio, sr = sf.read(model_rate / "song" / "bass.wav", always_2d=True)
    assert sr == 44100 and audio.shape == (44100 * 3, 2)
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


def test_musdb_folders_in_one_call_and_no_silent_overwrite(models, tmp_path, capsys):
    rng = np.random.default_rng(1)
    songs = []
    for track in ("Track A", "Track B"):
        (tmp_path / "musdb" / track).mkdir(parents=True)
        path = tmp_path / "musdb" / track / "mixture.wav"
        sf.write(path, 0.1 * rng.standard_normal((44100, 2)).astype(np.float32), 44100)
        songs.append(str(path))
    out = tmp_path / "out"
    args = ["separate", *songs, "--model", models[1], "--out", str(out), "--quiet"]
    assert main(args) == 0
    first = {t: sf.read(out / t / "bass.wav")[0] for t in ("Track A", "Track B")}
    assert not np.allclose(first["Track A"], first["Track B"])  # each song's own stems
    assert main(args) == 2  # a second run would replace them: refused
    assert "use --overwrite" in capsys.readouterr().err
    assert main([*args, "--overwrite"]) == 0


def test_model_carries_non_default_stft_and_mismatches_are_refused(tmp_path, capsys):
    """A model built for n_fft 2048 / hop 512 separates with those settings, no flag needed."""
    from tfmusic.models.separator import Separator, load_separator

    keras.utils.set_random_seed(0)
    model = OpenUnmix(hidden_size=16, nb_layers=1, target="bass", n_fft=2048, hop_length=512,
                      max_bin=700).build_for_frames()
    path = tmp_path / "bass_2048.keras"
    model.save(path)
    separator = load_separator([str(path)])
    assert (separator.n_fft, separator.hop_length) == (2048, 512)
    song = tmp_path / "song.wav"
    x = 0.1 * np.random.default_rng(2).standard_normal((44100, 2)).astype(np.float32)
    sf.write(song, x, 44100)
    assert main(["separate", str(song), "--model", str(path), "--out", str(tmp_path / "o"), "--quiet",
                 "--chunk-seconds", "5"]) == 0
    written, _ = sf.read(tmp_path / "o" / "song" / "bass.wav", always_2d=True, dtype="float32")
    expected = separator(x.T[None])["bass"].numpy()[0].T
    # The chunk driver zero-pads the 1 s song to a whole chunk, which the bidirectional LSTM hears
    # near the end; away from the tail the stems equal the separator's own output.
    assert np.abs(written[:30000] - expected[:30000]).max() < 1e-3 * np.abs(expected).max()
    default = OpenUnmix(hidden_size=16, nb_layers=1, target="vocals").build_for_frames()
    with pytest.raises(ValueError, match="audio settings differ"):
        Separator({"bass": model, "vocals": default})
    with pytest.raises(ValueError, match="does not match n_fft"):
        OpenUnmix(n_bins=2049, n_fft=2048)
