"""The measures set's frozen format: version, vocabulary, pitch grid <-> token ids.

Vocabulary (frozen, sorted, independent of hashing; written as ``vocabulary.json``):
ids 0-4 = ``<pad>``, ``START``, ``END``, ``rest``, ``__`` (hold); ids 5..34 = the 30 pitches MIDI
55 (G3) .. 84 (C6) in ascending MIDI order, spelled as music21 spells a MIDI number (C#, E-, F#,
G#, B-). Enharmonic spellings in the source are therefore normalized: the reference keeps the
source spelling; for a one-bar model both name the same pitch.
"""

from __future__ import annotations

from typing import Iterable

import numpy as np

from tfmusic.music.attributes import ATTRIBUTE_NAMES, HOLD, HOLD_TOKEN, REST, REST_TOKEN, TICKS_PER_BAR
from tfmusic.music.notes import midi_to_name

DATASET_NAME = "measures"
#: Bumped whenever the extraction or split rules change: cache entries of another version are
#: never reused and the reader refuses a set built under another version (rebuild it).
#: 3: a tie onto a different pitch is an onset (issue 13); tune-level train/validation/test with
#: bars that duplicate training bars dropped from the evaluation splits.
VERSION = 3
MANIFEST = "manifest.json"
VOCABULARY_FILE = "vocabulary.json"

MIN_PITCH = 55
MAX_PITCH = 84
PAD_ID, START_ID, END_ID, REST_ID, HOLD_ID = 0, 1, 2, 3, 4
NOTE_OFFSET = 5
SPECIAL_TOKENS = ("<pad>", "START", "END", REST_TOKEN, HOLD_TOKEN)
#: The frozen vocabulary: special tokens, then MIDI 55..84 ascending.
VOCABULARY: tuple[str, ...] = SPECIAL_TOKENS + tuple(
    midi_to_name(m) for m in range(MIN_PITCH, MAX_PITCH + 1))
VOCAB_SIZE = len(VOCABULARY)


def vocabulary_json() -> dict:
    """The vocabulary document written next to the data (and checked by the reader)."""
    return {
        "tokens": list(VOCABULARY),
        "pad_id": PAD_ID, "start_id": START_ID, "end_id": END_ID,
        "rest_id": REST_ID, "hold_id": HOLD_ID,
        "note_offset": NOTE_OFFSET, "min_pitch": MIN_PITCH, "max_pitch": MAX_PITCH,
        "ticks_per_bar": TICKS_PER_BAR, "tick_fractions_of_beat": ["0", "1/4", "1/3", "1/2", "2/3", "3/4"],
        "attributes": list(ATTRIBUTE_NAMES),
        "doc": "ids 0-4 special tokens; id = 5 + (MIDI - 55) for MIDI 55..84, spelled as music21 "
               "spells a MIDI number; '__' holds the previous note or rest.",
    }


def grid_to_ids(grid: np.ndarray) -> np.ndarray:
    """Pitch grid (in range) -> token ids of :data:`VOCABULARY`."""
    grid = np.asarray(grid, dtype=np.int64)
    notes = grid >= 0
    if np.any(notes & ((grid < MIN_PITCH) | (grid > MAX_PITCH))):
        raise ValueError(f"pitch outside MIDI {MIN_PITCH}-{MAX_PITCH} in grid {grid.tolist()}")
    return np.where(notes, grid - MIN_PITCH + NOTE_OFFSET, np.where(grid == REST, REST_ID, HOLD_ID))


def ids_to_grid(ids: np.ndarray) -> np.ndarray:
    """Token ids -> pitch grid; START/END/pad map to HOLD (they carry no onset)."""
    ids = np.asarray(ids, dtype=np.int64)
    return np.where(ids >= NOTE_OFFSET, ids - NOTE_OFFSET + MIN_PITCH, np.where(ids == REST_ID, REST, HOLD))


def ids_to_tokens(ids: Iterable[int]) -> list[str]:
    return [VOCABULARY[int(i)] for i in ids]


def fit_shift(grid: np.ndarray) -> tuple[int, int] | None:
    """Allowed semitone shifts ``(lo, hi)`` keeping the bar inside 55-84; None if none exists."""
    notes = grid[grid >= 0]
    if notes.size == 0:
        return (0, 0)
    lo, hi = MIN_PITCH - int(notes.min()), MAX_PITCH - int(notes.max())
    return (lo, hi) if lo <= hi else None


def transposition_class(grid) -> bytes:
    """A key equal for two pitch grids exactly when one is a transposition of the other.

    Training reads every in-range transposition of its bars (see :func:`~.loader.load`), so an
    evaluation bar whose key matches a training bar's has been trained on; such bars are dropped
    from the evaluation splits. Notes are counted from the bar's lowest note; REST/HOLD stay.
    """
    g = np.asarray(grid, dtype=np.int64)
    notes = g >= 0
    if notes.any():
        g = np.where(notes, g - g[notes].min(), g)
    return g.astype(np.int8).tobytes()
