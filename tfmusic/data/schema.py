"""Every TFRecord feature spec in tfmusic, in one place.

Writers (Beam jobs) and readers (tf.data pipelines) both take their feature names, dtypes and
shapes from here, so a record written by one is always parseable by the other. Each dataset
has its own section below; helpers for building ``tf.train.Example`` protos live at the top.
Importing this module imports TensorFlow lazily only where protos or parse specs are built.
"""

from __future__ import annotations

from typing import Iterable, Mapping

import numpy as _np


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


# dMelodies records in bulk: the Beam job encodes ~60k records per shard, so the fixed layout of
# these small examples is written with numpy instead of one proto per record.
def _varint_columns(values):
    """Protobuf varint bytes of non-negative int64 ``values``: ``(N, 10)`` uint8 and lengths ``(N,)``."""
    v = values.astype(_np.uint64)
    groups = _np.stack([(v >> _np.uint64(7 * k)) & _np.uint64(0x7F) for k in range(10)], axis=1)
    lengths = _np.maximum(1, 10 - _np.argmax(groups[:, ::-1] != 0, axis=1))
    lengths = _np.where(v == 0, 1, lengths)
    cont = _np.arange(10)[None, :] < (lengths[:, None] - 1)
    return (groups | _np.where(cont, _np.uint64(0x80), _np.uint64(0))).astype(_np.uint8), lengths


def _int64_entry(key: bytes, values):
    """Serialized ``Features.feature`` map entry (key -> Int64List) for rows of one-byte varints."""
    n, k = values.shape
    inner = [_np.full((n, 1), 0x0A, _np.uint8), _np.full((n, 1), k, _np.uint8), values.astype(_np.uint8)]
    int64_list_len = 2 + k
    feature_len = 2 + int64_list_len
    entry_len = 2 + len(key) + 2 + feature_len
    head = bytes([0x0A, entry_len, 0x0A, len(key)]) + key + bytes([0x12, feature_len, 0x1A, int64_list_len])
    if entry_len >= 128:
        raise ValueError(f"feature '{key.decode()}' too long for the fixed-layout encoder")
    return _np.concatenate([_np.broadcast_to(_np.frombuffer(head, _np.uint8), (n, len(head)))] + inner, axis=1)


def dmelodies_examples_bytes(index, tokens, factors) -> list[bytes]:
    """Serialized ``tf.train.Example`` records, byte-identical to ``SerializeToString(deterministic=True)``
    of :func:`dmelodies_example`, built in bulk with numpy (keys in sorted order)."""
    index = _np.asarray(index, dtype=_np.int64).reshape(-1)
    tokens = _np.asarray(tokens, dtype=_np.int64)
    factors = _np.asarray(factors, dtype=_np.int64)
    n = len(index)
    if tokens.shape != (n, DMELODIES_SEQ_LEN) or factors.shape != (n, DMELODIES_NUM_FACTORS):
        raise ValueError(f"shapes do not line up: index {index.shape}, tokens {tokens.shape}, factors {factors.shape}")
    for name, arr in (("tokens", tokens), ("factors", factors)):
        if arr.size and (arr.min() < 0 or arr.max() > 127):
            raise ValueError(f"{name} values must lie in 0..127 for the bulk encoder")
    if n and index.min() < 0:
        raise ValueError("index must be non-negative")
    assert sorted(DMELODIES_FEATURES) == ["factors", "index", "tokens"]
    fac = _int64_entry(b"factors", factors)
    tok = _int64_entry(b"tokens", tokens)
    var, lengths = _varint_columns(index)
    records: list[bytes] = [b""] * n
    for length in _np.unique(lengths):
        rows = _np.flatnonzero(lengths == length)
        idx = _int64_entry(b"index", var[rows, :length])
        body = _np.concatenate([fac[rows], idx, tok[rows]], axis=1)
        if body.shape[1] >= 128:
            raise ValueError("record too long for the fixed-layout encoder")
        head = _np.broadcast_to(_np.asarray([0x0A, body.shape[1]], _np.uint8), (len(rows), 2))
        arr = _np.ascontiguousarray(_np.concatenate([head, body], axis=1))
        buf, width = arr.tobytes(), arr.shape[1]
        for j, r in enumerate(rows.tolist()):
            records[r] = buf[j * width:(j + 1) * width]
    return records



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
# Version 2 adds, for songs rendered from MIDI only, ``pitch/<instrument>``: the 88-key multi-pitch
# roll per frame, np.packbits over keys ((frames, 11) uint8; tfmusic.data.stems.pitch). Empty bytes
# (drums, unknown) or no such feature (real datasets, version-1 records) mean "no labels" (masked).
# ---------------------------------------------------------------------------------------------

STEMS_SCHEMA_VERSION = 2  # the manifest's "version"; 1 = no pitch labels (still read: pitch masked)

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


