"""One song of a multitrack dataset -> validated, labelled, segmented TFRecord records.

For every song: validate the files (readable, finite, same rate / channels / length, stems not
silent), resample to the dataset rate, compute MedleyDB activity confidences per instrument on the
whole song, cut fixed-length segments (offsets on the STFT hop grid so labels stay aligned) and
encode them as ``tf.train.Example`` records (``tfmusic.data.schema`` stems section).

Bad input is reported, never fatal: problems local to one stem (missing, unreadable, NaN/Inf,
silent, unknown label under the reject policy) reject that stem; problems of the mixture or
between files (rate, channel or length mismatch) reject the song. The Beam job around this is
:mod:`tfmusic.data.stems.preprocess`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np

from tfmusic import storage
from tfmusic.audio.io import DEFAULT_SAMPLE_RATE, AudioFileError, audio_info, read_audio, to_int16
from tfmusic.data.stems import activity, pitch, taxonomy
from tfmusic.data.stems.track import Track, assemble, relative_path
from tfmusic.data.stems.splits import MANIFEST
from tfmusic.data.tfds_metadata import write_tfrecord

log = logging.getLogger(__name__)


DATASET_NAME = "stems"
REJECTS = "rejects.jsonl"
METADATA_FILES = (REJECTS, MANIFEST)  # the manifest last: a folder without it is not a dataset
PARTS = "parts"  # staging subfolder of the per-song part files
PCM_DTYPES = ("int16", "float32")
SILENCE_PEAK = 1e-5  # a stem whose peak is below this (-100 dBFS) is "silent"
SHARD_BYTES = 256 * 1024 * 1024  # target shard size


@dataclass(frozen=True)
class PreprocessConfig:
    sample_rate: int = DEFAULT_SAMPLE_RATE
    segment_seconds: float = 10.0
    pcm_dtype: str = "int16"
    length_tolerance_seconds: float = 0.01
    min_seconds: float = 1.0

    def __post_init__(self) -> None:
        if self.pcm_dtype not in PCM_DTYPES:
            raise ValueError(f"pcm dtype must be one of {PCM_DTYPES}, got {self.pcm_dtype!r}")
        if self.segment_samples < activity.WIN:
            raise ValueError(f"segment of {self.segment_seconds} s is shorter than one STFT frame")

    @property
    def segment_samples(self) -> int:
        return int(round(self.segment_seconds * self.sample_rate))

    @property
    def segment_frames(self) -> int:
        return activity.num_frames(self.segment_samples)

    @property
    def segment_stride(self) -> int:
        """Offsets step on the hop grid (<= segment length, so consecutive segments touch or overlap < 1 hop)."""
        return (self.segment_samples // activity.HOP) * activity.HOP


def segment_offsets(samples: int, config: PreprocessConfig) -> list[int]:
    """Segment start samples, all multiples of 1024 so stored label frames align with STFT frames.

    Segments step by ``segment_stride``; a leftover tail of at least a quarter segment gets one more
    segment ending at (or, by less than one hop, past) the song's end; shorter tails are dropped.
    A song shorter than one segment is one zero-padded segment.
    """
    seg, stride = config.segment_samples, config.segment_stride
    if samples <= seg:
        return [0]
    offsets = list(range(0, samples - seg + 1, stride))
    tail = samples - (offsets[-1] + seg)
    if tail >= seg // 4:
        last = -(-(samples - seg) // activity.HOP) * activity.HOP  # round up: the end is always covered
        offsets.append(last)
    return offsets


def _pcm(audio: np.ndarray, dtype: str, scale: float) -> np.ndarray:
    """The whole song as stored PCM (little-endian int16 or float32), converted once and sliced per segment."""
    scaled = audio * np.float32(scale) if scale != 1.0 else audio
    if dtype == "int16":
        return to_int16(scaled).astype("<i2", copy=False)
    return scaled.astype("<f4", copy=False)


def _segment_bytes(pcm: np.ndarray, off: int, valid: int, seg: int) -> bytes:
    """``pcm[:, off:off + seg]`` as bytes, zero-padded past the song's end."""
    piece = pcm[:, off:off + valid]
    if valid < seg:
        piece = np.pad(piece, ((0, 0), (0, seg - valid)))
    return piece.tobytes()


def _peak(audio: np.ndarray) -> float:
    """max |audio| without allocating ``abs(audio)``."""
    return max(float(audio.max()), -float(audio.min()))


