"""dMelodies factors, vocabulary and tokens: every item is a pure function of its index.

* :func:`index_to_factors` / :func:`factors_to_index` — mixed-radix mapping over the factor
  product (tonic slowest, arpeggio of chord 4 fastest), vectorized both ways;
* :func:`tokens_from_factors` — numpy token generation (no music21), with the reference's note
  spellings (C#, E-, F#, G#, B-) and vocabulary (``'__'`` = 0, ``'rest'`` = 1, notes 2..51 in
  first-appearance order over the product), so any index range can be generated and checked alone;
* :func:`decode_factors` — the reference rule for recovering factors from tokens, vectorized;
* :func:`music21_reference_tokens` — the slow music21 construction, the oracle for all of the above.
"""

from __future__ import annotations

import functools
from itertools import combinations
from typing import Sequence

import numpy as np

from tfmusic.data import schema
from tfmusic.music.notes import PITCH_CLASS_NAMES, midi_to_name, name_to_midi

VERSION = "1.0.0"
DATASET_NAME = schema.DMELODIES_DATASET_NAME
SEQ_LEN = schema.DMELODIES_SEQ_LEN
TICKS_PER_BEAT = 2  # 4/4 at eighth-note resolution: 2 bars = 16 ticks

# ---- factors (column order of the reference latent_array) -----------------------------------
FACTOR_NAMES = ("tonic", "octave", "scale", "rhythm_bar1", "rhythm_bar2",
                "arp_chord1", "arp_chord2", "arp_chord3", "arp_chord4")
FACTOR_SIZES = (12, 3, 3, 28, 28, 2, 2, 2, 2)
NUM_FACTORS = len(FACTOR_NAMES)
NUM_ITEMS = int(np.prod(FACTOR_SIZES))  # 1,354,752
_SIZES = np.asarray(FACTOR_SIZES, dtype=np.int64)
_STRIDES = np.asarray([int(np.prod(FACTOR_SIZES[i + 1:])) for i in range(NUM_FACTORS)], dtype=np.int64)

TONIC_NAMES = PITCH_CLASS_NAMES
OCTAVES = (4, 5, 6)
SCALE_NAMES = ("major", "minor", "blues")
ARP_NAMES = ("up", "down")
# Semitones of the 9 scale degrees used (two octaves' worth up to the 9th); minor is harmonic minor.
SCALE_SEMITONES = np.asarray([
    [0, 2, 4, 5, 7, 9, 11, 12, 14],
    [0, 2, 3, 5, 7, 8, 11, 12, 14],
    [0, 2, 3, 5, 6, 9, 10, 12, 14],
], dtype=np.int64)
# Chord progression I-IV-V-I as scale-degree indices; 'down' reverses each triad.
CHORD_DEGREES = np.asarray([[0, 2, 4], [3, 5, 7], [4, 6, 8], [0, 2, 4]], dtype=np.int64)
# Rhythm k = k-th 6-subset of the 8 eighth positions of a bar (itertools.combinations order).
RHYTHM_ONSETS = np.asarray(list(combinations(range(8), 6)), dtype=np.int64)  # (28, 6)
RHYTHMS = np.zeros((len(RHYTHM_ONSETS), 8), dtype=np.int64)
np.put_along_axis(RHYTHMS, RHYTHM_ONSETS, 1, axis=1)

# ---- vocabulary -------------------------------------------------------------------------------
HOLD_TOKEN = "__"
REST_TOKEN = "rest"
HOLD_ID = 0
REST_ID = 1


def _check_factors(factors: np.ndarray) -> np.ndarray:
    factors = np.asarray(factors, dtype=np.int64)
    if factors.ndim != 2 or factors.shape[1] != NUM_FACTORS:
        raise ValueError(f"factors must have shape (N, {NUM_FACTORS}), got {factors.shape}")
    bad = (factors < 0) | (factors >= _SIZES)
    if bad.any():
        row, col = np.argwhere(bad)[0]
        raise ValueError(f"factor '{FACTOR_NAMES[col]}' = {factors[row, col]} in row {row} is outside "
                         f"0..{FACTOR_SIZES[col] - 1}")
    return factors


