"""Evaluation of IASS+pitch transcriptions with mir_eval (frame and note level).

The separated instrument's pitch probabilities become a piano roll and notes by the inference side
(:mod:`tfmusic.models.transcription`, what ``tfmusic separate --transcribe`` writes) and are scored
here against the MIDI file a synthesized song was rendered from. The streaming evaluation
(``pipeline.py`` / ``scoring.py``) can call :func:`score_song` per song and :func:`summarize` at the
end; :func:`pitch_curves` + :func:`score_curves` (or :func:`evaluate_songs`) is the stand-alone path
the pitch experiment uses, and :func:`score_transcription` scores any other transcriber's roll and
notes (basic-pitch in ``bench/experiment_pitch.py``) the same way.

Metrics: ``mir_eval.multipitch`` (frame level, pitches compared in Hz within half a semitone;
precision, recall, accuracy, and F-measure = 2PR / (P + R)) on the frame times, and
``mir_eval.transcription.precision_recall_f1_overlap`` with ``offset_ratio=None`` (note level,
onsets within 50 ms, offsets ignored). A song whose reference has no notes for the target is
reported but left out of the means (precision and recall are undefined there).
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from tfmusic.data.stems.pitch import LOW_PITCH, NUM_KEYS, Note, notes_to_roll
from tfmusic.models.transcription import PITCH_THRESHOLD, roll_to_notes, transcribe


def _freqs(roll_tk: np.ndarray) -> list[np.ndarray]:
    """Per frame, the Hz of its on keys (mir_eval's multipitch format)."""
    import mir_eval

    hz = mir_eval.util.midi_to_hz(np.arange(NUM_KEYS) + LOW_PITCH)
    return [hz[np.flatnonzero(row)] for row in roll_tk]


def multipitch_scores(ref_roll: np.ndarray, est_roll: np.ndarray, times: np.ndarray) -> dict[str, float]:
    """Frame-level mir_eval.multipitch scores of two ``(88, T)`` rolls on the same frame ``times``."""
    import mir_eval

    ref, est = np.asarray(ref_roll, bool), np.asarray(est_roll, bool)
    if ref.shape != est.shape or ref.shape[1] != len(times):
        raise ValueError(f"rolls {ref.shape} / {est.shape} and {len(times)} frame times do not line up")
    scores = mir_eval.multipitch.evaluate(np.asarray(times, float), _freqs(ref.T), np.asarray(times, float),
                                          _freqs(est.T))
    p, r = float(scores["Precision"]), float(scores["Recall"])
    return {"precision": p, "recall": r, "accuracy": float(scores["Accuracy"]),
            "f_measure": 2 * p * r / (p + r) if p + r > 0 else 0.0}


def note_scores(ref_notes: Sequence[Note], est_notes: Sequence[Note]) -> dict[str, float]:
    """Note-level onset P/R/F1 (mir_eval.transcription, offsets ignored)."""
    import mir_eval

    def arrays(notes):
        if not notes:
            return np.zeros((0, 2)), np.zeros(0)
        arr = np.asarray(notes, dtype=float)
        return arr[:, :2], mir_eval.util.midi_to_hz(arr[:, 2])

    (ri, rp), (ei, ep) = arrays(ref_notes), arrays(est_notes)
    if not len(ri) or not len(ei):
        return {"precision": 0.0, "recall": 0.0, "f_measure": 0.0}
    p, r, f, _ = mir_eval.transcription.precision_recall_f1_overlap(ri, rp, ei, ep, offset_ratio=None)
    return {"precision": float(p), "recall": float(r), "f_measure": float(f)}


def score_transcription(est_roll: np.ndarray, est_notes: Sequence[Note], reference_notes: Sequence[Note],
                        sample_rate: int, hop: int) -> dict[str, Any]:
    """Score any transcriber's ``(88, T)`` roll on our frames (``center=True``, frame ``t`` at
    ``t * hop / sample_rate``) and its notes against the notes the target stem was rendered from."""
    est_roll = np.asarray(est_roll, bool)
    frames = est_roll.shape[1]
    times = np.arange(frames) * hop / float(sample_rate)
    ref_roll = notes_to_roll(reference_notes, frames, sample_rate, hop=hop, center=True).T
    ref_in_range = [n for n in reference_notes if 0 <= n[2] - LOW_PITCH < NUM_KEYS]
    return {"frames": frames, "reference_notes": len(ref_in_range), "estimated_notes": len(est_notes),
            "reference_active_frames": int(ref_roll.any(axis=0).sum()),
            "multipitch": multipitch_scores(ref_roll, est_roll, times),
            "notes": note_scores(ref_in_range, est_notes)}


def score_song(pitch_probs: np.ndarray, reference_notes: Sequence[Note], sample_rate: int, hop: int,
               activity: np.ndarray | None = None, threshold: float = PITCH_THRESHOLD) -> dict[str, Any]:
    """Score one song's ``(88, T)`` pitch probabilities (``center=True`` frames) as ``tfmusic separate
    --transcribe`` turns them into a roll and notes."""
    est_roll = transcribe(np.asarray(pitch_probs), activity, threshold)
    return score_transcription(est_roll, roll_to_notes(est_roll, hop / float(sample_rate)), reference_notes,
                               sample_rate, hop)


def summarize(per_song: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """Means over songs whose reference has notes (module docstring)."""
    scored = [s for s in per_song.values() if s["reference_notes"] > 0]
    out: dict[str, Any] = {"songs": len(per_song), "songs_scored": len(scored)}
    for level, keys in (("multipitch", ("precision", "recall", "accuracy", "f_measure")),
                        ("notes", ("precision", "recall", "f_measure"))):
        out[level] = {k: float(np.mean([s[level][k] for s in scored])) if scored else float("nan") for k in keys}
    return out


def _target_stems(song_dir: str, target: str) -> tuple[str, dict, list[dict]]:
    """``(song name, METADATA, the stems whose instrument maps to target)`` of a synthesized song folder."""
    import yaml

    from tfmusic import storage
    from tfmusic.data.stems import taxonomy

    name = storage.basename(song_dir.rstrip("/"))
    meta = yaml.safe_load(storage.read_text(storage.join(song_dir, f"{name}_METADATA.yaml")))
    stems = [stem for stem in (meta.get("stems") or {}).values()
             if taxonomy.map_label(str(stem.get("instrument", "")), "other")[0] == target]
    return name, meta, stems


def song_reference_notes(song_dir: str, target: str) -> list[Note]:
    """The notes of every stem of ``target`` in a synthesized song folder (its MIDI + METADATA yaml)."""
    from tfmusic import storage
    from tfmusic.data.stems.pitch import read_midi_tracks, track_notes

    name, meta, stems = _target_stems(song_dir, target)
    midi_path = storage.join(song_dir, str(meta.get("midi_filename") or f"{name}.mid"))
    tracks = read_midi_tracks(storage.read_bytes(midi_path), midi_path)
    notes: list[Note] = []
    for stem in stems:
        if stem.get("midi_track") is not None:
            notes += track_notes(tracks, int(stem["midi_track"]), midi_path)
    return sorted(notes)


def song_target_audio(song_dir: str, target: str, sample_rate: int) -> np.ndarray | None:
    """The sum of a synthesized song's ``target`` stems ``(channels, samples)`` (the true stem a
    transcriber can be given as its upper reference), or None when the song has none."""
    from tfmusic import storage
    from tfmusic.audio.io import read_audio

    name, meta, stems = _target_stems(song_dir, target)
    folder = storage.join(song_dir, str(meta.get("stem_dir") or f"{name}_STEMS"))
    parts = [read_audio(storage.join(folder, str(stem["filename"])), sample_rate)[0] for stem in stems]
    return np.sum(parts, axis=0) if parts else None


def pitch_curves(model_paths: Sequence[str], song_dirs: Sequence[str], target: str, *, chunk_seconds: float = 20.0,
                 overlap_seconds: float = 1.5) -> dict[str, dict[str, Any]]:
    """Separate each synthesized song's mixture with the IASS+pitch model(s): per song, the target's
    ``pitch`` ``(88, T)`` and ``activity`` ``(T,)`` curves and the framing they are on."""
    from tfmusic import storage
    from tfmusic.audio.chunking import graph_chunk_fn, separate_waveform
    from tfmusic.audio.io import read_audio
    from tfmusic.models.separator import load_separator

    separator = load_separator(list(model_paths), targets=[target], stft_method="fft")
    chunk_fn = graph_chunk_fn(separator)
    key = f"{target}_pitch"
    curves: dict[str, dict[str, Any]] = {}
    for song_dir in song_dirs:
        name = storage.basename(song_dir.rstrip("/"))
        mixture, _ = read_audio(storage.join(song_dir, f"{name}_MIX.wav"), separator.sample_rate)
        out = separate_waveform(mixture, chunk_fn, settings=separator, chunk_seconds=chunk_seconds,
                                overlap_seconds=overlap_seconds)
        if key not in out:
            raise ValueError(f"{model_paths}: the model predicts no pitch for {target!r} (train iass_pitch)")
        curves[name] = {"song_dir": song_dir, "pitch": np.asarray(out[key]).reshape(NUM_KEYS, -1),
                        "activity": np.ravel(out[f"{target}_activity"]), "sample_rate": separator.sample_rate,
                        "hop": separator.hop_length}
    return curves


def score_curves(curves: Mapping[str, Mapping[str, Any]], target: str, *, threshold: float = PITCH_THRESHOLD,
                 gate_by_activity: bool = True) -> dict[str, Any]:
    """Score :func:`pitch_curves` against each song's MIDI; ``{"per_song": {...}, "summary": {...}}``."""
    per_song = {name: score_song(c["pitch"], song_reference_notes(c["song_dir"], target), c["sample_rate"], c["hop"],
                                 c["activity"] if gate_by_activity else None, threshold)
                for name, c in curves.items()}
    return {"target": target, "threshold": threshold, "gate_by_activity": gate_by_activity,
            "per_song": per_song, "summary": summarize(per_song)}


def evaluate_songs(model_paths: Sequence[str], song_dirs: Sequence[str], target: str, *,
                   threshold: float = PITCH_THRESHOLD, gate_by_activity: bool = True,
                   chunk_seconds: float = 20.0, overlap_seconds: float = 1.5) -> dict[str, Any]:
    """:func:`pitch_curves` then :func:`score_curves` (one gate; score the curves twice for both)."""
    curves = pitch_curves(model_paths, song_dirs, target, chunk_seconds=chunk_seconds, overlap_seconds=overlap_seconds)
    return score_curves(curves, target, threshold=threshold, gate_by_activity=gate_by_activity)
