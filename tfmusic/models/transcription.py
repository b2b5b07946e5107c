"""Transcription inference: an IASS+pitch model's pitch probabilities -> piano roll, notes, MIDI files.

The separated instrument's pitch probabilities (Separator output ``<target>_pitch``, ``(88, frames)``
over ``center=True`` frames) become a piano roll, notes and a MIDI file: what ``tfmusic separate
--transcribe`` writes beside the stems. Scoring them against reference notes is evaluation
(:mod:`tfmusic.evaluation.transcription`), which uses these same functions.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Iterable, Mapping

import numpy as np

from tfmusic.data.stems.pitch import LOW_PITCH, NUM_KEYS, Note

__all__ = ["MIN_NOTE_FRAMES", "PITCH_THRESHOLD", "notes_to_midi", "roll_to_notes", "transcribe",
           "write_transcriptions"]

PITCH_THRESHOLD = 0.5
MIN_NOTE_FRAMES = 2  # shorter runs are dropped when rolls become notes (single-frame flicker)


def transcribe(pitch_probs: np.ndarray, activity: np.ndarray | None = None, threshold: float = PITCH_THRESHOLD,
               activity_threshold: float = 0.5) -> np.ndarray:
    """``(88, T)`` probabilities -> ``(88, T)`` bool roll; with ``activity`` ``(T,)``, frames the
    model calls inactive are cleared (the same gate the mask gets)."""
    probs = np.asarray(pitch_probs, dtype=np.float32)
    if probs.ndim != 2 or probs.shape[0] != NUM_KEYS:
        raise ValueError(f"expected pitch probabilities shaped ({NUM_KEYS}, frames), got {probs.shape}")
    roll = probs >= threshold
    if activity is not None:
        act = np.ravel(activity)[: roll.shape[1]] >= activity_threshold
        roll[:, : act.size] &= act[None, :]
    return roll


def roll_to_notes(roll: np.ndarray, frame_seconds: float, first_frame_seconds: float = 0.0,
                  min_frames: int = MIN_NOTE_FRAMES) -> list[Note]:
    """Runs of on-frames per key -> ``(start, end, midi pitch)``; frame ``t`` sits at
    ``first_frame_seconds + t * frame_seconds`` and a run ends one frame after its last frame."""
    roll = np.asarray(roll, dtype=bool)
    notes: list[Note] = []
    padded = np.pad(roll, ((0, 0), (1, 1)))
    edges = np.diff(padded.astype(np.int8), axis=1)
    for key in range(roll.shape[0]):
        starts = np.flatnonzero(edges[key] == 1)
        ends = np.flatnonzero(edges[key] == -1)
        for a, b in zip(starts, ends):
            if b - a >= min_frames:
                notes.append((first_frame_seconds + a * frame_seconds, first_frame_seconds + b * frame_seconds,
                              LOW_PITCH + key))
    return sorted(notes)


def notes_to_midi(notes: Iterable[Note], program: int = 0, name: str = "", velocity: int = 80) -> bytes:
    """A one-track MIDI file (pretty_midi) of ``notes``."""
    import pretty_midi

    pm = pretty_midi.PrettyMIDI()
    inst = pretty_midi.Instrument(program=int(program), name=name)
    inst.notes = [pretty_midi.Note(velocity=velocity, pitch=int(p), start=float(s), end=float(e)) for s, e, p in notes]
    pm.instruments.append(inst)
    buf = io.BytesIO()
    pm.write(buf)
    return buf.getvalue()


def write_transcriptions(folder: str | Path, curves: Mapping[str, np.ndarray], sample_rate: int, hop: int,
                         threshold: float = PITCH_THRESHOLD, gate_by_activity: bool = True) -> list[Path]:
    """For every ``<target>_pitch`` curve of a separated song: ``<target>.pianoroll.npy`` (``(88, frames)``
    bool, A0 first, frame ``t`` at ``t * hop / sample_rate`` s) and ``<target>.mid``. Returns the paths."""
    folder = Path(folder)
    written = []
    for key, probs in sorted(curves.items()):
        if not key.endswith("_pitch"):
            continue
        target = key[: -len("_pitch")]
        activity = curves.get(f"{target}_activity") if gate_by_activity else None
        roll = transcribe(np.asarray(probs).reshape(NUM_KEYS, -1), activity, threshold)
        np.save(folder / f"{target}.pianoroll.npy", roll)
        (folder / f"{target}.mid").write_bytes(notes_to_midi(roll_to_notes(roll, hop / float(sample_rate)),
                                                             name=target))
        written += [folder / f"{target}.pianoroll.npy", folder / f"{target}.mid"]
    return written
