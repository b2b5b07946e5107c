"""Separator (masking, channel handling, Wiener EM, saving, loading runs) and chunked overlap-add."""

import json

import keras
import numpy as np
import pytest

from tfmusic.audio.chunking import chunk_starts, crossfade_window, separate_in_chunks
from tfmusic.models.iass import IASS
from tfmusic.models.openunmix import OpenUnmix
from tfmusic.models.separator import Separator, load_separator

SR = 44100


def constant_mask(model, value: float, active: bool = True):
    """Make a model output ``mask == value`` everywhere (and IASS activity on/off)."""
    model.build_for_frames()
    model.output_scale.assign(np.zeros(model.output_scale.shape, np.float32))
    model.output_mean.assign(np.full(model.output_mean.shape, value, np.float32))
    if isinstance(model, IASS):
        head = model.activity.out
        head.kernel.assign(np.zeros(head.kernel.shape, np.float32))
        head.bias.assign(np.array([8.0 if active else -8.0], np.float32))
    return model


@pytest.fixture(scope="module")
def stereo():
    return (0.1 * np.random.default_rng(0).standard_normal((1, 2, SR // 2))).astype(np.float32)


@pytest.fixture(scope="module")
def unit_separator():
    """IASS vocals with mask 1 (activity on) + a tiny stereo Open-Unmix bass with mask 0.25; DFT STFT."""
    return Separator({"vocals": constant_mask(IASS(), 1.0),
                      "bass": constant_mask(OpenUnmix(hidden_size=16, nb_layers=1), 0.25)})


def tiny_umx(mask: float, target=None):
    return constant_mask(OpenUnmix(hidden_size=16, nb_layers=1, target=target), mask)


def test_unit_masks_reconstruct_and_report_activity(unit_separator, stereo):
    out = unit_separator(stereo)
    assert set(out) == {"vocals", "bass", "vocals_activity"}
    assert out["vocals"].shape == out["bass"].shape == stereo.shape
    assert np.abs(out["vocals"].numpy() - stereo).max() < 1e-5  # mono model, mask 1 on both channels
    assert np.abs(out["bass"].numpy() - 0.25 * stereo).max() < 1e-5
    frames = 1 + stereo.shape[-1] // 1024
    assert out["vocals_activity"].shape == (1, frames)
    assert np.all(out["vocals_activity"].numpy() > 0.99)


def test_inactive_iass_target_is_silent(unit_separator, stereo):
    head = unit_separator.targets["vocals"].activity.out
    head.bias.assign(np.array([-8.0], np.float32))
    try:
        out = unit_separator(stereo)
    finally:
        head.bias.assign(np.array([8.0], np.float32))
    assert np.all(out["vocals"].numpy() == 0) and np.all(out["vocals_activity"].numpy() < 0.01)


def test_stereo_model_on_mono_input(unit_separator):
    mono = (0.1 * np.random.default_rng(1).standard_normal((2, 1, 16384))).astype(np.float32)
    out = unit_separator(mono)
    assert out["bass"].shape == out["vocals"].shape == (2, 1, 16384)
    assert np.abs(out["bass"].numpy() - 0.25 * mono).max() < 1e-5
    assert np.abs(out["vocals"].numpy() - mono).max() < 1e-5


def test_traces_with_dynamic_batch_and_length(unit_separator, stereo):
    """Serving/export signatures leave batch and samples open: shapes must stay symbolic."""
    import tensorflow as tf

    fn = tf.function(lambda w: unit_separator(w), input_signature=[tf.TensorSpec((None, 2, None), tf.float32)])
    got, expected = fn(stereo), unit_separator(stereo)
    for key in expected:
        assert got[key].shape == expected[key].shape
        np.testing.assert_allclose(got[key].numpy(), expected[key].numpy(), atol=1e-5)


def test_wiener_keeps_the_mixture_and_refines(stereo):
    out = Separator({"a": tiny_umx(0.7), "b": tiny_umx(0.3)}, wiener_iterations=1, stft_method="fft")(stereo)
    total = out["a"].numpy() + out["b"].numpy()
    # masks sum to 1 -> residual is zero, so the two targets still add up to the mixture
    assert np.abs(total - stereo).max() < 1e-3 * np.abs(stereo).max()
    # equal spatial covariances: one EM step turns amplitude ratios into power ratios, 0.49 / 0.58
    assert np.abs(out["a"].numpy() - 0.49 / 0.58 * stereo).max() < 1e-3 * np.abs(stereo).max()


def test_wiener_single_target_uses_a_residual(stereo):
    out = Separator({"v": tiny_umx(0.5)}, wiener_iterations=1, stft_method="fft")(stereo)
    energy = float(np.sum(out["v"].numpy() ** 2) / np.sum(stereo**2))
    assert 0.05 < energy < 0.95  # not the whole mixture (which a lone source would get)


def test_separator_save_load_round_trip(stereo, tmp_path):
    keras.utils.set_random_seed(0)
    sep = Separator({"vocals": IASS(median_frames=5), "drums": OpenUnmix(hidden_size=16, nb_layers=1)},
                    stft_method="fft")
    expected = sep(stereo)
    path = tmp_path / "sep.keras"
    sep.save(path)
    loaded = keras.saving.load_model(path)
    assert isinstance(loaded, Separator) and loaded.target_names == ["vocals", "drums"]
    assert loaded.stft_method == "fft"
    got = loaded(stereo)
    for key in expected:
        np.testing.assert_allclose(got[key].numpy(), expected[key].numpy(), rtol=1e-4, atol=1e-6)


def test_load_separator_from_runs_and_files(tmp_path):
    run = tmp_path / "run_iass"
    run.mkdir()
    IASS().build_for_frames().save(run / "model.keras")
    (run / "config.json").write_text(json.dumps({"model": "iass", "target": "piano"}))
    named = tmp_path / "umx.keras"
    tiny_umx(1.0, target="bass").save(named)
    unnamed = tmp_path / "unnamed.keras"
    tiny_umx(1.0).save(unnamed)
    sep = load_separator([str(run), str(named)], activity_threshold=0.3, median_frames=7)
    assert sep.target_names == ["piano", "bass"]
    assert sep.targets["piano"].activity_threshold == 0.3 and sep.targets["piano"].median_frames == 7
    assert load_separator([str(named), str(unnamed)], targets=["bass", "drums"]).target_names == ["bass", "drums"]
    with pytest.raises(ValueError, match="do not name their target"):
        load_separator([str(unnamed)])
    with pytest.raises(ValueError, match="no model for target"):
        load_separator([str(named)], targets=["vocals"])
    with pytest.raises(ValueError, match="two models separate"):
        load_separator([str(named), str(named)])
    bad = tmp_path / "bad.keras"
    bad.write_text("not a zip")
    with pytest.raises(ValueError, match="bad.keras"):
        load_separator([str(bad)], targets=["x"])
    with pytest.raises(FileNotFoundError):
        load_separator([str(tmp_path / "missing")])
    with pytest.raises(ValueError, match="activity_threshold"):
        load_separator([str(run)], activity_threshold=1.5)


@pytest.mark.parametrize("total,chunk,overlap,hop", [(1000, 4096, 1024, 256), (40000, 8192, 2048, 1024),
                                                     (12345, 3000, 1400, 256), (50000, 8192, 4096, 1024)])
def test_chunking_is_exact_for_pointwise_functions(total, chunk, overlap, hop):
    x = np.random.default_rng(total).standard_normal((2, total)).astype(np.float32)
    calls = []

    def fn(piece):
        calls.append(piece.shape)
        return {"w": 3 * piece[:1], "act": np.ones(1 + piece.shape[1] // hop, np.float32)}

    out = separate_in_chunks(x, fn, chunk, overlap, frame_hop=hop, progress=False)
    np.testing.assert_allclose(out["w"], 3 * x[:1], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out["act"], 1.0, rtol=1e-6)
    assert out["act"].shape == (1 + total // hop,)
    assert len(set(calls)) == 1  # one chunk shape: graphs are traced once
    streamed = []
    rest = separate_in_chunks(x, fn, chunk, overlap, frame_hop=hop, progress=False,
                              sink=lambda name, seg: streamed.append(seg))
    assert "w" not in rest and "act" in rest
    np.testing.assert_allclose(np.concatenate(streamed, axis=1), 3 * x[:1], rtol=1e-5, atol=1e-6)


def test_crossfade_pieces():
    assert chunk_starts(100, 40, 10, hop=5) == [0, 30, 60]
    w_in = crossfade_window(40, fade_in=12, fade_out=0, margin_in=3)
    w_out = crossfade_window(40, fade_in=0, fade_out=12, margin_out=3)
    np.testing.assert_allclose(w_in[:12] + w_out[-12:], 1.0)
    assert np.all(w_in[:3] == 0) and np.all(w_out[-3:] == 0)
    with pytest.raises(ValueError, match="must exceed"):
        chunk_starts(100, 10, 10)


def test_chunked_separation_equals_unchunked():
    """With margins wider than the IASS receptive field, chunking changes nothing."""
    keras.utils.set_random_seed(0)
    sep = Separator({"vocals": IASS(median_frames=5)}, stft_method="fft")
    x = (0.1 * np.random.default_rng(2).standard_normal((1, 2, 1024 * 96))).astype(np.float32)
    full = sep(x)

    def fn(piece):
        return {k: v.numpy()[0] for k, v in sep(piece[None]).items()}

    out = separate_in_chunks(x[0], fn, chunk_samples=1024 * 56, overlap_samples=1024 * 28,
                             margin_samples=1024 * 14, progress=False)
    ref = full["vocals"].numpy()[0]
    assert np.abs(out["vocals"] - ref).max() <= 1e-4 * np.abs(ref).max()
    np.testing.assert_allclose(out["vocals_activity"], full["vocals_activity"].numpy()[0], atol=1e-5)


def test_separate_waveform_uses_the_separators_own_stft_settings():
    """A model built with n_fft 2048 / hop 512 is chunked on 512-sample hops with no flag."""
    from tfmusic.audio.chunking import default_settings, graph_chunk_fn, separate_waveform, settings_of

    keras.utils.set_random_seed(0)
    sep = Separator({"vocals": IASS(n_fft=2048, hop_length=512, max_bin=729, median_frames=5)}, stft_method="fft")
    assert (settings_of(sep).n_fft, settings_of(sep).hop) == (2048, 512)
    fn = graph_chunk_fn(sep)
    x = (0.1 * np.random.default_rng(3).standard_normal((2, 512 * 300))).astype(np.float32)
    out = separate_waveform(x, fn, chunk_seconds=2.0, overlap_seconds=1.0)
    full = {k: v.numpy()[0] for k, v in sep(x[None]).items()}
    assert out["vocals"].shape == x.shape and out["vocals_activity"].shape == (1 + x.shape[1] // 512,)
    assert np.abs(out["vocals"] - full["vocals"]).max() <= 1e-3 * np.abs(full["vocals"]).max()
    # a plain function carries nothing: tfmusic's defaults; explicit settings win
    defaults = default_settings()
    assert (defaults.sample_rate, defaults.n_fft, defaults.hop) == (SR, 4096, 1024)
    assert settings_of(lambda piece: {}) == defaults

    def pointwise(piece):
        return {"w": 2 * piece, "curve": np.ones(1 + piece.shape[1] // 100, np.float32)}

    pointwise.sample_rate, pointwise.n_fft, pointwise.hop = 8000, 400, 100
    y = np.random.default_rng(4).standard_normal((1, 8000 * 3 + 17)).astype(np.float32)
    got = separate_waveform(y, pointwise, chunk_seconds=1.0, overlap_seconds=0.25)
    np.testing.assert_allclose(got["w"], 2 * y, rtol=1e-5, atol=1e-6)
    assert got["curve"].shape == (1 + y.shape[1] // 100,)
    with pytest.raises(ValueError, match="at most half"):
        separate_waveform(y, pointwise, chunk_seconds=1.0, overlap_seconds=0.6)
