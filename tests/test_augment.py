"""Training augmentations (remix, per-stem EQ, LimitAug): each does what it says, and each is on by default."""

from __future__ import annotations

import numpy as np
import pytest

from tfmusic.data.stems.augment import LIMITER_CEILING, Augmentation, random_eq, random_limiter

SR = 44_100


def _tone(freq: float, seconds: float = 1.0, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)[None, :]


def test_defaults_turn_every_augmentation_on_and_bad_settings_are_named():
    aug = Augmentation()
    assert aug.remix and aug.eq > 0 and aug.eq_db > 0 and aug.limiter > 0 and aug.limiter_drive_db[1] > 0
    assert "augmentation.eq" in Augmentation(eq=1.5).problem()
    assert "limiter_drive_db" in Augmentation(limiter_drive_db=[6.0, 1.0]).problem()
    assert Augmentation().problem() is None


def test_limiter_holds_the_ceiling_and_scales_mixture_and_stems_alike():
    import tensorflow as tf

    bass, lead = _tone(60, amp=0.6), _tone(880, amp=0.5)
    lead[:, SR // 2: SR // 2 + 2000] *= 2.0  # a transient
    mix = bass + lead
    seed = tf.constant([3, 4], tf.int64)
    out, (bass_out, lead_out) = random_limiter(tf.constant(mix), [tf.constant(bass), tf.constant(lead)], seed,
                                               1.0, [12.0, 12.0])
    out, bass_out, lead_out = out.numpy(), bass_out.numpy(), lead_out.numpy()
    assert np.abs(out).max() <= LIMITER_CEILING + 1e-5
    assert np.abs(out).max() > 0.9  # driven 12 dB into the ceiling, not left alone
    np.testing.assert_allclose(out, bass_out + lead_out, atol=1e-5)  # stems still sum to the mixture
    gain = out / np.where(np.abs(mix) > 1e-3, mix, np.nan)
    assert np.nanmax(gain) / np.nanmin(gain) > 1.3  # a gain curve that dips at the transient, not one gain
    same, _ = random_limiter(tf.constant(mix), [tf.constant(bass)], seed, 0.0, [12.0, 12.0])
    np.testing.assert_array_equal(same.numpy(), mix)


def test_eq_reshapes_the_spectrum_within_its_range():
    import tensorflow as tf

    noise = np.random.default_rng(0).standard_normal((1, SR)).astype(np.float32) * 0.1
    changed = 0
    for k in range(6):
        out = random_eq(tf.constant(noise), tf.constant([k, 9], tf.int64), 1.0, 6.0, SR).numpy()
        ratio = np.abs(np.fft.rfft(out[0])[1:]) / np.abs(np.fft.rfft(noise[0])[1:])
        db = 20 * np.log10(ratio)
        assert out.shape == noise.shape
        assert db.max() < 6.0 * (1 + 3) + 0.1 and db.min() > -6.0 * (1 + 3) - 0.1  # tilt + 3 bands at most
        changed += db.max() - db.min() > 3.0
    assert changed >= 5  # the curve is not flat
    same = random_eq(tf.constant(noise), tf.constant([0, 9], tf.int64), 0.0, 6.0, SR).numpy()
    np.testing.assert_array_equal(same, noise)


@pytest.fixture(scope="module")
def two_stem_songs(tmp_path_factory):
    """Eight songs, each with a bass and a lead tone whose frequencies name the song (bass 50+10k Hz,
    lead 1000+100k Hz): which song a stem came from can be read off the audio."""
    from tests.test_stems_pipeline import write_song
    from tfmusic.data.stems.preprocess import PreprocessConfig, preprocess

    root = tmp_path_factory.mktemp("songs")
    t = np.arange(3 * SR) / SR
    for k in range(8):
        bass = 0.3 * np.sin(2 * np.pi * (50 + 10 * k) * t)
        lead = 0.2 * np.sin(2 * np.pi * (1000 + 100 * k) * t)
        write_song(root, f"S{k}", {"b": ("electric bass", np.stack([bass, bass]).astype(np.float32), SR),
                                   "l": ("synthesizer", np.stack([lead, lead]).astype(np.float32), SR)})
    out = tmp_path_factory.mktemp("tfr")
    preprocess(root, out, config=PreprocessConfig(segment_seconds=2.0, pcm_dtype="float32"), fractions=(1, 0, 0),
               progress=False)
    return out


def _song_of(audio: np.ndarray, base: float, step: float) -> int:
    spec = np.abs(np.fft.rfft(audio.mean(axis=0)))
    freq = np.fft.rfftfreq(audio.shape[-1], 1 / SR)[np.argmax(spec)]
    return int(round((freq - base) / step))


def _pairs(data_dir, aug: Augmentation) -> list[tuple[int, int]]:
    from tfmusic.data.stems.dataset import make_dataset

    pairs = []
    for mix, bass, _ in make_dataset(data_dir, "train", "bass", 8, segment_seconds=1.0, channels=1, seed=0,
                                     deterministic=True, samples_per_epoch=16, augmentation=aug):
        for m, b in zip(mix.numpy(), bass.numpy()):
            pairs.append((_song_of(b, 50, 10), _song_of(m - b, 1000, 100)))
    return pairs


def test_remix_draws_stems_from_other_songs(two_stem_songs):
    together = _pairs(two_stem_songs, Augmentation(remix=False, eq=0.0, limiter=0.0))
    assert all(b == lead for b, lead in together)
    remixed = _pairs(two_stem_songs, Augmentation(eq=0.0, limiter=0.0))
    assert sum(b != lead for b, lead in remixed) >= len(remixed) // 2


def test_pipeline_applies_limiter_and_eq_by_default(two_stem_songs):
    from tfmusic.data.stems.dataset import make_dataset

    def batches(aug):
        return [tuple(x.numpy() for x in b) for b in make_dataset(
            two_stem_songs, "train", "bass", 8, segment_seconds=1.0, channels=1, seed=0, deterministic=True,
            samples_per_epoch=16, augmentation=aug)]

    loud = batches(Augmentation(eq=0.0, limiter=1.0, limiter_drive_db=[18.0, 18.0]))
    peaks = np.concatenate([np.abs(mix).max(axis=(1, 2)) for mix, _, _ in loud])
    assert peaks.max() <= LIMITER_CEILING + 1e-4 and peaks.min() > 0.9
    plain = batches(Augmentation(eq=0.0, limiter=0.0))
    equalized = batches(Augmentation(eq=1.0, limiter=0.0))
    for e, p in zip(equalized, plain):  # every target went through its own EQ curve, same crops and gains
        assert not np.allclose(e[1], p[1], atol=1e-3)
        np.testing.assert_allclose(e[2], p[2])
