"""Recorded drum kits (Hydrogen drumkit.xml): mapping, velocity layers, round robin, choke, checks."""

import numpy as np
import pytest
import soundfile as sf

from tfmusic.data import drumkits

RATE = 44_100


def _tone(freq: float, seconds: float = 0.3, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def _layer(name, lo, hi, gain=1.0):
    return f"<layer><filename>{name}</filename><min>{lo}</min><max>{hi}</max><gain>{gain}</gain></layer>"


def _instrument(idx, name, layers, pan=(1, 1)):
    return (f"<instrument><id>{idx}</id><name>{name}</name><volume>1</volume><isMuted>false</isMuted>"
            f"<pan_L>{pan[0]}</pan_L><pan_R>{pan[1]}</pan_R><gain>1</gain>{''.join(layers)}</instrument>")


@pytest.fixture()
def kit(tmp_path):
    """A five-instrument kit: kick with two velocity layers (100 Hz soft, 200 Hz hard), a snare
    with two round-robin layers (300 / 310 Hz), closed and open hats, and a floor and a high tom."""
    files = {"kick_soft.wav": _tone(100), "kick_hard.wav": _tone(200), "snare_a.wav": _tone(300),
             "snare_b.wav": _tone(310), "hh_closed.wav": _tone(5000, 0.1), "hh_open.wav": _tone(7000, 1.0),
             "tom_floor.wav": _tone(80), "tom_hi.wav": _tone(180)}
    for name, audio in files.items():
        sf.write(tmp_path / name, audio, RATE)
    xml = ('<?xml version="1.0"?><drumkit_info xmlns="http://www.hydrogen-music.org/drumkit">'
           "<name>Test Kit</name><license>CC0</license><instrumentList>"
           + _instrument(0, "Kick", [_layer("kick_soft.wav", 0, 0.5), _layer("kick_hard.wav", 0.5, 1)])
           + _instrument(1, "Snare", [_layer("snare_a.wav", 0, 1), _layer("snare_b.wav", 0, 1)])
           + _instrument(2, "Hat Closed", [_layer("hh_closed.wav", 0, 1)])
           + _instrument(3, "Hat Open", [_layer("hh_open.wav", 0, 1)])
           + _instrument(4, "Tom Hi", [_layer("tom_hi.wav", 0, 1)])
           + _instrument(5, "Floor Tom", [_layer("tom_floor.wav", 0, 1)])
           + _instrument(6, "Cowbell", [_layer("missing.wav", 0, 1)])
           + "</instrumentList></drumkit_info>")
    (tmp_path / "drumkit.xml").write_text(xml)
    drumkits.load_kit.cache_clear()
    drumkits.kit_sha256.cache_clear()
    return str(tmp_path)


def _freq(audio: np.ndarray) -> float:
    spec = np.abs(np.fft.rfft(audio.mean(axis=0)))
    return float(np.fft.rfftfreq(audio.shape[1], 1 / RATE)[np.argmax(spec)])


def test_names_map_to_gm_classes():
    assert drumkits.kit_class("Kick (Tama Superstar 22\")") == "kick"
    assert drumkits.kit_class("Pearl Snare Rimshot") == "rim"
    assert drumkits.kit_class("Sabian Hat Semi-Open") == "hat_open"
    assert drumkits.kit_class("Hi Hat Closed") == "hat_closed"
    assert drumkits.kit_class("Ride Bell") == "ride_bell"
    assert drumkits.kit_class("Cowbell") is None


def test_velocity_picks_the_layer_and_missing_samples_are_left_out(kit):
    loaded = drumkits.load_kit(kit)
    assert "Cowbell" not in [i.name for i in loaded.instruments]  # its sample file does not exist
    soft = drumkits.render_kit(kit, [(0.0, 0.1, 36, 30)], 0.5, RATE)
    hard = drumkits.render_kit(kit, [(0.0, 0.1, 36, 120)], 0.5, RATE)
    assert _freq(soft) == pytest.approx(100, abs=5)
    assert _freq(hard) == pytest.approx(200, abs=5)
    assert np.abs(hard).max() > np.abs(soft).max()  # velocity also scales the hit


def test_round_robin_alternates_layers_sharing_a_range(kit):
    audio = drumkits.render_kit(kit, [(0.0, 0.1, 38, 100), (0.5, 0.6, 38, 100)], 1.0, RATE)
    first, second = audio[:, : RATE // 2], audio[:, RATE // 2:]
    assert {round(_freq(first) / 10), round(_freq(second) / 10)} == {30, 31}


def test_toms_ordered_low_to_high_and_open_hat_choked(kit):
    mapping = drumkits.note_map(drumkits.load_kit(kit), RATE)
    assert mapping[41].name == "Floor Tom" and mapping[50].name == "Tom Hi"
    ringing = drumkits.render_kit(kit, [(0.0, 0.1, 46, 100)], 1.0, RATE)
    choked = drumkits.render_kit(kit, [(0.0, 0.1, 46, 100), (0.3, 0.35, 42, 100)], 1.0, RATE)
    late = slice(int(0.5 * RATE), int(0.9 * RATE))
    assert np.abs(ringing[:, late]).max() > 0.3
    assert np.abs(choked[:, late]).max() < 1e-5  # the closed hit cut the open hat


def test_kit_info_records_licence_and_sha_and_rejects_kits_without_a_groove(kit, tmp_path_factory):
    info = drumkits.kit_info(kit)
    assert info["license"] == "CC0" and info["kit"] == "Test Kit" and len(info["sha256"]) == 64
    other = tmp_path_factory.mktemp("nokick")
    sf.write(other / "s.wav", _tone(300), RATE)
    (other / "drumkit.xml").write_text("<drumkit_info><name>x</name><instrumentList>"
                                       + _instrument(0, "Snare", [_layer("s.wav", 0, 1)])
                                       + "</instrumentList></drumkit_info>")
    with pytest.raises(ValueError, match="kick"):
        drumkits.kit_info(str(other))


def test_old_dialect_one_file_per_instrument(tmp_path):
    sf.write(tmp_path / "bd.wav", _tone(60), RATE)
    (tmp_path / "drumkit.xml").write_text(
        "<drumkit_info><name>old</name><instrumentList><instrument><id>0</id><filename>bd.wav</filename>"
        "<name>Kick</name><volume>1</volume></instrument></instrumentList></drumkit_info>")
    kit = drumkits.load_kit(str(tmp_path))
    assert kit.instruments[0].layers[0].file == "bd.wav"


def test_synthesized_song_plays_its_drums_from_the_kit(kit, tmp_path):
    """A song whose plan picks the kit renders its drum stem from the kit's samples; the manifest
    entry of the kit is its check (licence, sha256)."""
    from tfmusic.data import synth

    settings = synth.SynthSettings(seed=3, seconds=6.0, drum_soundfonts=(kit,), drum_kit_share=1.0,
                                   genres=("rock",), chorale_share=0.0)
    index = next(i for i in range(12) if any(p.is_drum for p in settings.plan(i).parts))
    plan = settings.plan(index)
    drum = next(p for p in plan.parts if p.is_drum)
    part, source = synth.part_soundfont(plan, drum, settings.soundfonts, settings.drum_soundfonts)
    assert source == kit and synth.is_drum_kit(source)
    expected = drumkits.render_kit(kit, part.notes, plan.seconds, plan.sample_rate)
    dry = synth.render_part(synth.dataclasses.replace(part, chain=None, gain_db=0.0, pan=0.0), plan.seconds,
                            plan.sample_rate, source)
    assert np.abs(expected).max() > 0.05
    np.testing.assert_allclose(dry, expected * np.float32(np.cos(np.pi / 4) * np.sqrt(2)), atol=1e-5)
    assert synth.soundfont_info(kit)["kind"] == "hydrogen drumkit"
