"""Preprocessing of multitrack datasets into TFRecord segments (logic of beam_pipelines/preprocess_stems.py).

For every song: validate the files (readable, finite, same rate / channels / length, stems not
silent), resample to 44.1 kHz, compute MedleyDB activity confidences per instrument on the whole
song, cut fixed-length segments (offsets on the 1024-sample hop grid so labels stay aligned) and
write them as ``tf.train.Example`` records (``tfmusic.data.schema`` stems section).

Bad input is reported, never fatal: problems local to one stem (missing, unreadable, NaN/Inf,
silent, unknown label under the reject policy) reject that stem; problems of the mixture or
between files (rate, channel or length mismatch) reject the song. Every reject is one line of
``rejects.jsonl`` and the manifest counts add up: ``in = written + rejected`` for songs and stems.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import time
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from tfmusic.audio.io import DEFAULT_SAMPLE_RATE, AudioFileError, audio_info, read_audio, to_int16
from tfmusic.data.stems import activity, taxonomy
from tfmusic.data.stems.layouts import Track, assemble, read_tracks
from tfmusic.data.stems.splits import DEFAULT_FRACTIONS, MANIFEST, SPLITS, assign_splits

log = logging.getLogger(__name__)

DATASET_NAME = "stems"
REJECTS = "rejects.jsonl"
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


def process_track(track_dict: dict, split: str, config: PreprocessConfig, part_path: str) -> dict:
    """Validate, label and segment one song; records go to ``part_path``; returns the song summary.

    Pure apart from writing its own part file, so Beam may retry it.
    """
    from tfmusic.data import schema  # records are encoded without TensorFlow (schema.stems_example_bytes)
    from tfmusic.data.tfds_metadata import write_tfrecord

    track = Track(**track_dict)
    sid = track.song_id
    stem_files = [(inst, f) for inst in track.instruments for f in track.stems[inst]]
    stems_in = len(stem_files) + len(track.rejected_stems)
    stem_rejects = [_reject(r["file"], r["reason"], sid, "stem") for r in track.rejected_stems]
    summary: dict[str, Any] = {"song_id": sid, "split": split, "layout": track.layout, "stems_in": stems_in,
                               "unknown_labels": list(track.unknown_labels)}

    def reject_song(file: str, reason: str) -> dict:
        rejects = [_reject(file, reason, sid, "song")] + stem_rejects
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
            stem_rejects.append(_reject(f, err.problem, sid, "stem"))
    if not kept:
        return reject_song(track.path, "no usable stems")
    files = ([track.mixture] if track.mixture else []) + [f for _, f in kept]
    rates = {infos[f].sample_rate for f in files}
    if len(rates) > 1:
        detail = ", ".join(f"{Path(f).name}={infos[f].sample_rate} Hz" for f in files)
        return reject_song(track.path, f"sample rate mismatch ({detail})")
    channels = {infos[f].channels for f in files}
    if len(channels) > 1:
        detail = ", ".join(f"{Path(f).name}={infos[f].channels}ch" for f in files)
        return reject_song(track.path, f"channel count mismatch ({detail})")
    n_ch = channels.pop()
    if n_ch not in (1, 2):
        return reject_song(track.path, f"unsupported channel count {n_ch} (1 or 2 expected)")
    rate = rates.pop()
    lengths = [infos[f].frames for f in files]
    if (max(lengths) - min(lengths)) / rate > config.length_tolerance_seconds:
        detail = ", ".join(f"{Path(f).name}={infos[f].frames / rate:.3f}s" for f in files)
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
    stems_written = 0
    for inst, f in kept:
        try:
            audio = read_audio(f, config.sample_rate)[0]
        except AudioFileError as err:
            stem_rejects.append(_reject(f, err.problem, sid, "stem"))
            continue
        if _peak(audio) < SILENCE_PEAK:
            stem_rejects.append(_reject(f, f"silent stem (peak below {SILENCE_PEAK:g})", sid, "stem"))
            continue
        raw.setdefault(inst, []).append(audio)
        stems_written += 1
    if not raw:
        return reject_song(track.path, "no usable stems")
    mix, stems = assemble(raw, mix)
    samples = mix.shape[1]
    peak = max([_peak(mix)] + [_peak(a) for a in stems.values()])
    scale = 1.0
    if config.pcm_dtype == "int16" and peak >= 1.0:
        scale = 0.999 / peak  # keep int16 from clipping; the decoder divides it out
    conf = {inst: activity.song_confidence(a) for inst, a in stems.items()}
    seg, frames = config.segment_samples, config.segment_frames
    offsets = segment_offsets(samples, config)
    records = []
    inst_stats = {inst: {"seconds": samples / config.sample_rate,
                         "active_seconds": float(activity.binarize(c).sum()) * activity.HOP / config.sample_rate,
                         "segments": 0, "segments_active": 0} for inst, c in conf.items()}
    mix_pcm = _pcm(mix, config.pcm_dtype, scale)
    stem_pcm = {inst: _pcm(a, config.pcm_dtype, scale) for inst, a in stems.items()}
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
        records.append(schema.stems_example_bytes(scalars, _segment_bytes(mix_pcm, off, valid, seg), stem_bytes,
                                                  act_bytes, taxonomy.INSTRUMENTS))
    size = write_tfrecord(part_path, records)
    summary.update(status="written", rejects=stem_rejects, stems_written=stems_written,
                   stems_rejected=stems_in - stems_written, segments=len(records), bytes=size,
                   seconds=samples / config.sample_rate, source_rate=rate, channels=n_ch, scale=scale,
                   instruments=inst_stats, part=part_path)
    return summary


def _append_file(path: str, out) -> None:
    """Append ``path`` to the open file ``out``, in the kernel (copy_file_range) where the OS allows."""
    with open(path, "rb") as src:
        remaining = os.fstat(src.fileno()).st_size
        out.flush()
        try:
            while remaining > 0:
                copied = os.copy_file_range(src.fileno(), out.fileno(), remaining)
                if copied == 0:
                    break
                remaining -= copied
        except (AttributeError, OSError):  # no copy_file_range (other OS / file systems): plain copy
            pass
        if remaining > 0:
            out.seek(0, os.SEEK_END)
            src.seek(-remaining, os.SEEK_END)
            shutil.copyfileobj(src, out)


def _write_shards(split: str, parts: list[tuple[str, str, int]], out_dir: str) -> dict:
    """Concatenate per-song part files (TFRecord framing is per record) into the split's shards."""
    from tfmusic.data.tfds_metadata import shard_filename

    parts = sorted(parts)
    total = sum(size for _, _, size in parts)
    num = max(1, min(len(parts), math.ceil(total / SHARD_BYTES)))
    groups: list[list[tuple[str, str, int]]] = [[] for _ in range(num)]
    target = total / num
    acc, g = 0, 0
    for item in parts:
        if acc >= target * (g + 1) and g < num - 1:
            g += 1
        groups[g].append(item)
        acc += item[2]
    shards = []
    for i, group in enumerate(groups):
        name = shard_filename(DATASET_NAME, split, i, num)
        tmp = Path(out_dir) / (name + ".tmp")
        with open(tmp, "wb") as out:
            for _, path, _ in group:
                _append_file(path, out)
        tmp.replace(Path(out_dir) / name)
        shards.append({"file": name, "songs": len(group), "bytes": sum(s for _, _, s in group)})
    return {"split": split, "shards": shards}


