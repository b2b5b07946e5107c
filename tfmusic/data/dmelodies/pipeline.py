"""The dMelodies Beam job: TFDS-loadable TFRecord shards per split, on any Beam filesystem.

Each split is stored in the reference loader's shuffled order and cut into contiguous shards, so
reading a split's shards in order reproduces the reference iteration. A shard is a pure function
of (seed, limit, shard plan): workers generate, self-check and encode it
(:func:`make_shard`), stage it, and :class:`GenerateDMelodies` finalizes all shards together and
writes the metadata from the finalized entries (see :mod:`tfmusic.beam_io`). Output bytes depend
only on the parameters, so a re-run, a run on ``gs://`` and a run after a kill are identical.
"""

from __future__ import annotations

import os
import time
from typing import Mapping, Sequence

from tfmusic import beam_io, storage
from tfmusic.data import schema
from tfmusic.data.dmelodies.factors import (DATASET_NAME, FACTOR_NAMES, FACTOR_SIZES, NUM_ITEMS, SEQ_LEN,
                                           TICKS_PER_BEAT, VERSION, decode_factors, generate_items,
                                           index_to_note, note_to_index, vocabulary)
from tfmusic.data.dmelodies.layout import DEFAULT_NUM_SHARDS, METADATA, plan_shards, shard_name
from tfmusic.data.dmelodies.splits import SPLIT_FRACTIONS, SPLITS, split_indices

METADATA_FILES = ("dataset_info.json", "features.json", "vocabulary.json", METADATA)
LOADER_ORDER_NOTE = ("Records of each split are stored in the reference loader's shuffled order "
                     "(np.random.seed(seed); in-place row shuffle; 70/20/10), cut into contiguous "
                     "shards: reading shards 00000.. in order reproduces the reference iteration.")


def make_shard(spec: tuple, seed: int, limit: int | None) -> dict:
    """Generate, self-check and encode one shard (pure). Items whose tokens do not decode back to
    their own factors are rejected (counted with the reason) rather than written."""
    from tfmusic.data.tfds_metadata import tfrecord_bytes

    split, shard, num, start, stop = spec
    index = split_indices(seed, limit)[split][start:stop]
    tokens, factors = generate_items(index)
    ok = (decode_factors(tokens) == factors).all(axis=1)
    rejected = int((~ok).sum())
    records = schema.dmelodies_examples_bytes(index[ok], tokens[ok], factors[ok])
    return {"split": split, "shard": shard, "num_shards": num, "items_in": int(len(index)),
            "items_out": len(records), "rejected": {"factor_decode_mismatch": rejected} if rejected else {},
            "data": tfrecord_bytes(records)}


def stage_shard(shard: dict, staging: str) -> dict:
    """Write one shard into the staging folder (the I/O edge); returns its manifest entry."""
    entry = beam_io.stage_bytes(staging, shard_name(shard["split"], shard["shard"], shard["num_shards"]),
                                shard["data"])
    entry.update({k: v for k, v in shard.items() if k != "data"})
    return entry


def split_counts(shards: Sequence[dict], limit: int | None, seed: int) -> dict:
    """Per-split ``{expected, in, out, rejected, num_shards}``; raises CountsError if they do not add up."""
    orders = split_indices(seed, limit)
    counts = {}
    for split in SPLITS:
        entries = [e for e in shards if e["split"] == split]
        rejected: dict[str, int] = {}
        for e in entries:
            for reason, c in e["rejected"].items():
                rejected[reason] = rejected.get(reason, 0) + c
        counts[split] = {"expected": int(len(orders[split])), "in": sum(e["items_in"] for e in entries),
                         "out": sum(e["items_out"] for e in entries), "rejected": rejected,
                         "num_shards": len(entries)}
        beam_io.check_counts(counts[split], f"dmelodies split '{split}'")
        if counts[split]["in"] != counts[split]["expected"]:
            raise beam_io.CountsError(f"dmelodies split '{split}': {counts[split]['in']} items generated, "
                                      f"{counts[split]['expected']} expected")
    return counts


