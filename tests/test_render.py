"""Generic music rendering: event sequences -> music21 score -> MIDI / MusicXML round trip, piano-roll PNG."""

import numpy as np
import pytest

from tfmusic.music import notes, render

EVENTS = [60, "__", "E-4", "rest", "__", "F#4", None, "__", "Bb4", 72, "rest", "rest", "C#5", "__", "__", "__"]
# (name, offset in quarters, length in quarters) at 2 ticks per beat; C#5 crosses no barline here
EXPECTED = [("C4", 0.0, 1.0), ("E-4", 1.0, 0.5), ("F#4", 2.5, 1.5), ("B-4", 4.0, 0.5), ("C5", 4.5, 0.5),
            ("C#5", 6.0, 2.0)]


def test_name_to_midi_and_spans():
    assert notes.name_to_midi("C4") == 60 and notes.name_to_midi("E-4") == 63
    assert notes.name_to_midi("Bb3") == 58 and notes.name_to_midi("c#8") == 109
    with pytest.raises(ValueError, match="not a note name"):
        notes.name_to_midi("H2")
    spans = render.to_spans(["__", 60, "__", "rest", 61])
    assert [(s.pitch, s.start, s.length) for s in spans] == [(None, 0, 1), (60, 1, 2), (None, 3, 1), (61, 4, 1)]
    with pytest.raises(ValueError, match="tick 0"):
        render.to_spans([200])


def test_score_round_trips_through_midi_and_musicxml(tmp_path):
    from music21 import converter

    score = render.events_to_score(EVENTS, ticks_per_beat=2, title="round trip")
    assert score.metadata.title == "round trip"
    assert len(score.parts[0].getElementsByClass("Measure")) == 2
    xml = render.write_musicxml(score, tmp_path / "x.musicxml")
    back = converter.parse(xml)
    got = [(n.pitch.nameWithOctave, float(n.offset), float(n.quarterLength)) for n in back.flatten().notes]
    assert got == EXPECTED
    mid = render.write_midi(score, tmp_path / "sub" / "x.mid")
    back = converter.parse(mid)
    got = [(n.pitch.midi, float(n.offset), float(n.quarterLength)) for n in back.flatten().notes]
    assert got == [(notes.name_to_midi(n), o, q) for n, o, q in EXPECTED]


def test_tied_note_across_barline(tmp_path):
    from music21 import converter

    events = ["rest"] * 7 + [64, "__", "__"] + ["rest"] * 6
    score = render.events_to_score(events, ticks_per_beat=2)
    back = converter.parse(render.write_musicxml(score, tmp_path / "t.musicxml")).stripTies()
    notes = list(back.flatten().notes)
    assert [(n.pitch.midi, float(n.offset), float(n.quarterLength)) for n in notes] == [(64, 3.5, 1.5)]


def test_pianoroll_png_with_titles_and_values(tmp_path):
    import matplotlib.image as mpimg

    seqs = [EVENTS, [67] * 4 + ["rest"] * 12, ["rest"] * 16]
    path = render.plot_pianorolls(seqs, tmp_path / "roll.png", titles=["a", "b", "c"],
                                  values=[0.1, -0.5, 2.0], value_label="contour")
    img = mpimg.imread(path)
    assert img.ndim == 3 and img.shape[0] > 200 and img.shape[1] > 500
    assert np.std(img[..., :3]) > 0.05  # something was drawn
    with pytest.raises(ValueError, match="2 titles for 3 sequences"):
        render.plot_pianorolls(seqs, tmp_path / "x.png", titles=["a", "b"])
    with pytest.raises(ValueError, match="no sequences"):
        render.plot_pianorolls([], tmp_path / "x.png")
