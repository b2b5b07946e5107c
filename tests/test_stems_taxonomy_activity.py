"""Instrument taxonomy (label table, unknown-label policy, file-name keywords) and activity labels."""

from __future__ import annotations

import numpy as np
import pytest

from tfmusic.data.stems import activity, taxonomy

SR = 44100


@pytest.mark.parametrize("label,expected", [
    ("female singer", "vocals"), ("Male Singer", "vocals"), ("vocalists", "vocals"), ("choir", "vocals"),
    ("drum set", "drums"), ("kick drum", "drums"), ("electric bass", "bass"), ("double bass", "bass"),
    ("distorted electric guitar", "electric_guitar"), ("clean electric guitar", "electric_guitar"),
    ("acoustic guitar", "acoustic_guitar"), ("piano", "piano"), ("electric piano", "piano"),
    ("synthesizer", "other"), ("violin", "other"), ("electric_guitar", "electric_guitar"),
])
def test_label_table(label, expected):
    assert taxonomy.map_label(label) == (expected, False)


def test_unknown_label_policy():
    assert taxonomy.map_label("glass harmonica 3000") == ("other", True)
    assert taxonomy.map_label("glass harmonica 3000", "reject") == (None, True)
    # MedleyDB lists: the first known label wins
    assert taxonomy.map_label(["unheard-of", "drum set"], "reject") == ("drums", False)
    with pytest.raises(ValueError, match="policy"):
        taxonomy.map_label("piano", "ignore")


def test_every_table_target_is_in_the_taxonomy():
    assert set(taxonomy.LABEL_TABLE.values()) <= set(taxonomy.INSTRUMENTS)
    assert set(taxonomy.IASS_INSTRUMENTS) | {"other"} == set(taxonomy.INSTRUMENTS)
    assert "vocals:" in taxonomy.describe_table()


@pytest.mark.parametrize("name,expected", [
    ("01_KickIn.wav", "drums"), ("BassDrum.wav", "drums"), ("OHL.wav", "drums"), ("HiHat.wav", "drums"),
    ("05_ElecGtr2DI.wav", "electric_guitar"), ("Gtr1.wav", "electric_guitar"), ("AcGtr.wav", "acoustic_guitar"),
    ("BassDI.wav", "bass"), ("12_LeadVox.wav", "vocals"), ("BackingVox3.wav", "vocals"), ("Piano_L.wav", "piano"),
    ("Rhodes.wav", "piano"), ("SynthPad.wav", "other"), ("xyzzy.wav", None),
])
def test_filename_keywords(name, expected):
    assert taxonomy.instrument_from_filename(name) == expected


def test_six_seconds_give_255_frames():
    x = np.random.default_rng(0).standard_normal((1, 6 * SR)).astype(np.float32) * 0.1
    conf = activity.activation_confidence(x)
    assert conf.shape == (255,) == (activity.num_frames(6 * SR),)
    assert activity.song_confidence(x).shape == (255,)
    assert np.all((conf >= 0) & (conf <= 1))


def test_silence_is_inactive_and_tone_is_active():
    t = np.arange(6 * SR) / SR
    x = np.where(t >= 3.0, 0.5 * np.sin(2 * np.pi * 220 * t), 0.0)[None].astype(np.float32)
    conf = activity.song_confidence(x)
    labels = activity.binarize(conf)
    frame_time = np.arange(len(conf)) * activity.HOP / SR
    assert labels[frame_time < 2.5].sum() == 0
    assert labels[frame_time > 3.5].min() == 1.0
    assert np.all(activity.activation_confidence(np.zeros((2, SR))) == 0)


def test_hard_panned_stereo_counts_as_active():
    t = np.arange(3 * SR) / SR
    tone = 0.3 * np.sin(2 * np.pi * 330 * t)
    x = np.stack([tone, np.zeros_like(tone)]).astype(np.float32)
    conf = activity.song_confidence(x)
    assert activity.binarize(conf)[20:-20].min() == 1.0
    # channels combine by max: as sure as a centred tone (averaging with the silent side would give ~0.52)
    assert conf[20:-20].min() > 0.99


def test_fit_frames_pads_and_trims():
    c = np.arange(5, dtype=np.float32)
    assert activity.fit_frames(c, 3).tolist() == [0, 1, 2]
    assert activity.fit_frames(c, 7).tolist() == [0, 1, 2, 3, 4, 4, 4]
    assert activity.fit_frames(np.zeros(0), 2).tolist() == [0, 0]
