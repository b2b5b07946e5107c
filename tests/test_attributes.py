"""The four measure attributes (spec B.4) on hand-made bars with values derived by hand."""
import numpy as np
import pytest

from tfmusic.music import attributes as A
from tfmusic.music import notes

W = 27.79


def bar(events: dict[int, str]) -> list[str]:
    """24 tokens: the given onsets at their ticks, '__' elsewhere."""
    return [events.get(t, "__") for t in range(24)]


def test_weights_sum_and_layout():
    assert A.METRICAL_WEIGHTS.sum() == pytest.approx(W)
    assert A.METRICAL_WEIGHTS[[0, 6, 12, 18]].tolist() == [0.20, 0.67, 0.25, 0.67]
    assert A.METRICAL_WEIGHTS[1:6].tolist() == [1, 2, 0.5, 2, 1]
    assert A.ATTRIBUTE_NAMES == ("rhythmic_complexity", "pitch_range", "note_density", "contour")


def test_note_names():
    assert notes.name_to_midi("C4") == 60
    assert notes.name_to_midi("B#3") == 60
    assert notes.name_to_midi("E-5") == 75
    assert notes.name_to_midi("C-4") == 59
    assert notes.name_to_midi("A0") == 21
    assert [notes.midi_to_name(m) for m in (61, 63, 66, 68, 70, 55, 84)] == \
        ["C#4", "E-4", "F#4", "G#4", "B-4", "G3", "C6"]
    with pytest.raises(ValueError, match="note name"):
        notes.name_to_midi("H4")


@pytest.mark.parametrize("events, expected", [
    # C5 on beat 1, D5 on beat 2, E5 on the half of beat 2, rest on beat 3, G4 on beat 4
    ({0: "C5", 6: "D5", 9: "E5", 12: "rest", 18: "G4"},
     [(0.20 + 0.67 + 0.5 + 0.67) / W, (76 - 67) / 26, 4 / 24, (67 - 72) / 26]),
    # triplet A4 B4 C#5 on beat 1 (ticks 0, 1/3, 2/3), then held
    ({0: "A4", 2: "B4", 4: "C#5"}, [(0.20 + 2 + 2) / W, 4 / 26, 3 / 24, 4 / 26]),
    # one whole note: range and contour need two notes
    ({0: "B-4"}, [0.20 / W, 0.0, 1 / 24, 0.0]),
    # a whole-bar rest
    ({0: "rest"}, [0.0, 0.0, 0.0, 0.0]),
    # tied in from the previous bar (hold at tick 0), F#5 at 1/4 and E-5 at 3/4 of beat 1
    ({1: "F#5", 5: "E-5"}, [2.0 / W, 3 / 26, 2 / 24, -3 / 26]),
    # every tick an onset: complexity 1, density 1; up-down contour G3 .. C6 .. G3
    ({t: ("G3" if t in (0, 23) else "C6") for t in range(24)}, [1.0, 29 / 26, 1.0, 0.0]),
])
def test_hand_made_bars(events, expected):
    got = A.measure_attributes(bar(events))
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-7)


def test_grid_batch_matches_tokens_and_shape():
    bars = [bar({0: "C5", 6: "D5", 9: "E5", 12: "rest", 18: "G4"}), bar({0: "rest"}), bar({1: "F#5", 5: "E-5"})]
    grids = np.stack([A.tokens_to_grid(b) for b in bars])
    batch = A.grid_attributes(grids.reshape(3, 1, 24))
    assert batch.shape == (3, 1, 4)
    for k, b in enumerate(bars):
        np.testing.assert_array_equal(batch[k, 0], A.measure_attributes(b))


def test_transposition_invariant():
    g = A.tokens_to_grid(bar({0: "C5", 6: "D5", 9: "E5", 12: "rest", 18: "G4"}))
    shifted = np.where(g >= 0, g + 5, g)
    np.testing.assert_array_equal(A.grid_attributes(g), A.grid_attributes(shifted))


def test_bad_length():
    with pytest.raises(ValueError, match="24"):
        A.measure_attributes(["C4"] * 16)
