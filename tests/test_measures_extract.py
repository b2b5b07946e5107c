"""Measures without Beam: vocabulary, bar extraction rules (ties included), tune-level splits, hold-out."""
import json

import numpy as np
import pytest

from tfmusic.data import measures as M
from tfmusic.music.attributes import HOLD, REST


def test_frozen_sorted_vocabulary():
    assert M.VOCABULARY[:5] == ("<pad>", "START", "END", "rest", "__")
    assert M.VOCAB_SIZE == 35
    assert M.VOCABULARY[5:9] == ("G3", "G#3", "A3", "B-3")
    assert M.VOCABULARY[-1] == "C6"
    doc = M.vocabulary_json()
    assert doc["tokens"] == list(M.VOCABULARY) and doc["note_offset"] == 5
    json.dumps(doc)


def test_grid_ids_round_trip():
    grid = np.array([55, HOLD, REST, HOLD, 84, 60] + [HOLD] * 18)
    ids = M.grid_to_ids(grid)
    assert ids[:6].tolist() == [5, 4, 3, 4, 34, 10]
    np.testing.assert_array_equal(M.ids_to_grid(ids), grid)
    assert M.ids_to_tokens(ids[:6]) == ["G3", "__", "rest", "__", "C6", "C4"]
    with pytest.raises(ValueError, match="outside"):
        M.grid_to_ids(np.array([54] + [HOLD] * 23))


def _measure(elements):
    from music21 import stream

    m = stream.Measure()
    for el in elements:
        m.append(el)
    return m


def test_quantize_measure_rules():
    from music21 import chord, duration, note, stream, tie

    def n(name, ql):
        return note.Note(name, quarterLength=ql)

    trip = [note.Note(p, duration=duration.Duration(1 / 3)) for p in ("A4", "B4", "C#5")]
    grid, reason = M.quantize_measure(_measure([*trip, n("D5", 0.5), n("E5", 0.25), n("F#5", 0.25),
                                                note.Rest(quarterLength=1), n("G4", 1)]))
    assert reason is None
    expected = [HOLD] * 24
    for t, v in {0: 69, 2: 71, 4: 73, 6: 74, 9: 76, 11: 78, 12: REST, 18: 67}.items():
        expected[t] = v
    assert grid.tolist() == expected

    def tied_c5():
        tied = n("C5", 1)
        tied.tie = tie.Tie("stop")
        return tied

    # tied from a C5 that ended the previous bar: a hold; tied "from" another pitch or nothing: an onset
    assert M.quantize_measure(_measure([tied_c5(), n("D5", 3)]), previous=72)[0][[0, 6]].tolist() == [HOLD, 74]
    assert M.quantize_measure(_measure([tied_c5(), n("D5", 3)]), previous=74)[0][[0, 6]].tolist() == [72, 74]
    assert M.quantize_measure(_measure([tied_c5(), n("D5", 3)]))[0][[0, 6]].tolist() == [72, 74]

    assert M.quantize_measure(_measure([chord.Chord(["C4", "E4"], quarterLength=4)]))[1] == "chord"
    two_voices = stream.Measure([stream.Voice([n("C5", 4)]), stream.Voice([n("E5", 4)])])
    assert M.quantize_measure(two_voices)[1] == "multiple_voices"
    thirty_seconds = [n("C5", 0.125), n("D5", 0.125), n("C5", 3.75)]
    assert M.quantize_measure(_measure(thirty_seconds))[1] == "off_grid"


def _abc_grids(body: str) -> list[list[int]]:
    from music21 import converter

    score = converter.parse("X:1\nT:t\nM:4/4\nL:1/8\nK:D\n" + body + "\n", format="abc")
    bars, rejected, seen = M.extract_score("oneills1850", "t#0", score)
    assert not rejected and len(bars) == seen
    return [list(b.grid) for b in bars]


def _onsets(grid) -> dict[int, int]:
    return {t: v for t, v in enumerate(grid) if v != HOLD}


def test_hyphen_between_different_pitches_keeps_the_onset():
    """O'Neill's ``d>-c`` and ``A-B``: music21 reads ties, but the second note is a new onset."""
    first, second = _abc_grids("d>-c BA A-B cd|d4- d2 AB|")
    # D5 C#5 B4 A4 | A4 B4 C#5 D5 in eighths: every note is an onset, C#5 (after d-) and B4 (after A-) too
    assert _onsets(first) == {0: 74, 3: 73, 6: 71, 9: 69, 12: 69, 15: 71, 18: 73, 21: 74}
    # a real tie between equal pitches stays a hold: D5 sounds for 6 eighths
    assert _onsets(second) == {0: 74, 18: 69, 21: 71}