def _remove_stale(out_dir: Path) -> None:
    for p in out_dir.glob(f"{DATASET_NAME}-*.tfrecord-*"):
        p.unlink()
    for name in (MANIFEST, REJECTS):
        if (out_dir / name).exists():
            (out_dir / name).unlink()
    shutil.rmtree(out_dir / ".parts", ignore_errors=True)


def preprocess(
    input_dir: str | Path,
    out_dir: str | Path,
    *,
    layout: str = "auto",
    seed: int = 0,
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
    config: PreprocessConfig = PreprocessConfig(),
    unknown_policy: str = "other",
    beam_args: Sequence[str] = (),
    progress: bool = True,
) -> dict:
    """Run the preprocessing Beam job; writes shards, ``manifest.json`` and ``rejects.jsonl``."""
    import apache_beam as beam

    from tfmusic.beam_options import make_pipeline, progress_dofn

    start = time.time()
    input_dir, out_dir = Path(input_dir), Path(out_dir)
    tracks = read_tracks(input_dir, layout, unknown_policy)
    if not tracks:
        raise ValueError(f"{input_dir}: no tracks found (layout {layout})")
    detected = sorted({t.layout for t in tracks})
    fixed = {t.song_id: "test" for t in tracks if t.metadata.get("subset") == "test"}
    split_of = assign_splits([t.song_id for t in tracks], seed, fractions, fixed)
    out_dir.mkdir(parents=True, exist_ok=True)
    _remove_stale(out_dir)
    parts_dir = out_dir / ".parts"
    parts_dir.mkdir()
    results_dir = parts_dir / "results"
    results_dir.mkdir()
    jobs = [(t.to_dict(), split_of[t.song_id], str(parts_dir / f"{i:06d}.tfrecord")) for i, t in enumerate(tracks)]

    def process_job(job):
        track_dict, split, part = job
        try:
            result = process_track(track_dict, split, config, part)
        except Exception as err:  # an unexpected failure rejects the song, the job goes on
            log.exception("song %s failed", track_dict["song_id"])
            result = {"song_id": track_dict["song_id"], "split": split, "layout": track_dict["layout"],
                      "status": "rejected", "reason": f"{type(err).__name__}: {err}",
                      "stems_in": sum(len(v) for v in track_dict["stems"].values()) + len(track_dict["rejected_stems"]),
                      "stems_written": 0, "segments": 0, "unknown_labels": track_dict["unknown_labels"],
                      "rejects": [_reject(track_dict["path"], f"{type(err).__name__}: {err}", track_dict["song_id"], "song")]}
            result["stems_rejected"] = result["stems_in"]
        name = Path(part).stem
        (results_dir / f"{name}.json").write_text(json.dumps(result))
        return result

    def write_shards(item):
        split, parts = item
        info = _write_shards(split, list(parts), str(out_dir))
        (results_dir / f"shards-{split}.json").write_text(json.dumps(info))

    with make_pipeline(beam_args) as p:
        results = (p | "Songs" >> beam.Create(jobs, reshuffle=True) | "Process" >> beam.ParDo(
            progress_dofn(process_job, total=len(jobs), desc="preprocess: songs", unit="song", enabled=progress)))
        (results
         | "Written" >> beam.Filter(lambda r: r["status"] == "written")
         | "KeyBySplit" >> beam.Map(lambda r: (r["split"], (r["song_id"], r["part"], r["bytes"])))
         | "GroupSplits" >> beam.GroupByKey()
         | "Shards" >> beam.Map(write_shards))

    summaries = [json.loads((results_dir / f"{Path(part).stem}.json").read_text()) for _, _, part in jobs]
    shards = {}
    for split in SPLITS:
        f = results_dir / f"shards-{split}.json"
        if f.is_file():
            shards[split] = json.loads(f.read_text())["shards"]
    shutil.rmtree(parts_dir)
    manifest = build_manifest(summaries, tracks, split_of, shards, config, input_dir=str(input_dir),
                              layout=layout, detected=detected, seed=seed, fractions=fractions,
                              unknown_policy=unknown_policy)
    with open(out_dir / REJECTS, "w") as fh:
        for s in summaries:
            for r in s.get("rejects", []):
                fh.write(json.dumps(r) + "\n")
    manifest["wall_seconds"] = round(time.time() - start, 2)
    (out_dir / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def build_manifest(summaries: list[dict], tracks: list[Track], split_of: dict[str, str], shards: dict,
                   config: PreprocessConfig, **info: Any) -> dict:
    """Counts and durations per split and instrument, the song -> split map, and the reject tally."""
    by_id = {t.song_id: t for t in tracks}
    splits: dict[str, dict] = {}
    for split in SPLITS:
        rows = [s for s in summaries if s["split"] == split and s["status"] == "written"]
        insts = {}
        for inst in taxonomy.INSTRUMENTS:
            have = [s["instruments"][inst] for s in rows if inst in s["instruments"]]
            insts[inst] = {"songs": len(have),
                           "seconds": round(sum(h["seconds"] for h in have), 3),
                           "active_seconds": round(sum(h["active_seconds"] for h in have), 3),
                           "segments": sum(h["segments"] for h in have),
                           "segments_active": sum(h["segments_active"] for h in have)}
        splits[split] = {"songs": len(rows), "segments": sum(s["segments"] for s in rows),
                         "seconds": round(sum(s["seconds"] for s in rows), 3),
                         "bytes": sum(s["bytes"] for s in rows),
                         "files": [sh["file"] for sh in shards.get(split, [])], "instruments": insts}
    songs = {}
    for s in summaries:
        songs[s["song_id"]] = {"split": s["split"], "status": s["status"], "layout": s["layout"],
                               "segments": s.get("segments", 0), "seconds": round(s.get("seconds", 0.0), 3),
                               "instruments": sorted(s.get("instruments", {})),
                               "reason": s.get("reason"), "track": by_id[s["song_id"]].to_dict()}
    reasons = Counter(r["reason"].split(" (")[0] for s in summaries for r in s.get("rejects", []))
    unknown = Counter(label for s in summaries for label in s.get("unknown_labels", []))
    written = [s for s in summaries if s["status"] == "written"]
    counts = {
        "songs": {"in": len(summaries), "written": len(written), "rejected": len(summaries) - len(written)},
        "stems": {"in": sum(s["stems_in"] for s in summaries),
                  "written": sum(s["stems_written"] for s in summaries),
                  "rejected": sum(s["stems_rejected"] for s in summaries)},
        "segments": sum(s.get("segments", 0) for s in summaries),
        "reject_reasons": dict(sorted(reasons.items())),
    }
    assert counts["songs"]["in"] == counts["songs"]["written"] + counts["songs"]["rejected"]
    assert counts["stems"]["in"] == counts["stems"]["written"] + counts["stems"]["rejected"]
    return {
        "format": "tfmusic-stems", "version": 1, "dataset": DATASET_NAME,
        "instruments": list(taxonomy.INSTRUMENTS), "config": asdict(config),
        "segment_samples": config.segment_samples, "segment_frames": config.segment_frames,
        "hop": activity.HOP, "n_fft": activity.WIN,
        "input": info["input_dir"], "layout": info["layout"], "detected_layouts": info["detected"],
        "seed": info["seed"], "split_fractions": list(info["fractions"]),
        "unknown_label_policy": info["unknown_policy"], "unknown_labels": dict(sorted(unknown.items())),
        "counts": counts, "splits": splits, "song_splits": dict(sorted(split_of.items())),
        "songs": songs, "rejects_file": REJECTS,
    }
