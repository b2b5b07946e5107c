"""TFRecord shards that ``tfds.builder_from_directory`` can load, written without a TFDS builder.

Beam jobs in tfmusic write their own ``tf.train.Example`` shards (deterministic names, order and
bytes); this module supplies the two pieces that make such a folder a TFDS dataset:

* :func:`write_tfrecord` frames serialized records as TFRecord (length + masked CRC32C) with
  ``google-crc32c`` only, so Beam workers need not import TensorFlow;
* :func:`tfds_metadata_files` builds ``dataset_info.json`` and ``features.json`` from a
  ``{name: (shape, dtype)}`` feature table and the per-shard record counts the job already knows,
  so nothing has to be re-read, and without importing ``tensorflow_datasets`` (a 100 MB dependency
  Dataflow workers would otherwise install just for two small JSON files). They are the JSON that
  ``tfds.folder_dataset.write_metadata`` writes (same fields, same proto-JSON spelling: int64 as
  strings); a test loads the result with ``tfds.builder_from_directory``.

Everything goes through :mod:`tfmusic.storage`, so the folder may be on ``gs://``.

Shard files follow the TFDS template ``{DATASET}-{SPLIT}.tfrecord-{SHARD:05d}-of-{NUM:05d}``.
"""

from __future__ import annotations

import os
import re
import struct
from typing import Iterable, Iterator, Mapping, Sequence

FILE_FORMAT = "tfrecord"
_MASK_DELTA = 0xA282EAD8


def shard_filename(dataset: str, split: str, shard: int, num_shards: int) -> str:
    """The TFDS file name of one shard, e.g. ``dmelodies-train.tfrecord-00000-of-00016``."""
    if not 0 <= shard < num_shards:
        raise ValueError(f"shard {shard} out of range for {num_shards} shards")
    return f"{dataset}-{split}.{FILE_FORMAT}-{shard:05d}-of-{num_shards:05d}"


def shard_pattern(dataset: str, split: str | None = None) -> re.Pattern:
    """Regex matching shard names of ``dataset`` (one split, or any split when ``split`` is None)."""
    split_re = re.escape(split) if split else r"[A-Za-z0-9_]+"
    return re.compile(rf"^{re.escape(dataset)}-({split_re})\.{FILE_FORMAT}-(\d{{5}})-of-(\d{{5}})$")


def list_shards(data_dir: str | os.PathLike, dataset: str, split: str) -> list[str]:
    """The shard paths of one split in shard order; checks the set is complete."""
    from tfmusic import storage

    data_dir = storage.check_path(data_dir, what="dataset directory")
    if not storage.is_dir(data_dir):
        raise FileNotFoundError(2, "dataset directory does not exist", data_dir)
    pattern = shard_pattern(dataset, split)
    found = sorted((int(m.group(2)), int(m.group(3)), p)
                   for p in storage.glob(storage.join(data_dir, f"{dataset}-{split}.{FILE_FORMAT}-*"))
                   if (m := pattern.match(storage.basename(p))))
    if not found:
        raise ValueError(f"{data_dir}: no '{dataset}-{split}.{FILE_FORMAT}-*' shards "
                         f"(was the dataset generated into this directory?)")
    totals = {n for _, n, _ in found}
    if len(totals) != 1 or [s for s, _, _ in found] != list(range(next(iter(totals)))):
        names = ", ".join(storage.basename(p) for _, _, p in found)
        raise ValueError(f"{data_dir}: incomplete or mixed shard set for split '{split}': {names}")
    return [p for _, _, p in found]


def _masked_crc(data: bytes) -> int:
    import google_crc32c

    crc = google_crc32c.value(data)
    return (((crc >> 15) | (crc << 17)) + _MASK_DELTA) & 0xFFFFFFFF


