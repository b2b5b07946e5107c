"""dMelodies: 1,354,752 two-bar melodies from 9 independent factors, generated in closed form.

The reference generator builds one music21 ``Score`` per item in a sequential loop (~2 ms/item).
Here every item is a pure function of its index:

* :func:`index_to_factors` / :func:`factors_to_index` — mixed-radix mapping over the factor
  product (tonic slowest, arpeggio of chord 4 fastest), vectorized both ways;
* :func:`tokens_from_factors` — numpy token generation (no music21), with the reference's note
  spellings (C#, E-, F#, G#, B-) and vocabulary (``'__'`` = 0, ``'rest'`` = 1, notes 2..51 in
  first-appearance order over the product), so any index range can be generated and checked alone;
* :func:`decode_factors` — the reference rule for recovering factors from tokens, vectorized;
* :func:`split_indices` — the reference loader's split (``np.random.seed(seed)``, in-place row
  shuffle, 70/20/10) as index lists in shuffled order;
* :func:`generate` — the Beam job writing TFDS-loadable TFRecord shards, and :func:`load` — the
  ``tf.data`` reader.

Shard contents: split ``s`` is stored in the reference loader's shuffled order, cut into contiguous
shards, so reading the shards of a split in order reproduces the reference iteration order exactly.
"""

from __future__ import annotations

import datetime as _dt
import functools
import json
import logging
import os
import threading
import time
from itertools import combinations
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np

from tfmusic.data import schema
from tfmusic.music.notes import PITCH_CLASS_NAMES, midi_to_name, name_to_midi

log = logging.getLogger(__name__)

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
SPLITS = ("train", "validation", "test")
SPLIT_FRACTIONS = (0.70, 0.20)  # test takes the rest
DEFAULT_NUM_SHARDS = {"train": 16, "validation": 4, "test": 2}
LOADER_ORDER_NOTE = ("Records of each split are stored in the reference loader's shuffled order "
                     "(np.random.seed(seed); in-place row shuffle; 70/20/10), cut into contiguous "
                     "shards: reading shards 00000.. in order reproduces the reference iteration.")


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


# ---- splits -----------------------------------------------------------------------------------

def split_permutation(seed: int = 0, n: int = NUM_ITEMS) -> np.ndarray:
    """The row order of the reference loader: ``np.random.seed(seed); np.random.shuffle(rows)``.

    The legacy shuffle draws the same swaps for a 1-D index vector as for 2-D rows, so the
    permutation can be computed on indices (checked in the tests), without touching global state.
    """
    perm = np.arange(n, dtype=np.int64)
    np.random.RandomState(seed).shuffle(perm)
    return perm


def split_bounds(n: int) -> tuple[int, int]:
    """(train end, validation end) positions for the 70/20/10 split of ``n`` rows."""
    a, b = SPLIT_FRACTIONS
    return int(a * n), int((a + b) * n)


@functools.lru_cache(maxsize=4)
def _split_orders(seed: int, limit: int | None) -> dict[str, np.ndarray]:
    perm = split_permutation(seed)
    t_end, v_end = split_bounds(len(perm))
    orders = {"train": perm[:t_end], "validation": perm[t_end:v_end], "test": perm[v_end:]}
    if limit is not None:
        orders = {k: v[v < limit] for k, v in orders.items()}
    for v in orders.values():
        v.setflags(write=False)
    return orders


def split_indices(seed: int = 0, limit: int | None = None) -> dict[str, np.ndarray]:
    """Dataset indices of each split, in the reference loader's (shuffled) iteration order.

    ``limit`` keeps only items with index < limit; each keeps the split and relative order it has
    in the full dataset, so a small run is an exact subset of the full one.
    """
    if limit is not None and not 1 <= limit <= NUM_ITEMS:
        raise ValueError(f"limit must lie in 1..{NUM_ITEMS}, got {limit}")
    return dict(_split_orders(int(seed), None if limit is None or limit == NUM_ITEMS else int(limit)))


# ---- records ----------------------------------------------------------------------------------

