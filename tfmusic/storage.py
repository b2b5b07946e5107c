"""Paths that may live on object storage: one thin layer over Beam's ``FileSystems``.

Beam jobs run on Dataflow against ``gs://`` (or ``s3://``, ``hdfs://``) as well as on a local disk,
so every file they read or write goes through this module instead of ``pathlib``/``open``. Beam's
``FileSystems`` picks the filesystem from the scheme; a path without a scheme is local and is
handled with ``os``/``open`` directly (same semantics, without importing Beam's cloud filesystems,
which costs each process ~2 CPU-s).

:func:`check_path` runs before any work starts: a scheme that no installed filesystem handles is
a :class:`StorageError` naming the scheme (and the extra to install for ``gs://``), never a local
folder called ``gs:``. Reads and writes are uncompressed byte streams (Beam would otherwise guess
a compression from ``.gz``/``.bz2`` suffixes). :func:`write_atomic` writes a sibling temp file and
renames it, so a reader never sees a half-written file.
"""

from __future__ import annotations

import io
import os
import posixpath
import re
import uuid
from typing import BinaryIO, Iterable

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
# Scheme -> what to install when Beam has no filesystem registered for it.
_EXTRAS = {
    "gs": "pip install 'tfmusic[dataflow]'  (apache-beam[gcp])",
    "s3": "pip install 'apache-beam[aws]'",
    "hdfs": "pip install 'apache-beam[hadoop]' (hdfs)",
    "az": "pip install 'apache-beam[azure]'",
}


class StorageError(ValueError):
    """A path cannot be used: unknown scheme, missing filesystem, or not found."""


def scheme(path: str | os.PathLike) -> str:
    """``'gs'`` for ``gs://b/x``; ``''`` for a local path."""
    m = _SCHEME.match(os.fspath(path))
    return m.group(1).lower() if m else ""


def is_local(path: str | os.PathLike) -> bool:
    return scheme(path) in ("", "file")


def _local(path: str) -> str:
    """A local path without a ``file://`` prefix."""
    return path[len("file://"):] if path.startswith("file://") else path


def _filesystems():
    from apache_beam.io.filesystems import FileSystems

    return FileSystems


def check_path(path: str | os.PathLike, *, what: str = "path") -> str:
    """Return ``path`` as a string if some filesystem handles its scheme, else raise StorageError.

    Called on every input and output before a job starts, so a typo'd or unsupported scheme
    fails in seconds instead of after the workers have run (or writing a local ``gs:`` folder).
    """
    text = os.fspath(path)
    s = scheme(text)
    if not s or s == "file":
        return text
    from apache_beam.io.filesystem import BeamIOError

    try:
        _filesystems().get_filesystem(text)
    except (ValueError, BeamIOError, ImportError) as err:
        hint = _EXTRAS.get(s)
        if hint:
            raise StorageError(f"{what} '{text}': no filesystem for '{s}://' is installed; {hint}") from None
        raise StorageError(f"{what} '{text}': unknown scheme '{s}://' (no Beam filesystem handles it; "
                           f"use a local path or gs://, s3://, hdfs://)") from err
    return text


def join(base: str | os.PathLike, *parts: str) -> str:
    base = os.fspath(base)
    if is_local(base):
        return os.path.join(base, *parts)
    return _filesystems().join(base, *parts)


def basename(path: str | os.PathLike) -> str:
    return posixpath.basename(os.fspath(path).rstrip("/"))


def dirname(path: str | os.PathLike) -> str:
    text = os.fspath(path).rstrip("/")
    return os.path.dirname(text) if is_local(text) else text.rsplit("/", 1)[0]


def exists(path: str | os.PathLike) -> bool:
    text = os.fspath(path)
    if is_local(text):
        return os.path.exists(_local(text))
    return _filesystems().exists(text)


def is_dir(path: str | os.PathLike) -> bool:
    """Local: a directory. Object stores: some object lies under ``path/``."""
    text = os.fspath(path)
    if is_local(text):
        return os.path.isdir(_local(text))
    result = _filesystems().match([join(text, "**")], limits=[1])[0]  # one object is enough
    return bool(result.metadata_list)


