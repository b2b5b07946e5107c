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


# ---------------------------------------------------------------------------------------------
# Measures (writer: tfmusic.data.measures.build / beam_pipelines/measures.py; reader: measures.load)
# One flat tf.train.Example per 4/4 bar: 24 token ids, the 24-tick pitch grid (MIDI / -1 rest /
# -2 hold), 4 attributes (tfmusic.music.attributes order), and the bar's provenance.
# ---------------------------------------------------------------------------------------------

MEASURES_TICKS = 24
MEASURES_NUM_ATTRIBUTES = 4
MEASURES_FEATURES: dict[str, tuple[tuple[int, ...], str]] = {
    "tokens": ((MEASURES_TICKS,), "int64"),
    "pitches": ((MEASURES_TICKS,), "int64"),
    "attributes": ((MEASURES_NUM_ATTRIBUTES,), "float32"),
    "bar_index": ((), "int64"),
    "tune_id": ((), "string"),
    "collection": ((), "string"),
}


def measures_parse_spec() -> dict:
    """``tf.io.parse_example`` spec for measures records."""
    import tensorflow as tf

    return {name: tf.io.FixedLenFeature(shape, tf.as_dtype(dtype))
            for name, (shape, dtype) in MEASURES_FEATURES.items()}


# ---------------------------------------------------------------------------------------------
# Stems (writer: tfmusic.data.stems.preprocess / beam_pipelines/preprocess_stems.py; reader:
# tfmusic.data.stems.dataset). One flat tf.train.Example per fixed-length segment of a song:
# raw PCM bytes (int16 little-endian, or float32) of the mixture and of each taxonomy instrument,
# laid out (channels, samples) row-major, with explicit rate / channel / length fields, plus the
# MedleyDB activation confidence of each instrument per center=False STFT frame (float32 bytes).
# Absent instruments have empty bytes (decoded as silence / zero confidence). Decoded float =
# pcm / 32768 / scale for int16 (scale < 1 when a song was attenuated to avoid clipping).
# ---------------------------------------------------------------------------------------------

STEMS_SCALARS: dict[str, str] = {
    "song_id": "string",
    "segment_index": "int64",
    "offset": "int64",
    "num_samples": "int64",
    "valid_samples": "int64",
    "sample_rate": "int64",
    "channels": "int64",
    "frames": "int64",
    "pcm_dtype": "string",
    "scale": "float32",
}


def stems_stem_key(instrument: str) -> str:
    return f"stem/{instrument}"


def stems_activity_key(instrument: str) -> str:
    return f"activity/{instrument}"


def stems_example(scalars: Mapping[str, object], mixture: bytes, stems: Mapping[str, bytes],
                  activity: Mapping[str, bytes], instruments: Iterable[str]):
    """One stems segment record; ``instruments`` is the full taxonomy order (absent -> empty bytes)."""
    features = {}
    for name, dtype in STEMS_SCALARS.items():
        value = scalars[name]
        if dtype == "string":
            features[name] = bytes_feature([value.encode() if isinstance(value, str) else value])
        elif dtype == "int64":
            features[name] = int64_feature([value])
        else:
            features[name] = float_feature([value])
    features["mixture"] = bytes_feature([mixture])
    for inst in instruments:
        features[stems_stem_key(inst)] = bytes_feature([stems.get(inst, b"")])
        features[stems_activity_key(inst)] = bytes_feature([activity.get(inst, b"")])
    return make_example(features)


def stems_parse_spec(instruments: Iterable[str]) -> dict:
    """``tf.io.parse_single_example`` spec for stems records over the given instruments."""
    import tensorflow as tf

    spec = {name: tf.io.FixedLenFeature([], tf.as_dtype(dtype)) for name, dtype in STEMS_SCALARS.items()}
    spec["mixture"] = tf.io.FixedLenFeature([], tf.string)
    for inst in instruments:
        spec[stems_stem_key(inst)] = tf.io.FixedLenFeature([], tf.string, default_value="")
        spec[stems_activity_key(inst)] = tf.io.FixedLenFeature([], tf.string, default_value="")
    return spec
