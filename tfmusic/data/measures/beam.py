"""The measures Beam job: :class:`BuildMeasures` and the :func:`build` driver.

Corpus files (music21 package data, one element each) -> extracted bars -> tune-level splits ->
training duplicates dropped from validation/test -> one TFRecord shard per split. Everything the
manifest reports travels through the pipeline: per-file counts and duplicate counts are combined
with ``CombineGlobally``, shard entries (records, tunes, bytes, sha256) come out of
:func:`tfmusic.beam_io.FinalizeFiles`, and the last step checks that the counts add up and writes
``vocabulary.json`` then ``manifest.json``. Shards are staged under ``OUT/.staging/RUN`` and renamed
into place only when all of them exist, so a killed run leaves no manifest; the output is the same
bytes on a local disk, on ``gs://`` and under any runner or worker count.
"""

from __future__ import annotations

import os
from collections import Counter
from typing import Sequence

from tfmusic import beam_io, storage
from tfmusic.data.measures.extract import DEFAULT_COLLECTIONS, extract_file, list_sources
from tfmusic.data.measures.records import (
    DUPLICATE_REASON,
    SPLITS,
    bar_example,
    file_stats,
    hold_out,
    keyed_bars,
)
from tfmusic.data.measures.vocab import DATASET_NAME, MANIFEST, VERSION, VOCABULARY_FILE, vocabulary_json
from tfmusic.data.tfds_metadata import shard_filename, tfrecord_bytes

SHARD_GLOB = f"{DATASET_NAME}-*.tfrecord-*"


def _merge(counters) -> Counter:
    total: Counter = Counter()
    for c in counters:
        total.update(c)
    return total


def _hold_out(item):
    """GroupByKey element (transposition class, bars) -> kept ``(split, row)`` + a tagged drop count."""
    import apache_beam as beam

    _, bars = item
    kept, dropped = hold_out(bars)
    for split, collection, tune_id, bar_index, grid in kept:
        yield split, ((tune_id, bar_index), collection, bar_example(collection, tune_id, bar_index, grid))
    if dropped:
        yield beam.pvalue.TaggedOutput("dropped", Counter({f"bars_rejected/{DUPLICATE_REASON}": dropped}))


def stage_split(item, staging: str) -> dict:
    """(split, rows) -> the split's single shard staged, sorted by (tune, bar); its entry with counts."""
    split, rows = item
    rows = sorted(r for r in rows if r is not None)
    entry = beam_io.stage_bytes(staging, shard_filename(DATASET_NAME, split, 0, 1),
                                tfrecord_bytes(rec for _, _, rec in rows))
    return {**entry, "split": split, "records": len(rows), "tunes": len({key[0] for key, _, _ in rows}),
            "collections": dict(sorted(Counter(c for _, c, _ in rows).items()))}


def manifest_of(entries: list[dict], stats: Counter, params: dict) -> dict:
    """The manifest from the finalized shard entries and the combined counts; raises CountsError
    when a bar went missing between extraction and the shards."""
    by_split = {e["split"]: e for e in entries}
    bars_out_by_collection: Counter = Counter()
    for e in entries:
        bars_out_by_collection.update(e["collections"])
    rejected = {k.split("/", 1)[1]: v for k, v in sorted(stats.items()) if k.startswith("bars_rejected/")}
    manifest = {
        "dataset": DATASET_NAME,
        "version": VERSION,
        **params,
        "files_in": stats.get("files_in", 0),
        "files_failed": stats.get("files_failed", 0),
        "file_errors": sorted(k.split("/", 1)[1] for k in stats if k.startswith("error/")),
        "tunes_in": stats.get("tunes_in", 0),
        "tunes_with_bars": sum(e["tunes"] for e in entries),
        "bars_in": stats.get("bars_in", 0),
        "bars_extracted": stats.get("bars_extracted", 0),
        "bars_out": sum(e["records"] for e in entries),
        "bars_rejected": rejected,
        "bars_out_by_collection": dict(sorted(bars_out_by_collection.items())),
        "splits": {s: by_split[s]["records"] for s in SPLITS},
        "split_tunes": {s: by_split[s]["tunes"] for s in SPLITS},
        "shards": {s: by_split[s]["file"] for s in SPLITS},
        "files": [{k: e[k] for k in ("file", "num_bytes", "sha256")} for e in entries],
    }
    beam_io.check_counts({"in": manifest["bars_in"], "out": manifest["bars_out"], "rejected": rejected},
                         f"{DATASET_NAME} bars")
    beam_io.check_counts({"in": manifest["bars_extracted"], "out": manifest["bars_out"],
                          "rejected": rejected.get(DUPLICATE_REASON, 0)}, f"{DATASET_NAME} held-out filter")
    return manifest


