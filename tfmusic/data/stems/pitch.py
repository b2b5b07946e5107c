"""Frame-level multi-pitch labels (88 piano keys, A0..C8) from the MIDI file a song was rendered from.

Why: synthesized songs (:mod:`tfmusic.data.synth`) are rendered from MIDI, so which keys sound in
which STFT frame of each stem is known exactly; the IASS+pitch variant
(:mod:`tfmusic.models.iass_pitch`) learns from these labels next to the activity labels.

Frames are the activity labels' frames (``center=False``: frame ``f`` covers samples
``[f*hop, f*hop + n_fft)``). Key ``k`` (MIDI pitch ``21 + k``) is on in frame ``f`` when a note
of that pitch sounds at the frame's centre: ``start <= c_f < end`` with ``c_f = f*hop + n_fft/2``
samples (``center=True`` frames, as the Separator's, have ``c_f = f*hop``). Records store a
segment's roll as ``np.packbits`` over keys: ``(frames, 11)`` uint8, big-endian bit order.
Drums have no pitch labels; songs without a MIDI file have none at all (masked in the loss).
"""

from __future__ import annotations

import io
from typing import Iterable, Mapping, Sequence

import numpy as np

from tfmusic.audio.settings import HOP_LENGTH, N_FFT
from tfmusic.data.stems import taxonomy

LOW_PITCH = 21  # A0
NUM_KEYS = 88  # A0..C8
PACKED_BYTES = NUM_KEYS // 8  # 11 bytes per frame
PITCHED = tuple(inst for inst in taxonomy.INSTRUMENTS if inst != taxonomy.DRUMS)

Note = tuple[float, float, int]  # (start s, end s, MIDI pitch)


class MidiLabelError(ValueError):
    """A song's MIDI file cannot give pitch labels (unreadable, or tracks do not match the stems)."""


def read_midi_tracks(data: bytes, what: str = "MIDI file") -> list[tuple[str, bool, list[Note]]]:
    """``[(name, is_drum, notes)]`` per pretty_midi instrument, in file order (the METADATA ``midi_track``)."""
    import pretty_midi

    try:
        pm = pretty_midi.PrettyMIDI(io.BytesIO(data))
    except Exception as err:  # mido / pretty_midi raise many types for a bad file
        raise MidiLabelError(f"{what}: unreadable MIDI ({type(err).__name__}: {err})") from None
    return [(inst.name, bool(inst.is_drum), [(float(n.start), float(n.end), int(n.pitch)) for n in inst.notes])
            for inst in pm.instruments]


def track_notes(tracks: Sequence[tuple[str, bool, list[Note]]], index: int, what: str = "MIDI file") -> list[Note]:
    """Notes of ``midi_track`` ``index``; a ``STEM_NN`` track name, when present, must agree with it."""
    if not 0 <= index < len(tracks):
        raise MidiLabelError(f"{what}: no track {index} (the file has {len(tracks)})")
    name = tracks[index][0]
    if name.startswith("STEM_") and name[5:7].isdigit() and int(name[5:7]) != index + 1:
        raise MidiLabelError(f"{what}: track {index} is named {name!r}, expected STEM_{index + 1:02d}")
    return tracks[index][2]


def frame_centres(frames: int, sample_rate: int, hop: int = HOP_LENGTH, n_fft: int = N_FFT,
                  center: bool = False) -> np.ndarray:
    """Frame centres in seconds (``center=False``: activity-label frames; ``True``: Separator frames)."""
    offset = 0 if center else n_fft // 2
    return (np.arange(frames, dtype=np.float64) * hop + offset) / float(sample_rate)


def notes_to_roll(notes: Iterable[Note], frames: int, sample_rate: int, hop: int = HOP_LENGTH,
                  n_fft: int = N_FFT, center: bool = False) -> np.ndarray:
    """``(frames, 88)`` bool: key on where a note sounds at the frame centre (module docstring)."""
    roll = np.zeros((frames, NUM_KEYS), dtype=bool)
    offset = 0 if center else n_fft // 2
    for start, end, pitch in notes:
        key = int(pitch) - LOW_PITCH
        if not 0 <= key < NUM_KEYS:
            continue  # outside the piano range: no label (none of the synth's parts go there)
        lo = int(np.ceil((start * sample_rate - offset) / hop))  # first f with c_f >= start
        hi = int(np.ceil((end * sample_rate - offset) / hop))  # first f with c_f >= end
        lo, hi = max(lo, 0), min(hi, frames)
        if hi > lo:
            roll[lo:hi, key] = True
    return roll


def song_rolls(midi: bytes, stem_tracks: Mapping[str, Sequence[int | None]], frames: int, sample_rate: int,
               what: str = "MIDI file") -> dict[str, np.ndarray]:
    """Per pitched taxonomy instrument, the union roll of its stems' MIDI tracks over ``frames``.

    ``stem_tracks`` maps instrument -> the ``midi_track`` of each stem written for it (``None``
    when a stem has none: that instrument gets no labels). Pitched instruments without stems get an
    all-zero roll (known silent); drums never get one.
    """
    tracks = read_midi_tracks(midi, what)
    rolls = {}
    for inst in PITCHED:
        indices = list(stem_tracks.get(inst, []))
        if any(i is None for i in indices):
            continue
        notes = [n for i in indices for n in track_notes(tracks, int(i), what)]
        rolls[inst] = notes_to_roll(notes, frames, sample_rate)
    return rolls


def segment_roll(roll: np.ndarray, first_frame: int, frames: int) -> np.ndarray:
    """``roll[first_frame:first_frame + frames]``, zero-padded past the song's end."""
    piece = roll[first_frame:first_frame + frames]
    if len(piece) < frames:
        piece = np.concatenate([piece, np.zeros((frames - len(piece), NUM_KEYS), dtype=bool)])
    return piece


def pack(roll: np.ndarray) -> bytes:
    """``(frames, 88)`` bool -> ``frames * 11`` bytes (what records store)."""
    roll = np.asarray(roll, dtype=bool)
    if roll.ndim != 2 or roll.shape[1] != NUM_KEYS:
        raise ValueError(f"expected a (frames, {NUM_KEYS}) roll, got {roll.shape}")
    return np.packbits(roll, axis=1).tobytes()


def unpack(data: bytes, frames: int) -> np.ndarray:
    """Inverse of :func:`pack`."""
    packed = np.frombuffer(data, dtype=np.uint8).reshape(frames, PACKED_BYTES)
    return np.unpackbits(packed, axis=1).astype(bool)


def tf_unpack(raw, frames: int):
    """TensorFlow :func:`unpack` of a scalar string tensor -> ``((frames, 88) float32, known)``.

    Empty bytes (no labels: real datasets, drums, records older than schema version 2) give zeros
    and ``known = 0.0`` so the loss masks them out.
    """
    import tensorflow as tf

    def decode():
        packed = tf.reshape(tf.io.decode_raw(raw, tf.uint8), [frames, PACKED_BYTES, 1])
        shifts = tf.constant([7, 6, 5, 4, 3, 2, 1, 0], tf.uint8)
        bits = tf.bitwise.bitwise_and(tf.bitwise.right_shift(packed, shifts), tf.constant(1, tf.uint8))
        return tf.cast(tf.reshape(bits, [frames, NUM_KEYS]), tf.float32)

    known = tf.strings.length(raw) > 0
    roll = tf.cond(known, decode, lambda: tf.zeros([frames, NUM_KEYS], tf.float32))
    return tf.reshape(roll, [frames, NUM_KEYS]), tf.cast(known, tf.float32)
