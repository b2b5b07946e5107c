"""Tune-level splits, held-out filtering and the ``tf.train.Example`` of one bar.

Splits hold out whole tunes (deterministic seeded hashing instead of a shuffled list, so a subset
run assigns a tune the same split as the full run): a tune goes to ``test`` with probability
0.1, to ``validation`` with 0.2 and to ``train`` with 0.7. The test tunes are the ones the earlier
bar-level layout held out (same hash, same threshold); the reference's 90/10 train/test files then
70/20/10 inside the train-file bars (B.3) put validation and its metric split inside the training
tunes, which scores a model on bars it was trained on.

Folk tunes repeat figures across tunes, and training reads every in-range transposition of its
bars, so an evaluation bar can still equal (a transposition of) a training bar. Those bars are
dropped from ``validation`` and ``test`` and counted as rejected ``duplicate_of_train``
(:func:`hold_out`): nothing evaluated, bar or tune, was seen in training.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from typing import Iterable, Iterator, Sequence

import numpy as np

from tfmusic.data.measures.vocab import grid_to_ids, transposition_class
from tfmusic.music.attributes import grid_attributes

SPLITS = ("train", "validation", "test")
#: Splits that score a model (test) or choose its checkpoint (validation): held out by tune.
EVALUATION_SPLITS = ("validation", "test")
#: Cumulative tune-hash intervals, in this order: test [0, 0.1), validation [0.1, 0.3), train.
TUNE_SPLIT_FRACTIONS = (("test", 0.10), ("validation", 0.20), ("train", 0.70))
DUPLICATE_REASON = "duplicate_of_train"


def _unit_hash(text: str) -> float:
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big") / 2.0**64


def assign_split(tune_id: str, seed: int = 0) -> str:
    """Deterministic split of a tune (all its bars go to the same split)."""
    u = _unit_hash(f"{seed}|tune|{tune_id}")
    acc = 0.0
    for name, frac in TUNE_SPLIT_FRACTIONS:
        acc += frac
        if u < acc:
            return name
    return TUNE_SPLIT_FRACTIONS[-1][0]


def bar_example(collection: str, tune_id: str, bar_index: int, grid: Sequence[int]) -> bytes:
    """A serialized ``tf.train.Example`` for one bar (tokens, pitches, attributes, provenance)."""
    from tfmusic.data import schema

    g = np.asarray(grid, dtype=np.int64)
    return schema.make_example({
        "tokens": schema.int64_feature(grid_to_ids(g)),
        "pitches": schema.int64_feature(g),
        "attributes": schema.float_feature(grid_attributes(g)),
        "bar_index": schema.int64_feature([bar_index]),
        "tune_id": schema.bytes_feature([tune_id.encode()]),
        "collection": schema.bytes_feature([collection.encode()]),
    }).SerializeToString(deterministic=True)  # map keys sorted: same bytes in every process


def keyed_bars(result: dict, seed: int) -> Iterator[tuple[bytes, tuple]]:
    """``(transposition class, (split, collection, tune_id, bar_index, grid))`` per bar of a file."""
    for tune_id, bar_index, grid in result["bars"]:
        yield transposition_class(grid), (assign_split(tune_id, seed), result["collection"], tune_id,
                                          bar_index, tuple(grid))


def hold_out(bars: Iterable[tuple]) -> tuple[list[tuple], int]:
    """Bars of one transposition class -> (bars kept, number dropped as duplicates of training bars).

    When the class has a training bar, its validation and test bars are dropped.
    """
    bars = list(bars)
    if not any(b[0] == "train" for b in bars):
        return bars, 0
    kept = [b for b in bars if b[0] == "train"]
    return kept, len(bars) - len(kept)


def file_stats(result: dict) -> Counter:
    """Counts contributed by one extracted file: files, tunes, bars seen / extracted / rejected per reason."""
    c: Counter = Counter(files_in=1)
    if result["error"]:
        c["files_failed"] += 1
        c[f"error/{result['error']}"] += 1
        return c
    c["tunes_in"] += result["tunes"]
    c["bars_in"] += result["bars_seen"]
    c["bars_extracted"] += len(result["bars"])
    for reason, n in result["rejected"].items():
        c[f"bars_rejected/{reason}"] += n
    return c
