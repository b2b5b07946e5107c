"""Note names <-> MIDI numbers, in music21's spelling, for every tfmusic dataset and renderer.

music21 writes flats with '-' (``E-4``); common '#'/'b' spellings are accepted on input.
Output uses music21's default spelling of a MIDI number: C#, E-, F#, G#, B-.
"""

from __future__ import annotations

import re

#: music21's default spelling of each pitch class.
PITCH_CLASS_NAMES = ("C", "C#", "D", "E-", "E", "F", "F#", "G", "G#", "A", "B-", "B")
_LETTERS = {"C": 0, "D": 2, "E": 4, "F": 5, "G": 7, "A": 9, "B": 11}
_NAME_RE = re.compile(r"^([A-Ga-g])([#\-b]*)(-?\d+)$")


def split_name(name: str) -> tuple[str, str, int]:
    """``'Eb4'`` -> ``('E', '-', 4)``: letter, music21 accidental string, octave."""
    match = _NAME_RE.match(name.strip())
    if not match:
        raise ValueError(f"not a note name with octave: {name!r}")
    letter, accidentals, octave = match.groups()
    return letter.upper(), accidentals.replace("b", "-"), int(octave)


def name_to_midi(name: str) -> int:
    """MIDI number of a note name (``'C#4'`` -> 61, ``'E-5'``/``'Eb5'`` -> 75, ``'B#3'`` -> 60)."""
    letter, accidentals, octave = split_name(name)
    midi = _LETTERS[letter] + accidentals.count("#") - accidentals.count("-") + 12 * (octave + 1)
    if not 0 <= midi <= 127:
        raise ValueError(f"note {name!r} is outside the MIDI range")
    return midi


def midi_to_name(midi: int) -> str:
    """music21's default spelling of a MIDI number (``Pitch(midi=m).nameWithOctave``): 63 -> 'E-4'."""
    midi = int(midi)
    return f"{PITCH_CLASS_NAMES[midi % 12]}{midi // 12 - 1}"
