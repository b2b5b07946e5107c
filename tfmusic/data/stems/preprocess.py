"""Preprocessing of multitrack datasets into TFRecord segments: the ``PreprocessStems`` Beam job.

Each song is validated, labelled and segmented by :mod:`tfmusic.data.stems.songs`. Every reject is
one line of ``rejects.jsonl`` and the manifest counts add up: ``in = written + rejected`` for songs
and stems.

Input and output may be local or on any Beam filesystem (``gs://`` on Dataflow). How records move
(``PreprocessStems``): **workers write part files, not a GroupByKey of records.** A worker writes
each song's records as one TFRecord part file into the job's staging folder
(``OUT/.staging/RUN/parts/``, :func:`tfmusic.beam_io.staging_dir`); only the song's summary (a few
hundred bytes: counts, durations, the part's name and size) flows on. A GroupByKey by split of
those small summaries plans the shards (songs in song-id order, cut where the running size passes
multiples of the split's size / shard count, ~``SHARD_BYTES`` each: the same cut for any worker
count or completion order); one worker per shard concatenates its parts (TFRecord framing is per
record, so a concatenation is a valid file) into the staged shard under its TFDS name, and
:class:`tfmusic.beam_io.FinalizeFiles` renames all shards at once and deletes the staging folder,
parts included. The pipeline then writes ``rejects.jsonl`` and, last, ``manifest.json``.
Why not a GroupByKey of records: a 4-minute 5-stem song is ~250 MB of segments; a shuffle would
move (and, on Dataflow, bill) every byte once more and bring one split's records to one key,
whereas a part file is written once and read once, by the shard's worker, streaming. The driver
only lists the input tree and plans the splits; no record passes through it.

Outputs are a function of the input and the parameters: the manifest and rejects name files
relative to the input root (the manifest's ``input`` is the only field that says where the data
was), hold no wall times, and are written with sorted keys, so a local run and a ``gs://`` run of
the same dataset write the same bytes apart from ``input``.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import time
from collections import Counter
from dataclasses import asdict
from typing import Any, Iterable, Sequence

from tfmusic import beam_io, storage
from tfmusic.data import schema
from tfmusic.data.stems import activity, pitch, taxonomy
from tfmusic.beam_options import check_worker_path
from tfmusic.data.stems.layouts import read_tracks
from tfmusic.data.stems.track import Track, relative_path
from tfmusic.data.stems.songs import (  # noqa: F401  (PreprocessConfig, segment_offsets: re-exported for callers)
    DATASET_NAME, PARTS, REJECTS, SHARD_BYTES, PreprocessConfig, _reject, process_track, segment_offsets)
from tfmusic.data.stems.splits import DEFAULT_FRACTIONS, MANIFEST, SPLITS, assign_splits

log = logging.getLogger(__name__)


def _append_file(path: str, out) -> None:
    """Append the local file ``path`` to the open local file ``out``, in the kernel (copy_file_range)
    where the OS allows."""
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


COPY_CHUNK = 16 * 1024 * 1024


def concatenate(parts: Sequence[str], dest: str) -> int:
    """Write the files ``parts`` one after the other into ``dest``; returns the size in bytes.

    Local to local goes through the kernel; otherwise (object storage on either side) parts are
    streamed in 16 MiB chunks, never held whole in memory.
    """
    if storage.is_local(dest) and all(storage.is_local(p) for p in parts):
        storage.makedirs(os.path.dirname(os.path.abspath(dest)))
        with open(dest, "wb") as out:
            for path in parts:
                _append_file(path, out)
        return os.path.getsize(dest)
    size = 0
    with storage.open_write(dest) as out:
        for path in parts:
            with storage.open_read(path) as src:
                while chunk := src.read(COPY_CHUNK):
                    out.write(chunk)
                    size += len(chunk)
    return size


def plan_shards(split: str, parts: Iterable[tuple[str, str, int]]) -> list[dict]:
    """Cut one split's ``(song_id, part path, bytes)`` into TFDS-named shards.

    Songs are taken in song-id order and a new shard starts where the running size passes the next
    multiple of ``total / num_shards`` (``num_shards = ceil(total / SHARD_BYTES)``, at most one per
    song): the cut depends only on the songs and their sizes, never on worker count or timing.
    """
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
    return [{"split": split, "file": shard_filename(DATASET_NAME, split, i, num), "songs": [s for s, _, _ in group],
             "parts": [p for _, p, _ in group], "bytes": sum(b for _, _, b in group)}
            for i, group in enumerate(groups)]


def stage_shard(shard: dict, staging: str) -> dict:
    """Assemble one planned shard from its parts in the staging folder; returns its staged entry."""
    staged = storage.join(staging, shard["file"])
    size = concatenate(shard["parts"], staged)
    if size != shard["bytes"]:
        raise beam_io.CountsError(f"{shard['file']}: parts hold {shard['bytes']} bytes but {size} were copied")
    return {"file": shard["file"], "staged": staged, "num_bytes": size, "split": shard["split"],
            "songs": len(shard["songs"])}


def _failed_song(job: tuple[int, dict, str], err: Exception, root: str) -> dict:
    _, track_dict, split = job
    reason = f"{type(err).__name__}: {err}"
    stems_in = sum(len(v) for v in track_dict["stems"].values()) + len(track_dict["rejected_stems"])
    return {"song_id": track_dict["song_id"], "split": split, "layout": track_dict["layout"],
            "status": "rejected", "reason": reason, "stems_in": stems_in, "stems_written": 0,
            "stems_rejected": stems_in, "segments": 0, "unknown_labels": track_dict["unknown_labels"],
            "rejects": [_reject(relative_path(track_dict["path"], root), reason, track_dict["song_id"], "song")]}


def process_job(job: tuple[int, dict, str], config: PreprocessConfig, root: str, staging: str) -> dict:
    """Worker side of one song: its part goes to ``staging/parts/NNNNNN.tfrecord``; an unexpected
    failure rejects the song (the job goes on). The summary carries the track relative to ``root``."""
    index, track_dict, split = job
    part = storage.join(staging, PARTS, f"{index:06d}.tfrecord")
    try:
        result = process_track(track_dict, split, config, part, root=root)
    except Exception as err:  # reported in rejects.jsonl and the manifest
        log.exception("song %s failed", track_dict["song_id"])
        result = _failed_song(job, err, root)
    result["track"] = Track(**track_dict).relative_to(root)
    return result


def PreprocessStems(jobs: Sequence[tuple[int, dict, str]], out_dir: str, *, root: str,  # noqa: N802
                    config: PreprocessConfig = PreprocessConfig(), info: dict | None = None,
                    run_id: str | None = None, progress: bool = False):
    """PTransform (apply to the pipeline root): preprocess ``jobs`` = ``(index, track dict, split)``
    (tracks under ``root``) into ``out_dir``; its output is one element, the path of the finished
    ``manifest.json``. ``out_dir`` must be prepared (:func:`prepare`) by the driver first; ``info``
    holds the manifest's run parameters (layout, seed, fractions, ...)."""
    import apache_beam as beam

    from tfmusic.beam_options import progress_dofn

    jobs = list(jobs)
    staging = beam_io.staging_dir(out_dir, run_id or beam_io.new_run_id())
    info = dict(info or {})

    class _Preprocess(beam.PTransform):
        def expand(self, pipeline_root):
            summaries = (pipeline_root
                         | "Songs" >> beam.Create(jobs, reshuffle=True)
                         | "ProcessSongs" >> beam.ParDo(progress_dofn(
                             lambda job: process_job(job, config, root, staging), total=len(jobs),
                             desc="preprocess: songs", unit="song", enabled=progress)))
            staged = (summaries
                      | "Written" >> beam.Filter(lambda s: s["status"] == "written")
                      | "KeyBySplit" >> beam.Map(lambda s: (s["split"], (s["song_id"], s["part"], s["bytes"])))
                      | "GroupBySplit" >> beam.GroupByKey()
                      | "PlanShards" >> beam.FlatMapTuple(plan_shards)
                      | "SpreadShards" >> beam.Reshuffle()
                      | "StageShards" >> beam.Map(stage_shard, staging))
            everything = summaries | "AllSongs" >> beam.combiners.ToList()
            return (staged
                    | "Finalize" >> beam_io.FinalizeFiles(out_dir, staging)
                    | "WriteMetadata" >> beam.Map(write_metadata, beam.pvalue.AsSingleton(everything), out_dir,
                                                  config, len(jobs), info))

    return _Preprocess()