def _reject(file: str, reason: str, song_id: str, kind: str) -> dict:
    return {"song_id": song_id, "kind": kind, "file": file, "reason": reason}


def process_track(track_dict: dict, split: str, config: PreprocessConfig, part_path: str,
                  root: str | None = None) -> dict:
    """Validate, label and segment one song; records go to ``part_path``; returns the song summary.

    Pure apart from writing its own part file, so Beam may retry it. Reject entries name files
    relative to ``root`` (the dataset root) when it is given.
    """
    from tfmusic.data import schema  # records are encoded without TensorFlow (schema.stems_example_bytes)

    track = Track(**track_dict)
    sid = track.song_id

    def rel(path: str) -> str:
        return relative_path(path, root) if root is not None else path

    def name(path: str) -> str:
        return storage.basename(path)

    stem_files = [(inst, f) for inst in track.instruments for f in track.stems[inst]]
    stems_in = len(stem_files) + len(track.rejected_stems)
    stem_rejects = [_reject(rel(r["file"]), r["reason"], sid, "stem") for r in track.rejected_stems]
    summary: dict[str, Any] = {"song_id": sid, "split": split, "layout": track.layout, "stems_in": stems_in,
                               "unknown_labels": list(track.unknown_labels)}

    def reject_song(file: str, reason: str) -> dict:
        rejects = [_reject(rel(file), reason, sid, "song")] + stem_rejects
        summary.update(status="rejected", reason=reason, rejects=rejects, stems_written=0,
                       stems_rejected=stems_in, segments=0)
        return summary

    if track.problems:
        return reject_song(track.path, "; ".join(track.problems))
    # Headers first: unreadable files, then rate / channel / length agreement.
    infos = {}
    if track.mixture:
        try:
            infos[track.mixture] = audio_info(track.mixture)
        except AudioFileError as err:
            return reject_song(track.mixture, f"mixture: {err.problem}")
    kept = []
    for inst, f in stem_files:
        try:
            infos[f] = audio_info(f)
            kept.append((inst, f))
        except AudioFileError as err:
            # The mixture still holds this instrument: no part of the song is safe to train or score on.
            return reject_song(f, f"unusable stem: {err.problem}")
    if not kept:
        return reject_song(track.path, "no usable stems")
    files = ([track.mixture] if track.mixture else []) + [f for _, f in kept]
    rates = {infos[f].sample_rate for f in files}
    if len(rates) > 1:
        detail = ", ".join(f"{name(f)}={infos[f].sample_rate} Hz" for f in files)
        return reject_song(track.path, f"sample rate mismatch ({detail})")
    channels = {infos[f].channels for f in files}
    if len(channels) > 1:
        detail = ", ".join(f"{name(f)}={infos[f].channels}ch" for f in files)
        return reject_song(track.path, f"channel count mismatch ({detail})")
    n_ch = channels.pop()
    if n_ch not in (1, 2):
        return reject_song(track.path, f"unsupported channel count {n_ch} (1 or 2 expected)")
    rate = rates.pop()
    lengths = [infos[f].frames for f in files]
    if (max(lengths) - min(lengths)) / rate > config.length_tolerance_seconds:
        detail = ", ".join(f"{name(f)}={infos[f].frames / rate:.3f}s" for f in files)
        return reject_song(track.path, f"length mismatch beyond {config.length_tolerance_seconds}s ({detail})")
    if max(lengths) / rate < config.min_seconds:
        return reject_song(track.path, f"shorter than {config.min_seconds}s ({max(lengths) / rate:.3f}s)")
    # Samples: NaN/Inf and silence, then resample.
    mix = None
    if track.mixture:
        try:
            mix = read_audio(track.mixture, config.sample_rate)[0]
        except AudioFileError as err:
            return reject_song(track.mixture, f"mixture: {err.problem}")
    raw: dict[str, list[np.ndarray]] = {}
    used: dict[str, list[str]] = {}  # instrument -> stem files written (their MIDI tracks label its pitch)
    stems_written, silent = 0, []
    for inst, f in kept:
        try:
            audio = read_audio(f, config.sample_rate)[0]
        except AudioFileError as err:  # NaN/Inf, truncated data: the mixture still holds it -> whole song
            return reject_song(f, f"unusable stem: {err.problem}")
        if _peak(audio) < SILENCE_PEAK:  # e.g. an instrumental's vocals.wav: the instrument is absent
            silent.append(rel(f))
            continue
        raw.setdefault(inst, []).append(audio)
        used.setdefault(inst, []).append(f)
        stems_written += 1
    if not raw:
        return reject_song(track.path, "no usable stems (every stem is silent)")
    mix, stems = assemble(raw, mix)
    samples = mix.shape[1]
    peak = max([_peak(mix)] + [_peak(a) for a in stems.values()])
    scale = 1.0
    if config.pcm_dtype == "int16" and peak >= 1.0:
        scale = 0.999 / peak  # keep int16 from clipping; the decoder divides it out
    conf = {inst: activity.song_confidence(a) for inst, a in stems.items()}
    seg, frames = config.segment_samples, config.segment_frames
    rolls, pitch_problem = _pitch_rolls(track, used, activity.num_frames(samples), config.sample_rate, rel)
    offsets = segment_offsets(samples, config)
    inst_stats = {inst: {"seconds": samples / config.sample_rate,
                         "active_seconds": float(activity.binarize(c).sum()) * activity.HOP / config.sample_rate,
                         "segments": 0, "segments_active": 0} for inst, c in conf.items()}
    mix_pcm = _pcm(mix, config.pcm_dtype, scale)
    stem_pcm = {inst: _pcm(a, config.pcm_dtype, scale) for inst, a in stems.items()}

    def records():
        """One record at a time, so a long song never holds all its segments in memory."""
        for k, off in enumerate(offsets):
            valid = min(seg, samples - off)
            stem_bytes, act_bytes = {}, {}
            for inst, a in stems.items():
                c = activity.fit_frames(conf[inst][off // activity.HOP:], frames)
                silent = not np.any(a[:, off:off + valid])  # all-zero input segment -> empty bytes (absent)
                stem_bytes[inst] = b"" if silent else _segment_bytes(stem_pcm[inst], off, valid, seg)
                act_bytes[inst] = c.astype("<f4").tobytes()
                inst_stats[inst]["segments"] += 1
                inst_stats[inst]["segments_active"] += int(bool(np.any(c >= activity.THRESHOLD)))
            scalars = {"song_id": sid, "segment_index": k, "offset": off, "num_samples": seg, "valid_samples": valid,
                       "sample_rate": config.sample_rate, "channels": n_ch, "frames": frames,
                       "pcm_dtype": config.pcm_dtype, "scale": scale}
            # Encoded on the wire directly: byte-identical to the tf.train.Example proto serialized with
            # sorted map keys (same bytes on any worker), and no TensorFlow import in Beam workers.
            pitch_bytes = None if rolls is None else {
                inst: pitch.pack(pitch.segment_roll(r, off // activity.HOP, frames)) for inst, r in rolls.items()}
            yield schema.stems_example_bytes(scalars, _segment_bytes(mix_pcm, off, valid, seg), stem_bytes,
                                             act_bytes, taxonomy.INSTRUMENTS, pitch=pitch_bytes)

    size = write_tfrecord(part_path, records(), atomic=False)  # parts live in staging
    summary.update(status="written", rejects=stem_rejects, stems_written=stems_written, stems_silent=len(silent),
                   silent_stems=silent, stems_rejected=stems_in - stems_written - len(silent),
                   segments=len(offsets), bytes=size,
                   seconds=samples / config.sample_rate, source_rate=rate, channels=n_ch, scale=scale,
                   instruments=inst_stats, part=part_path,
                   pitch_instruments=sorted(rolls) if rolls is not None else [], pitch_problem=pitch_problem)
    return summary


def _pitch_rolls(track: Track, used: dict[str, list[str]], frames: int, sample_rate: int,
                 rel) -> tuple[dict[str, np.ndarray] | None, str | None]:
    """Whole-song pitch rolls from the track's MIDI file, or ``(None, reason)`` (no labels: masked).

    Only songs whose metadata names a MIDI file (synthesized ones) get labels; a broken MIDI file
    costs the song its pitch labels, not its audio (the reason goes into the manifest).
    """
    name = track.metadata.get("midi_file")
    if not name:
        return None, None
    path = storage.join(track.path, *str(name).split("/"))
    stem_tracks = {inst: [track.metadata.get("midi_tracks", {}).get(storage.basename(f)) for f in files]
                   for inst, files in used.items()}
    try:
        return pitch.song_rolls(storage.read_bytes(path), stem_tracks, frames, sample_rate, what=rel(path)), None
    except (OSError, pitch.MidiLabelError) as err:
        log.warning("%s: no pitch labels (%s)", track.song_id, err)
        return None, str(err)
