"""Reading a generated dMelodies folder: metadata, ``tf.data`` batches and single items.

Shards are read by TensorFlow's own filesystems (local, ``gs://``); metadata through
:mod:`tfmusic.storage`. A folder without ``metadata.json`` (an unfinished or killed run) is refused.
"""

from __future__ import annotations

import itertools
import json
import os
from typing import Iterable

import numpy as np

from tfmusic import storage
from tfmusic.data import schema
from tfmusic.data.tfds_metadata import iter_tfrecord
from tfmusic.data.dmelodies.factors import DATASET_NAME, NUM_ITEMS, _check_indices, generate_items
from tfmusic.data.dmelodies.layout import METADATA, plan_shards, shard_name
from tfmusic.data.dmelodies.splits import SPLITS, split_indices


def read_metadata(data_dir: str | os.PathLike) -> dict:
    """``metadata.json`` of a generated dataset directory (clear error if missing or not dMelodies)."""
    path = storage.join(storage.check_path(data_dir, what="dataset directory"), METADATA)
    if not storage.exists(path):
        raise FileNotFoundError(2, "no metadata.json (not a generated dMelodies directory, or its "
                                   "generation did not finish)", path)
    try:
        meta = json.loads(storage.read_text(path))
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON ({err})") from None
    if meta.get("dataset") != DATASET_NAME:
        raise ValueError(f"{path}: not a dMelodies metadata file (dataset={meta.get('dataset')!r})")
    return meta


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
    read_metadata(data_dir)  # a folder without metadata.json is an unfinished run, not a dataset
    files = list_shards(data_dir, DATASET_NAME, split)
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
        path = storage.join(os.fspath(data_dir), shard_name(split, shard, num))
        if not storage.exists(path):
            raise FileNotFoundError(2, "shard missing", path)
        with storage.open_read(path) as fh:  # storage, not TF's filesystem: any Beam scheme works
            rec = list(itertools.islice(iter_tfrecord(fh), pos - start, pos - start + 1))
        if not rec:
            raise ValueError(f"{path}: shard is shorter than its metadata says (no record {pos - start})")
        ex = {k: v.numpy() for k, v in tf.io.parse_single_example(rec[0], spec).items()}
        if int(ex["index"]) != index or not (ex["tokens"] == tokens[i]).all() or not (ex["factors"] == factors[i]).all():
            raise ValueError(f"{path}: record {pos - start} should be item {index} but holds "
                             f"item {int(ex['index'])} with different content (corrupt or foreign file)")
        tokens[i], factors[i] = ex["tokens"], ex["factors"]
    return tokens, factors
