"""Atomic dataset outputs and count checks shared by every tfmusic Beam job.

A job's outputs are data files (TFRecord shards, rendered audio) plus metadata (manifest, TFDS
``dataset_info.json``). Readers trust a folder only when its metadata is there, so:

1. :func:`prepare_output` (driver, before the run) checks the output scheme, deletes the old
   metadata first and then the old data files, and drops staging left by killed runs;
2. workers write every data file into ``OUT/.staging/RUN/`` (:func:`stage_bytes`, or their own
   streaming writer for large files, as the stems job does);
3. :class:`FinalizeFiles` waits for all of them (one global combine), renames them onto their
   final names and deletes the staging folder: unlike ``fileio.WriteToFiles``, which finalizes
   each destination on its own, no shard of an unfinished run ever has its final name;
4. metadata is computed from the finalized entries (so it is written after them) and written with
   :func:`write_metadata` (temp file + rename; the manifest named last).

A run killed at any point leaves no metadata, so no reader takes it for a dataset; file contents
depend only on the job's inputs and parameters, so a re-run writes the same bytes.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from typing import Any, Iterable, Mapping, Sequence

from tfmusic import storage

STAGING = ".staging"


class CountsError(RuntimeError):
    """A job's counts do not add up (items went missing between input and output)."""


def check_counts(counts: Mapping[str, Any], where: str) -> None:
    """``in == out + rejected`` for one counts block; ``rejected`` is a number or ``{reason: n}``.

    Every job records ``{"in", "out", "rejected"}`` blocks and calls this on each before writing
    its manifest, so a lost element is a failed job, never a quietly smaller dataset.
    """
    rejected = counts.get("rejected", 0)
    n_rejected = sum(rejected.values()) if isinstance(rejected, Mapping) else int(rejected)
    if int(counts["in"]) != int(counts["out"]) + n_rejected:
        raise CountsError(f"{where}: counts do not add up: in={counts['in']} out={counts['out']} "
                          f"rejected={rejected}")


def new_run_id() -> str:
    return uuid.uuid4().hex[:16]


def staging_dir(out_dir: str, run_id: str) -> str:
    return storage.join(out_dir, STAGING, run_id)


def prepare_output(out_dir: str, *, metadata: Sequence[str], data_patterns: Sequence[str]) -> str:
    """Check and create ``out_dir``; delete its old metadata, then old data files and staging.

    Metadata goes first so that a kill during clean-up cannot leave metadata that describes
    files which are already gone.
    """
    out_dir = storage.check_path(out_dir, what="output")
    if storage.is_local(out_dir):
        storage.makedirs(out_dir)
    storage.delete([storage.join(out_dir, name) for name in metadata])
    stale = [p for pattern in data_patterns for p in storage.glob(storage.join(out_dir, pattern))]
    storage.delete(stale)
    storage.delete_tree(storage.join(out_dir, STAGING))
    return out_dir


def file_entry(name: str, staged: str, data: bytes) -> dict:
    return {"file": name, "staged": staged, "num_bytes": len(data),
            "sha256": hashlib.sha256(data).hexdigest()}


def stage_bytes(staging: str, name: str, data: bytes) -> dict:
    """Write one data file into the staging folder (worker side); returns its entry."""
    path = storage.join(staging, name)
    storage.write_bytes(path, data)
    return file_entry(name, path, data)


def finalize(entries: Iterable[dict], out_dir: str, staging: str) -> list[dict]:
    """Rename every staged file onto ``out_dir/<file>`` (sorted), delete staging; entries without
    the ``staged`` key, sorted by file name."""
    entries = sorted(entries, key=lambda e: e["file"])
    names = [e["file"] for e in entries]
    if len(set(names)) != len(names):
        raise RuntimeError(f"{out_dir}: two outputs share a name: {sorted(n for n in names if names.count(n) > 1)}")
    for e in entries:
        storage.rename(e["staged"], storage.join(out_dir, e["file"]))
    storage.delete_tree(staging)
    _remove_empty_local_dir(storage.dirname(staging))
    return [{k: v for k, v in e.items() if k != "staged"} for e in entries]


def _remove_empty_local_dir(path: str) -> None:
    import os

    if storage.is_local(path):
        try:
            os.rmdir(path)
        except OSError:  # not empty (another run's staging) or already gone
            pass


def FinalizeFiles(out_dir: str, staging: str):  # noqa: N802 - a PTransform factory reads like a class
    """PTransform: staged file entries -> one element, the sorted list of finalized entries."""
    import apache_beam as beam

    class _Finalize(beam.PTransform):
        def expand(self, entries):
            return (entries
                    | "AllStaged" >> beam.combiners.ToList()
                    | "RenameIntoPlace" >> beam.Map(finalize, out_dir, staging))

    return _Finalize()


def json_bytes(value: Any) -> bytes:
    """Deterministic JSON (sorted keys) so re-runs write identical metadata."""
    return (json.dumps(value, indent=1, sort_keys=True) + "\n").encode("utf-8")


def write_metadata(out_dir: str, files: Mapping[str, bytes | str], last: str) -> str:
    """Write metadata files atomically, ``last`` (the manifest readers check for) after the rest."""
    for name in sorted(files, key=lambda n: n == last):
        storage.write_atomic(storage.join(out_dir, name), files[name])
    return storage.join(out_dir, last)
