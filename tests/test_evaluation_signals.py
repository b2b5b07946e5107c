"""Lazy whole-song signals: a spilled evaluation scores exactly what the in-memory one does."""

from __future__ import annotations

import numpy as np
import pytest

from tfmusic.evaluation import signals
from tfmusic.evaluation.metrics import is_silent
from tfmusic.evaluation.oracles import evaluate_oracles
from tfmusic.evaluation.scoring import TrackAudio, evaluate_estimates


def _song(seconds: float = 3.0, sr: int = 44100):
    rng = np.random.default_rng(3)
    n = int(seconds * sr)
    drums = (0.2 * rng.standard_normal((2, n))).astype(np.float32)
    drums[:, n // 3: n // 2] = 0  # the target leaves for a while
    rest = (0.1 * rng.standard_normal((2, n))).astype(np.float32)
    return drums + rest, drums


def test_disk_signal_round_trip_and_slices(tmp_path):
    audio = np.arange(2 * 1000, dtype=np.float32).reshape(2, 1000)
    sig = signals.DiskSignal.write(str(tmp_path / "x.f32"), audio)
    assert sig.shape == (2, 1000)
    np.testing.assert_array_equal(sig[:, 10:20], audio[:, 10:20])
    np.testing.assert_array_equal(sig[1, 990:2000], audio[1, 990:])
    np.testing.assert_array_equal(np.asarray(sig), audio)
    with pytest.raises(IndexError, match="contiguous"):
        sig[:, ::2]
    diff = signals.Difference(sig, audio * 0.5)
    np.testing.assert_array_equal(diff[:, 5:9], audio[:, 5:9] * 0.5)
    assert signals.all_finite(sig) and not is_silent(sig)
    bad = audio.copy()
    bad[0, 500] = np.nan
    assert not signals.all_finite(signals.DiskSignal.write(str(tmp_path / "y.f32"), bad))


def test_disk_signal_refuses_a_file_of_the_wrong_size(tmp_path):
    path = tmp_path / "short.f32"
    path.write_bytes(b"\0" * 12)
    with pytest.raises(ValueError, match="short.f32: holds 12 bytes"):
        signals.DiskSignal(str(path), 2, 100)


def test_spilled_evaluation_equals_in_memory(tmp_path):
    """Model estimates and oracles scored from DiskSignals (the pipeline's path) give the same
    numbers, frame for frame, as the same arrays held in memory."""
    mixture, drums = _song()
    estimate = (0.8 * drums + 0.05 * mixture).astype(np.float32)
    in_memory = TrackAudio("song", mixture, {"drums": drums})
    spilled = TrackAudio("song", signals.DiskSignal.write(str(tmp_path / "m.f32"), mixture),
                         {"drums": signals.DiskSignal.write(str(tmp_path / "d.f32"), drums)}, scratch=str(tmp_path))
    a = evaluate_estimates(in_memory, {"drums": estimate}, method="model")
    b = evaluate_estimates(spilled, {"drums": signals.DiskSignal.write(str(tmp_path / "e.f32"), estimate)},
                           method="model")
    assert a["targets"] == b["targets"]
    oa = evaluate_oracles(in_memory, ["drums"], ["ibm", "mix"])
    ob = evaluate_oracles(spilled, ["drums"], ["ibm", "mix"])
    for label in oa:
        np.testing.assert_allclose([f["metrics"]["SDR"] for f in oa[label]["targets"][0]["frames"]],
                                   [f["metrics"]["SDR"] for f in ob[label]["targets"][0]["frames"]], atol=1e-9)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.f32", "e.f32", "m.f32"]  # oracle spills removed
