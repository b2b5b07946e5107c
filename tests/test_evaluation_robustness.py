"""Evaluation over songs that differ: mono after stereo, a model failure, a corrupt file in the middle.

Regression tests for two bugs of a real run: a mono song evaluated after stereo ones failed with
"Separator needs a static channel count" (one chunk function traced with ``reduce_retracing``
generalized the channel axis to None), and after one failed song every later song failed too.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tfmusic.audio.io import write_audio
from tfmusic.data.stems.track import Track
from tfmusic.evaluation import pipeline

SR = 44100


def _song(root: Path, name: str, channels: int, seconds: float, seed: int) -> Track:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    bass = np.stack([0.4 * np.sin(2 * np.pi * (70 + 10 * c + seed) * t) for c in range(channels)])
    drums = 0.2 * rng.standard_normal((channels, t.size)) * (np.sin(2 * np.pi * 3 * t) > 0.3)
    folder = root / name
    paths = {"bass": write_audio(folder / "bass.wav", bass), "drums": write_audio(folder / "drums.wav", drums)}
    return Track(name=name, layout="folder", path=str(folder), mixture=None,
                 stems={k: [str(v)] for k, v in paths.items()})


@pytest.fixture(scope="module")
def stereo_model(tmp_path_factory) -> str:
    import keras

    from tfmusic.models.iass import IASS

    keras.utils.set_random_seed(0)
    path = tmp_path_factory.mktemp("model") / "iass_drums.keras"
    IASS(nb_channels=2, max_bin=729, target="drums").build_for_frames().save(path)
    return str(path)


def test_chunk_function_takes_any_channel_count_in_any_order(stereo_model):
    """One traced graph per channel count: lengths may vary, channels never become None."""
    from tfmusic.audio.chunking import graph_chunk_fn
    from tfmusic.models.separator import load_separator

    fn = graph_chunk_fn(load_separator([stereo_model], stft_method="fft"), reduce_retracing=True)
    assert (fn.n_fft, fn.hop_length, fn.sample_rate) == (4096, 1024, SR)
    for channels, seconds in [(2, 1.0), (2, 1.5), (2, 2.0), (1, 1.0), (2, 1.25), (1, 1.75), (1, 2.0)]:
        n = int(seconds * SR)
        out = fn(np.zeros((channels, n), np.float32))
        assert out["drums"].shape == (channels, n)
        assert out["drums_activity"].shape == (1 + n // 1024,)
    with pytest.raises(ValueError, match="2-channel model cannot separate 3-channel"):
        fn(np.zeros((3, SR), np.float32))
    assert fn(np.zeros((2, SR), np.float32))["drums"].shape == (2, SR)  # a failure leaves no trace


def test_mixed_songs_one_failure_does_not_poison_the_rest(stereo_model, tmp_path):
    """stereo, mono, a song the model cannot take (3 channels), a corrupt file, then stereo and mono
    again: the two bad songs fail with their reasons, every other song is evaluated."""
    root = tmp_path / "songs"
    corrupt = _song(root, "d_corrupt", 2, 1.2, 4)
    Path(corrupt.stems["bass"][0]).write_bytes(b"RIFF\x00\x00\x00\x00WAVEnot really audio")
    songs = [_song(root, "a_stereo", 2, 1.5, 1), _song(root, "b_mono", 1, 1.3, 2),
             _song(root, "c_three_channels", 3, 1.2, 3), corrupt,
             _song(root, "e_stereo", 2, 1.7, 5), _song(root, "f_mono", 1, 1.1, 6)]
    config = pipeline.EvaluationConfig(methods=[pipeline.parse_method(f"IASS={stereo_model}")], oracles=["mix"])
    manifest = pipeline.evaluate_dataset(songs, config, tmp_path / "eval", "test", progress=False)
    assert manifest["counts"] == {"in": 6, "out": 4, "failed": 2}
    assert manifest["tracks"] == ["a_stereo", "b_mono", "e_stereo", "f_mono"]
    reasons = {f["track"]: f["reason"] for f in manifest["failed"]}
    assert "2-channel model cannot separate 3-channel audio" in reasons["c_three_channels"]
    assert "d_corrupt" in reasons["d_corrupt"] and "bass.wav" in reasons["d_corrupt"]
    assert "unreadable audio" in reasons["d_corrupt"]
    assert manifest["failure_kinds"] == {"AudioFileError": 1, "ValueError": 1}
    for song in ("a_stereo", "b_mono", "e_stereo", "f_mono"):
        doc = json.loads((tmp_path / "eval" / "IASS" / "test" / f"{song}.json").read_text())
        assert [t["name"] for t in doc["targets"]] == ["drums"] and doc["targets"][0]["frames"]
        assert len(doc["activity"]["drums"]["probability"]) > 0
        floor = json.loads((tmp_path / "eval" / "input-SDR" / "test" / f"{song}.json").read_text())
        assert np.isfinite(floor["targets"][0]["frames"][0]["metrics"]["SDR"])
    assert sorted(p.name for p in (tmp_path / "eval" / "IASS" / "test").iterdir()) == [
        "a_stereo.json", "b_mono.json", "e_stereo.json", "f_mono.json"]
