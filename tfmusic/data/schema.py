"""Every TFRecord feature spec in tfmusic, in one place.

Writers (Beam jobs) and readers (tf.data pipelines) both take their feature names, dtypes and
shapes from here, so a record written by one is always parseable by the other. Each dataset
has its own section below; helpers for building ``tf.train.Example`` protos live at the top.
Importing this module imports TensorFlow lazily only where protos or parse specs are built.
"""

from __future__ import annotations

from typing import Iterable, Mapping


def int64_feature(values: Iterable[int]):
    import tensorflow as tf

    return tf.train.Feature(int64_list=tf.train.Int64List(value=[int(v) for v in values]))


def float_feature(values: Iterable[float]):
    import tensorflow as tf

    return tf.train.Feature(float_list=tf.train.FloatList(value=[float(v) for v in values]))


def bytes_feature(values: Iterable[bytes]):
    import tensorflow as tf

    return tf.train.Feature(bytes_list=tf.train.BytesList(value=list(values)))


def make_example(features: Mapping[str, object]):
    """A ``tf.train.Example`` from a mapping of name -> ``tf.train.Feature``."""
    import tensorflow as tf

    return tf.train.Example(features=tf.train.Features(feature=dict(features)))


# ---------------------------------------------------------------------------------------------
# dMelodies (writer: tfmusic.data.dmelodies / beam_pipelines/dmelodies.py; reader: dmelodies.load)
# One flat tf.train.Example per item: the dataset index, 16 token ids, 9 factor indices (int64).
# ---------------------------------------------------------------------------------------------

DMELODIES_DATASET_NAME = "dmelodies"
DMELODIES_SEQ_LEN = 16
DMELODIES_NUM_FACTORS = 9
# name -> (shape, dtype); the TFDS features.json is written from this table.
DMELODIES_FEATURES: dict[str, tuple[tuple[int, ...], str]] = {
    "index": ((), "int64"),
    "tokens": ((DMELODIES_SEQ_LEN,), "int64"),
    "factors": ((DMELODIES_NUM_FACTORS,), "int64"),
}


def dmelodies_parse_spec() -> dict:
    """``tf.io.parse_example`` spec for dMelodies records (all fixed-length int64)."""
    import tensorflow as tf

    return {name: tf.io.FixedLenFeature(shape, tf.as_dtype(dtype))
            for name, (shape, dtype) in DMELODIES_FEATURES.items()}


def dmelodies_example(index: int, tokens: Iterable[int], factors: Iterable[int]):
    """One dMelodies record as a proto (the slow, obviously-correct path; the Beam job encodes in bulk)."""
    return make_example({
        "index": int64_feature([index]),
        "tokens": int64_feature(tokens),
        "factors": int64_feature(factors),
    })
