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