def makedirs(path: str | os.PathLike) -> None:
    """Create a local directory tree (object stores have no directories: nothing to do)."""
    text = os.fspath(path)
    if is_local(text):
        if os.path.exists(text) and not os.path.isdir(text):
            raise StorageError(f"{text}: exists and is not a directory")
        os.makedirs(text, exist_ok=True)


def glob(pattern: str | os.PathLike) -> list[str]:
    """Sorted file paths matching ``pattern`` (``*`` within a name, ``**`` across ``/``); [] if none."""
    return sorted(sizes(pattern))


def sizes(pattern: str | os.PathLike) -> dict[str, int]:
    text = os.fspath(pattern)
    if is_local(text):
        import glob as _glob

        return {p: os.path.getsize(p) for p in _glob.glob(_local(text), recursive=True) if os.path.isfile(p)}
    result = _filesystems().match([text])[0]
    return {m.path: int(m.size_in_bytes) for m in result.metadata_list}


def open_read(path: str | os.PathLike) -> BinaryIO:
    """A binary reader (seekable) for ``path``; StorageError naming the path if it is missing."""
    text = os.fspath(path)
    if not exists(text):
        raise StorageError(f"{text}: file does not exist")
    if is_local(text):
        return open(_local(text), "rb")
    from apache_beam.io.filesystem import CompressionTypes

    return _filesystems().open(text, compression_type=CompressionTypes.UNCOMPRESSED)


def open_write(path: str | os.PathLike) -> BinaryIO:
    """A binary writer for ``path`` (local parent directories are created)."""
    text = os.fspath(path)
    if is_local(text):
        makedirs(os.path.dirname(os.path.abspath(_local(text))))
        return open(_local(text), "wb")
    from apache_beam.io.filesystem import CompressionTypes

    return _filesystems().create(text, compression_type=CompressionTypes.UNCOMPRESSED)


def read_bytes(path: str | os.PathLike) -> bytes:
    with open_read(path) as fh:
        return fh.read()


def read_text(path: str | os.PathLike) -> str:
    return read_bytes(path).decode("utf-8")


def local_or_buffer(path: str | os.PathLike) -> str | BinaryIO:
    """What soundfile/librosa should open: the path itself when local, else the bytes in memory.

    Object-store readers are seekable but slow per seek; decoders seek a lot, so remote audio is
    read once into a ``BytesIO``.
    """
    text = os.fspath(path)
    if is_local(text):
        return text
    return io.BytesIO(read_bytes(text))


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with open_write(path) as fh:
        fh.write(data)


def temp_sibling(path: str | os.PathLike) -> str:
    """A unique temp name next to ``path`` (hidden, so dataset globs never match it)."""
    text = os.fspath(path)
    return join(dirname(text), f".{basename(text)}.tmp-{uuid.uuid4().hex[:12]}")


def rename(src: str, dst: str) -> None:
    """Move ``src`` over ``dst`` (replacing it); a local rename is atomic (parent folders are created)."""
    if is_local(src) and is_local(dst):
        makedirs(os.path.dirname(os.path.abspath(dst)))
        os.replace(src, dst)
        return
    if exists(dst):
        delete([dst])
    _filesystems().rename([src], [dst])


def write_atomic(path: str | os.PathLike, data: bytes | str) -> None:
    """Write ``data`` to a temp sibling, then rename it onto ``path``."""
    payload = data.encode("utf-8") if isinstance(data, str) else data
    tmp = temp_sibling(path)
    write_bytes(tmp, payload)
    rename(tmp, os.fspath(path))


def delete(paths: Iterable[str]) -> None:
    """Delete files (and local directories), ignoring those already gone."""
    paths = [p for p in paths if exists(p)]
    remote = [p for p in paths if not is_local(p)]
    for p in paths:
        if is_local(p):
            if os.path.isdir(_local(p)):
                import shutil

                shutil.rmtree(_local(p), ignore_errors=True)
            else:
                os.remove(_local(p))
    if remote:
        _filesystems().delete(remote)


def delete_tree(path: str | os.PathLike) -> None:
    """Delete a local directory tree or every object under ``path/``."""
    text = os.fspath(path)
    if is_local(text):
        import shutil

        shutil.rmtree(text, ignore_errors=True)
        return
    delete(glob(join(text, "**")))