def write_manifest(entries: list[dict], stats: Counter, out_dir: str, params: dict) -> dict:
    manifest = manifest_of(entries, stats, params)
    beam_io.write_metadata(out_dir, {VOCABULARY_FILE: beam_io.json_bytes(vocabulary_json()),
                                     MANIFEST: beam_io.json_bytes(manifest)}, last=MANIFEST)
    return manifest


def BuildMeasures(out_dir: str, staging: str, *, collections: Sequence[str] = DEFAULT_COLLECTIONS,  # noqa: N802
                  max_files: int | None = None, seed: int = 0, cache_dir: str | None = None,
                  progress: bool = True):
    """PTransform on a pipeline root: builds the measures set into ``out_dir``.

    ``out_dir`` must have been prepared with :func:`prepare` (old outputs gone); ``staging`` is a
    fresh :func:`tfmusic.beam_io.staging_dir` under it. ``cache_dir`` (optional, any storage) keeps
    each file's extracted bars for later runs. Returns a PCollection with one element, the manifest.
    """
    import apache_beam as beam

    from tfmusic.beam_options import progress_dofn

    sources = list_sources(collections, max_files)
    params = {"collections": list(collections), "max_files": max_files, "seed": seed}

    def extract(source):
        return extract_file(*source, cache_dir)

    class _BuildMeasures(beam.PTransform):
        def expand(self, root):
            results = (root | "Sources" >> beam.Create(sources)
                       | "Reshuffle" >> beam.Reshuffle()
                       | "Extract" >> beam.ParDo(progress_dofn(extract, total=len(sources), desc="measures: files",
                                                               unit="file", enabled=progress)))
            held = (results
                    | "KeyByTransposition" >> beam.FlatMap(keyed_bars, seed)
                    | "GroupTranspositions" >> beam.GroupByKey()
                    | "HoldOut" >> beam.FlatMap(_hold_out).with_outputs("dropped", main="kept"))
            stats = ((results | "FileStats" >> beam.Map(file_stats), held.dropped)
                     | "AllStats" >> beam.Flatten()
                     | "SumStats" >> beam.CombineGlobally(_merge))
            split_names = root | "SplitNames" >> beam.Create([(s, None) for s in SPLITS])  # empty splits too
            finalized = ((held.kept, split_names)
                         | "BarsAndSplits" >> beam.Flatten()
                         | "GroupBySplit" >> beam.GroupByKey()
                         | "StageShards" >> beam.Map(stage_split, staging)
                         | "Finalize" >> beam_io.FinalizeFiles(out_dir, staging))
            return finalized | "WriteManifest" >> beam.Map(write_manifest, beam.pvalue.AsSingleton(stats),
                                                           out_dir, params)

    return _BuildMeasures("BuildMeasures")


def prepare(out_dir: str | os.PathLike) -> str:
    """Check the output path and delete a previous build's manifest, vocabulary and shards there."""
    return beam_io.prepare_output(os.fspath(out_dir), metadata=[MANIFEST, VOCABULARY_FILE], data_patterns=[SHARD_GLOB])


def build(
    out_dir: str | os.PathLike,
    *,
    collections: Sequence[str] = DEFAULT_COLLECTIONS,
    max_files: int | None = None,
    seed: int = 0,
    cache_dir: str | os.PathLike | None = None,
    beam_args: Sequence[str] = (),
    progress: bool = True,
) -> dict | None:
    """Run the measures Beam job into ``out_dir`` (local or any Beam filesystem); returns the manifest.

    ``cache_dir`` (default: none) keeps extracted bars per corpus file for re-runs. With Dataflow's
    ``--template_location`` or ``--dry_run`` only the job graph is written (nothing is built and
    ``out_dir`` is left as it is); then None is returned.
    """
    from apache_beam.options.pipeline_options import GoogleCloudOptions, TestOptions

    from tfmusic.beam_options import make_pipeline, pipeline_options
    from tfmusic.data.measures.loader import read_manifest

    if cache_dir is not None:
        cache_dir = storage.check_path(cache_dir, what="cache")
    out = storage.check_path(out_dir, what="output")
    staging = beam_io.staging_dir(out, beam_io.new_run_id())
    job = BuildMeasures(out, staging, collections=collections, max_files=max_files, seed=seed,
                        cache_dir=cache_dir, progress=progress)  # unknown collections fail here, before prepare
    options, _ = pipeline_options(beam_args)
    graph_only = bool(options.view_as(GoogleCloudOptions).template_location or options.view_as(TestOptions).dry_run)
    if not graph_only:
        prepare(out)
    with make_pipeline(beam_args) as p:
        _ = p | job
    return None if graph_only else read_manifest(out)