def stems_pitch_key(instrument: str) -> str:
    return f"pitch/{instrument}"


def stems_example(scalars: Mapping[str, object], mixture: bytes, stems: Mapping[str, bytes],
                  activity: Mapping[str, bytes], instruments: Iterable[str],
                  pitch: Mapping[str, bytes] | None = None):
    """One stems segment record; ``instruments`` is the full taxonomy order (absent -> empty bytes).
    ``pitch`` (songs with MIDI only) adds ``pitch/<instrument>`` for every instrument (unknown -> empty)."""
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
        if pitch is not None:
            features[stems_pitch_key(inst)] = bytes_feature([pitch.get(inst, b"")])
    return make_example(features)


def _pb_varint(value: int) -> bytes:
    """Protobuf base-128 varint; negatives as 64-bit two's complement (10 bytes), as int64 fields are."""
    value &= 0xFFFFFFFFFFFFFFFF
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _pb_prefix(tag: int, length: int) -> bytes:
    """Header of a length-delimited field: tag byte and varint length."""
    return bytes((tag,)) + _pb_varint(length)


def _pb_entry(key: str, kind: int, value: bytes) -> tuple[bytes, bytes]:
    """One ``Features.feature`` map entry as (header, payload) so big payloads are copied only once.

    ``kind`` is the Feature oneof tag (0x0A bytes_list, 0x12 float_list, 0x1A int64_list); the
    list holds one value: one bytes element, or a packed run of ``value`` bytes.
    """
    key_b = key.encode()
    inner = _pb_prefix(0x0A, len(value))  # BytesList.value / packed FloatList.value / Int64List.value
    feature = _pb_prefix(kind, len(inner) + len(value))
    entry_len = len(_pb_prefix(0x0A, len(key_b))) + len(key_b) + len(feature) + len(inner) + len(value)
    entry_len += len(_pb_prefix(0x12, len(feature) + len(inner) + len(value)))
    head = (_pb_prefix(0x0A, entry_len) + _pb_prefix(0x0A, len(key_b)) + key_b
            + _pb_prefix(0x12, len(feature) + len(inner) + len(value)) + feature + inner)
    return head, value


def stems_example_bytes(scalars: Mapping[str, object], mixture: bytes, stems: Mapping[str, bytes],
                        activity: Mapping[str, bytes], instruments: Iterable[str],
                        pitch: Mapping[str, bytes] | None = None) -> bytes:
    """:func:`stems_example` serialized, encoded on the protobuf wire directly (no TensorFlow import).

    Byte-identical to ``stems_example(...).SerializeToString(deterministic=True)`` (map entries in
    sorted key order), so Beam workers write the same records as the proto path without paying the
    TensorFlow import. Wire layout: Example.features(1) > Features.feature(1) map entries
    {key(1), value(2)} > Feature.{bytes_list(1) | float_list(2) | int64_list(3)} > value(1).
    """
    import struct

    entries: dict[str, tuple[bytes, bytes]] = {}
    for name, dtype in STEMS_SCALARS.items():
        value = scalars[name]
        if dtype == "string":
            entries[name] = _pb_entry(name, 0x0A, value.encode() if isinstance(value, str) else bytes(value))
        elif dtype == "int64":
            entries[name] = _pb_entry(name, 0x1A, _pb_varint(int(value)))
        else:
            entries[name] = _pb_entry(name, 0x12, struct.pack("<f", float(value)))
    entries["mixture"] = _pb_entry("mixture", 0x0A, mixture)
    for inst in instruments:
        entries[stems_stem_key(inst)] = _pb_entry(stems_stem_key(inst), 0x0A, stems.get(inst, b""))
        entries[stems_activity_key(inst)] = _pb_entry(stems_activity_key(inst), 0x0A, activity.get(inst, b""))
        if pitch is not None:
            entries[stems_pitch_key(inst)] = _pb_entry(stems_pitch_key(inst), 0x0A, pitch.get(inst, b""))
    chunks = [part for key in sorted(entries, key=str.encode) for part in entries[key]]
    return b"".join([_pb_prefix(0x0A, sum(len(c) for c in chunks)), *chunks])


def stems_parse_spec(instruments: Iterable[str]) -> dict:
    """``tf.io.parse_single_example`` spec for stems records over the given instruments."""
    import tensorflow as tf

    spec = {name: tf.io.FixedLenFeature([], tf.as_dtype(dtype)) for name, dtype in STEMS_SCALARS.items()}
    spec["mixture"] = tf.io.FixedLenFeature([], tf.string)
    for inst in instruments:
        spec[stems_stem_key(inst)] = tf.io.FixedLenFeature([], tf.string, default_value="")
        spec[stems_activity_key(inst)] = tf.io.FixedLenFeature([], tf.string, default_value="")
        spec[stems_pitch_key(inst)] = tf.io.FixedLenFeature([], tf.string, default_value="")  # v2; v1: ""
    return spec
