"""Synthesized multitrack songs: deterministic plans, all IASS instruments, exact mixture, MIDI, layout."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf

from tfmusic.data import synth
from tfmusic.data.stems import taxonomy
from tfmusic.data.stems.layouts import read_tracks


def test_plans_are_deterministic_and_cover_the_iass_instruments():
    plans = [synth.plan_song(7, i, seconds=8.0) for i in range(6)]
    again = synth.plan_song(7, 3, seconds=8.0)
    assert synth.plan_summary(again) == synth.plan_summary(plans[3])
    assert again.parts[0].notes == plans[3].parts[0].notes
    assert synth.plan_song(8, 3, seconds=8.0).parts != plans[3].parts
    present = {p.instrument for plan in plans for p in plan.parts}
    assert set(taxonomy.IASS_INSTRUMENTS) <= present
    for i, plan in enumerate(plans):
        assert taxonomy.IASS_INSTRUMENTS[i] in {p.instrument for p in plan.parts}
        for part in plan.parts:
            assert part.notes and all(0 <= s < e <= 8.0 for s, e, _, _ in part.notes)
            assert part.label in {label for _, label in synth.PROGRAMS[part.instrument]}
            assert taxonomy.map_label(part.label) == (part.instrument, False)


def test_instruments_enter_and_leave():
    plan = synth.plan_song(0, 2, seconds=30.0)
    section = synth.SECTION_BEATS * 60.0 / plan.tempo_bpm
    muted = 0
    for part in plan.parts:
        used = {int(s // section) for s, _, _, _ in part.notes}
        muted += plan.sections - len(used)
    assert muted > 0


def test_synthesize_job_writes_medleydb_layout(tmp_path):
    manifest = synth.synthesize(tmp_path, songs=2, seed=1, seconds=6.0, sample_rate=22050, progress=False)
    assert manifest["counts"] == {"in": 2, "written": 2, "rejected": 0}
    assert json.loads((tmp_path / "synth_manifest.json").read_text())["counts"]["written"] == 2
    tracks = read_tracks(tmp_path)
    assert [t.layout for t in tracks] == ["medleydb", "medleydb"] and not tracks[0].unknown_labels
    track = tracks[0]
    name = track.name
    # mixture file == numpy sum of the stem files, sample for sample
    stems = [sf.read(f, dtype="int16")[0].astype(np.int32) for inst in track.instruments for f in track.stems[inst]]
    mix, rate = sf.read(track.mixture, dtype="int16")
    assert rate == 22050 and mix.shape == (6 * 22050, 2)
    np.testing.assert_array_equal(mix.astype(np.int32), np.sum(stems, axis=0))
    assert all(np.abs(s).max() > 0 for s in stems)
    # the MIDI keeps the exact notes of the plan
    import pretty_midi

    plan = synth.plan_song(1, 0, seconds=6.0, sample_rate=22050)
    pm = pretty_midi.PrettyMIDI(str(tmp_path / name / f"{name}.mid"))
    assert len(pm.instruments) == len(plan.parts)
    for inst, part in zip(pm.instruments, plan.parts):
        assert inst.is_drum == part.is_drum and inst.program == part.program
        got = sorted((round(n.start, 2), n.pitch, n.velocity) for n in inst.notes)
        want = sorted((round(s, 2), p, v) for s, _, p, v in part.notes)
        assert [g[1:] for g in got] == [w[1:] for w in want]
        np.testing.assert_allclose([g[0] for g in got], [w[0] for w in want], atol=0.011)


def test_synthesize_rejects_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="sample rate"):
        synth.synthesize(tmp_path, songs=1, sample_rate=16000)
    with pytest.raises(ValueError, match="songs"):
        synth.synthesize(tmp_path, songs=0)
    with pytest.raises(ValueError, match="mixing"):
        synth.synthesize(tmp_path, songs=1, mixing="loud")
    with pytest.raises(ValueError, match="unknown genre 'polka'"):
        synth.synthesize(tmp_path, songs=1, genres=["polka"])
    with pytest.raises(ValueError, match="drum-kit SoundFont"):
        synth.synthesize(tmp_path, songs=1, drum_soundfonts=["bundled"])


def test_soundfont_option(tmp_path, capsys):
    """--soundfont renders with the given SoundFont 2 file; bad files fail before any work starts."""
    import shutil

    from tfmusic.cli.main import main

    custom = tmp_path / "MyGM.sf2"
    shutil.copy(synth.soundfont_path(), custom)
    args = ["--songs", "1", "--seed", "2", "--seconds", "5", "--sample-rate", "22050", "--quiet"]
    assert main(["data", "synthesize", "--out", str(tmp_path / "default"), "--soundfont", "bundled", *args]) == 0
    assert main(["data", "synthesize", "--out", str(tmp_path / "custom"), "--soundfont", str(custom), *args]) == 0
    default_m = json.loads((tmp_path / "default" / "synth_manifest.json").read_text())
    custom_m = json.loads((tmp_path / "custom" / "synth_manifest.json").read_text())
    assert [f["name"] for f in default_m["soundfonts"]] == ["TimGM6mb.sf2"]
    assert [f["name"] for f in custom_m["soundfonts"]] == ["MyGM.sf2"]
    assert custom_m["soundfonts"][0]["sha256"] == default_m["soundfonts"][0]["sha256"]
    assert default_m["renderer"].startswith("midirenderer ") and "wall_seconds" not in default_m
    wavs = {e["file"]: e["sha256"] for e in default_m["files"] if e["file"].endswith(".wav")}
    assert wavs == {e["file"]: e["sha256"] for e in custom_m["files"] if e["file"].endswith(".wav")}
    capsys.readouterr()
    assert main(["data", "synthesize", "--out", str(tmp_path / "x"), "--soundfont", str(tmp_path / "nope.sf2"),
                 *args]) == 2
    assert "nope.sf2" in capsys.readouterr().err
    (tmp_path / "bad.sf2").write_bytes(b"RIFF\x00\x00\x00\x00WAVEfmt ")
    assert main(["data", "synthesize", "--out", str(tmp_path / "x"), "--soundfont", str(tmp_path / "bad.sf2"),
                 *args]) == 2
    assert "not a SoundFont 2 file" in capsys.readouterr().err
    assert not (tmp_path / "x" / "synth_manifest.json").exists()


FLUID = "/usr/share/sounds/sf2/FluidR3_GM.sf2"


@pytest.mark.skipif(not __import__("os").path.isfile(FLUID), reason="Debian's fluid-soundfont-gm is not installed")
def test_fluid_soundfont_renders_every_program():
    """Debian's FluidR3_GM (apt install fluid-soundfont-gm) has every program the arrangements use."""
    for inst, programs in synth.PROGRAMS.items():
        for program, label in programs:
            part = synth.Part(inst, label, program, inst == taxonomy.DRUMS, 0.0, 0.0, "test",
                              [(0.1, 0.6, 38 if inst == taxonomy.DRUMS else 60, 100)])
            audio = synth.render_part(part, 1.0, 22050, soundfont=FLUID)
            assert audio.shape == (2, 22050) and np.abs(audio).max() > 1e-3, (inst, program)


def test_rendering_is_deterministic_and_full_length():
    plan = synth.plan_song(5, 1, seconds=6.0, sample_rate=22050)
    part = plan.parts[0]
    a = synth.render_part(part, plan.seconds, plan.sample_rate)
    b = synth.render_part(part, plan.seconds, plan.sample_rate)
    np.testing.assert_array_equal(a, b)
    assert a.shape == (2, 6 * 22050) and a.dtype == np.float32
    last_end = max(e for _, e, _, _ in part.notes)
    onset = min(s for s, _, _, _ in part.notes)
    assert np.abs(a[:, int((onset + 0.02) * 22050):int(last_end * 22050)]).max() > 1e-3