def write_metadata(shards: list[dict], summaries: list[dict], out_dir: str, config: PreprocessConfig,
                   songs_in: int, info: dict) -> str:
    """After finalization: ``rejects.jsonl``, then ``manifest.json`` (returns its path)."""
    if len(summaries) != songs_in:
        raise beam_io.CountsError(f"preprocess: {songs_in} songs in but {len(summaries)} summaries out")
    summaries = sorted(summaries, key=lambda s: s["song_id"])
    by_split: dict[str, list[dict]] = {}
    for entry in shards:
        by_split.setdefault(entry["split"], []).append(
            {"file": entry["file"], "songs": entry["songs"], "bytes": entry["num_bytes"]})
    manifest = build_manifest(summaries, by_split, config, **info)
    rejects = "".join(json.dumps(r, sort_keys=True) + "\n" for s in summaries for r in s.get("rejects", []))
    return beam_io.write_metadata(out_dir, {REJECTS: rejects, MANIFEST: beam_io.json_bytes(manifest)}, last=MANIFEST)


def prepare(out_dir: str | os.PathLike) -> str:
    """Check the output location and delete an older dataset there (metadata first)."""
    return beam_io.prepare_output(os.fspath(out_dir), metadata=(MANIFEST, REJECTS),
                                  data_patterns=[f"{DATASET_NAME}-*.tfrecord-*"])


