"""The four per-bar musical attributes regularized by the Measure AR-VAE (spec B.4).

One bar = 24 ticks (4 beats x 6 ticks at beat fractions 0, 1/4, 1/3, 1/2, 2/3, 3/4). A bar is
given either as token strings (``'G4'``, ``'rest'``, ``'__'``) or as a *pitch grid*: an int array
of 24 ticks holding the MIDI number of a note onset, ``REST`` (-1) for a rest onset or ``HOLD``
(-2) for the continuation of the previous event. Attribute columns, in this fixed order:

0. ``rhythmic_complexity`` = sum of metrical weights of ticks with a note onset / 27.79
1. ``pitch_range``  = (max - min MIDI of the bar's note onsets) / 26, 0 with fewer than 2 notes
2. ``note_density`` = number of note onsets / 24
3. ``contour``      = sum of successive MIDI differences (= last - first note) / 26, 0 with < 2 notes

The weights give off-beat and triplet onsets a larger weight than on-beat ones: beat-start
weights 0.20, 0.67, 0.25, 0.67 for beats 1-4 and 1, 2, 0.5, 2, 1 for the five sub-beat ticks.
All four are transposition invariant, so transposition augmentation leaves them unchanged.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from tfmusic.music.notes import name_to_midi

TICKS_PER_BEAT = 6
BEATS_PER_BAR = 4
TICKS_PER_BAR = TICKS_PER_BEAT * BEATS_PER_BAR
#: Beat fractions of the six ticks inside a beat.
TICK_FRACTIONS = (0.0, 1 / 4, 1 / 3, 1 / 2, 2 / 3, 3 / 4)

REST = -1
HOLD = -2
REST_TOKEN = "rest"
HOLD_TOKEN = "__"

ATTRIBUTE_NAMES = ("rhythmic_complexity", "pitch_range", "note_density", "contour")
PITCH_NORMALIZER = 26.0

_BEAT_START_WEIGHTS = (0.20, 0.67, 0.25, 0.67)
_SUB_BEAT_WEIGHTS = (1.0, 2.0, 0.5, 2.0, 1.0)
#: Metrical weight of each of the 24 ticks (sum 27.79).
METRICAL_WEIGHTS = np.array(
    [w for beat in range(BEATS_PER_BAR) for w in (_BEAT_START_WEIGHTS[beat], *_SUB_BEAT_WEIGHTS)],
    dtype=np.float64,
)

def tokens_to_grid(tokens: Sequence[str]) -> np.ndarray:
    """Token strings of one bar -> pitch grid (MIDI / REST / HOLD) of the same length."""
    out = np.empty(len(tokens), dtype=np.int64)
    for i, tok in enumerate(tokens):
        if tok == HOLD_TOKEN:
            out[i] = HOLD
        elif tok == REST_TOKEN:
            out[i] = REST
        else:
            out[i] = name_to_midi(tok)
    return out


def grid_attributes(grid: np.ndarray) -> np.ndarray:
    """Attributes of pitch grids: ``(..., 24)`` ints -> ``(..., 4)`` float32 in ATTRIBUTE_NAMES order."""
    grid = np.asarray(grid)
    if grid.shape[-1] != TICKS_PER_BAR:
        raise ValueError(f"a bar has {TICKS_PER_BAR} ticks, got shape {grid.shape}")
    flat = grid.reshape(-1, TICKS_PER_BAR)
    onset = flat >= 0
    n_notes = onset.sum(axis=1)
    rhythm = (onset * METRICAL_WEIGHTS).sum(axis=1) / METRICAL_WEIGHTS.sum()
    density = n_notes / TICKS_PER_BAR
    masked_hi = np.where(onset, flat, np.iinfo(np.int64).min)
    masked_lo = np.where(onset, flat, np.iinfo(np.int64).max)
    pitch_range = np.where(n_notes >= 2, masked_hi.max(axis=1) - masked_lo.min(axis=1), 0) / PITCH_NORMALIZER
    # First and last onset pitch: index of first True / last True along the ticks.
    first_idx = np.argmax(onset, axis=1)
    last_idx = TICKS_PER_BAR - 1 - np.argmax(onset[:, ::-1], axis=1)
    rows = np.arange(flat.shape[0])
    contour = np.where(n_notes >= 2, flat[rows, last_idx] - flat[rows, first_idx], 0) / PITCH_NORMALIZER
    out = np.stack([rhythm, pitch_range, density, contour], axis=1).astype(np.float32)
    return out.reshape(grid.shape[:-1] + (len(ATTRIBUTE_NAMES),))


def measure_attributes(tokens: Sequence[str]) -> np.ndarray:
    """Attributes of one bar given as 24 token strings -> float32 array of 4 (ATTRIBUTE_NAMES order)."""
    if len(tokens) != TICKS_PER_BAR:
        raise ValueError(f"a bar has {TICKS_PER_BAR} tokens, got {len(tokens)}")
    return grid_attributes(tokens_to_grid(tokens))