def _varint_columns(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Protobuf varint bytes of non-negative int64 ``values``: ``(N, 10)`` uint8 and lengths ``(N,)``."""
    v = values.astype(np.uint64)
    groups = np.stack([(v >> np.uint64(7 * k)) & np.uint64(0x7F) for k in range(10)], axis=1)
    lengths = np.maximum(1, 10 - np.argmax(groups[:, ::-1] != 0, axis=1))
    lengths = np.where(v == 0, 1, lengths)
    cont = np.arange(10)[None, :] < (lengths[:, None] - 1)
    return (groups | np.where(cont, np.uint64(0x80), np.uint64(0))).astype(np.uint8), lengths


def _int64_entry(key: bytes, values: np.ndarray) -> np.ndarray:
    """Serialized ``Features.feature`` map entry (key -> Int64List) for rows of one-byte varints."""
    n, k = values.shape
    inner = [np.full((n, 1), 0x0A, np.uint8), np.full((n, 1), k, np.uint8), values.astype(np.uint8)]
    int64_list_len = 2 + k
    feature_len = 2 + int64_list_len
    entry_len = 2 + len(key) + 2 + feature_len
    head = bytes([0x0A, entry_len, 0x0A, len(key)]) + key + bytes([0x12, feature_len, 0x1A, int64_list_len])
    if entry_len >= 128:
        raise ValueError(f"feature '{key.decode()}' too long for the fixed-layout encoder")
    return np.concatenate([np.broadcast_to(np.frombuffer(head, np.uint8), (n, len(head)))] + inner, axis=1)


def encode_examples(index, tokens, factors) -> list[bytes]:
    """Serialized ``tf.train.Example`` records, byte-identical to ``SerializeToString(deterministic=True)``
    of :func:`tfmusic.data.schema.dmelodies_example`, built in bulk with numpy (keys in sorted order)."""
    index = np.asarray(index, dtype=np.int64).reshape(-1)
    tokens = np.asarray(tokens, dtype=np.int64)
    factors = np.asarray(factors, dtype=np.int64)
    n = len(index)
    if tokens.shape != (n, SEQ_LEN) or factors.shape != (n, NUM_FACTORS):
        raise ValueError(f"shapes do not line up: index {index.shape}, tokens {tokens.shape}, factors {factors.shape}")
    for name, arr in (("tokens", tokens), ("factors", factors)):
        if arr.size and (arr.min() < 0 or arr.max() > 127):
            raise ValueError(f"{name} values must lie in 0..127 for the bulk encoder")
    if n and index.min() < 0:
        raise ValueError("index must be non-negative")
    assert sorted(schema.DMELODIES_FEATURES) == ["factors", "index", "tokens"]
    fac = _int64_entry(b"factors", factors)
    tok = _int64_entry(b"tokens", tokens)
    var, lengths = _varint_columns(index)
    records: list[bytes] = [b""] * n
    for length in np.unique(lengths):
        rows = np.flatnonzero(lengths == length)
        idx = _int64_entry(b"index", var[rows, :length])
        body = np.concatenate([fac[rows], idx, tok[rows]], axis=1)
        if body.shape[1] >= 128:
            raise ValueError("record too long for the fixed-layout encoder")
        head = np.broadcast_to(np.asarray([0x0A, body.shape[1]], np.uint8), (len(rows), 2))
        arr = np.ascontiguousarray(np.concatenate([head, body], axis=1))
        buf, width = arr.tobytes(), arr.shape[1]
        for j, r in enumerate(rows.tolist()):
            records[r] = buf[j * width:(j + 1) * width]
    return records


# ---- Beam job ---------------------------------------------------------------------------------

def parse_num_shards(text: str | None) -> dict[str, int]:
    """``'16,4,2'`` or ``'train=16,validation=4,test=2'`` (missing splits keep the default)."""
    shards = dict(DEFAULT_NUM_SHARDS)
    if not text:
        return shards
    parts = [p.strip() for p in text.split(",") if p.strip()]
    try:
        if all("=" not in p for p in parts):
            if len(parts) != len(SPLITS):
                raise ValueError
            shards = dict(zip(SPLITS, (int(p) for p in parts)))
        else:
            for p in parts:
                k, v = p.split("=", 1)
                if k.strip() not in shards:
                    raise ValueError
                shards[k.strip()] = int(v)
    except ValueError:
        raise ValueError(f"--num-shards '{text}': expected 'T,V,E' or 'train=T,validation=V,test=E' "
                         f"with positive integers") from None
    if any(v < 1 for v in shards.values()):
        raise ValueError(f"--num-shards '{text}': shard counts must be >= 1")
    return shards


def plan_shards(seed: int, num_shards: Mapping[str, int], limit: int | None) -> list[tuple]:
    """``(split, shard, num_shards, start, stop)`` for every shard: contiguous ranges of split order."""
    orders = split_indices(seed, limit)
    plan = []
    for split in SPLITS:
        total = len(orders[split])
        k = max(1, min(int(num_shards[split]), total))
        bounds = [(s * total) // k for s in range(k + 1)]
        plan.extend((split, s, k, bounds[s], bounds[s + 1]) for s in range(k))
    return plan


def make_shard(spec: tuple, seed: int, limit: int | None) -> dict:
    """Generate, self-check and encode one shard (pure). Items whose tokens do not decode back to
    their own factors are rejected (counted with the reason) rather than written."""
    split, shard, num, start, stop = spec
    index = split_indices(seed, limit)[split][start:stop]
    tokens, factors = generate_items(index)
    ok = (decode_factors(tokens) == factors).all(axis=1)
    rejected = int((~ok).sum())
    return {
        "split": split, "shard": shard, "num_shards": num, "items_in": int(len(index)),
        "rejected": {"factor_decode_mismatch": rejected} if rejected else {},
        "records": encode_examples(index[ok], tokens[ok], factors[ok]),
    }


def write_shard(shard: dict, out_dir: str) -> dict:
    """Write one shard file (the I/O edge); returns its manifest entry."""
    import hashlib

    from tfmusic.data.tfds_metadata import tfrecord_bytes

    name = shard_name(shard["split"], shard["shard"], shard["num_shards"])
    path = Path(out_dir) / name
    data = tfrecord_bytes(shard["records"])
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
    return {
        "file": name, "split": shard["split"], "shard": shard["shard"], "num_shards": shard["num_shards"],
        "items_in": shard["items_in"], "items_out": len(shard["records"]), "rejected": shard["rejected"],
        "num_bytes": len(data), "sha256": hashlib.sha256(data).hexdigest(),
    }


def _write_json(value, path: str) -> None:
    Path(path).write_text(json.dumps(value, indent=1, sort_keys=True))


def shard_name(split: str, shard: int, num_shards: int) -> str:
    from tfmusic.data.tfds_metadata import shard_filename

    return shard_filename(DATASET_NAME, split, shard, num_shards)


def _remove_stale_outputs(out_dir: Path) -> None:
    from tfmusic.data.tfds_metadata import shard_pattern

    pattern = shard_pattern(DATASET_NAME)
    for p in out_dir.iterdir():
        if pattern.match(p.name) or (p.name.startswith(f"{DATASET_NAME}-") and p.name.endswith(".tmp")) \
                or p.name in ("dataset_info.json", "features.json", "metadata.json", "vocabulary.json",
                              "_manifest.json"):
            p.unlink()


def _progress_thread(out_dir: Path, names: set[str], enabled: bool):
    """Poll for finished shard files so the single blocking Beam run still shows progress."""
    stop = threading.Event()
    if not enabled:
        return stop, None

    def poll():
        from tqdm import tqdm

        with tqdm(total=len(names), desc="dmelodies shards", unit="shard") as bar:
            done = 0
            while True:
                finished = stop.wait(0.5)
                now = sum(1 for n in names if (out_dir / n).exists())
                bar.update(now - done)
                done = now
                if finished:
                    break

    thread = threading.Thread(target=poll, daemon=True)
    thread.start()
    return stop, thread


def generate(
    out_dir: str | os.PathLike,
    *,
    seed: int = 0,
    num_shards: Mapping[str, int] | None = None,
    limit: int | None = None,
    beam_args: Sequence[str] = (),
    progress: bool | None = None,
    check_data: bool = True,
) -> dict:
    """Run the Beam job: TFRecord shards per split + ``dataset_info.json``/``features.json`` (TFDS),
    ``vocabulary.json`` and ``metadata.json`` in ``out_dir``. Returns the metadata dict.

    Previous dMelodies outputs in ``out_dir`` are replaced. Shard bytes depend only on
    (seed, num_shards, limit), so re-runs are byte-identical.
    """
    import sys

    started = time.time()
    import apache_beam as beam

    from tfmusic.beam_options import make_pipeline
    from tfmusic.data.tfds_metadata import write_tfds_metadata

    num_shards = dict(DEFAULT_NUM_SHARDS if num_shards is None else num_shards)
    if set(num_shards) != set(SPLITS):
        raise ValueError(f"num_shards must name exactly {SPLITS}, got {sorted(num_shards)}")
    limit = None if limit is None or limit == NUM_ITEMS else int(limit)
    orders = split_indices(seed, limit)  # validates limit
    expected = {s: int(len(v)) for s, v in orders.items()}
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise ValueError(f"{out_dir}: output path exists and is not a directory")
    out_dir.mkdir(parents=True, exist_ok=True)
    _remove_stale_outputs(out_dir)
    plan = plan_shards(seed, num_shards, limit)
    manifest_path = out_dir / "_manifest.json"
    if progress is None:
        progress = sys.stderr.isatty()

    pipeline_started = time.time()
    stop, thread = _progress_thread(out_dir, {shard_name(*spec[:3]) for spec in plan}, progress)
    try:
        with make_pipeline(beam_args) as p:
            _ = (p
                 | "Plan" >> beam.Create(plan, reshuffle=True)
                 | "Generate" >> beam.Map(make_shard, seed, limit)
                 | "Write" >> beam.Map(write_shard, str(out_dir))
                 | "Collect" >> beam.combiners.ToList()
                 | "Manifest" >> beam.Map(_write_json, str(manifest_path)))
    finally:
        stop.set()
        if thread is not None:
            thread.join()
    pipeline_seconds = time.time() - pipeline_started

    shards = sorted(json.loads(manifest_path.read_text()), key=lambda e: (SPLITS.index(e["split"]), e["shard"]))
    manifest_path.unlink()
    counts = {}
    for split in SPLITS:
        entries = [e for e in shards if e["split"] == split]
        rejected: dict[str, int] = {}
        for e in entries:
            for reason, c in e["rejected"].items():
                rejected[reason] = rejected.get(reason, 0) + c
        counts[split] = {
            "expected": expected[split],
            "in": sum(e["items_in"] for e in entries),
            "out": sum(e["items_out"] for e in entries),
            "rejected": rejected,
            "num_shards": len(entries),
        }
        c = counts[split]
        if c["in"] != c["expected"] or c["out"] + sum(rejected.values()) != c["in"] or rejected:
            raise RuntimeError(f"{out_dir}: split '{split}' counts do not add up: {c}")
    total = sum(c["out"] for c in counts.values())
    if total != (limit or NUM_ITEMS):
        raise RuntimeError(f"{out_dir}: wrote {total} items, expected {limit or NUM_ITEMS}")

    _write_json({"note2index": note_to_index(), "index2note": {str(k): v for k, v in index_to_note().items()}},
                str(out_dir / "vocabulary.json"))
    write_tfds_metadata(
        out_dir, dataset=DATASET_NAME, features=schema.DMELODIES_FEATURES, version=VERSION,
        shards={s: [(e["items_out"], e["num_bytes"]) for e in shards if e["split"] == s] for s in SPLITS},
        description="dMelodies: 2-bar melodies from 9 factors (Pati, Gururani, Lerch 2020), regenerated "
                    "in closed form by tfmusic. " + LOADER_ORDER_NOTE,
        homepage="https://github.com/ashispati/dmelodies_dataset",
        check_data=check_data,
    )
    metadata = {
        "dataset": DATASET_NAME,
        "version": VERSION,
        "seed": int(seed),
        "limit": limit,
        "num_items": total,
        "split_fractions": {"train": SPLIT_FRACTIONS[0], "validation": SPLIT_FRACTIONS[1],
                            "test": round(1 - sum(SPLIT_FRACTIONS), 10)},
        "counts": counts,
        "factor_names": list(FACTOR_NAMES),
        "factor_sizes": list(FACTOR_SIZES),
        "vocabulary_size": len(vocabulary()),
        "seq_len": SEQ_LEN,
        "ticks_per_beat": TICKS_PER_BEAT,
        "record_order": LOADER_ORDER_NOTE,
        "features": {k: {"shape": list(s), "dtype": d} for k, (s, d) in schema.DMELODIES_FEATURES.items()},
        "shards": shards,
        "pipeline_seconds": round(pipeline_seconds, 3),
        "generation_seconds": round(time.time() - started, 3),
        "generated_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "beam_args": list(beam_args),
    }
    _write_json(metadata, str(out_dir / "metadata.json"))
    return metadata


def read_metadata(data_dir: str | os.PathLike) -> dict:
    """``metadata.json`` of a generated dataset directory (clear error if missing or not dMelodies)."""
    path = Path(data_dir) / "metadata.json"
    if not path.is_file():
        raise FileNotFoundError(2, "no metadata.json (not a generated dMelodies directory)", str(path))
    try:
        meta = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON ({err})") from None
    if meta.get("dataset") != DATASET_NAME:
        raise ValueError(f"{path}: not a dMelodies metadata file (dataset={meta.get('dataset')!r})")
    return meta


# ---- reading ----------------------------------------------------------------------------------

def load(
    data_dir: str | os.PathLike,
    split: str,
    batch_size: int,
    *,
    shuffle: bool = False,
    seed: int | None = None,
    deterministic: bool = True,
    shuffle_buffer: int = 100_000,
    drop_remainder: bool = False,
    repeat: bool = False,
    with_index: bool = False,
):
    """``tf.data.Dataset`` of batched ``(tokens int32 (B,16), factors int32 (B,9))`` from generated shards.

    Without ``shuffle`` and with ``deterministic`` the shards are read in order, reproducing the
    reference loader's iteration for that split. ``shuffle`` adds a buffer shuffle (and shuffles
    shard order) seeded by ``seed``; ``deterministic=False`` reads shards in parallel and lets
    tf.data reorder for throughput. ``with_index`` appends the int64 dataset index ``(B,)``.
    """
    import tensorflow as tf

    from tfmusic.data.tfds_metadata import list_shards

    if split not in SPLITS:
        raise ValueError(f"unknown split '{split}'; expected one of {SPLITS}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    files = [str(p) for p in list_shards(data_dir, DATASET_NAME, split)]
    ds = tf.data.Dataset.from_tensor_slices(files)
    if shuffle:
        ds = ds.shuffle(len(files), seed=seed, reshuffle_each_iteration=True)
    if deterministic:
        ds = ds.interleave(tf.data.TFRecordDataset, cycle_length=1, num_parallel_calls=None)
    else:
        ds = ds.interleave(tf.data.TFRecordDataset, cycle_length=min(4, len(files)),
                           num_parallel_calls=tf.data.AUTOTUNE, deterministic=False)
    if shuffle:
        ds = ds.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
    if repeat:
        ds = ds.repeat()
    ds = ds.batch(batch_size, drop_remainder=drop_remainder)
    spec = schema.dmelodies_parse_spec()

    def parse(serialized):
        ex = tf.io.parse_example(serialized, spec)
        out = (tf.cast(ex["tokens"], tf.int32), tf.cast(ex["factors"], tf.int32))
        return out + (ex["index"],) if with_index else out

    ds = ds.map(parse, num_parallel_calls=tf.data.AUTOTUNE, deterministic=deterministic)
    options = tf.data.Options()
    options.deterministic = deterministic
    return ds.with_options(options).prefetch(tf.data.AUTOTUNE)


# ---- exports ----------------------------------------------------------------------------------

def export_npz(path: str | os.PathLike, *, compress: bool = False, limit: int | None = None) -> Path:
    """The reference ``.npz`` layout (product order): score_array, latent_array, note2index_dict,
    index2note_dict, latent_dicts, metadata. Load it with ``np.load(path, allow_pickle=True)``."""
    n = NUM_ITEMS if limit is None else int(limit)
    if not 1 <= n <= NUM_ITEMS:
        raise ValueError(f"limit must lie in 1..{NUM_ITEMS}, got {limit}")
    tokens, factors = generate_items(np.arange(n))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    metadata = {
        "title": "dMelodies dataset",
        "description": "dMelodies dataset: 2-bar monophonic melodies from 9 independent factors of variation "
                       "(regenerated in closed form by tfmusic).",
        "version": 1,
        "authors": "Ashis Pati, Siddharth Gururani, Alexander Lerch (dataset design); tfmusic (generator)",
        "creation_date": _dt.date.today().isoformat(),
        "latents_names": FACTOR_NAMES,
    }
    save = np.savez_compressed if compress else np.savez
    with open(path, "wb") as fh:
        save(fh, score_array=tokens.astype(np.int32), latent_array=factors.astype(np.int32),
             note2index_dict=note_to_index(), index2note_dict=index_to_note(),
             latent_dicts=latent_dicts(), metadata=metadata)
    return path


def read_items(data_dir: str | os.PathLike, indices: Iterable[int]) -> tuple[np.ndarray, np.ndarray]:
    """``(tokens (N,16), factors (N,9))`` of given dataset indices as stored in a generated directory.

    The split, shard and offset of each index follow from the metadata (seed, limit, shard counts),
    so only the prefix of one shard is read per item; the stored record must carry that index and
    match the closed-form generator, else the file is reported as corrupt.
    """
    import tensorflow as tf

    meta = read_metadata(data_dir)
    idx = _check_indices(list(indices))
    seed, limit = int(meta["seed"]), meta.get("limit")
    n = limit or NUM_ITEMS
    if idx.size and idx.max() >= n:
        raise ValueError(f"{data_dir}: index {int(idx.max())} not in this dataset (generated with limit {limit})")
    orders = split_indices(seed, limit)
    plan = plan_shards(seed, {s: meta["counts"][s]["num_shards"] for s in SPLITS}, limit)
    where = {}
    for split, order in orders.items():
        pos = np.full(n, -1, dtype=np.int64)
        pos[order] = np.arange(len(order))
        where[split] = pos
    spec = schema.dmelodies_parse_spec()
    tokens, factors = generate_items(idx)
    for i, index in enumerate(idx.tolist()):
        split = next(s for s in SPLITS if where[s][index] >= 0)
        pos = int(where[split][index])
        _, shard, num, start, _ = next(p for p in plan if p[0] == split and p[3] <= pos < p[4])
        path = Path(data_dir) / shard_name(split, shard, num)
        if not path.is_file():
            raise FileNotFoundError(2, "shard missing", str(path))
        rec = list(tf.data.TFRecordDataset(str(path)).skip(pos - start).take(1))
        if not rec:
            raise ValueError(f"{path}: shard is shorter than its metadata says (no record {pos - start})")
        ex = {k: v.numpy() for k, v in tf.io.parse_single_example(rec[0], spec).items()}
        if int(ex["index"]) != index or not (ex["tokens"] == tokens[i]).all() or not (ex["factors"] == factors[i]).all():
            raise ValueError(f"{path}: record {pos - start} should be item {index} but holds "
                             f"item {int(ex['index'])} with different content (corrupt or foreign file)")
        tokens[i], factors[i] = ex["tokens"], ex["factors"]
    return tokens, factors


def export_midi(indices: Iterable[int], out_dir: str | os.PathLike, *, png: bool = False,
                data_dir: str | os.PathLike | None = None) -> list[Path]:
    """MIDI + MusicXML per item (through music21) and optionally one PNG piano roll of all of them.
    With ``data_dir`` the items are read from a generated dataset instead of the closed form."""
    from tfmusic.music import render

    idx = _check_indices(list(indices))
    if idx.size == 0:
        raise ValueError("no indices given")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tokens, factors = read_items(data_dir, idx) if data_dir is not None else generate_items(idx)
    names = token_names(tokens)
    written: list[Path] = []
    titles = []
    for i, events, f in zip(idx.tolist(), names, factors):
        title = f"dMelodies {i}: {describe_factors(f)}"
        titles.append(title)
        score = render.events_to_score(events, ticks_per_beat=TICKS_PER_BEAT, title=title)
        stem = out_dir / f"dmelodies_{i:07d}"
        written.append(render.write_midi(score, stem.with_suffix(".mid")))
        written.append(render.write_musicxml(score, stem.with_suffix(".musicxml")))
    if png:
        written.append(render.plot_pianorolls(names, out_dir / "dmelodies_pianoroll.png",
                                              titles=titles, ticks_per_beat=TICKS_PER_BEAT))
    return written