def _input_root(input_dir: str | os.PathLike) -> str:
    """The dataset root as recorded in the manifest: absolute when local, as given when remote."""
    text = storage.check_path(input_dir, what="input")
    return os.path.abspath(text) if storage.is_local(text) else text.rstrip("/")


def preprocess(
    input_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    layout: str = "auto",
    seed: int = 0,
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
    config: PreprocessConfig = PreprocessConfig(),
    unknown_policy: str = "other",
    beam_args: Sequence[str] = (),
    progress: bool = True,
) -> dict:
    """Run the preprocessing Beam job; writes shards, ``rejects.jsonl`` and ``manifest.json``.

    Input and output may be local or on any Beam filesystem. Returns the manifest with this run's
    ``wall_seconds`` added (not written, so outputs stay reproducible); with ``--template_location``
    in ``beam_args`` only the Dataflow template is written and ``{"template_location", "out"}``
    is returned.
    """
    from tfmusic.beam_options import flag_value, run_pipeline
    from tfmusic.data.stems.splits import read_manifest

    start = time.time()
    root = _input_root(input_dir)
    out = storage.check_path(out_dir, what="output")
    check_worker_path(root, "--input", beam_args)
    check_worker_path(out, "--out", beam_args)
    tracks = read_tracks(root, layout, unknown_policy)
    if not tracks:
        raise ValueError(f"{root}: no tracks found (layout {layout})")
    detected = sorted({t.layout for t in tracks})
    fixed = {t.song_id: "test" for t in tracks if t.metadata.get("subset") == "test"}
    split_of = assign_splits([t.song_id for t in tracks], seed, fractions, fixed)
    jobs = [(i, t.to_dict(), split_of[t.song_id]) for i, t in enumerate(tracks)]
    info = {"input_dir": root, "layout": layout, "detected": detected, "seed": seed,
            "fractions": list(fractions), "unknown_policy": unknown_policy, "split_of": split_of}
    out = prepare(out)
    finished = run_pipeline(lambda p: p | "PreprocessStems" >> PreprocessStems(
        jobs, out, root=root, config=config, info=info, progress=progress), beam_args)
    if not finished:
        return {"template_location": flag_value(beam_args, "--template_location"), "out": out}
    manifest = read_manifest(out)
    manifest["wall_seconds"] = round(time.time() - start, 2)
    return manifest


