"""THE STFT: parity with tf.signal.stft and librosa, perfect reconstruction, framing, shapes."""

import librosa
import numpy as np
import pytest
import tensorflow as tf

from tfmusic.audio.stft import ISTFT, STFT, Magnitude, Spectrogram, dft_basis, hann_window, num_frames

SR = 44100


@pytest.fixture(scope="module")
def noise():
    rng = np.random.default_rng(0)
    return (0.3 * rng.standard_normal((1, 2, SR // 2))).astype(np.float32)  # (B, C, 0.5 s)


def test_num_frames_matches_conventions():
    assert num_frames(6 * SR) == 255
    assert num_frames(6 * SR, center=True) == 259
    assert num_frames(4095) == 0
    assert num_frames(4096) == 1
    assert num_frames(100, center=True) == 1


def test_window_is_periodic_hann():
    import scipy.signal

    np.testing.assert_allclose(hann_window(4096), scipy.signal.get_window("hann", 4096, fftbins=True), atol=1e-12)
    cos_b, sin_b = dft_basis(8)
    assert cos_b.shape == sin_b.shape == (8, 5)


def test_matches_tf_signal_stft(noise):
    real, imag = STFT()(noise)
    ref = tf.signal.stft(noise, 4096, 1024, 4096, window_fn=tf.signal.hann_window).numpy()
    assert real.shape == (1, 2, num_frames(SR // 2), 2049)
    scale = np.abs(ref).max()
    assert np.abs(real.numpy() - ref.real).max() / scale < 2e-6
    assert np.abs(imag.numpy() - ref.imag).max() / scale < 2e-6


@pytest.mark.parametrize("pad_mode", ["reflect", "constant"])
def test_center_matches_librosa(noise, pad_mode):
    real, imag = STFT(center=True, pad_mode=pad_mode)(noise)
    ref = librosa.stft(noise[0, 1].astype(np.float64), n_fft=4096, hop_length=1024, center=True, pad_mode=pad_mode).T
    assert real.shape[2] == num_frames(SR // 2, center=True) == ref.shape[0]
    scale = np.abs(ref).max()
    assert np.abs(real.numpy()[0, 1] - ref.real).max() / scale < 2e-6
    assert np.abs(imag.numpy()[0, 1] - ref.imag).max() / scale < 2e-6


def test_conv_framing_equals_block_framing(noise):
    blocks = STFT(framing="blocks")(noise)
    conv = STFT(framing="conv")(noise)
    scale = np.abs(blocks[0].numpy()).max()
    for a, b in zip(blocks, conv):
        assert np.abs(a.numpy() - b.numpy()).max() / scale < 1e-5


def test_small_sizes_and_odd_hop():
    """Non-multiple hop goes through conv framing and still matches tf.signal."""
    x = np.random.default_rng(1).standard_normal((1, 1, 300)).astype(np.float32)
    real, imag = STFT(n_fft=64, hop_length=24)(x)
    ref = tf.signal.stft(x, 64, 24, 64, window_fn=tf.signal.hann_window).numpy()
    np.testing.assert_allclose(real.numpy(), ref.real, atol=1e-4)
    np.testing.assert_allclose(imag.numpy(), ref.imag, atol=1e-4)


def test_perfect_reconstruction_center(noise):
    real, imag = STFT(center=True)(noise)
    back = ISTFT(center=True)(real, imag, length=noise.shape[-1]).numpy()
    assert back.shape == noise.shape
    assert np.abs(back - noise).max() < 1e-5


def test_reconstruction_uncentered_interior_and_length(noise):
    real, imag = STFT(center=False)(noise)
    back = ISTFT(center=False)(real, imag, length=noise.shape[-1] + 500).numpy()
    assert back.shape[-1] == noise.shape[-1] + 500
    covered = (num_frames(SR // 2) - 1) * 1024 + 4096
    # Everything but the first/last hop (where the window sum is tiny) reconstructs.
    assert np.abs(back[..., 1024 : covered - 1024] - noise[..., 1024 : covered - 1024]).max() < 1e-4
    assert np.all(back[..., covered:] == 0)


def test_magnitude_and_spectrogram(noise):
    real, imag = STFT()(noise)
    mag = Magnitude()(real, imag).numpy()
    ref = np.abs(tf.signal.stft(noise, 4096, 1024, 4096, window_fn=tf.signal.hann_window).numpy())
    assert np.abs(mag - ref).max() / ref.max() < 2e-6
    mono = Spectrogram(mono=True)(noise).numpy()
    assert mono.shape == (1, 1, num_frames(SR // 2), 2049)
    np.testing.assert_allclose(mono[:, 0], mag.mean(axis=1), rtol=1e-5, atol=1e-5)


def test_layer_configs_round_trip():
    layer = STFT(n_fft=1024, hop_length=256, center=True, pad_mode="constant")
    clone = STFT.from_config(layer.get_config())
    assert (clone.n_fft, clone.hop_length, clone.center, clone.pad_mode) == (1024, 256, True, "constant")
    spec = Spectrogram.from_config(Spectrogram(n_fft=512, hop_length=128, mono=True).get_config())
    assert spec.stft.n_fft == 512 and spec.magnitude.mono
    assert ISTFT.from_config(ISTFT(512, 128, center=True).get_config()).center


def test_bad_settings_are_rejected():
    with pytest.raises(ValueError, match="hop_length"):
        STFT(n_fft=1024, hop_length=2048)
    with pytest.raises(ValueError, match="pad_mode"):
        STFT(pad_mode="edge")
    with pytest.raises(ValueError, match="needs more than"):
        STFT(center=True)(np.zeros((1, 1, 1000), np.float32))