def _frame_parts(records: Iterable[bytes]) -> Iterator[tuple[bytes, bytes, bytes]]:
    """TFRecord framing of each record as (length + masked CRC of the length, data, masked CRC of the data).

    Kept in three parts so writers need not copy multi-megabyte records just to frame them.
    """
    header_cache: dict[int, bytes] = {}
    for rec in records:
        n = len(rec)
        header = header_cache.get(n)
        if header is None:
            length = struct.pack("<Q", n)
            header = header_cache[n] = length + struct.pack("<I", _masked_crc(length))
        yield header, rec, struct.pack("<I", _masked_crc(rec))


def iter_tfrecord(fh) -> Iterator[bytes]:
    """The records of a TFRecord stream (uncompressed), CRCs checked, without TensorFlow."""
    while True:
        header = fh.read(12)
        if not header:
            return
        if len(header) < 12:
            raise ValueError("truncated TFRecord header")
        (n,) = struct.unpack("<Q", header[:8])
        if struct.unpack("<I", header[8:])[0] != _masked_crc(header[:8]):
            raise ValueError("corrupt TFRecord length (CRC mismatch)")
        data, footer = fh.read(n), fh.read(4)
        if len(data) < n or len(footer) < 4 or struct.unpack("<I", footer)[0] != _masked_crc(data):
            raise ValueError("truncated or corrupt TFRecord data")
        yield data


def tfrecord_bytes(records: Iterable[bytes]) -> bytes:
    """Serialized records framed as one TFRecord file body (no compression)."""
    return b"".join(part for parts in _frame_parts(records) for part in parts)


def write_tfrecord(path: str | os.PathLike, records: Iterable[bytes], *, atomic: bool = True) -> int:
    """Stream ``records`` into ``path``; returns the size in bytes. ``atomic``: through a temp sibling
    and a rename (``False`` for files inside a job's staging folder, which a retry simply rewrites)."""
    from tfmusic import storage

    path = os.fspath(path)
    target = storage.temp_sibling(path) if atomic else path
    size = 0
    with storage.open_write(target) as fh:
        for parts in _frame_parts(records):
            for part in parts:
                fh.write(part)
                size += len(part)
    if atomic:
        storage.rename(target, path)
    return size


def _features_json(spec: Mapping[str, tuple[Sequence[int], str]]) -> dict:
    features = {}
    for name, (shape, dtype) in spec.items():
        dims = {"dimensions": [str(int(d)) for d in shape]} if len(shape) else {}
        features[name] = {"pythonClassName": "tensorflow_datasets.core.features.tensor_feature.Tensor",
                          "tensor": {"dtype": str(dtype), "encoding": "none", "shape": dims}}
    return {"featuresDict": {"features": dict(sorted(features.items()))},
            "pythonClassName": "tensorflow_datasets.core.features.features_dict.FeaturesDict"}


def tfds_metadata_files(
    *,
    dataset: str,
    features: Mapping[str, tuple[Sequence[int], str]],
    shards: Mapping[str, Sequence[tuple[int, int]]],
    version: str = "1.0.0",
    description: str = "",
    homepage: str | None = None,
    citation: str | None = None,
) -> dict[str, bytes]:
    """``{"dataset_info.json": ..., "features.json": ...}`` for shards already written.

    ``shards`` maps split name -> ``[(num_records, num_bytes), ...]`` in shard order, as reported by
    the writer (the files follow :func:`shard_filename`). Pure: the caller writes the bytes.
    """
    import json

    info: dict = {"description": description, "fileFormat": FILE_FORMAT}
    if citation:
        info["citation"] = citation
    if homepage:
        info["location"] = {"urls": [homepage]}
    info["name"] = dataset
    info["splits"] = [{"filepathTemplate": "{DATASET}-{SPLIT}.{FILEFORMAT}-{SHARD_X_OF_Y}", "name": split,
                       "numBytes": str(int(sum(b for _, b in infos))),
                       "shardLengths": [str(int(n)) for n, _ in infos]}
                      for split, infos in shards.items()]
    info["version"] = version
    return {"dataset_info.json": (json.dumps(info, indent=2) + "\n").encode(),
            "features.json": (json.dumps(_features_json(features), indent=4, sort_keys=True) + "\n").encode()}
