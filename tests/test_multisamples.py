"""Recorded multi-sampled instruments (the Salamander piano's layout): names, layers, pitch, synthesis."""

import json

import numpy as np
import pytest
import soundfile as sf

from tfmusic.data import multisamples

RATE = 48_000  # the Salamander files' rate: rendering resamples to the song's


def _note_hz(midi: int) -> float:
    return 440.0 * 2 ** ((midi - 69) / 12)


@pytest.fixture()
def piano(tmp_path):
    """C4 and D#4 in two layers: each sample a sine at its note, the soft layer at a tenth of the level."""
    t = np.arange(int(2.0 * RATE)) / RATE
    for name, midi in (("C4", 60), ("D#4", 63)):
        for layer, amp in ((1, 0.05), (2, 0.5)):
            tone = amp * np.sin(2 * np.pi * _note_hz(midi) * t) * np.exp(-t)
            sf.write(tmp_path / f"{name}v{layer}.ogg", np.stack([tone, tone], axis=1).astype(np.float32), RATE)
    (tmp_path / "README.md").write_text("not a sample")
    (tmp_path / multisamples.MARKER).write_text(json.dumps({"name": "Test Piano", "license": "CC0"}))
    return str(tmp_path)


def _peak_hz(audio: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(audio[0, :rate] * np.hanning(rate)))
    return float(np.argmax(spectrum)) * 1.0  # 1 s window: one bin per Hz


def test_names_and_catalogue(piano):
    assert multisamples.note_number("C4v8.ogg") == (60, 8)
    assert multisamples.note_number("D#1v16.ogg") == (27, 16)
    assert multisamples.note_number("A0v1.flac") == (21, 1)
    assert multisamples.note_number("README.md") is None and multisamples.note_number("C4.ogg") is None
    assert multisamples.catalogue(piano) == {1: {60: f"{piano}/C4v1.ogg", 63: f"{piano}/D#4v1.ogg"},
                                             2: {60: f"{piano}/C4v2.ogg", 63: f"{piano}/D#4v2.ogg"}}


def test_velocity_picks_the_layer_and_the_nearest_note_is_shifted(piano):
    layers = multisamples.catalogue(piano)
    assert multisamples.pick(layers, 61, 30) == (f"{piano}/C4v1.ogg", 1)
    assert multisamples.pick(layers, 62, 120) == (f"{piano}/D#4v2.ogg", -1)
    for pitch in (60, 61, 62, 64):
        audio = multisamples.render_set(piano, [(0.0, 1.5, pitch, 100)], 2.0, 44_100)
        assert abs(_peak_hz(audio, 44_100) - _note_hz(pitch)) <= 1.5, pitch
    soft = multisamples.render_set(piano, [(0.0, 1.0, 60, 20)], 1.5, 44_100)
    loud = multisamples.render_set(piano, [(0.0, 1.0, 60, 120)], 1.5, 44_100)
    assert 8 < np.abs(loud).max() / np.abs(soft).max() < 12  # the loud layer's recording, not a gain


def test_release_fades_after_the_key(piano):
    audio = multisamples.render_set(piano, [(0.0, 0.5, 60, 100)], 2.0, 44_100)
    release_end = int((0.5 + multisamples.RELEASE_SECONDS) * 44_100)
    assert np.abs(audio[:, int(0.4 * 44_100):int(0.5 * 44_100)]).max() > 0.1
    assert np.abs(audio[:, release_end + 10:]).max() == 0.0


def test_set_info_and_errors(piano, tmp_path_factory):
    from tfmusic.data import soundfonts

    info = soundfonts.soundfont_info(piano)
    assert info["name"] == "Test Piano" and info["license"] == "CC0" and info["layers"] == 2 and info["samples"] == 4
    assert len(info["sha256"]) == 64 and soundfonts.sample_set_kind(piano) == "multisample"
    empty = tmp_path_factory.mktemp("empty")
    (empty / multisamples.MARKER).write_text("{}")
    with pytest.raises(ValueError, match="without any"):
        soundfonts.soundfont_info(str(empty))


def test_synthesized_song_plays_its_piano_from_the_set(piano, tmp_path):
    """A song whose plan picks the recorded piano renders its piano stem from it; other parts and the
    plans of a job without recorded pianos stay as they were."""
    from tfmusic.data import synth

    settings = synth.SynthSettings(seed=5, seconds=6.0, pianos=(piano,), piano_sample_share=1.0, chorale_share=0.0)
    plain = synth.SynthSettings(seed=5, seconds=6.0, chorale_share=0.0)
    index = next(i for i in range(24) if any(p.instrument == "piano" for p in settings.plan(i).parts))
    plan = settings.plan(index)
    assert plan.piano_samples == 0 and plain.plan(index).piano_samples == -1
    assert [p.notes for p in plan.parts] == [p.notes for p in plain.plan(index).parts]
    for part in plan.parts:
        _, source = synth.part_soundfont(plan, part, settings.soundfonts, settings.drum_soundfonts, settings.pianos)
        assert (source == piano) == (part.instrument == "piano")
    keys = next(p for p in plan.parts if p.instrument == "piano")
    dry = synth.render_part(synth.dataclasses.replace(keys, chain=None, gain_db=0.0, pan=0.0), plan.seconds,
                            plan.sample_rate, piano)
    expected = multisamples.render_set(piano, keys.notes, plan.seconds, plan.sample_rate)
    np.testing.assert_allclose(dry, expected * np.float32(np.cos(np.pi / 4) * np.sqrt(2)), atol=1e-5)
    files, _ = synth.render_files(plan, settings.soundfonts, settings.drum_soundfonts, settings.pianos)
    import yaml

    meta = yaml.safe_load(next(v for k, v in files.items() if k.endswith("_METADATA.yaml")))
    fonts = {s["tfmusic_instrument"]: s["soundfont"] for s in meta["stems"].values()}
    assert fonts["piano"] == piano.rstrip("/").split("/")[-1]
    assert all(f != fonts["piano"] for inst, f in fonts.items() if inst != "piano")


def test_synthesize_refuses_a_folder_that_is_no_piano(tmp_path):
    from tfmusic.data import synth

    with pytest.raises(ValueError, match="--piano-samples"):
        synth.synthesize(tmp_path / "out", 1, seconds=5.0, soundfonts=["bundled"], pianos=[str(tmp_path)],
                         progress=False)