def build_manifest(summaries: list[dict], shards: dict, config: PreprocessConfig, **info: Any) -> dict:
    """Counts and durations per split and instrument, the song -> split map, and the reject tally.

    ``summaries`` carry their track relative to the input root (``summary["track"]``); ``shards``
    maps split -> finalized shard entries in shard order.
    """
    split_of = info["split_of"]
    splits: dict[str, dict] = {}
    for split in SPLITS:
        rows = [s for s in summaries if s["split"] == split and s["status"] == "written"]
        entries = sorted(shards.get(split, []), key=lambda e: e["file"])
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
                         "bytes": sum(s["bytes"] for s in rows), "files": [sh["file"] for sh in entries],
                         "shards": entries, "instruments": insts}
    songs = {}
    for s in summaries:
        songs[s["song_id"]] = {"split": s["split"], "status": s["status"], "layout": s["layout"],
                               "segments": s.get("segments", 0), "seconds": round(s.get("seconds", 0.0), 3),
                               "instruments": sorted(s.get("instruments", {})),
                               "reason": s.get("reason"), "track": s["track"],
                               "source_sample_rate": s.get("source_rate"), "silent_stems": s.get("silent_stems", []),
                               "pitch_instruments": s.get("pitch_instruments", []),
                               "pitch_problem": s.get("pitch_problem")}
    reasons = Counter(r["reason"].split(" (")[0] for s in summaries for r in s.get("rejects", []))
    unknown = Counter(label for s in summaries for label in s.get("unknown_labels", []))
    written = [s for s in summaries if s["status"] == "written"]
    counts = {
        "songs": {"in": len(summaries), "written": len(written), "rejected": len(summaries) - len(written)},
        "stems": {"in": sum(s["stems_in"] for s in summaries),
                  "written": sum(s["stems_written"] for s in summaries),
                  "silent": sum(s.get("stems_silent", 0) for s in summaries),  # absent instruments, not errors
                  "rejected": sum(s["stems_rejected"] for s in summaries)},
        "segments": sum(s.get("segments", 0) for s in summaries),
        "pitch_labelled_songs": sum(bool(s.get("pitch_instruments")) for s in written),
        "reject_reasons": dict(sorted(reasons.items())),
    }
    for what in ("songs", "stems"):
        c = counts[what]
        beam_io.check_counts({"in": c["in"], "out": c["written"] + c.get("silent", 0), "rejected": c["rejected"]},
                             f"preprocess {what}")
    if sum(sh["bytes"] for entries in shards.values() for sh in entries) != sum(s["bytes"] for s in written):
        raise beam_io.CountsError(f"preprocess: the shards do not hold the {len(written)} written songs' bytes")
    return {
        "format": "tfmusic-stems", "version": schema.STEMS_SCHEMA_VERSION, "dataset": DATASET_NAME,
        "pitch": {"low_pitch": pitch.LOW_PITCH, "keys": pitch.NUM_KEYS, "packed_bytes_per_frame": pitch.PACKED_BYTES,
                  "frame_time": "centre of each center=False STFT frame"},
        "instruments": list(taxonomy.INSTRUMENTS), "config": asdict(config),
        "segment_samples": config.segment_samples, "segment_frames": config.segment_frames,
        "hop": activity.HOP, "n_fft": activity.WIN,
        "input": info["input_dir"], "layout": info["layout"], "detected_layouts": info["detected"],
        "seed": info["seed"], "split_fractions": list(info["fractions"]),
        "unknown_label_policy": info["unknown_policy"], "unknown_labels": dict(sorted(unknown.items())),
        "counts": counts, "splits": splits, "song_splits": dict(sorted(split_of.items())),
        "songs": songs, "rejects_file": REJECTS,
    }
