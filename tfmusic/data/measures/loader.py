"""Reading a built measures set: vocabulary and manifest checks, ``tf.data`` batches, numpy arrays.

Transposition augmentation (the reference adds every transposition inside the range) happens at
read time in :func:`load`: each bar is shifted by a uniformly drawn number of semitones that keeps
it inside 55-84. All four attributes are transposition invariant, so they stay valid.
"""

from __future__ import annotations

import json
import os

import numpy as np

from tfmusic import storage
from tfmusic.data.measures.records import SPLITS
from tfmusic.data.measures.vocab import (
    DATASET_NAME,
    HOLD_ID,
    MANIFEST,
    MAX_PITCH,
    MIN_PITCH,
    NOTE_OFFSET,
    REST_ID,
    VERSION,
    VOCABULARY,
    VOCABULARY_FILE,
)
from tfmusic.music.attributes import ATTRIBUTE_NAMES, REST, TICKS_PER_BAR


def _read_json(data_dir: str | os.PathLike, name: str, missing: str) -> tuple[str, dict]:
    path = storage.join(data_dir, name)
    if not storage.exists(path):
        raise FileNotFoundError(2, missing, path)
    try:
        return path, json.loads(storage.read_text(path))
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON ({err})") from None


def read_vocabulary(data_dir: str | os.PathLike) -> dict:
    path, doc = _read_json(data_dir, VOCABULARY_FILE, "measures vocabulary.json missing (build the dataset first)")
    if doc.get("tokens") != list(VOCABULARY):
        raise ValueError(f"{path}: vocabulary differs from the frozen tfmusic vocabulary; rebuild the data")
    return doc


def read_manifest(data_dir: str | os.PathLike) -> dict:
    """The build manifest (counts in/out/rejected, splits); a set of another :data:`VERSION` is refused."""
    path, manifest = _read_json(data_dir, MANIFEST,
                                "no measures manifest (build the set with `tfmusic measures build`)")
    if manifest.get("version") != VERSION:
        raise ValueError(f"{path}: measures set of version {manifest.get('version', manifest.get('extract_version'))}"
                         f", this tfmusic reads version {VERSION} (tie and split rules changed); rebuild it "
                         f"with `tfmusic measures build`")
    return manifest


def _shards(data_dir: str | os.PathLike, split: str) -> list[str]:
    from tfmusic.data.tfds_metadata import list_shards

    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; choose from {', '.join(SPLITS)}")
    read_vocabulary(data_dir)
    read_manifest(data_dir)
    return [str(p) for p in list_shards(data_dir, DATASET_NAME, split)]


def load(
    data_dir: str | os.PathLike,
    split: str,
    batch_size: int,
    *,
    shuffle: bool | None = None,
    transpose: bool | None = None,
    seed: int = 0,
    repeat: bool = False,
    drop_remainder: bool = False,
    shuffle_buffer: int = 50_000,
):
    """A ``tf.data.Dataset`` of ``(tokens int32 (B, 24), attributes float32 (B, 4))``.

    ``shuffle`` and ``transpose`` (random in-range transposition per bar) default to on for
    ``train`` and off otherwise; both are deterministic given ``seed``.
    """
    import tensorflow as tf

    from tfmusic.data import schema

    files = _shards(data_dir, split)
    is_train = split == "train"
    shuffle = is_train if shuffle is None else shuffle
    transpose = is_train if transpose is None else transpose
    spec = schema.measures_parse_spec()

    ds = tf.data.TFRecordDataset(files)
    if shuffle:
        ds = ds.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
    if repeat:
        ds = ds.repeat()
    ds = tf.data.Dataset.zip(ds, tf.data.Dataset.random(seed=seed))

    def parse(record, rnd):
        ex = tf.io.parse_single_example(record, spec)
        pitches = ex["pitches"]
        if transpose:
            notes = pitches >= 0
            any_note = tf.reduce_any(notes)
            lo = tf.where(any_note, MIN_PITCH - tf.reduce_min(tf.where(notes, pitches, 1000)), 0)
            hi = tf.where(any_note, MAX_PITCH - tf.reduce_max(tf.where(notes, pitches, -1000)), 0)
            shift = lo + tf.math.floormod(rnd, hi - lo + 1)
            pitches = tf.where(notes, pitches + shift, pitches)
        tokens = tf.where(pitches >= 0, pitches - MIN_PITCH + NOTE_OFFSET,
                          tf.where(pitches == REST, tf.constant(REST_ID, tf.int64), HOLD_ID))
        return tf.cast(tokens, tf.int32), ex["attributes"]

    ds = ds.map(parse, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return ds.batch(batch_size, drop_remainder=drop_remainder).prefetch(tf.data.AUTOTUNE)


def read_numpy(data_dir: str | os.PathLike, split: str) -> dict[str, np.ndarray]:
    """A whole split as numpy (tokens, pitches, attributes, bar_index, tune_id) for evaluation and tests."""
    import tensorflow as tf

    from tfmusic.data import schema

    files = _shards(data_dir, split)
    spec = schema.measures_parse_spec()
    keys = ("tokens", "pitches", "attributes", "bar_index", "tune_id")
    cols: dict[str, list] = {k: [] for k in keys}
    ds = tf.data.TFRecordDataset(files).batch(4096).map(lambda r: tf.io.parse_example(r, spec))
    for ex in ds.as_numpy_iterator():
        for k in keys:
            cols[k].append(ex[k])
    shapes = {"tokens": (TICKS_PER_BAR,), "pitches": (TICKS_PER_BAR,), "attributes": (len(ATTRIBUTE_NAMES),),
              "bar_index": (), "tune_id": ()}
    out = {k: (np.concatenate(cols[k]) if cols[k] else np.zeros((0, *shapes[k]))) for k in keys}
    return {
        "tokens": out["tokens"].astype(np.int32),
        "pitches": out["pitches"].astype(np.int64),
        "attributes": out["attributes"].astype(np.float32),
        "bar_index": out["bar_index"].astype(np.int64),
        "tune_id": np.asarray([t.decode() for t in out["tune_id"]], dtype=object),
    }
