"""TFRecord shards that ``tfds.builder_from_directory`` can load, written without a TFDS builder.

Beam jobs in tfmusic write their own ``tf.train.Example`` shards (deterministic names, order and
bytes); this module supplies the two pieces that make such a folder a TFDS dataset:

* :func:`write_tfrecord` frames serialized records as TFRecord (length + masked CRC32C) with
  ``google-crc32c`` only, so Beam workers need not import TensorFlow;
* :func:`write_tfds_metadata` writes ``dataset_info.json`` and ``features.json`` from a
  ``{name: (shape, dtype)}`` feature table and the per-shard record counts the job already knows,
  so nothing has to be re-read.

Shard files follow the TFDS template ``{DATASET}-{SPLIT}.tfrecord-{SHARD:05d}-of-{NUM:05d}``.
"""

from __future__ import annotations

import os
import re
import struct
from pathlib import Path
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


def list_shards(data_dir: str | os.PathLike, dataset: str, split: str) -> list[Path]:
    """The shard files of one split in shard order; checks the set is complete."""
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise FileNotFoundError(2, "dataset directory does not exist", str(data_dir))
    pattern = shard_pattern(dataset, split)
    found = sorted((int(m.group(2)), int(m.group(3)), p) for p in data_dir.iterdir()
                   if (m := pattern.match(p.name)))
    if not found:
        raise ValueError(f"{data_dir}: no '{dataset}-{split}.{FILE_FORMAT}-*' shards "
                         f"(was the dataset generated into this directory?)")
    totals = {n for _, n, _ in found}
    if len(totals) != 1 or [s for s, _, _ in found] != list(range(next(iter(totals)))):
        names = ", ".join(p.name for _, _, p in found)
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


def tfrecord_bytes(records: Iterable[bytes]) -> bytes:
    """Serialized records framed as one TFRecord file body (no compression)."""
    return b"".join(part for parts in _frame_parts(records) for part in parts)


def write_tfrecord(path: str | os.PathLike, records: Iterable[bytes]) -> int:
    """Stream ``records`` into ``path`` atomically (temp file + rename); returns the file size in bytes."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    size = 0
    with open(tmp, "wb") as fh:
        for parts in _frame_parts(records):
            for part in parts:
                fh.write(part)
                size += len(part)
    os.replace(tmp, path)
    return size


def tfds_features(spec: Mapping[str, tuple[Sequence[int], str]]):
    """A ``tfds.features.FeaturesDict`` from ``{name: (shape, dtype name)}`` (e.g. from schema.py)."""
    import numpy as np
    import tensorflow_datasets as tfds

    return tfds.features.FeaturesDict({
        name: tfds.features.Tensor(shape=tuple(shape), dtype=np.dtype(dtype))
        for name, (shape, dtype) in spec.items()
    })


def write_tfds_metadata(
    data_dir: str | os.PathLike,
    *,
    dataset: str,
    features: Mapping[str, tuple[Sequence[int], str]],
    shards: Mapping[str, Sequence[tuple[int, int]]],
    version: str = "1.0.0",
    description: str = "",
    homepage: str | None = None,
    citation: str | None = None,
    check_data: bool = True,
) -> None:
    """Write ``dataset_info.json`` + ``features.json`` next to already written shards.

    ``shards`` maps split name -> ``[(num_records, num_bytes), ...]`` in shard order, as reported by
    the writer; the shard files must exist under the TFDS template names. With ``check_data``
    TFDS loads one example back to prove the feature spec matches the records.
    """
    import tensorflow_datasets as tfds

    data_dir = Path(data_dir)
    split_infos = []
    for split, infos in shards.items():
        expected = [data_dir / shard_filename(dataset, split, i, len(infos)) for i in range(len(infos))]
        missing = [str(p) for p in expected if not p.is_file()]
        if missing:
            raise FileNotFoundError(2, "shard listed in the metadata is missing", missing[0])
        split_infos.append(tfds.core.SplitInfo(
            name=split,
            shard_lengths=[int(n) for n, _ in infos],
            num_bytes=int(sum(b for _, b in infos)),
        ))
    kwargs = {"description": description}
    if homepage:
        kwargs["homepage"] = homepage
    if citation:
        kwargs["citation"] = citation
    tfds.folder_dataset.write_metadata(
        data_dir=os.fspath(data_dir),
        features=tfds_features(features),
        split_infos=split_infos,
        version=version,
        filename_template="{DATASET}-{SPLIT}.{FILEFORMAT}-{SHARD_X_OF_Y}",
        check_data=check_data,
        **kwargs,
    )