def metadata_files(shards: Sequence[dict], *, seed: int, limit: int | None) -> dict[str, bytes]:
    """Every metadata file of a finished dataset, from the finalized shard entries (pure)."""
    from tfmusic.data.tfds_metadata import tfds_metadata_files

    shards = sorted(shards, key=lambda e: (SPLITS.index(e["split"]), e["shard"]))
    counts = split_counts(shards, limit, seed)
    total = sum(c["out"] for c in counts.values())
    files = tfds_metadata_files(
        dataset=DATASET_NAME, features=schema.DMELODIES_FEATURES, version=VERSION,
        shards={s: [(e["items_out"], e["num_bytes"]) for e in shards if e["split"] == s] for s in SPLITS},
        description="dMelodies: 2-bar melodies from 9 factors (Pati, Gururani, Lerch 2020), regenerated "
                    "in closed form by tfmusic. " + LOADER_ORDER_NOTE,
        homepage="https://github.com/ashispati/dmelodies_dataset")
    files["vocabulary.json"] = beam_io.json_bytes(
        {"note2index": note_to_index(), "index2note": {str(k): v for k, v in index_to_note().items()}})
    files[METADATA] = beam_io.json_bytes({
        "dataset": DATASET_NAME, "version": VERSION, "seed": int(seed), "limit": limit, "num_items": total,
        "split_fractions": {"train": SPLIT_FRACTIONS[0], "validation": SPLIT_FRACTIONS[1],
                            "test": round(1 - sum(SPLIT_FRACTIONS), 10)},
        "counts": counts, "factor_names": list(FACTOR_NAMES), "factor_sizes": list(FACTOR_SIZES),
        "vocabulary_size": len(vocabulary()), "seq_len": SEQ_LEN, "ticks_per_beat": TICKS_PER_BEAT,
        "record_order": LOADER_ORDER_NOTE,
        "features": {k: {"shape": list(s), "dtype": d} for k, (s, d) in schema.DMELODIES_FEATURES.items()},
        "shards": shards,
    })
    return files


def _write_dataset_metadata(shards: list[dict], out_dir: str, seed: int, limit: int | None) -> str:
    return beam_io.write_metadata(out_dir, metadata_files(shards, seed=seed, limit=limit), last=METADATA)


def GenerateDMelodies(out_dir: str, *, seed: int = 0, num_shards: Mapping[str, int] | None = None,  # noqa: N802
                      limit: int | None = None, run_id: str | None = None, progress: bool = False):
    """PTransform (apply to the pipeline root): writes the dataset into ``out_dir``; its output is
    one element, the path of the finished ``metadata.json``. ``out_dir`` must be prepared
    (:func:`prepare`) by the driver first."""
    import apache_beam as beam

    from tfmusic.beam_options import progress_dofn

    num_shards = dict(DEFAULT_NUM_SHARDS if num_shards is None else num_shards)
    plan = plan_shards(seed, num_shards, limit)
    staging = beam_io.staging_dir(out_dir, run_id or beam_io.new_run_id())

    class _Generate(beam.PTransform):
        def expand(self, root):
            return (root
                    | "Plan" >> beam.Create(plan, reshuffle=True)
                    | "GenerateShard" >> beam.ParDo(progress_dofn(
                        lambda spec: make_shard(spec, seed, limit), total=len(plan),
                        desc="dmelodies shards", unit="shard", enabled=progress))
                    | "StageShard" >> beam.Map(stage_shard, staging)
                    | "Finalize" >> beam_io.FinalizeFiles(out_dir, staging)
                    | "WriteMetadata" >> beam.Map(_write_dataset_metadata, out_dir, seed, limit))

    return _Generate()


def prepare(out_dir: str | os.PathLike) -> str:
    """Check the output location and delete an older dataset there (metadata first)."""
    return beam_io.prepare_output(os.fspath(out_dir), metadata=METADATA_FILES,
                                  data_patterns=[f"{DATASET_NAME}-*.tfrecord-*"])


def generate(
    out_dir: str | os.PathLike,
    *,
    seed: int = 0,
    num_shards: Mapping[str, int] | None = None,
    limit: int | None = None,
    beam_args: Sequence[str] = (),
    progress: bool | None = None,
) -> dict:
    """Run the Beam job into ``out_dir`` (local or any Beam filesystem); returns the metadata dict
    with the wall times of this run added (they are not written: output bytes stay reproducible).
    With ``--template_location`` in ``beam_args`` only the Dataflow template is written and
    ``{"template_location", "out"}`` is returned."""
    import sys

    from tfmusic.beam_options import flag_value, run_pipeline
    from tfmusic.data.dmelodies.reader import read_metadata

    started = time.time()
    num_shards = dict(DEFAULT_NUM_SHARDS if num_shards is None else num_shards)
    if set(num_shards) != set(SPLITS):
        raise ValueError(f"num_shards must name exactly {SPLITS}, got {sorted(num_shards)}")
    limit = None if limit is None or limit == NUM_ITEMS else int(limit)
    split_indices(seed, limit)  # validates limit before any work
    out = prepare(out_dir)
    if progress is None:
        progress = sys.stderr.isatty()
    pipeline_started = time.time()
    finished = run_pipeline(lambda p: p | "GenerateDMelodies" >> GenerateDMelodies(
        out, seed=seed, num_shards=num_shards, limit=limit, progress=progress), beam_args)
    if not finished:
        return {"template_location": flag_value(beam_args, "--template_location"), "out": out}
    meta = read_metadata(out)
    meta["pipeline_seconds"] = round(time.time() - pipeline_started, 3)
    meta["generation_seconds"] = round(time.time() - started, 3)
    return meta