def _check_indices(indices) -> np.ndarray:
    idx = np.asarray(indices, dtype=np.int64)
    if idx.size and (idx.min() < 0 or idx.max() >= NUM_ITEMS):
        raise ValueError(f"dMelodies indices must lie in 0..{NUM_ITEMS - 1}, got {idx.min()}..{idx.max()}")
    return idx


def index_to_factors(indices) -> np.ndarray:
    """Factor indices ``(N, 9)`` of dataset indices (itertools.product order, last factor fastest)."""
    idx = _check_indices(indices)
    return (idx.reshape(-1, 1) // _STRIDES) % _SIZES


def factors_to_index(factors) -> np.ndarray:
    """Dataset indices ``(N,)`` of factor rows ``(N, 9)``: the inverse of :func:`index_to_factors`."""
    return _check_factors(factors) @ _STRIDES


def melody_pitches(factors) -> np.ndarray:
    """The 12 MIDI pitches ``(N, 12)`` of each melody: root + scale[degree] over I-IV-V-I arpeggios."""
    f = _check_factors(factors)
    root = f[:, 0] + 12 * (np.asarray(OCTAVES)[f[:, 1]] + 1)  # C4 = 60
    degrees = np.broadcast_to(CHORD_DEGREES, (len(f), 4, 3))
    down = f[:, 5:9].astype(bool)[:, :, None]
    degrees = np.where(down, degrees[:, :, ::-1], degrees).reshape(len(f), 12)
    semis = np.take_along_axis(SCALE_SEMITONES[f[:, 2]], degrees, axis=1)
    return root[:, None] + semis


@functools.lru_cache(maxsize=1)
def vocabulary() -> tuple[str, ...]:
    """Token names by id: ``'__'``, ``'rest'``, then the 50 notes in first-appearance order.

    Rhythm factors do not change a row's pitch sequence and every (tonic, octave, scale) block
    visits all arpeggio patterns before its first rhythm change, so the rows with both rhythm
    factors 0 see every pitch in the same first-appearance order as the full product.
    """
    grid = np.indices((12, 3, 3, 2, 2, 2, 2)).reshape(7, -1).T  # product order, arp4 fastest
    factors = np.zeros((len(grid), NUM_FACTORS), dtype=np.int64)
    factors[:, [0, 1, 2, 5, 6, 7, 8]] = grid
    flat = melody_pitches(factors).reshape(-1)
    _, first = np.unique(flat, return_index=True)
    ordered = flat[np.sort(first)]
    return (HOLD_TOKEN, REST_TOKEN) + tuple(midi_to_name(m) for m in ordered)


@functools.lru_cache(maxsize=1)
def _luts() -> tuple[np.ndarray, np.ndarray]:
    """(MIDI -> token id, token id -> MIDI) lookup tables; -1 where undefined."""
    vocab = vocabulary()
    midi_to_id = np.full(128, -1, dtype=np.int64)
    id_to_midi = np.full(len(vocab), -1, dtype=np.int64)
    for i, name in enumerate(vocab[2:], start=2):
        midi = name_to_midi(name)
        midi_to_id[midi] = i
        id_to_midi[i] = midi
    return midi_to_id, id_to_midi


def note_to_index() -> dict[str, int]:
    return {name: i for i, name in enumerate(vocabulary())}


def index_to_note() -> dict[int, str]:
    return dict(enumerate(vocabulary()))


VOCAB_SIZE = 52


def tokens_from_factors(factors) -> np.ndarray:
    """Token ids ``(N, 16)`` int32: each bar's 6 notes at its rhythm's onset positions, rests elsewhere."""
    f = _check_factors(factors)
    midi_to_id, _ = _luts()
    note_ids = midi_to_id[melody_pitches(f)]
    tokens = np.full((len(f), SEQ_LEN), REST_ID, dtype=np.int32)
    bar1 = RHYTHM_ONSETS[f[:, 3]]
    bar2 = RHYTHM_ONSETS[f[:, 4]] + 8
    np.put_along_axis(tokens, np.concatenate([bar1, bar2], axis=1), note_ids.astype(np.int32), axis=1)
    return tokens


def music21_reference_tokens(factor_row: Sequence[int]) -> list[str]:
    """One item built the slow way the reference generator does (a music21 Score of eighth notes and
    rests in two 4/4 bars, read back tick by tick as ``nameWithOctave``). It shares no code with the
    vectorized generator, so it serves as the oracle in tests and as the reference side of the bench."""
    from music21 import meter, note, pitch, stream

    tonic, octave, scale, rhythm1, rhythm2, *arps = (int(v) for v in factor_row)
    root = pitch.Pitch(midi=tonic + 12 * (octave + 5))
    chords = ([0, 2, 4], [3, 5, 7], [4, 6, 8], [0, 2, 4])
    scale_steps = ([0, 2, 4, 5, 7, 9, 11, 12, 14], [0, 2, 3, 5, 7, 8, 11, 12, 14],
                   [0, 2, 3, 5, 6, 9, 10, 12, 14])[scale]
    midis = iter([root.midi + scale_steps[d] for chord, arp in zip(chords, arps)
                  for d in (chord if arp == 0 else chord[::-1])])
    rhythms = list(combinations(range(8), 6))
    part = stream.Part()
    for bar, rhythm in enumerate((rhythm1, rhythm2)):
        measure = stream.Measure(number=bar + 1)
        if bar == 0:
            measure.append(meter.TimeSignature("4/4"))
        for pos in range(8):
            measure.append(note.Note(pitch.Pitch(midi=next(midis)), quarterLength=0.5)
                           if pos in rhythms[rhythm] else note.Rest(quarterLength=0.5))
        part.append(measure)
    names = [HOLD_TOKEN] * 16
    for el in stream.Score([part]).flatten().notesAndRests:
        names[int(round(float(el.offset) * 2))] = REST_TOKEN if el.isRest else el.pitch.nameWithOctave
    return names


def generate_items(indices) -> tuple[np.ndarray, np.ndarray]:
    """``(tokens (N,16) int32, factors (N,9) int64)`` for dataset indices."""
    factors = index_to_factors(indices)
    return tokens_from_factors(factors), factors


def token_names(tokens) -> list[list[str]]:
    """Token ids -> names (ids >= 52, which models may emit, read as the hold symbol)."""
    vocab = np.asarray(vocabulary(), dtype=object)
    t = np.asarray(tokens, dtype=np.int64)
    t = np.where((t < 0) | (t >= len(vocab)), HOLD_ID, t)
    return vocab[np.atleast_2d(t)].tolist()


@functools.lru_cache(maxsize=1)
def _rhythm_lut() -> np.ndarray:
    lut = np.full(256, -1, dtype=np.int64)
    codes = RHYTHMS @ (1 << np.arange(7, -1, -1))
    lut[codes] = np.arange(len(RHYTHMS))
    return lut


def decode_factors(tokens) -> np.ndarray:
    """Recover the 9 factors from token ids ``(N, 16)`` with the reference rule; -1 where undecidable.

    root = lowest of the first 3 notes (tonic, octave); scale = first of major/minor/blues whose
    pitch-class set holds every (pitch - root) mod 12; rhythm = exact onset-pattern match per bar
    (a note token is an onset; rest, hold and ids >= 52 are not); arpeggio direction = sign of the
    summed steps inside each 3-note group (needs exactly 12 notes).
    """
    t = np.asarray(tokens)
    if t.ndim != 2 or t.shape[1] != SEQ_LEN:
        raise ValueError(f"tokens must have shape (N, {SEQ_LEN}), got {t.shape}")
    if not np.issubdtype(t.dtype, np.integer):
        raise ValueError(f"tokens must be integer ids, got dtype {t.dtype}")
    midi_lut, pc_bit_lut = _decode_luts()
    n = len(t)
    # ids outside 2..51 (hold, rest, slur >= 52, negatives) clip onto the -1 / 0 ends of the tables
    midi = np.take(midi_lut, t, mode="clip")
    is_note = midi >= 0
    count = is_note.sum(axis=1)
    out = np.full((n, NUM_FACTORS), -1, dtype=np.int64)

    has3 = count >= 3
    first3 = is_note & (np.cumsum(is_note, axis=1, dtype=np.int8) <= 3)
    root = np.where(first3, midi, 10_000).min(axis=1).astype(np.int64)
    octave = root // 12 - 1 - OCTAVES[0]
    out[:, 0] = np.where(has3, root % 12, -1)
    out[:, 1] = np.where(has3 & (octave >= 0) & (octave < len(OCTAVES)), octave, -1)

    pcs = np.bitwise_or.reduce(np.take(pc_bit_lut, t, mode="clip"), axis=1).astype(np.int64)
    r = root % 12
    rel = ((pcs >> r) | (pcs << (12 - r))) & 0xFFF  # bit k set <=> some note is k semitones above root (mod 12)
    scale = np.full(n, -1, dtype=np.int64)
    for s in range(len(SCALE_NAMES) - 1, -1, -1):  # first match wins: assign in reverse
        mask = int(np.bitwise_or.reduce(1 << (SCALE_SEMITONES[s] % 12)))
        scale = np.where((rel & ~mask) == 0, s, scale)
    out[:, 2] = np.where(has3, scale, -1)

    onsets = np.packbits(is_note, axis=1)  # (N, 2): bar 1, bar 2; position 0 = most significant bit
    out[:, 3] = _rhythm_lut()[onsets[:, 0]]
    out[:, 4] = _rhythm_lut()[onsets[:, 1]]

    ok12 = count == 12
    if ok12.any():
        notes = (midi[is_note] if ok12.all() else midi[ok12][is_note[ok12]]).reshape(-1, 4, 3).astype(np.int64)
        step_sum = notes[:, :, 2] - notes[:, :, 0]  # = sum of the two steps in each triad
        out[ok12, 5:9] = np.where(step_sum > 0, 0, np.where(step_sum < 0, 1, -1))
    return out


@functools.lru_cache(maxsize=1)
def _decode_luts() -> tuple[np.ndarray, np.ndarray]:
    """Token id -> MIDI (-1 for non-notes) and -> pitch-class bit, padded so out-of-range ids clip to non-notes."""
    _, id_to_midi = _luts()
    midi = np.concatenate([id_to_midi, [-1]]).astype(np.int16)
    midi[:2] = -1
    bits = np.where(midi >= 0, 1 << (midi.astype(np.int32) % 12), 0).astype(np.int16)
    return midi, bits


def latent_dicts() -> dict[str, dict[int, object]]:
    """Human-readable value of every factor index (rhythms as 8-element 0/1 lists), as in the reference npz."""
    return {
        "tonic": dict(enumerate(TONIC_NAMES)),
        "octave": dict(enumerate(OCTAVES)),
        "scale": dict(enumerate(SCALE_NAMES)),
        "rhythm_bar1": {i: r.tolist() for i, r in enumerate(RHYTHMS)},
        "rhythm_bar2": {i: r.tolist() for i, r in enumerate(RHYTHMS)},
        **{f"arp_chord{c}": dict(enumerate(ARP_NAMES)) for c in range(1, 5)},
    }


def describe_factors(factor_row: Sequence[int]) -> str:
    """One line naming a factor row, e.g. ``C 4 major r0/0 up,up,up,down``."""
    f = [int(v) for v in factor_row]
    arps = ",".join(ARP_NAMES[v] for v in f[5:9])
    return f"{TONIC_NAMES[f[0]]} {OCTAVES[f[1]]} {SCALE_NAMES[f[2]]} r{f[3]}/{f[4]} {arps}"
