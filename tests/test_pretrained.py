"""Shipped models: registry, sha256 checked on load, `tfmusic models`, and `separate` without --model."""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest
import soundfile as sf

from tfmusic.cli.main import main
from tfmusic.models import pretrained
from tfmusic.models.iass import IASS
from tfmusic.models.openunmix import OpenUnmix


@pytest.fixture()
def shipped(tmp_path, monkeypatch):
    """A registry of two small random-weight models (drums, bass) with 'other' as the residual."""
    root = tmp_path / "pretrained"
    keras.utils.set_random_seed(0)
    files = tmp_path / "trained"
    files.mkdir()
    IASS(target="drums").build_for_frames().save(files / "drums.keras")
    OpenUnmix(hidden_size=16, nb_layers=1, target="bass").build_for_frames().save(files / "bass.keras")
    pretrained.publish(files / "drums.keras", "iass_drums", {"target": "drums", "architecture": "IASS",
                                                             "default": True, "steps": 10}, "# card\n", root)
    pretrained.publish(files / "bass.keras", "umx_bass", {"target": "bass", "architecture": "Open-Unmix",
                                                          "default": True}, "", root, residual="other")
    monkeypatch.setattr(pretrained, "PRETRAINED_DIR", root)
    for fn in (pretrained.registry, pretrained.info, pretrained.model_path, pretrained.default_models,
               pretrained.card, pretrained.residual_target):
        fn.__defaults__ = tuple(root if isinstance(d, type(root)) else d for d in fn.__defaults__)
    return root


def test_registry_records_sha_and_refuses_a_changed_file(shipped):
    entry = pretrained.info("iass_drums", shipped)
    assert entry["target"] == "drums" and len(entry["sha256"]) == 64 and entry["bytes"] > 0
    assert pretrained.model_path("iass_drums", shipped).is_file()
    assert pretrained.default_models(root=shipped) == {"bass": "umx_bass", "drums": "iass_drums"}
    assert pretrained.residual_target(shipped) == "other"
    path = shipped / "iass_drums.keras"
    path.write_bytes(path.read_bytes()[:-10])  # truncated
    with pytest.raises(pretrained.PretrainedError, match="sha256"):
        pretrained.model_path("iass_drums", shipped)
    with pytest.raises(pretrained.PretrainedError, match="no shipped model named"):
        pretrained.info("nope", shipped)
    with pytest.raises(pretrained.PretrainedError, match="vocals"):
        pretrained.default_models(["vocals"], shipped)


def test_publish_refuses_a_model_over_the_size_limit(tmp_path, monkeypatch):
    big = tmp_path / "big.keras"
    big.write_bytes(b"0" * 100)
    monkeypatch.setattr(pretrained, "MAX_BYTES", 50)
    with pytest.raises(pretrained.PretrainedError, match="MB a shipped"):
        pretrained.publish(big, "x", {"target": "drums", "architecture": "IASS"}, "", tmp_path / "p")


def test_models_cli_lists_and_shows_the_card(shipped, capsys):
    assert main(["models", "list"]) == 0
    out = capsys.readouterr().out
    assert "iass_drums" in out and "umx_bass" in out and "drums" in out
    assert main(["models", "info", "iass_drums"]) == 0
    out = capsys.readouterr().out
    assert '"sha256_checked": true' in out and "# card" in out
    assert main(["models", "info", "nope"]) == 2


def test_separate_without_model_uses_the_shipped_set_and_the_residual(shipped, tmp_path, capsys):
    rng = np.random.default_rng(0)
    song = tmp_path / "song.wav"
    audio = (0.1 * rng.standard_normal((44100 * 2, 2))).astype(np.float32)
    sf.write(song, audio, 44100)
    out = tmp_path / "out"
    assert main(["separate", str(song), "--out", str(out), "--chunk-seconds", "2", "--overlap-seconds", "0.5"]) == 0
    err = capsys.readouterr().err
    assert "using the shipped models" in err and "iass_drums (drums)" in err and "other = the mixture" in err
    stems = {t: sf.read(out / "song" / f"{t}.wav", always_2d=True)[0] for t in ("drums", "bass", "other")}
    for stem in stems.values():
        assert stem.shape == audio.shape
    np.testing.assert_allclose(stems["drums"] + stems["bass"] + stems["other"], audio, atol=1e-4)
    song48 = tmp_path / "song48.wav"  # a 48 kHz song: stems come back at 48 kHz, chunk seams resampled away
    t = np.arange(48000 * 3) / 48000  # content below the model rate's Nyquist survives the round trip
    audio48 = np.stack([0.1 * np.sin(2 * np.pi * 440 * t) + 0.05 * np.sin(2 * np.pi * 9000 * t),
                        0.1 * np.sin(2 * np.pi * 220 * t)], axis=1).astype(np.float32)
    sf.write(song48, audio48, 48000)
    assert main(["separate", str(song48), "--out", str(out), "--chunk-seconds", "1", "--overlap-seconds", "0.3",
                 "--quiet"]) == 0
    stems = {t: sf.read(out / "song48" / f"{t}.wav", always_2d=True) for t in ("drums", "bass", "other")}
    assert all(rate == 48000 and stem.shape == audio48.shape for stem, rate in stems.values())
    total = sum(stem for stem, _ in stems.values())
    assert np.sqrt(np.mean((total - audio48)[100:-100] ** 2)) < 0.01 * np.sqrt(np.mean(audio48 ** 2))
    assert main(["separate", str(song), "--out", str(tmp_path / "o2"), "--targets", "drums", "--quiet"]) == 0
    assert sorted(p.name for p in (tmp_path / "o2" / "song").glob("*.wav")) == ["drums.wav"]
