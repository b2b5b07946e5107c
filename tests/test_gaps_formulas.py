"""Tests that would catch a wrong implementation: each compares against a direct, slow version.

- MedleyDB activation confidence (spec A.5) against a per-frame loop written from the spec.
- The FFT STFT/ISTFT path against the DFT-basis path and numpy's rfft on explicit frames.
- Every record of every stems shard belongs to a song of that shard's split.
"""
import json

import numpy as np
import pytest
import scipy.signal

from tfmusic.data.stems import activity


def _confidence_per_frame(audio: np.ndarray) -> np.ndarray:
    """The spec, one frame at a time: envelope = mean(hann(4096) * sqrt(max(x, 0))) over each
    4096-sample frame (hop 1024, signal zero-padded to a multiple of 4096), normalized by the peak
    channel-sum times the channel count, frames under 0.01 zeroed, zero-phase 2nd-order Butterworth
    (cutoff 0.075), sigmoid(20 (H - 0.15)), max over channels, first and last frame dropped."""
    win, hop = 4096, 1024
    window = scipy.signal.get_window("hann", win, fftbins=False)
    n_ch, n = audio.shape
    padded = max(int(np.ceil(n / win)) * win, win)
    frames = 1 + (padded - win) // hop
    env = np.zeros((n_ch, frames))
    for c in range(n_ch):
        x = np.zeros(padded)
        x[:n] = audio[c]
        x = np.sqrt(np.maximum(x, 0.0))
        for f in range(frames):
            env[c, f] = np.sum(window * x[f * hop: f * hop + win]) / win
    env = n_ch * env / env.sum(axis=0).max()
    env[:, env.sum(axis=0) < 0.01] = 0.0
    b, a = scipy.signal.butter(2, 0.075, btype="low")
    env = scipy.signal.filtfilt(b, a, env, axis=1)
    return (1.0 / (1.0 + np.exp(-20.0 * (env - 0.15)))).max(axis=0)[1:-1]


def test_activation_confidence_equals_the_per_frame_formula():
    rng = np.random.default_rng(0)
    t = np.arange(int(44100 * 3.3)) / 44100
    gate = (np.sin(2 * np.pi * 0.7 * t) > 0).astype(float)
    late = (t > 2.0).astype(float)
    audio = np.stack([0.5 * gate * np.sin(2 * np.pi * 330 * t), 0.2 * late * rng.standard_normal(t.size)])
    want = _confidence_per_frame(audio)
    got = activity.activation_confidence(audio)
    assert got.shape == want.shape and 0.1 < (got > 0.5).mean() < 0.9  # both active and silent frames
    np.testing.assert_allclose(got, want, atol=2e-5)
    hard_left = audio.copy()
    hard_left[1] = 0.0  # panned to one side: max over channels, still active
    np.testing.assert_allclose(activity.activation_confidence(hard_left), _confidence_per_frame(hard_left),
                               atol=2e-5)


@pytest.mark.parametrize("n_fft,hop", [(512, 128), (4096, 1024)])
def test_fft_stft_path_matches_dft_path_and_numpy(n_fft, hop):
    pytest.importorskip("tensorflow")
    from tfmusic.audio.stft import ISTFT, STFT, hann_window

    x = np.random.default_rng(1).standard_normal((2, 2, n_fft + 7 * hop + 11)).astype(np.float32)
    re_f, im_f = (np.asarray(a) for a in STFT(n_fft, hop, method="fft")(x))
    re_d, im_d = (np.asarray(a) for a in STFT(n_fft, hop, method="dft")(x))
    frames = 1 + (x.shape[-1] - n_fft) // hop
    idx = np.arange(frames)[:, None] * hop + np.arange(n_fft)[None, :]
    ref = np.fft.rfft(x.astype(np.float64)[..., idx] * hann_window(n_fft), axis=-1)
    scale = np.abs(ref).max()
    for re, im in ((re_f, im_f), (re_d, im_d)):
        assert re.shape == ref.shape
        np.testing.assert_allclose(re, ref.real, atol=2e-5 * scale)
        np.testing.assert_allclose(im, ref.imag, atol=2e-5 * scale)
    y_f = np.asarray(ISTFT(n_fft, hop, method="fft")(re_f, im_f, length=x.shape[-1]))
    y_d = np.asarray(ISTFT(n_fft, hop, method="dft")(re_d, im_d, length=x.shape[-1]))
    inner = slice(n_fft, x.shape[-1] - n_fft)  # fully overlapped samples reconstruct exactly
    np.testing.assert_allclose(y_f[..., inner], x[..., inner], atol=1e-4)
    np.testing.assert_allclose(y_f[..., inner], y_d[..., inner], atol=1e-4)


def test_every_shard_record_belongs_to_its_split(tmp_path):
    tf = pytest.importorskip("tensorflow")
    from tests._fuzz_audio import write_good
    from tfmusic.data.stems.preprocess import PreprocessConfig, preprocess

    raw = tmp_path / "raw"
    for s in range(8):
        write_good(raw / f"song{s}" / "vocals.wav", 1.0 + 0.25 * s, seed=s)
        write_good(raw / f"song{s}" / "drums.wav", 1.0 + 0.25 * s, seed=20 + s)
    out = tmp_path / "stems"
    preprocess(raw, out, layout="folder", seed=3, fractions=(0.5, 0.25, 0.25),
               config=PreprocessConfig(segment_seconds=0.5), progress=False)
    manifest = json.loads((out / "manifest.json").read_text())
    seen_splits = set()
    for split, info in manifest["splits"].items():
        songs, segments = set(), 0
        for name in info["files"]:
            for raw_record in tf.data.TFRecordDataset(str(out / name)).as_numpy_iterator():
                example = tf.train.Example.FromString(raw_record)
                song = example.features.feature["song_id"].bytes_list.value[0].decode()
                assert manifest["song_splits"][song] == split, (name, song)
                songs.add(song)
                segments += 1
        assert segments == info["segments"] and len(songs) == info["songs"]
        assert songs == {s for s, v in manifest["songs"].items() if v["split"] == split and v["status"] == "written"}
        seen_splits |= {split} if songs else set()
    assert seen_splits == {"train", "valid", "test"}  # the check ran on every split