def test_ties_across_the_bar_line():
    held, moved = _abc_grids("A8-|A2 B2 c2 d2-|d2-d2 e4|"), _abc_grids("A8-|B2 B2 c2 d2-|e2-d2 e4|")
    assert held[1][0] == HOLD and _onsets(held[1]) == {6: 71, 12: 73, 18: 74}
    assert _onsets(held[2]) == {12: 76}  # tie continue then stop on D5: one note
    assert _onsets(moved[1]) == {0: 71, 6: 71, 12: 73, 18: 74}
    assert _onsets(moved[2]) == {0: 76, 6: 74, 12: 76}


def test_oneills_little_heathy_hill_keeps_its_notes():
    """Regression (issue 13): X:3 of O'Neill's 1850, bar 1 ``d2 d>-c B2 A-B`` lost C5 and B-4."""
    from music21 import converter

    text = (M.corpus_root() / "oneills1850" / "0001-0050.abc").read_text(encoding="latin-1")
    tune = text[text.index("X: 3\n"):text.index("X: 4\n")]
    assert "d2 d>-c B2 A-B" in tune
    bars, _, _ = M.extract_score("oneills1850", "x3", converter.parse(tune, format="abc"))
    first = next(b for b in bars if b.bar_index == 1)
    assert _onsets(first.grid) == {0: 74, 6: 74, 9: 72, 12: 70, 18: 69, 21: 70}
    assert M.ids_to_tokens(M.grid_to_ids(np.array(first.grid)))[9] == "C5"


def test_extract_score_counts_and_range():
    from music21 import meter, note, stream

    part = stream.Part()
    pickup = stream.Measure(number=0)
    pickup.append(meter.TimeSignature("4/4"))
    pickup.append(note.Note("G4", quarterLength=1))
    part.append(pickup)
    for names in (["C5", "D5", "E5", "F5"], ["C3", "C4", "C5", "C6"], ["C7", "B6", "A6", "G6"]):
        m = stream.Measure()
        for name in names:
            m.append(note.Note(name, quarterLength=1))
        part.append(m)
    m = stream.Measure()
    m.append(meter.TimeSignature("3/4"))
    m.append(note.Note("C5", quarterLength=3))
    part.append(m)
    score = stream.Score([part])
    bars, rejected, seen = M.extract_score("oneills1850", "x#0", score)
    assert seen == 5
    assert dict(rejected) == {"incomplete_bar": 1, "out_of_range": 1, "time_signature": 1}
    assert [b.bar_index for b in bars] == [1, 3]
    # C7..G6 (96..91) is shifted down by the smallest amount that fits: 96 -> 84
    assert [v for v in bars[1].grid if v >= 0] == [84, 83, 81, 79]


def test_split_assignment_is_deterministic_and_by_tune():
    tunes = [f"coll/file.abc#{k}" for k in range(2000)]
    splits = [M.assign_split(t) for t in tunes]
    frac = {s: splits.count(s) / len(splits) for s in M.SPLITS}
    assert frac == pytest.approx({"train": 0.70, "validation": 0.20, "test": 0.10}, abs=0.03)
    assert splits == [M.assign_split(t) for t in tunes]
    assert splits != [M.assign_split(t, seed=1) for t in tunes]


def test_transposition_class_and_hold_out():
    bar = [60, HOLD, 62, REST] + [HOLD] * 20
    up = [v + 5 if v >= 0 else v for v in bar]
    other = [60, HOLD, 63, REST] + [HOLD] * 20
    assert M.transposition_class(bar) == M.transposition_class(up) != M.transposition_class(other)
    rows = [("validation", "c", "v#0", 0, tuple(up)), ("train", "c", "t#0", 4, tuple(bar)),
            ("test", "c", "x#0", 1, tuple(bar))]
    assert M.hold_out(rows) == ([rows[1]], 2)
    assert M.hold_out([rows[0], rows[2]]) == ([rows[0], rows[2]], 0)  # no training bar: nothing to drop
